#!/usr/bin/env bash
# Debian packages the integration tests need: PostgreSQL (text-to-SQL) and Chromium (web UI).
# Idempotent; tests that need a missing one skip with a message naming this script.
set -uo pipefail
need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 || need+=(postgresql)
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get install -y -q "${need[@]}" >/dev/null 2>&1 \
    || { $SUDO apt-get update -q >/dev/null 2>&1 && $SUDO apt-get install -y -q "${need[@]}" >/dev/null 2>&1; } \
    || echo "warning: could not install ${need[*]}; the tests that need them will skip" >&2
fi
exit 0
