"""Documented default credentials of the emulator (used when no users or clients are configured)."""

from __future__ import annotations

DEFAULT_USER = "demo"
DEFAULT_PASSWORD = "demo-password"
DEFAULT_OAUTH_KEY = "demo-key"
DEFAULT_OAUTH_SECRET = "demo-secret"
DEFAULT_USERS = {DEFAULT_USER: DEFAULT_PASSWORD}
DEFAULT_OAUTH_CLIENTS = {DEFAULT_OAUTH_KEY: DEFAULT_OAUTH_SECRET}
