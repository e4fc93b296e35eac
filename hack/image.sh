#!/usr/bin/env bash
# Builds the knmstate container image with podman, pulling nothing, and proves it: each
# entrypoint's --help runs chrooted into the image's exported root filesystem.
#
#   hack/image.sh [TAG]        (default localhost/knmstate:dev)
#
# The image is FROM scratch: the three release binaries (dynamically linked against glibc:
# the installed toolchain has no musl target), the libraries `ldd` says they load, copied to
# the paths the loader looks in, and `cat` for the handler's readiness probe. Needs root for
# the chroot; podman is installed by `hack/install-deps.sh --image` when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
tag="${1:-localhost/knmstate:dev}"
bins=(handler knmstate-controller knmstate-webhook)
target="${CARGO_TARGET_DIR:-target}"

command -v podman >/dev/null || hack/install-deps.sh --image

cargo build --release --locked -p knmstate-controller -p knmstate-handler -p knmstate-webhook

ctx="$target/image"
rm -rf "$ctx"
mkdir -p "$ctx/rootfs/usr/bin" "$ctx/rootfs/tmp"
chmod 1777 "$ctx/rootfs/tmp"
for b in "${bins[@]}"; do
    # Symbols only help a debugger; the image ships without them.
    strip --strip-unneeded -o "$ctx/rootfs/usr/bin/$b" "$target/release/$b"
done
cp /usr/bin/cat "$ctx/rootfs/usr/bin/cat"
# Every shared object the binaries load, at the path the loader resolves it to.
for f in "$ctx"/rootfs/usr/bin/*; do ldd "$f"; done |
    awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}' | sort -u |
    while read -r lib; do
        mkdir -p "$ctx/rootfs$(dirname "$lib")"
        cp -L "$lib" "$ctx/rootfs$lib"
    done
podman build --pull=never --file Containerfile --tag "$tag" "$ctx"

# Prove it: export the root filesystem and run each entrypoint's --help inside it.
root="$(mktemp -d)"
cid="$(podman create "$tag")"
trap 'podman rm -f "$cid" >/dev/null 2>&1 || true; rm -rf "$root"' EXIT
podman export "$cid" | tar -x -C "$root"
for b in "${bins[@]}"; do
    chroot "$root" "/usr/bin/$b" --help >/dev/null
    echo "ok: chroot /usr/bin/$b --help"
done
chroot "$root" /usr/bin/knmstate-controller operator --help >/dev/null
echo "ok: chroot /usr/bin/knmstate-controller operator --help"
# The handler's readiness probe, as the kubelet runs it once the handler wrote its file.
touch "$root/tmp/healthy"
chroot "$root" /usr/bin/cat /tmp/healthy
echo "ok: chroot /usr/bin/cat /tmp/healthy (the handler's readiness probe)"

echo "image $tag: $(podman image inspect --format '{{.Size}}' "$tag") bytes"
for b in "${bins[@]}"; do
    printf '%s: %s bytes (unstripped %s)\n' "$b" "$(stat -c %s "$ctx/rootfs/usr/bin/$b")" \
        "$(stat -c %s "$target/release/$b")"
done
find "$ctx/rootfs" -type f -printf '%s %P\n' | sort -k2
