#!/usr/bin/env bash
# Make sure what `make bench` drives the servers with is installed: wrk (the load generator) and
# taskset (util-linux, to pin server and load to different CPUs), from Debian packages, installed
# with apt-get when missing (as root), otherwise a clear failure.
set -euo pipefail

missing=()
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
command -v taskset >/dev/null 2>&1 || missing+=(util-linux)

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "make bench needs: ${missing[*]}." >&2
  echo "Install them (Debian/Ubuntu: sudo apt-get install ${missing[*]}) and run make bench again." >&2
  exit 1
fi
echo "Installing ${missing[*]} with apt-get..."
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
