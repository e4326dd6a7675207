#!/usr/bin/env bash
# Install the system packages that the end-to-end tests need, when they are missing.
#
# Idempotent and fast when everything is present (no apt call at all). Needs root (or sudo)
# only when something is missing. Today that is Debian's Chromium, driven headless by
# Playwright in tests/e2e/test_ui.py (Playwright's own browser download is never used).
#
# Usage: scripts/ensure-system-deps.sh        (called by `make test`)
set -euo pipefail

# command -> Debian package providing it
declare -A NEEDED=(
    [/usr/bin/chromium]=chromium
)

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

for path in "${!NEEDED[@]}"; do
    if [[ ! -x "$path" ]]; then
        echo "ensure-system-deps: $path still missing after installing ${NEEDED[$path]}" >&2
        exit 1
    fi
done
echo "ensure-system-deps: done" >&2
