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

ROOT = Path.cwd()
CHART = ROOT / "charts" / "sidecar-watch"
NS = "sidecar-watch-system"
failures: list[str] = []


def fail(msg: str) -> None:
    failures.append(msg)
    print(f"  FAIL: {msg}")


def ok(msg: str) -> None:
    print(f"  ok: {msg}")


def finish() -> None:
    if failures:
        print(f"{len(failures)} problem(s)")
        sys.exit(1)


def helm(helm_bin: str, *args: str, chart: Path = CHART) -> subprocess.CompletedProcess:
    cmd = [helm_bin, *args[:1], *(["sw"] if args[0] == "template" else []), str(chart), *args[1:]]
    return subprocess.run(cmd, capture_output=True, text=True)


def template(helm_bin: str, *args: str, chart: Path = CHART) -> list[dict]:
    p = helm(helm_bin, "template", "--namespace", NS, "--kube-version", "1.32.0", *args, chart=chart)
    if p.returncode != 0:
        fail(f"helm template {' '.join(args)}: {p.stderr.strip()}")
        return []
    return [d for d in yaml.safe_load_all(p.stdout) if d]


def by_kind(docs: list[dict], kind: str) -> list[dict]:
    return [d for d in docs if d.get("kind") == kind]


def workload(docs: list[dict]) -> dict:
    w = [d for d in docs if d.get("kind") in ("Deployment", "StatefulSet")]
    return w[0] if len(w) == 1 else {}


# ---------------------------------------------------------------------------------- schema
REJECTED = [
    (["--set", "replicaCont=3"], "replicaCont"),
    (["--set", "serviceMonitor.enable=true"], "enable"),
    (["--set", "logFormat=xml"], "logFormat"),
    (["--set", "image.digest=latest"], "digest"),
    (["--set", "image.pullPolicy=Sometimes"], "pullPolicy"),
    (["--set", "prometheusRule.alerts.SidecarOOMKilled.severity=urgent"], "severity"),
    (["--set", "prometheusRule.alerts.SidecarCrashLooping.for=5 minutes"], "for"),
    (["--set", "prometheusRule.alerts.SidecarTypo.enabled=false"], "SidecarTypo"),
    (["--set", "metrics.port=70000"], "port"),
    (["--set", "service.port=8080"], "port"),
    (["--set", "replicaCount=0"], "replicaCount"),
    (["--set", "watchNamespaces={Shop}"], "watchNamespaces"),
    (["--set", "networkPolicy.apiServer.cidrs={10.96.0.1}"], "cidrs"),
    (["--set", "admissionPolicies.deny=yes"], "deny"),
    (["--set", "admissionPolicies.excludedNamespaces={Kube_System}"], "excludedNamespaces"),
]


def cmd_schema(helm_bin: str) -> None:
    accepted = [("defaults", []), ("values.yaml", ["-f", str(CHART / "values.yaml")]),
                ("ci/everything-values.yaml", ["-f", str(CHART / "ci/everything-values.yaml")])]
    for name, args in accepted:
        lint = helm(helm_bin, "lint", "--strict", *args)
        if lint.returncode != 0:
            fail(f"helm lint rejects {name}: {lint.stdout.strip()} {lint.stderr.strip()}")
        elif template(helm_bin, *args):
            ok(f"schema accepts {name} (helm lint --strict and helm template)")
    for args, word in REJECTED:
        for verb in ("lint", "template"):
            p = helm(helm_bin, verb, *args) if verb == "lint" else helm(helm_bin, "template", "--namespace", NS, *args)
            out = p.stdout + p.stderr
            if p.returncode == 0:
                fail(f"helm {verb} {' '.join(args)} succeeded; the schema must reject it")
            elif word not in out or ("schema" not in out.lower() and "values don't meet" not in out):
                fail(f"helm {verb} {' '.join(args)} failed without naming {word!r}: {out.strip()[-300:]}")
    ok(f"schema rejects {len(REJECTED)} typos/bad values in helm lint and helm template, naming the key")
    finish()


