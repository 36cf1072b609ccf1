#!/usr/bin/env python3
"""Behaviour checks of the rendered deploy files, used by scripts/check-deploy.sh (run from the
repository root). Each subcommand prints what it checked and exits non-zero naming the problem.

  schema HELM          values.schema.json: every documented value accepted (values.yaml and
                       ci/everything-values.yaml), typos and bad values rejected by both
                       `helm lint` and `helm template`
  notes HELM           the rendered NOTES.txt names the right Lease(s): one, one per shard, none
  chart-render HELM    image registry/digest/tag, pull secrets, Pod labels, probes, grace period,
                       topology spread, PodMonitor/cert-manager wiring
  secure FILE LABEL    a rendered install serves /metrics securely: --metrics-secure=true on
                       8443 named https-metrics, HTTPS probes, Service, ServiceMonitor with
                       bearer token + TLS, per-shard relabeling, metrics-reader, review RBAC,
                       NetworkPolicy and PodDisruptionBudget
  roles FILE LABEL     the aggregated user ClusterRoles grant exactly what the docs promise
  kustomize-digest     config/default's `images:` pins a digest (tag@digest) when one is set
  default-policy HELM  the default ClusterSidecarPolicy: rendered by default (chart and the
                       kustomize overlays), cluster-scoped, the built-in policy (no spec but
                       the namespace selector), every namespace but kube-system and the
                       operator's own; absent with defaultPolicy.enabled=false or an overlay's
                       delete patch (docs/install.md)
  dashboard-data DIR   every dashboard query and variable returns data on the recorded scrape
                       config/grafana/tests/scrape.prom (promtool test rules, written into DIR)
"""
from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from checks_common import dashboard_exprs
from chart_common import NS, ROOT, by_kind, fail, failures, finish, ok, template, workload
from chart_install import cmd_roles, cmd_secure
from chart_render import cmd_chart_render, cmd_notes, cmd_schema


# ------------------------------------------------------------------------ kustomize-digest
def cmd_kustomize_digest() -> None:
    digest = "sha256:" + "b" * 64
    # kustomize takes bases by relative path only: an overlay next to config/default, removed after
    with tempfile.TemporaryDirectory(dir=ROOT / "config", prefix=".digest-check-") as tmp:
        (Path(tmp) / "kustomization.yaml").write_text(yaml.safe_dump({
            "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
            "resources": ["../default"],
            "images": [{"name": "ghcr.io/sidecar-watch/sidecar-watch", "digest": digest}]}))
        p = subprocess.run(["kubectl", "kustomize", tmp], capture_output=True, text=True)
    if p.returncode != 0:
        fail(f"kustomize overlay with an image digest: {p.stderr.strip()}")
        finish()
    w = workload([d for d in yaml.safe_load_all(p.stdout) if d])
    image = w["spec"]["template"]["spec"]["containers"][0]["image"]
    if image != f"ghcr.io/sidecar-watch/sidecar-watch@{digest}":
        fail(f"kustomize digest pin: got {image}")
        finish()
    ok(f"config/default pins by digest through `images:` ({image[:60]}...)")
    finish()


# -------------------------------------------------------------------------- dashboard-data
DASH = ROOT / "config/grafana/sidecar-watch-dashboard.json"
SCRAPE = ROOT / "config/grafana/tests/scrape.prom"
COUNTER = re.compile(r"^\w+(_total|_bucket|_sum|_count)$")


def cmd_dashboard_data(outdir: str) -> None:
    """Each panel query and variable query (Grafana variables set to All) must return at least
    one series on the recorded scrape: a renamed metric or label, or a filter that never
    matches, fails here although the PromQL parses."""
    import json

    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    series = []
    for line in SCRAPE.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        selector, _, value = line.rpartition(" ")
        name = selector.split("{", 1)[0]
        v = float(value)
        # 11 samples a minute apart; counters grow so that rate()/increase() see them move
        values = f"{value}+{value}x10" if COUNTER.match(name) and v > 0 else f"{value}x10"
        series.append({"series": selector, "values": values})
    dash = json.loads(DASH.read_text())
    exprs = dashboard_exprs(dash)
    for v in dash.get("templating", {}).get("list", []):
        q = v.get("query")
        q = q.get("query") if isinstance(q, dict) else q
        m = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", q or "")
        if m:
            sel = m.group(1)
            label = m.group(2)
            sel = sel[:-1] + f', {label}!=""}}' if sel.endswith("}") else f'{sel}{{{label}!=""}}'
            exprs.append((f"variable {v['name']}", sel))
    names = [v["name"] for v in dash.get("templating", {}).get("list", [])]
    tests = []
    for title, e in exprs:
        q = e.replace("$__rate_interval", "2m").replace("${__rate_interval}", "2m")
        for n in names:
            q = q.replace("${" + n + "}", ".*").replace("$" + n, ".*")
        tests.append({"expr": f"count({q}) > bool 0", "eval_time": "10m",
                      "exp_samples": [{"labels": "{}", "value": 1}], "_title": title})
    (out / "dashboard-empty.rules.yaml").write_text(yaml.safe_dump({"groups": []}))
    test = {"rule_files": ["dashboard-empty.rules.yaml"], "evaluation_interval": "1m",
            "tests": [{"name": f"dashboard queries return data on {SCRAPE.relative_to(ROOT)}", "interval": "1m",
                       "input_series": series,
                       "promql_expr_test": [{k: v for k, v in t.items() if k != "_title"} for t in tests]}]}
    (out / "dashboard-data.test.yaml").write_text(yaml.safe_dump(test, sort_keys=False))
    p = subprocess.run(["promtool", "test", "rules", "dashboard-data.test.yaml"], cwd=out, capture_output=True, text=True)
    if p.returncode != 0:
        # name the panels whose query came back empty
        for t in tests:
            if t["expr"].replace('"', '\\"') in p.stdout + p.stderr:
                fail(f"{DASH.relative_to(ROOT)}: {t['_title']!r} returns no data on the recorded scrape: {t['expr']}")
        if not failures:
            fail(f"promtool test rules: {p.stdout.strip()} {p.stderr.strip()}")
    else:
        ok(f"{len(exprs)} dashboard queries (panels and variables, variables = All) return data on "
           f"{SCRAPE.relative_to(ROOT)} ({len(series)} series)")
    finish()


