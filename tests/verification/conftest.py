"""Fixtures of the verification tests: the hostile storage servers of ``tests/hostile.py``."""

from __future__ import annotations

from tests.hostile import hostile_server, hostile_servers  # noqa: F401 - fixtures of these tests
