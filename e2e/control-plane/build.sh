#!/usr/bin/env bash
# Builds the test control plane (kube-apiserver and etcd from their pinned Go modules, see
# go.mod) into $OUT (default: <workspace>/target/control-plane/), once: Go's build cache makes a
# second run a no-op of about a second. Beside it, prometheus-operator's own CRDs
# (ServiceMonitor, PrometheusRule) from its pinned Go module, for the install-path tests.
# Prints the binary's path as its last line.
#
# The first build downloads ~700 MB of modules and compiles kube-apiserver: ~8 minutes on 2 cores.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="$(realpath -m "${1:-${CARGO_TARGET_DIR:-$here/../../target}/control-plane}")"
bin="$out/sidecar-watch-control-plane"

need=$(sed -n 's/^go \([0-9.]*\)$/\1/p' "$here/go.mod")
if ! command -v go >/dev/null; then
    echo "e2e/control-plane/build.sh: Go $need or newer is required to build the test control plane" \
        "(kube-apiserver and etcd); install it from https://go.dev/dl/ or your distribution" >&2
    exit 2
fi
have=$(go env GOVERSION | sed 's/^go//')
if [ "$(printf '%s\n%s\n' "$need" "$have" | sort -V | head -1)" != "$need" ]; then
    echo "e2e/control-plane/build.sh: Go $have is too old: the pinned Kubernetes needs Go $need or newer" >&2
    exit 2
fi

cd "$here"
# The version kube-apiserver reports on /version is stamped as Kubernetes' own release build
# stamps it, from the module version pinned in go.mod.
kube=$(GOTOOLCHAIN=local GOFLAGS=-mod=mod go list -m -f '{{.Version}}' k8s.io/kubernetes) || {
    echo "e2e/control-plane/build.sh: cannot resolve k8s.io/kubernetes (is the Go module proxy reachable? GOPROXY=$(go env GOPROXY))" >&2
    exit 2
}
minor=$(echo "$kube" | cut -d. -f2)
pkg=k8s.io/component-base/version
ldflags="-s -w -X $pkg.gitVersion=$kube -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
mkdir -p "$out"
if ! GOTOOLCHAIN=local go build -ldflags "$ldflags" -o "$bin" . >&2; then
    echo "e2e/control-plane/build.sh: go build failed (see above); modules come from $(go env GOPROXY)" >&2
    exit 2
fi

# prometheus-operator's CRDs, taken from its module (verified against the checksum database
# like any module), so the shipped ServiceMonitor and PrometheusRule meet their real schemas.
promop=github.com/prometheus-operator/prometheus-operator@v0.85.0
crds="$out/prometheus-operator-crds"
if [ "$(cat "$crds/version" 2>/dev/null)" != "$promop" ]; then
    moddir=$(cd "$(mktemp -d)" && GOFLAGS= GOTOOLCHAIN=local go mod download -json "$promop" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
    [ -n "$moddir" ] || { echo "e2e/control-plane/build.sh: cannot download $promop from $(go env GOPROXY)" >&2; exit 2; }
    rm -rf "$crds" && mkdir -p "$crds"
    for kind in servicemonitors prometheusrules podmonitors; do
        cp "$moddir/example/prometheus-operator-crd/monitoring.coreos.com_$kind.yaml" "$crds/"
    done
    chmod u+w "$crds"/*.yaml
    echo "$promop" > "$crds/version"
fi
echo "$bin"
