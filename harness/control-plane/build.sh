#!/usr/bin/env bash
# Builds the test control plane (kube-apiserver and etcd from their pinned Go modules, see
# go.mod) into $OUT (default: <workspace>/target/control-plane/), once: Go's build cache makes a
# second run a no-op of about a second. Beside it, prometheus-operator's own CRDs
# (ServiceMonitor, PrometheusRule) from its pinned Go module, for the install-path tests.
# Prints the binary's path as its last line.
#
# The first build downloads ~700 MB of modules and compiles kube-apiserver: ~8 minutes on 2 cores.
#
# --kubernetes-version VERSION builds the same program against another Kubernetes release
# (one whose go.mod versions/new.sh wrote, versions/MINOR/go.mod, with that release's own
# etcd) into <workspace>/target/control-plane-VERSION/ instead; without it, or with 1.37.2,
# the default go.mod beside this script.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
version=""
out_arg=""
while [ $# -gt 0 ]; do
    case "$1" in
        --kubernetes-version) version="${2:?--kubernetes-version needs a version, e.g. 1.33.13}"; shift 2 ;;
        --kubernetes-version=*) version="${1#*=}"; shift ;;
        -*) echo "harness/control-plane/build.sh: unknown flag $1 (usage: build.sh [--kubernetes-version VERSION] [OUT_DIR])" >&2; exit 2 ;;
        *) out_arg="$1"; shift ;;
    esac
done
version="${version#v}"
modfile="$here/go.mod"
default_out=control-plane
tags=""
if [ -n "$version" ] && [ "$version" != "$(sed -n 's|^[[:space:]]*k8s.io/kubernetes v\([0-9.]*\)$|\1|p' "$here/go.mod")" ]; then
    modfile="$here/versions/${version%.*}/go.mod"
    if ! grep -Eq "^[[:space:]]*(require )?k8s.io/kubernetes v$version\$" "$modfile" 2>/dev/null; then
        echo "harness/control-plane/build.sh: no go.mod for Kubernetes $version: write it with" \
            "'bash harness/control-plane/versions/new.sh $version' (see $(dirname "$modfile"))" >&2
        exit 2
    fi
    default_out="control-plane-$version"
    # Sources that differ between releases carry //go:build kube_1_MINOR (or !kube_1_MINOR).
    tags="kube_$(echo "${version%.*}" | tr . _)"
fi
out="$(realpath -m "${out_arg:-${CARGO_TARGET_DIR:-$here/../../target}/$default_out}")"
bin="$out/sidecar-watch-control-plane"

need=$(sed -n 's/^go \([0-9.]*\)$/\1/p' "$modfile")
if ! command -v go >/dev/null; then
    echo "harness/control-plane/build.sh: Go $need or newer is required to build the test control plane" \
        "(kube-apiserver and etcd); install it from https://go.dev/dl/ or your distribution" >&2
    exit 2
fi
have=$(go env GOVERSION | sed 's/^go//')
if [ "$(printf '%s\n%s\n' "$need" "$have" | sort -V | head -1)" != "$need" ]; then
    echo "harness/control-plane/build.sh: Go $have is too old: the pinned Kubernetes needs Go $need or newer" >&2
    exit 2
fi

cd "$here"
# The version kube-apiserver reports on /version is stamped as Kubernetes' own release build
# stamps it, from the module version pinned in go.mod.
kube=$(GOTOOLCHAIN=local GOFLAGS="-mod=mod -modfile=$modfile" go list -m -f '{{.Version}}' k8s.io/kubernetes) || {
    echo "harness/control-plane/build.sh: cannot resolve k8s.io/kubernetes (is the Go module proxy reachable? GOPROXY=$(go env GOPROXY))" >&2
    exit 2
}
minor=$(echo "$kube" | cut -d. -f2)
pkg=k8s.io/component-base/version
ldflags="-s -w -X $pkg.gitVersion=$kube -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
mkdir -p "$out"
if ! GOTOOLCHAIN=local go build -modfile="$modfile" -tags="$tags" -ldflags "$ldflags" -o "$bin" . >&2; then
    echo "harness/control-plane/build.sh: go build failed (see above); modules come from $(go env GOPROXY)" >&2
    exit 2
fi

# prometheus-operator's CRDs, taken from its module (verified against the checksum database
# like any module), so the shipped ServiceMonitor and PrometheusRule meet their real schemas.
promop=github.com/prometheus-operator/prometheus-operator@v0.85.0
crds="$out/prometheus-operator-crds"
if [ "$(cat "$crds/version" 2>/dev/null)" != "$promop" ]; then
    moddir=$(cd "$(mktemp -d)" && GOFLAGS= GOTOOLCHAIN=local go mod download -json "$promop" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
    [ -n "$moddir" ] || { echo "harness/control-plane/build.sh: cannot download $promop from $(go env GOPROXY)" >&2; exit 2; }
    rm -rf "$crds" && mkdir -p "$crds"
    for kind in servicemonitors prometheusrules podmonitors; do
        cp "$moddir/example/prometheus-operator-crd/monitoring.coreos.com_$kind.yaml" "$crds/"
    done
    chmod u+w "$crds"/*.yaml
    echo "$promop" > "$crds/version"
fi
echo "$bin"