# ----------------------------------------------------------------------------------- notes
def rendered_notes(helm_bin: str, *args: str) -> str:
    """NOTES.txt rendered through a copy of the chart (helm template does not render NOTES and
    helm install --dry-run needs a cluster)."""
    with tempfile.TemporaryDirectory() as tmp:
        chart = Path(tmp) / "sidecar-watch"
        subprocess.run(["cp", "-r", str(CHART), str(chart)], check=True)
        (chart / "files/notes.txt").write_text((chart / "templates/NOTES.txt").read_text())
        (chart / "templates/zz-notes.yaml").write_text(
            'notes: |\n{{ tpl (.Files.Get "files/notes.txt") . | indent 2 }}\n')
        docs = template(helm_bin, "--show-only", "templates/zz-notes.yaml", *args, chart=chart)
        return docs[0]["notes"] if docs else ""


def cmd_notes(helm_bin: str) -> None:
    cases = [
        ("defaults", [], [f"kubectl -n {NS} get lease sw-sidecar-watch "], ["sw-sidecar-watch-0"]),
        ("custom lease", ["--set", "leaderElection.leaseName=my-lease"], [f"get lease my-lease "], []),
        ("sharded x3", ["--set", "sharding.enabled=true,replicaCount=3"],
         [f"kubectl -n {NS} get lease sw-sidecar-watch-0 sw-sidecar-watch-1 sw-sidecar-watch-2\n"], ["get lease sw-sidecar-watch \n"]),
        ("leader election off", ["--set", "leaderElection.enabled=false,replicaCount=1"],
         ["Leader election is off"], ["get lease"]),
        ("plain metrics", ["--set", "metrics.secure=false,metrics.port=8080"], ["curl -s localhost:8080/metrics"], ["Bearer"]),
        ("secure metrics", [], ["https://localhost:8443/metrics", "--clusterrole=sw-sidecar-watch-metrics-reader"], []),
        ("default policy", [], ["ClusterSidecarPolicy sw-sidecar-watch-default evaluates", "but kube-system, sidecar-watch-system "],
         ["defaultPolicy.enabled=false"]),
        ("no default policy", ["--set", "defaultPolicy.enabled=false"], ["defaultPolicy.enabled=false: nothing is evaluated"],
         ["sw-sidecar-watch-default"]),
    ]
    for name, args, must, must_not in cases:
        notes = rendered_notes(helm_bin, *args)
        for m in must:
            if m not in notes:
                fail(f"NOTES ({name}): missing {m!r} in:\n{notes}")
        for m in must_not:
            if m in notes:
                fail(f"NOTES ({name}): must not contain {m!r}:\n{notes}")
    ok(f"NOTES.txt names the right Lease(s) and metrics access in {len(cases)} value combinations")
    finish()