# -------------------------------------------------------------------------- default-policy
def default_policies(docs: list[dict], where: str, namespace: str, name: str) -> None:
    """Exactly one ClusterSidecarPolicy `name`, as the default policy must be."""
    found = by_kind(docs, "ClusterSidecarPolicy")
    if [p.get("metadata", {}).get("name") for p in found] != [name]:
        fail(f"{where}: want one ClusterSidecarPolicy {name}, got {[p.get('metadata', {}).get('name') for p in found]}")
        return
    p = found[0]
    if "namespace" in p["metadata"]:
        fail(f"{where}: the ClusterSidecarPolicy is cluster-scoped but has metadata.namespace {p['metadata']['namespace']}")
    spec = p.get("spec") or {}
    if set(spec) != {"namespaceSelector"}:
        fail(f"{where}: the default policy must be the built-in one (only a namespaceSelector), has {sorted(spec)}")
    want = {"matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "NotIn",
                                  "values": ["kube-system", namespace]}]}
    if spec.get("namespaceSelector") != want:
        fail(f"{where}: namespaceSelector {spec.get('namespaceSelector')}, want every namespace but kube-system "
             f"and {namespace}: {want}")


def kustomize(path: Path) -> list[dict]:
    p = subprocess.run(["kubectl", "kustomize", str(path)], capture_output=True, text=True)
    if p.returncode != 0 or p.stderr.strip():
        fail(f"kubectl kustomize {path}: {p.stderr.strip()}")
        return []
    return [d for d in yaml.safe_load_all(p.stdout) if d]


def cmd_default_policy(helm_bin: str) -> None:
    default_policies(template(helm_bin), "helm defaults", NS, "sw-sidecar-watch-default")
    docs = template(helm_bin, "--set", "fullnameOverride=sidecar-watch", "--namespace", "monitoring")
    default_policies(docs, "helm --namespace monitoring", "monitoring", "sidecar-watch-default")
    docs = template(helm_bin, "--set", "defaultPolicy.enabled=false")
    if by_kind(docs, "ClusterSidecarPolicy"):
        fail("helm defaultPolicy.enabled=false still renders a ClusterSidecarPolicy")
    ok("helm: the default policy by default (every namespace but kube-system and the release's), none when disabled")
    for d in ("config/default", "config/default-no-prometheus", "config/sharded"):
        default_policies(kustomize(ROOT / d), d, NS, "sidecar-watch-default")
    with tempfile.TemporaryDirectory() as tmp:
        # A user's overlays, beside a copy of config/ (kustomize loads bases by relative path).
        subprocess.run(["cp", "-r", str(ROOT / "config"), tmp], check=True)
        off = Path(tmp) / "config/without-default-policy"
        off.mkdir()
        (off / "kustomization.yaml").write_text(INSTALL_DOC_OVERLAY)
        docs = kustomize(off)
        if not docs or by_kind(docs, "ClusterSidecarPolicy"):
            fail("the overlay of docs/install.md does not leave the default policy out")
        if not by_kind(docs, "Deployment"):
            fail("the overlay of docs/install.md lost the Deployment")
    doc = (ROOT / "docs/install.md").read_text()
    if INSTALL_DOC_OVERLAY.replace("../default", "https://github.com/sidecar-watch/sidecar-watch//config/default?ref=v0.1.0") not in doc:
        fail("docs/install.md does not show the overlay that leaves the default policy out (scripts/deploy/chart_checks.py)")
    ok("kustomize: the default policy in config/default, -no-prometheus and sharded; the documented overlay leaves it out")
    finish()


# The overlay docs/install.md shows (with its remote base) to leave the default policy out.
INSTALL_DOC_OVERLAY = """apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - ../default
patches:
  - patch: |-
      $patch: delete
      apiVersion: sidecarwatch.io/v1alpha1
      kind: ClusterSidecarPolicy
      metadata:
        name: sidecar-watch-default
"""


def main() -> None:
    a = sys.argv[1:]
    cmds = {"schema": lambda: cmd_schema(a[1]), "notes": lambda: cmd_notes(a[1]),
            "chart-render": lambda: cmd_chart_render(a[1]), "secure": lambda: cmd_secure(a[1], a[2]),
            "roles": lambda: cmd_roles(a[1], a[2]), "kustomize-digest": cmd_kustomize_digest,
            "dashboard-data": lambda: cmd_dashboard_data(a[1]), "default-policy": lambda: cmd_default_policy(a[1])}
    if not a or a[0] not in cmds:
        print(__doc__)
        sys.exit(2)
    cmds[a[0]]()


if __name__ == "__main__":
    main()
