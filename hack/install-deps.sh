#!/usr/bin/env bash
# Installs the Debian packages the tests and the local cluster need, when missing.
# Runs as root on a fresh Debian machine; a no-op when everything is there. Services the packages
# would start on the host (NetworkManager, dnsmasq) are kept from starting while installing: only
# the harness nodes run them, inside their own namespaces.
set -euo pipefail
# gcc and libc6-dev: the C parts of the build (ring, zstd); curl: the box kubelet's HTTP probes;
# lldpd: the LLDP neighbour an end-to-end suite runs in the box's switch namespace.
pkgs=(network-manager dbus dnsmasq-base iproute2 iputils-ping util-linux procps socat openssl
  gcc libc6-dev curl lldpd)
# `--image`: also podman, for hack/image.sh (hack/test.sh never needs it).
[[ "${1:-}" == --image ]] && pkgs+=(podman)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  rcd=/usr/sbin/policy-rc.d
  made_rcd=0
  if [[ ! -e $rcd ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$rcd"
    chmod 755 "$rcd"
    made_rcd=1
  fi
  trap '[[ $made_rcd -eq 1 ]] && rm -f "$rcd"' EXIT
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
command -v kubectl >/dev/null || { echo "kubectl not found: the kubectl and end-to-end tests need it" >&2; exit 1; }
# cargo-deny checks licences, duplicate crates and sources (deny.toml); built from crates.io once.
CARGO_DENY_VERSION=0.20.2
if ! cargo deny --version 2>/dev/null | grep -qx "cargo-deny $CARGO_DENY_VERSION"; then
  echo "installing cargo-deny $CARGO_DENY_VERSION"
  cargo install --quiet --locked cargo-deny --version "$CARGO_DENY_VERSION"
fi