# ---------------------------------------------------------------------------- chart-render
def cmd_chart_render(helm_bin: str) -> None:
    def container(docs):
        w = workload(docs)
        return w.get("spec", {}).get("template", {}).get("spec", {}).get("containers", [{}])[0]

    images = [
        ([], "ghcr.io/sidecar-watch/sidecar-watch:0.1.0"),
        (["--set", "image.tag=1.2.3"], "ghcr.io/sidecar-watch/sidecar-watch:1.2.3"),
        (["--set", "image.tag=1.2.3,image.digest=sha256:" + "a" * 64], "ghcr.io/sidecar-watch/sidecar-watch@sha256:" + "a" * 64),
        (["--set", "image.registry=,image.repository=local/sw"], "local/sw:0.1.0"),
    ]
    for args, want in images:
        got = container(template(helm_bin, *args)).get("image")
        if got != want:
            fail(f"image with {args}: got {got!r}, want {want!r}")
    ok(f"image: registry/repository, tag defaulting to appVersion, digest winning ({len(images)} cases)")

    docs = template(helm_bin, "-f", str(CHART / "ci/everything-values.yaml"))
    w = workload(docs)
    pod = w.get("spec", {}).get("template", {}).get("spec", {})
    labels = w.get("spec", {}).get("template", {}).get("metadata", {}).get("labels", {})
    want_labels = {"app.kubernetes.io/name": "sw", "app.kubernetes.io/instance": "sw",
                   "app.kubernetes.io/component": "operator", "app.kubernetes.io/version": "0.1.0",
                   "app.kubernetes.io/managed-by": "Helm", "app.kubernetes.io/part-of": "sidecar-watch",
                   "team": "platform", "cost-center": "42", "tier": "control"}
    if labels != want_labels:
        fail(f"Pod labels: got {labels}, want {want_labels}")
    for d in docs:
        if (d.get("metadata", {}).get("labels") or {}).get("team") != "platform":
            fail(f"{d['kind']}/{d['metadata'].get('name')}: commonLabels not applied")
    if pod.get("imagePullSecrets") != [{"name": "global-registry"}, {"name": "other-registry"}, {"name": "registry"}]:
        fail(f"imagePullSecrets: global then local expected, got {pod.get('imagePullSecrets')}")
    if pod.get("terminationGracePeriodSeconds") != 20:
        fail("terminationGracePeriodSeconds value not applied")
    tsc = pod.get("topologySpreadConstraints") or [{}]
    if tsc[0].get("labelSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/instance") != "sw" \
            or tsc[0].get("topologyKey") != "topology.kubernetes.io/zone":
        fail(f"topologySpreadConstraints: want the given constraint with the Pods' selector, got {tsc}")
    c = pod.get("containers", [{}])[0]
    if c.get("livenessProbe", {}).get("periodSeconds") != 20 or c.get("readinessProbe", {}).get("failureThreshold") != 2:
        fail(f"probe values not applied: {c.get('livenessProbe')} {c.get('readinessProbe')}")
    if "--metrics-cert-dir=/etc/sidecar-watch/metrics-certs" not in c.get("args", []):
        fail(f"cert-manager: --metrics-cert-dir missing from {c.get('args')}")
    mounts = {m["name"]: m["mountPath"] for m in c.get("volumeMounts", [])}
    vols = {v["name"]: v.get("secret", {}).get("secretName") for v in pod.get("volumes", [])}
    if mounts.get("metrics-certs") != "/etc/sidecar-watch/metrics-certs" or vols.get("metrics-certs") != "sidecar-watch-metrics-tls":
        fail(f"cert-manager: the Certificate's Secret is not mounted at --metrics-cert-dir: {mounts} {vols}")
    certs = by_kind(docs, "Certificate")
    if not certs or certs[0]["spec"]["secretName"] != "sidecar-watch-metrics-tls" \
            or certs[0]["spec"]["issuerRef"] != {"name": "company-ca", "kind": "ClusterIssuer"} \
            or "sidecar-watch-metrics.sidecar-watch-system.svc" not in certs[0]["spec"]["dnsNames"]:
        fail(f"cert-manager Certificate wrong: {certs}")
    if by_kind(docs, "Issuer"):
        fail("an issuerRef is given: the chart must not create its own Issuer")
    pm = by_kind(docs, "PodMonitor")
    if not pm or pm[0]["spec"]["podMetricsEndpoints"][0].get("authorization", {}).get("credentials", {}).get("name") != "prometheus-token":
        fail(f"PodMonitor with authorization expected: {pm}")
    sm = by_kind(docs, "ServiceMonitor")
    ep = sm[0]["spec"]["endpoints"][0] if sm else {}
    if sm and (sm[0]["spec"].get("sampleLimit") != 200000 or "bearerTokenFile" in ep or "authorization" not in ep
               or ep.get("metricRelabelings", [{}])[0].get("action") != "drop"
               or ep.get("relabelings", [{}])[-1].get("targetLabel") != "cluster"):
        fail(f"ServiceMonitor: sampleLimit/authorization/relabelings not applied: {sm[0]['spec']}")
    p = helm(helm_bin, "template", "--namespace", NS, "--set", "podMonitor.enabled=true")
    if p.returncode == 0 or "podMonitor.authorization is required" not in p.stderr:
        fail(f"a secure PodMonitor without authorization must fail with a clear message: {p.stderr.strip()}")
    ok("ci/everything-values.yaml: full app.kubernetes.io/* Pod labels + commonLabels everywhere, pull secrets, "
       "grace period, probes, topology spread, cert-manager Certificate mounted at --metrics-cert-dir, "
       "PodMonitor, ServiceMonitor sampleLimit/authorization/relabelings")
    finish()


