#!/usr/bin/env bash
# Make sure the Debian packages a make target drives are installed, with apt-get when missing (as
# root); otherwise stop with the list and the command that installs it.
#   usage: scripts/ensure-packages.sh "make test" command:package [command:package ...]
#
# Debian starts a package's service on install (redis-server, nginx, varnish, prometheus). The tests run their
# own servers on free ports, so nothing is started: while apt-get runs, a policy-rc.d that answers
# 101 ("action forbidden") is in place, the way Debian's container images do it. Services already
# running are never touched, and a policy-rc.d the machine already has is left as it is.
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

policy_rc_d=${POLICY_RC_D:-/usr/sbin/policy-rc.d}
if [ ! -e "$policy_rc_d" ]; then
  printf '#!/bin/sh\n# asset-gateway: no service starts while its packages are installed\nexit 101\n' \
    > "$policy_rc_d"
  chmod 755 "$policy_rc_d"
  trap 'rm -f "$policy_rc_d"' EXIT
fi

echo "Installing ${missing[*]} with apt-get..."
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
