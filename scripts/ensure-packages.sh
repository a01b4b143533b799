#!/usr/bin/env bash
# Make sure the Debian packages a make target drives are installed, with apt-get when missing (as
# root); otherwise stop with the list and the command that installs it.
#   usage: scripts/ensure-packages.sh "make test" command:package [command:package ...]
set -euo pipefail

purpose=$1
shift
missing=()
for pair in "$@"; do
  command=${pair%%:*}
  package=${pair#*:}
  # nginx lives in /usr/sbin, which a non-root PATH may not include
  if ! command -v "$command" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$command" ]; then
    missing+=("$package")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "$purpose needs: ${missing[*]}." >&2
  echo "Install them (Debian/Ubuntu: sudo apt-get install ${missing[*]}) and run $purpose again." >&2
  exit 1
fi
echo "Installing ${missing[*]} with apt-get..."
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# Debian starts services on install; the tests and benchmarks run their own on free ports.
for service in redis-server nginx varnish; do
  if command -v service >/dev/null 2>&1; then service "$service" stop >/dev/null 2>&1 || true; fi
done
