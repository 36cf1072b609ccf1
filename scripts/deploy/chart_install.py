"""chart_checks.py `secure` and `roles`: a rendered install that serves /metrics securely, and
the aggregated user ClusterRoles.
"""
from __future__ import annotations

from pathlib import Path

import yaml

from chart_common import by_kind, fail, finish, ok, workload


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