# ---------------------------------------------------------------------------------- secure
def cmd_secure(path: str, label: str) -> None:
    docs = [d for d in yaml.safe_load_all(Path(path).read_text()) if d]
    w = workload(docs)
    if not w:
        fail(f"{label}: no single Deployment/StatefulSet")
        finish()
    pod_labels = w["spec"]["template"]["metadata"].get("labels", {})
    missing = [k for k in ("name", "instance", "component", "version", "managed-by", "part-of")
               if f"app.kubernetes.io/{k}" not in pod_labels]
    if missing:
        fail(f"{label}: Pod template lacks app.kubernetes.io/{{{','.join(missing)}}} labels: {pod_labels}")
    c = w["spec"]["template"]["spec"]["containers"][0]
    args = c.get("args", [])
    for a in ("--metrics-secure=true", "--metrics-addr=0.0.0.0:8443"):
        if a not in args:
            fail(f"{label}: {w['kind']} args lack {a}: {args}")
    ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
    if ports != {"https-metrics": 8443}:
        fail(f"{label}: container ports must be https-metrics: 8443, got {ports}")
    for probe in ("livenessProbe", "readinessProbe"):
        g = c.get(probe, {}).get("httpGet", {})
        if g.get("scheme") != "HTTPS" or g.get("port") != "https-metrics":
            fail(f"{label}: {probe} must be HTTPS on https-metrics (the listener is TLS), got {g}")
    svc = [s for s in by_kind(docs, "Service") if s["metadata"]["name"].endswith("-metrics")]
    if not svc or [(p["name"], p["port"]) for p in svc[0]["spec"]["ports"]] != [("https-metrics", 8443)]:
        fail(f"{label}: the metrics Service must expose https-metrics 8443")
    for sm in by_kind(docs, "ServiceMonitor"):
        ep = sm["spec"]["endpoints"][0]
        if ep.get("scheme") != "https" or ep.get("port") != "https-metrics":
            fail(f"{label}: ServiceMonitor must scrape https on https-metrics: {ep}")
        if ep.get("bearerTokenFile") != "/var/run/secrets/kubernetes.io/serviceaccount/token" and "authorization" not in ep:
            fail(f"{label}: ServiceMonitor sends no bearer token: {ep}")
        if not ep.get("tlsConfig"):
            fail(f"{label}: ServiceMonitor has no tlsConfig")
        shard = [r for r in ep.get("relabelings", []) if r.get("targetLabel") == "shard"]
        if [r.get("replacement") for r in shard] != ["0", "$1"]:
            fail(f"{label}: ServiceMonitor must set shard from the pod-index label (\"0\" without): {shard}")
        if "release" not in sm["metadata"].get("labels", {}) and label.startswith("config/"):
            fail(f"{label}: the kustomize ServiceMonitor needs a `release` label")
    roles = {r["metadata"]["name"]: r for r in by_kind(docs, "ClusterRole")}
    reader = [r for n, r in roles.items() if n.endswith("metrics-reader")]
    if not reader or reader[0]["rules"] != [{"nonResourceURLs": ["/metrics"], "verbs": ["get"]}]:
        fail(f"{label}: no metrics-reader ClusterRole granting exactly get /metrics")
    operator = [r for r in roles.values() if any(
        b["roleRef"]["name"] == r["metadata"]["name"] and any(s.get("kind") == "ServiceAccount" for s in b["subjects"])
        and "metrics-reader" not in b["roleRef"]["name"] for b in by_kind(docs, "ClusterRoleBinding"))]
    grants = {(g, res, v) for r in operator for rule in r.get("rules", []) for g in rule.get("apiGroups", [])
              for res in rule.get("resources", []) for v in rule.get("verbs", [])}
    for need in (("authentication.k8s.io", "tokenreviews", "create"), ("authorization.k8s.io", "subjectaccessreviews", "create")):
        if need not in grants:
            fail(f"{label}: the operator's ClusterRole lacks {need}")
    if not by_kind(docs, "NetworkPolicy"):
        fail(f"{label}: no NetworkPolicy (on by default)")
    else:
        np = by_kind(docs, "NetworkPolicy")[0]["spec"]
        if np["ingress"][0]["ports"][0]["port"] != "https-metrics":
            fail(f"{label}: NetworkPolicy ingress must be the https-metrics port")
    if w["spec"].get("replicas", 1) > 1 and not by_kind(docs, "PodDisruptionBudget"):
        fail(f"{label}: no PodDisruptionBudget")
    finish()
    ok(f"{label}: full app.kubernetes.io/* Pod labels; /metrics secure on https-metrics 8443 (HTTPS probes, token + TLS scrape, shard relabel), "
       f"metrics-reader, token/access review RBAC, NetworkPolicy, PodDisruptionBudget")
    finish()


