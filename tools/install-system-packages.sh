#!/usr/bin/env bash
# Install the Debian packages named in the given list files that are not installed yet.
# Runs apt-get only when something is missing, so repeated `make test` runs stay offline.
set -euo pipefail
missing=()
for list in "$@"; do
  while read -r pkg; do
    pkg=${pkg%%#*}; pkg=${pkg//[[:space:]]/}
    [ -n "$pkg" ] || continue
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done < "$list"
done
# A Python without ensurepip cannot make the venv: Debian splits it into python3-venv.
if ! python3 -c 'import ensurepip' 2>/dev/null; then missing+=(python3-venv); fi
if [ ${#missing[@]} -eq 0 ]; then exit 0; fi
if [ "$(id -u)" -ne 0 ]; then
  echo "install-system-packages: need root to install: ${missing[*]}" >&2
  exit 1
fi
echo "installing Debian packages: ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
# frr and bird2 are installed for their syntax checkers only (vtysh -C, bird -p): a routing daemon
# started by the package would touch this machine's routes, so stop and disable any that started.
for service in frr bird; do
  if printf '%s\n' "${missing[@]}" | grep -qx "${service/bird/bird2}"; then
    if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
      systemctl disable --now "$service" >/dev/null 2>&1 || true
    elif [ -x "/etc/init.d/$service" ]; then
      "/etc/init.d/$service" stop >/dev/null 2>&1 || true
    fi
  fi
done
