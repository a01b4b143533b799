#!/usr/bin/env bash
# Make sure the real servers the test suite starts are installed: redis-server and nginx from
# Debian packages, installed with apt-get when missing (as root), otherwise a clear failure.
set -euo pipefail

missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || missing+=(redis-tools)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx)

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "The test suite needs: ${missing[*]}." >&2
  echo "Install them (Debian/Ubuntu: sudo apt-get install ${missing[*]}) and run make test again." >&2
  exit 1
fi
echo "Installing ${missing[*]} with apt-get..."
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# Debian starts the services on install; the tests run their own on free ports.
for service in redis-server nginx; do
  if command -v service >/dev/null 2>&1; then service "$service" stop >/dev/null 2>&1 || true; fi
done
