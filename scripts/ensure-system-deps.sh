#!/usr/bin/env bash
# Install the system packages that the end-to-end tests need, when they are missing.
#
# Idempotent and fast when everything is present (no apt call at all). Needs root (or sudo)
# only when something is missing: Debian's Chromium, driven headless by Playwright in the UI
# tests (Playwright's own browser download is never used), and PostgreSQL and Redis for the
# production-shaped deployment (CeleryExecutor) of the end-to-end tests, which start their own
# throw-away servers on loopback (no system service is started or enabled).
#
# Usage: scripts/ensure-system-deps.sh        (called by `make test`)
set -euo pipefail

# command -> Debian package providing it
declare -A NEEDED=(
    [/usr/bin/chromium]=chromium
    [/usr/bin/redis-server]=redis-server
)
# PostgreSQL's server binaries live in a versioned folder: any installed major version will do.
if ! compgen -G "/usr/lib/postgresql/*/bin/pg_ctl" >/dev/null; then
    NEEDED[/usr/lib/postgresql/pg_ctl]=postgresql
fi

missing=()
for path in "${!NEEDED[@]}"; do
    if [[ ! -x "$path" ]]; then
        missing+=("${NEEDED[$path]}")
    fi
done

if [[ ${#missing[@]} -eq 0 ]]; then
    exit 0
fi

SUDO=()
if [[ $(id -u) -ne 0 ]]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO=(sudo -n)
    else
        echo "ensure-system-deps: missing ${missing[*]}; run as root: apt-get install -y ${missing[*]}" >&2
        exit 1
    fi
fi

echo "ensure-system-deps: installing ${missing[*]} (Debian packages)" >&2
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update -qq
"${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null

# The Debian packages start their own services: stop them; the tests run their own servers.
for service in redis-server postgresql; do
    if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$service" 2>/dev/null; then
        "${SUDO[@]}" systemctl stop "$service" || true
    elif command -v service >/dev/null 2>&1; then
        "${SUDO[@]}" service "$service" stop >/dev/null 2>&1 || true
    fi
done

if ! compgen -G "/usr/lib/postgresql/*/bin/pg_ctl" >/dev/null; then
    echo "ensure-system-deps: PostgreSQL's pg_ctl still missing after installing postgresql" >&2
    exit 1
fi
for path in "${!NEEDED[@]}"; do
    [[ "$path" == /usr/lib/postgresql/pg_ctl ]] && continue
    if [[ ! -x "$path" ]]; then
        echo "ensure-system-deps: $path still missing after installing ${NEEDED[$path]}" >&2
        exit 1
    fi
done
echo "ensure-system-deps: done" >&2
