#!/usr/bin/env bash
# Installs the Debian packages the tests and the local cluster need, when missing.
# Runs as root on a fresh Debian machine; a no-op when everything is there.
set -euo pipefail
pkgs=(network-manager dbus dnsmasq-base iproute2 iputils-ping util-linux procps)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
command -v kubectl >/dev/null || echo "note: kubectl not found; tests that drive kubectl will fail" >&2