# ----------------------------------------------------------------------------------- roles
def cmd_roles(path: str, label: str) -> None:
    docs = [d for d in yaml.safe_load_all(Path(path).read_text()) if d]
    agg = "rbac.authorization.k8s.io/aggregate-to-"

    def triples(role):
        return {(g, res, v) for rule in role["rules"] for g in rule["apiGroups"] for res in rule["resources"] for v in rule["verbs"]}

    by_role: dict[str, set] = {"view": set(), "edit": set(), "admin": set()}
    for r in by_kind(docs, "ClusterRole"):
        for target in by_role:
            if (r["metadata"].get("labels") or {}).get(agg + target) == "true":
                by_role[target] |= triples(r)
    read = {"get", "list", "watch"}
    write = {"create", "update", "patch", "delete", "deletecollection"}
    g = "sidecarwatch.io"
    want_view = {(g, res, v) for res in ("sidecarpolicies", "sidecarpolicies/status", "clustersidecarpolicies",
                                        "clustersidecarpolicies/status") for v in read}
    want_edit = want_view | {(g, "sidecarpolicies", v) for v in write}
    for role, want in (("view", want_view), ("edit", want_edit), ("admin", want_edit)):
        if by_role[role] != want:
            fail(f"{label}: aggregated into {role}: extra {sorted(by_role[role] - want)}, missing {sorted(want - by_role[role])}")
    if any(res.startswith("clustersidecarpolicies") and v in write for rs in by_role.values() for (_, res, v) in rs):
        fail(f"{label}: ClusterSidecarPolicies must be writable by cluster admins only")
    finish()
    ok(f"{label}: view reads (cluster)sidecarpolicies; edit/admin also write sidecarpolicies; "
       f"clustersidecarpolicies writable by cluster-admin only")
    finish()


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
    exprs: list[tuple[str, str]] = []

    def walk(panels):
        for p in panels:
            for t in p.get("targets", []):
                if t.get("expr"):
                    exprs.append((p.get("title", "?"), t["expr"]))
            walk(p.get("panels", []))

    walk(dash.get("panels", []))
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
