#!/usr/bin/env bash
# Builds kube-state-metrics from its pinned Go module (the `tool` line of go.mod; the version
# in its `require`) into $OUT (default: <workspace>/target/ksm/), for the benchmark that runs
# it beside sidecar-watch (`sidecar-watch-bench --against ksm`). Go's build cache makes a second
# run a no-op of about a second. Prints the binary's path as its last line.
#
# The first build downloads ~150 MB of modules and compiles kube-state-metrics: 9 min 53 s on
# this 2-core machine while other builds ran (2 min 37 s of CPU).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="$(realpath -m "${1:-${CARGO_TARGET_DIR:-$here/../../target}/ksm}")"
bin="$out/kube-state-metrics"
module=k8s.io/kube-state-metrics/v2

need=$(sed -n 's/^go \([0-9.]*\)$/\1/p' "$here/go.mod")
if ! command -v go >/dev/null; then
    echo "harness/ksm/build.sh: Go $need or newer is required to build kube-state-metrics;" \
        "install it from https://go.dev/dl/ or your distribution" >&2
    exit 2
fi
have=$(go env GOVERSION | sed 's/^go//')
if [ "$(printf '%s\n%s\n' "$need" "$have" | sort -V | head -1)" != "$need" ]; then
    echo "harness/ksm/build.sh: Go $have is too old: kube-state-metrics' module needs Go $need or newer" >&2
    exit 2
fi

cd "$here"
version=$(GOTOOLCHAIN=local GOFLAGS=-mod=mod go list -m -f '{{.Version}}' "$module") || {
    echo "harness/ksm/build.sh: cannot resolve $module (is the Go module proxy reachable? GOPROXY=$(go env GOPROXY))" >&2
    exit 2
}
# As kube-state-metrics' own Makefile stamps its release builds (`kube-state-metrics version`).
ldflags="-s -w -X github.com/prometheus/common/version.Version=$version -X github.com/prometheus/common/version.Branch=release"
mkdir -p "$out"
if ! GOTOOLCHAIN=local CGO_ENABLED=0 go build -ldflags "$ldflags" -o "$bin" "$module" >&2; then
    echo "harness/ksm/build.sh: go build of $module@$version failed (see above); modules come from $(go env GOPROXY)" >&2
    exit 2
fi
echo "$bin"
