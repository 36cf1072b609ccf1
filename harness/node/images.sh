#!/usr/bin/env bash
# Builds the node's images as docker-archive tarballs into OUT (default target/node-images/),
# with no registry and no image builder: a root filesystem, one layer tar, a config, a
# manifest (the layout `docker save` writes and `ctr images import` reads).
#
#   sidecar-watch.test/busybox:1   Debian's static busybox, for the test Pods
#   sidecar-watch.test/proxy:1.0.0, :1.1.0
#                                  the same busybox as two releases of a sidecar
#   sidecar-watch.test/pause:1     the same busybox sleeping: the Pod sandbox containerd needs
#   sidecar-watch.test/sidecar-watch:dev
#                                  the operator: the release binary at /sidecar-watch, user
#                                  65532, entrypoint and command as the Dockerfile's image
#
# Usage: harness/node/images.sh [OUT] [OPERATOR_BINARY]
# Prints one tarball path a line.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="$(realpath -m "${1:-${CARGO_TARGET_DIR:-$here/../../target}/node-images}")"
operator="${2:-}"
mkdir -p "$out"

busybox=/bin/busybox
case "$("$busybox" --help 2>&1 || true)" in
  BusyBox*) ldd "$busybox" >/dev/null 2>&1 && static=no || static=yes ;;
  *) static=missing ;;
esac
[ "$static" = yes ] \
  || { echo "harness/node/images.sh: a static busybox is required at $busybox (apt-get install busybox-static)" >&2; exit 2; }

# image NAME ROOTFS CONFIG_JSON: writes $out/<file>.tar from ROOTFS with CONFIG_JSON as the
# image's `config` (Entrypoint, Cmd, User, Env...).
image() {
  local name=$1 rootfs=$2 config=$3 work
  work=$(mktemp -d)
  # A reproducible layer: sorted, no timestamps, owned by root.
  tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$rootfs" -cf "$work/layer.tar" .
  local diff_id
  diff_id=$(sha256sum "$work/layer.tar" | cut -d' ' -f1)
  printf '{"architecture":"amd64","os":"linux","config":%s,"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' \
    "$config" "$diff_id" > "$work/config.json"
  local config_id
  config_id=$(sha256sum "$work/config.json" | cut -d' ' -f1)
  mv "$work/config.json" "$work/$config_id.json"
  printf '[{"Config":"%s.json","RepoTags":["%s"],"Layers":["layer.tar"]}]' "$config_id" "$name" > "$work/manifest.json"
  local file="$out/$(echo "$name" | tr '/:' '__').tar"
  tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$work" -cf "$file" manifest.json "$config_id.json" layer.tar
  rm -rf "$work"
  echo "$file"
}

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT

# busybox: /bin with every applet, /tmp, a passwd with root and nobody.
mkdir -p "$root/busybox/bin" "$root/busybox/tmp" "$root/busybox/etc"
cp "$busybox" "$root/busybox/bin/busybox"
for applet in $("$busybox" --list); do
  [ "$applet" = busybox ] || ln -sf busybox "$root/busybox/bin/$applet"
done
chmod 1777 "$root/busybox/tmp"
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' > "$root/busybox/etc/passwd"
printf 'root:x:0:\nnobody:x:65534:\n' > "$root/busybox/etc/group"
image sidecar-watch.test/busybox:1 "$root/busybox" '{"Env":["PATH=/bin"],"Cmd":["sh"]}'
# Two releases of a "sidecar" (the same busybox): a workload rolled from one to the other.
for release in 1.0.0 1.1.0; do
  image "sidecar-watch.test/proxy:$release" "$root/busybox" '{"Env":["PATH=/bin"],"Cmd":["sh"]}'
done
# The sandbox only holds the Pod's namespaces; containerd kills it with SIGKILL.
image sidecar-watch.test/pause:1 "$root/busybox" '{"Env":["PATH=/bin"],"Entrypoint":["/bin/sleep","2147483647"]}'

if [ -n "$operator" ]; then
  [ -x "$operator" ] || { echo "harness/node/images.sh: no operator binary at $operator (cargo build --release)" >&2; exit 2; }
  # The Dockerfile's image is a static musl binary on distroless/static; the musl target
  # cannot be installed here (no toolchain downloads), so the glibc release binary comes with
  # the shared libraries it links (what distroless/cc holds). Everything else is the same:
  # /sidecar-watch, user 65532, no shell.
  mkdir -p "$root/operator/etc" "$root/operator/tmp"
  cp "$operator" "$root/operator/sidecar-watch"
  for lib in $(ldd "$operator" | grep -o '/[^ ]*'); do
    mkdir -p "$root/operator$(dirname "$lib")"
    cp -L "$lib" "$root/operator$lib"
  done
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' > "$root/operator/etc/passwd"
  printf 'root:x:0:\nnonroot:x:65532:\n' > "$root/operator/etc/group"
  chmod 1777 "$root/operator/tmp"
  image sidecar-watch.test/sidecar-watch:dev "$root/operator" \
    '{"User":"65532:65532","Entrypoint":["/sidecar-watch"],"Cmd":["run"],"ExposedPorts":{"8080/tcp":{}}}'
fi
