#!/usr/bin/env bash
# Package the kubectl plugin for krew: a release build of `kubectl-nmstate` for this machine's
# architecture, packed as kubectl-nmstate-linux-<arch>.tar.gz, and the krew manifest
# (handler/krew/nmstate.yaml) with that archive's sha256 written into its platform entry.
#
#   hack/plugin-release.sh [OUT_DIR]     default OUT_DIR: target/plugin
#
# Then, on this machine:
#   kubectl krew install --manifest=OUT_DIR/nmstate.yaml --archive=OUT_DIR/kubectl-nmstate-linux-<arch>.tar.gz
# A release uploads the archive under its tag (the manifest's `uri`) and publishes the manifest.
# Entries of other architectures keep their placeholder until built on (or for) them.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
out="${1:-target/plugin}"
target="${CARGO_TARGET_DIR:-target}"

case "$(uname -m)" in
    x86_64) arch=amd64 ;;
    aarch64) arch=arm64 ;;
    *) echo "plugin-release.sh: unsupported architecture $(uname -m)" >&2; exit 1 ;;
esac

echo "plugin-release.sh: building kubectl-nmstate (release)"
cargo build --release --locked -q -p knmstate-handler --bin kubectl-nmstate

mkdir -p "$out"
stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
strip --strip-unneeded -o "$stage/kubectl-nmstate" "$target/release/kubectl-nmstate"
archive="$out/kubectl-nmstate-linux-$arch.tar.gz"
# Reproducible archive: fixed order, owner and time.
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$stage" -czf "$archive" .
sum="$(sha256sum "$archive" | cut -d' ' -f1)"

# Write the sum into the entry whose uri names this archive (the line after it is `sha256:`).
awk -v file="kubectl-nmstate-linux-$arch.tar.gz" -v sum="$sum" '
    index($0, "uri:") && index($0, file) { print; hit = 1; next }
    hit && $1 == "sha256:" { sub(/sha256:.*/, "sha256: \"" sum "\""); hit = 0; done = 1 }
    { print }
    END { if (!done) exit 3 }
' handler/krew/nmstate.yaml >"$out/nmstate.yaml" || {
    echo "plugin-release.sh: no linux/$arch entry in handler/krew/nmstate.yaml" >&2
    exit 1
}
# The archive must unpack to the binary the manifest names, and the binary must run.
check="$(mktemp -d)"
tar -C "$check" -xzf "$archive"
"$check/kubectl-nmstate" --help >/dev/null
rm -rf "$check"

echo "plugin-release.sh: $archive ($(du -k "$archive" | cut -f1) KiB), sha256 $sum"
echo "plugin-release.sh: manifest $out/nmstate.yaml"
