"""Provider metadata read by Airflow's ProvidersManager.

This is a literal dict on purpose: no imports, no computation. Airflow calls it for every
``airflow`` command and every DAG parse; if it broke, it would break them all.
"""

from __future__ import annotations

from typing import Any


def get_provider_info() -> dict[str, Any]:
    """Return the provider's metadata (package, modules, connection type and its UI form).

    No extra's name contains a word of Airflow's sensitive-field list (``password``, ``token``,
    ``auth_header``, ...): the UI would show its value, even a default ``false``, as ``***``.
    The hook also accepts the names ``password_is_md5``, ``token_url`` and ``token_header``.
    """
    return {
        "package-name": "airflow-provider-capillary",
        "name": "Capillary",
        "description": "Upload reward images to Capillary's file service and verify that they are served.",
        "versions": ["0.1.0"],
        "integrations": [
            {
                "integration-name": "Capillary File Service",
                "external-doc-url": "https://docs.capillarytech.com/reference/upload-images-to-file-service",
                "tags": ["service"],
            }
        ],
        "operators": [
            {
                "integration-name": "Capillary File Service",
                "python-modules": ["airflow_capillary.operators.upload_image"],
            }
        ],
        "sensors": [
            {
                "integration-name": "Capillary File Service",
                "python-modules": ["airflow_capillary.sensors.file_service"],
            }
        ],
        "hooks": [
            {
                "integration-name": "Capillary File Service",
                "python-modules": ["airflow_capillary.hooks.file_service"],
            }
        ],
        "triggers": [
            {
                "integration-name": "Capillary File Service",
                "python-modules": ["airflow_capillary.triggers.file_service"],
            }
        ],
        "extra-links": ["airflow_capillary.links.CapillaryImageLink"],
        "connection-types": [
            {
                "connection-type": "capillary",
                "hook-class-name": "airflow_capillary.hooks.file_service.CapillaryFileHook",
                "hook-name": "Capillary File Service",
                "ui-field-behaviour": {
                    "hidden-fields": ["schema", "port"],
                    "relabeling": {
                        "host": "Cluster URL",
                        "login": "Till username / OAuth client key",
                        "password": "Password / OAuth client secret",
                    },
                    "placeholders": {
                        "host": "https://eucrm.cc.capillarytech.com",
                        "login": "till username (basic) or client key (oauth)",
                        "password": "plain password (basic) or client secret (oauth)",
                    },
                },
                "conn-fields": {
                    "auth_type": {
                        "label": "Authentication",
                        "description": "basic: till username and MD5 of the password; "
                        "oauth: client credentials exchanged for a token.",
                        "schema": {
                            "type": ["string", "null"],
                            "enum": ["basic", "oauth"],
                            "default": "basic",
                        },
                    },
                    "md5_prehashed": {
                        "label": "Password is already an MD5 hex digest",
                        "description": "Basic auth only: the password field holds md5(password) and is sent as is.",
                        "schema": {"type": ["boolean", "null"], "default": False},
                    },
                    "oauth_url": {
                        "label": "OAuth token URL",
                        "description": "OAuth only. Default: {host}/v3/oauth/token/generate. "
                        "Capillary's API host can differ from the file-service host.",
                        "schema": {"type": ["string", "null"], "format": "url"},
                    },
                    "oauth_access_header": {
                        "label": "OAuth token header",
                        "description": "Header that carries the access token.",
                        "schema": {"type": ["string", "null"], "default": "X-CAP-API-OAUTH-TOKEN"},
                    },
                    "namespace": {
                        "label": "Namespace",
                        "description": "File-service namespace used when a task names none.",
                        "schema": {"type": ["string", "null"], "default": "rewards"},
                    },
                    "timeout": {
                        "label": "Timeout (seconds)",
                        "description": "Connect and read timeout of every request.",
                        "schema": {"type": ["number", "null"], "default": 60, "minimum": 0},
                    },
                    "verify": {
                        "label": "Verify TLS",
                        "description": "true, false, or the path of a CA bundle.",
                        "schema": {"type": ["string", "null"], "default": "true"},
                    },
                    "headers": {
                        "label": "Extra headers (JSON)",
                        "description": 'Static headers sent with every request, e.g. {"X-CAP-API-ATTRIBUTION-ENTITY-TYPE": "TILL"}.',
                        "schema": {"type": ["object", "null"], "format": "json"},
                    },
                    "server_timezone": {
                        "label": "Service time zone",
                        "description": "IANA zone in which the service writes last_modified.",
                        "schema": {"type": ["string", "null"], "default": "Asia/Kolkata"},
                    },
                    "upload_encoding": {
                        "label": "Upload encoding",
                        "description": "multipart: a form part holds the image; raw: the image is the body.",
                        "schema": {
                            "type": ["string", "null"],
                            "enum": ["multipart", "raw"],
                            "default": "multipart",
                        },
                    },
                    "file_field": {
                        "label": "Multipart field name",
                        "schema": {"type": ["string", "null"], "default": "file"},
                    },
                    "max_retries": {
                        "label": "Retries",
                        "description": "Retries after the first attempt, on connection errors, timeouts, 429 and 502/503/504.",
                        "schema": {"type": ["integer", "null"], "default": 5, "minimum": 0},
                    },
                    "retry_on_500": {
                        "label": "Retry on HTTP 500",
                        "schema": {"type": ["boolean", "null"], "default": False},
                    },
                    "retry_min_wait": {
                        "label": "Shortest wait between retries (seconds)",
                        "schema": {"type": ["number", "null"], "default": 1, "minimum": 0},
                    },
                    "retry_max_wait": {
                        "label": "Longest wait between retries (seconds)",
                        "schema": {"type": ["number", "null"], "default": 30, "minimum": 0},
                    },
                    "retry_after_max": {
                        "label": "Longest Retry-After honoured (seconds)",
                        "schema": {"type": ["number", "null"], "default": 120, "minimum": 0},
                    },
                    "retry_integrity_errors": {
                        "label": "Upload again after an untrustworthy answer",
                        "description": "status 'false', malformed JSON or a wrong stored size: upload again "
                        "(each upload creates a version) instead of failing.",
                        "schema": {"type": ["boolean", "null"], "default": True},
                    },
                    "check_content": {
                        "label": "Check image content against the extension",
                        "schema": {"type": ["boolean", "null"], "default": True},
                    },
                    "allow_empty": {
                        "label": "Allow empty files",
                        "schema": {"type": ["boolean", "null"], "default": False},
                    },
                    "max_connections": {
                        "label": "Connection pool size",
                        "schema": {"type": ["integer", "null"], "default": 16, "minimum": 1},
                    },
                    "test_path": {
                        "label": "Path probed by the Test button",
                        "description": "An authenticated, read-only path. Default: the namespace's upload path.",
                        "schema": {"type": ["string", "null"]},
                    },
                    "proxies": {
                        "label": "Proxies (JSON)",
                        "description": 'requests-style, e.g. {"https": "http://proxy:3128"}.',
                        "schema": {"type": ["object", "null"], "format": "json"},
                    },
                    "max_file_size": {
                        "label": "Maximum file size (bytes)",
                        "description": "Refuse larger files before sending them. Empty: no limit.",
                        "schema": {"type": ["integer", "null"], "minimum": 1},
                    },
                },
            }
        ],
    }
