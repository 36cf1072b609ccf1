"""chart_checks.py `schema`, `notes` and `chart-render`: values.schema.json, NOTES.txt and
what the chart renders from its values.
"""
from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

from chart_common import CHART, NS, by_kind, fail, finish, helm, ok, template, workload


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
