#!/usr/bin/env python3
"""Offline checks of sidecar-watch's deployment files, used by scripts/check-deploy.sh.

Each subcommand prints what it checked and exits non-zero with a message naming the file and
the problem. Run from the repository root.

  copies [--fix]          crds/ == config/crd/ == charts/sidecar-watch/crds/, and the chart's
                          files/ copies of the PrometheusRule, the dashboard and the
                          ValidatingAdmissionPolicy
  validate FILE LABEL     validate every object of a rendered multi-document YAML stream
  rules OUTDIR            write the PrometheusRule's .spec + the promtool tests into OUTDIR
  dashboard OUTFILE       wrap every dashboard PromQL expression into a rule file for promtool
  chart-rules FILE        the chart's rendered PrometheusRule (default values) == config's
  chart-static            every .Values.x.y used by a template exists in values.yaml
  dockerfile              the runtime stage copies what `cargo build --release` produces
"""
from __future__ import annotations

import copy
import filecmp
import json
import re
import shutil
import sys
import tomllib
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).parent))

ROOT = Path.cwd()
CRD_NAMES = ["sidecarwatch.io_sidecarpolicies.yaml", "sidecarwatch.io_clustersidecarpolicies.yaml"]
CHART = ROOT / "charts" / "sidecar-watch"
RULE_SRC = ROOT / "config/prometheus/prometheusrule.yaml"
DASH_SRC = ROOT / "config/grafana/sidecar-watch-dashboard.json"
VAP_SRC = ROOT / "config/components/admission-policies/validatingadmissionpolicy.yaml"
K8S_VERSION = "1.32.0"

SIDECAR_ALERTS = [
    "SidecarContainerNotReady", "MainContainerReadyButSidecarNot", "SidecarRestartingFrequently",
    "SidecarCrashLooping", "SidecarOOMKilled", "MainStartedBeforeSidecarReady",
    "JobBlockedBySidecar", "SidecarStoppedBeforeMain", "SidecarMissing", "SidecarVersionDrift",
    "SidecarMisconfigured",
]
OPERATOR_ALERTS = ["SidecarWatchDown", "SidecarWatchReconcileErrors", "SidecarWatchNoLeader",
                   "SidecarWatchTwoLeaders", "SidecarWatchEventPublishFailures"]

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


def rel(p: Path) -> str:
    try:
        return str(p.relative_to(ROOT))
    except ValueError:
        return str(p)


# --------------------------------------------------------------------------------- copies
def cmd_copies(fix: bool) -> None:
    pairs: list[tuple[Path, Path]] = []
    for name in CRD_NAMES:
        src = ROOT / "crds" / name
        if not src.is_file():
            fail(f"{rel(src)} is missing (it is the output of `sidecar-watch crd`)")
            continue
        pairs += [(src, ROOT / "config/crd" / name), (src, CHART / "crds" / name)]
    pairs += [(RULE_SRC, CHART / "files/prometheusrule.yaml"),
              (DASH_SRC, CHART / "files/sidecar-watch-dashboard.json"),
              (VAP_SRC, CHART / "files/validatingadmissionpolicy.yaml")]
    for src, dst in pairs:
        same = dst.is_file() and filecmp.cmp(src, dst, shallow=False)
        if same:
            ok(f"{rel(dst)} == {rel(src)}")
        elif fix:
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)
            ok(f"copied {rel(src)} -> {rel(dst)}")
        else:
            fail(f"{rel(dst)} differs from {rel(src)} (run scripts/check-deploy.sh --fix)")
    # nothing else lurking in the CRD directories
    for d in (ROOT / "config/crd", CHART / "crds"):
        for f in sorted(d.glob("*.yaml")):
            if f.name not in CRD_NAMES and f.name != "kustomization.yaml":
                fail(f"unexpected file {rel(f)} (not in crds/)")
    finish()


# ------------------------------------------------------------------------------- validate
def load_crd_schemas() -> dict[tuple[str, str, str], dict]:
    """(group, version, kind) -> openAPIV3Schema, from the project's CRDs."""
    out = {}
    for d in (ROOT / "crds", ROOT / "config/crd"):
        for f in sorted(d.glob("*.yaml")):
            for doc in yaml.safe_load_all(f.read_text()):
                if not doc or doc.get("kind") != "CustomResourceDefinition":
                    continue
                spec = doc["spec"]
                for v in spec["versions"]:
                    key = (spec["group"], v["name"], spec["names"]["kind"])
                    out.setdefault(key, {"schema": v["schema"]["openAPIV3Schema"],
                                         "scope": spec["scope"], "file": rel(f)})
        if out:
            break
    return out


def structural_to_jsonschema(s: dict) -> dict:
    """Kubernetes structural schema -> JSON schema: unknown fields are errors (the API server
    prunes them silently, which hides typos in samples), x-kubernetes-* honoured where it matters."""
    s = copy.deepcopy(s)

    def walk(n):
        if not isinstance(n, dict):
            return n
        if n.get("x-kubernetes-int-or-string"):
            n.pop("type", None)
            n["anyOf"] = [{"type": "integer"}, {"type": "string"}]
        if "properties" in n:
            for k, v in n["properties"].items():
                n["properties"][k] = walk(v)
            if not n.get("x-kubernetes-preserve-unknown-fields") and "additionalProperties" not in n:
                n["additionalProperties"] = False
        if isinstance(n.get("additionalProperties"), dict):
            n["additionalProperties"] = walk(n["additionalProperties"])
        if "items" in n:
            n["items"] = walk(n["items"])
        for k in ("allOf", "anyOf", "oneOf"):
            if k in n:
                n[k] = [walk(x) for x in n[k]]
        if n.get("nullable"):
            t = n.get("type")
            if isinstance(t, str):
                n["type"] = [t, "null"]
        for k in list(n):
            if k.startswith("x-kubernetes-"):
                del n[k]
        return n

    s = walk(s)
    # apiVersion/kind/metadata are implicit in every CRD schema; metadata is validated by the
    # API server, not by the CRD schema
    props = s.setdefault("properties", {})
    props["metadata"] = {"type": "object"}
    props.setdefault("apiVersion", {"type": "string"})
    props.setdefault("kind", {"type": "string"})
    return s


from schemas import EXTRA_SCHEMAS  # noqa: E402 - minimal schemas of non-core kinds


RESTRICTED_CONTAINER = {
    "runAsNonRoot": True, "readOnlyRootFilesystem": True, "allowPrivilegeEscalation": False,
}


def check_workload(doc: dict, where: str) -> None:
    pod = doc["spec"]["template"]["spec"]
    psc = pod.get("securityContext") or {}
    for c in pod.get("containers", []) + pod.get("initContainers", []):
        sc = c.get("securityContext") or {}
        for k, v in RESTRICTED_CONTAINER.items():
            if sc.get(k, psc.get(k)) != v:
                fail(f"{where}: container {c['name']} securityContext.{k} must be {v}")
        if (sc.get("capabilities") or {}).get("drop") != ["ALL"]:
            fail(f"{where}: container {c['name']} must drop ALL capabilities")
        seccomp = (sc.get("seccompProfile") or psc.get("seccompProfile") or {}).get("type")
        if seccomp != "RuntimeDefault":
            fail(f"{where}: container {c['name']} seccompProfile must be RuntimeDefault")
        if sc.get("runAsUser", psc.get("runAsUser")) != 65532:
            fail(f"{where}: container {c['name']} must run as UID 65532")
        env = {e["name"]: e for e in c.get("env", [])}
        for name, path in (("POD_NAME", "metadata.name"), ("POD_NAMESPACE", "metadata.namespace")):
            if (((env.get(name) or {}).get("valueFrom") or {}).get("fieldRef") or {}).get("fieldPath") != path:
                fail(f"{where}: container {c['name']} needs env {name} from the downward API ({path})")
        probes = {p: (c.get(p) or {}).get("httpGet", {}).get("path") for p in ("livenessProbe", "readinessProbe")}
        if probes != {"livenessProbe": "/healthz", "readinessProbe": "/readyz"}:
            fail(f"{where}: container {c['name']} probes must be /healthz (liveness) and /readyz (readiness), got {probes}")
        if not (c.get("resources") or {}).get("requests"):
            fail(f"{where}: container {c['name']} has no resource requests")
        if c.get("args", [None])[0] != "run":
            fail(f"{where}: container {c['name']} args must start with the `run` subcommand")


FORBIDDEN_RBAC = {"secrets", "*"}


def check_rbac(doc: dict, where: str) -> None:
    for r in doc.get("rules", []):
        res = set(r.get("resources", []))
        verbs = set(r.get("verbs", []))
        if res & FORBIDDEN_RBAC or "*" in verbs or "*" in r.get("apiGroups", []):
            fail(f"{where}: wildcard or Secrets access in rule {r}")
        if "" in r.get("apiGroups", []) and "pods" in res and verbs - {"get", "list", "watch"}:
            fail(f"{where}: Pod write access in rule {r}")


def cmd_validate(path: str, label: str) -> None:
    import jsonschema
    import kubernetes_validate

    crds = load_crd_schemas()
    docs = [d for d in yaml.safe_load_all(Path(path).read_text()) if d]
    if not docs:
        fail(f"{label}: rendered nothing")
    counts: dict[str, int] = {}
    for d in docs:
        kind, api = d.get("kind"), d.get("apiVersion", "")
        name = (d.get("metadata") or {}).get("name")
        where = f"{label}: {kind}/{name}"
        group, _, version = api.rpartition("/")
        try:
            if (group, version, kind) in crds:
                info = crds[(group, version, kind)]
                schema = structural_to_jsonschema(info["schema"])
                errs = sorted(jsonschema.Draft7Validator(schema).iter_errors(d), key=lambda e: list(e.path))
                for e in errs:
                    fail(f"{where}: {'.'.join(map(str, e.path)) or '<root>'}: {e.message} (schema: {info['file']})")
                ns = (d.get("metadata") or {}).get("namespace")
                if info["scope"] == "Namespaced" and not ns:
                    fail(f"{where}: namespaced kind without metadata.namespace")
                if info["scope"] == "Cluster" and ns:
                    fail(f"{where}: cluster-scoped kind with metadata.namespace")
                how = "project CRD schema"
            elif group in ("monitoring.coreos.com", "cert-manager.io"):
                schema = EXTRA_SCHEMAS.get((group, kind))
                if schema is None:
                    fail(f"{where}: no schema for {api} {kind}")
                    continue
                for e in jsonschema.Draft7Validator(schema).iter_errors(d):
                    fail(f"{where}: {'.'.join(map(str, e.path)) or '<root>'}: {e.message} (minimal {kind} schema)")
                how = f"minimal {group} schema"
            elif group == "sidecarwatch.io":
                fail(f"{where}: no CRD in crds/ defines {api} {kind}")
                continue
            else:
                kubernetes_validate.validate(d, K8S_VERSION, strict=True)
                how = f"kubernetes-validate {K8S_VERSION} strict"
        except kubernetes_validate.ValidationError as e:
            fail(f"{where}: {'.'.join(map(str, e.path))}: {e.message}")
            continue
        except Exception as e:  # noqa: BLE001 - report anything else as a failure too
            fail(f"{where}: {type(e).__name__}: {e}")
            continue
        if kind in ("Deployment", "StatefulSet"):
            check_workload(d, where)
        if kind in ("ClusterRole", "Role"):
            check_rbac(d, where)
        counts[f"{kind} ({how})"] = counts.get(f"{kind} ({how})", 0) + 1
    for k, n in sorted(counts.items()):
        ok(f"{label}: {n} x {k}")
    finish()


# ---------------------------------------------------------------------------------- rules
def rule_spec(path: Path) -> dict:
    doc = yaml.safe_load(path.read_text())
    if doc.get("kind") != "PrometheusRule":
        fail(f"{rel(path)}: not a PrometheusRule")
        finish()
    return doc["spec"]


def cmd_rules(outdir: str) -> None:
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    spec = rule_spec(RULE_SRC)
    (out / "sidecar-watch.rules.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    alerts = [r["alert"] for g in spec["groups"] for r in g["rules"] if "alert" in r]
    for a in SIDECAR_ALERTS + OPERATOR_ALERTS:
        if a not in alerts:
            fail(f"{rel(RULE_SRC)}: alert {a} missing")
    for g in spec["groups"]:
        for r in g["rules"]:
            a = r.get("alert")
            if not a:
                continue
            ann = r.get("annotations", {})
            for k in ("summary", "description", "runbook_url"):
                if not ann.get(k):
                    fail(f"{rel(RULE_SRC)}: {a} has no {k} annotation")
            url = ann.get("runbook_url", "")
            if not url.endswith(f"docs/runbooks/{a}.md"):
                fail(f"{rel(RULE_SRC)}: {a} runbook_url {url} does not point at docs/runbooks/{a}.md")
            if not (ROOT / "docs/runbooks" / f"{a}.md").is_file():
                fail(f"docs/runbooks/{a}.md missing (runbook of {a})")
            if a in SIDECAR_ALERTS:
                if f'alertname="{a}"' not in r["expr"] or 'alertstate="firing"' not in r["expr"]:
                    fail(f"{rel(RULE_SRC)}: {a} must read sidecar_alerts{{alertname=\"{a}\", alertstate=\"firing\"}}")
                if "severity" in r.get("labels", {}):
                    fail(f"{rel(RULE_SRC)}: {a} must keep the series' severity (no severity label)")
                for w in ("namespace", "pod", "container"):
                    if f"$labels.{w}" not in ann.get("description", ""):
                        fail(f"{rel(RULE_SRC)}: {a} description does not name the {w}")
    tests = sorted((ROOT / "config/prometheus/tests").glob("*.yaml"))
    tested: set[str] = set()
    for t in tests:
        shutil.copyfile(t, out / t.name)
        for case in yaml.safe_load(t.read_text()).get("tests", []):
            for art in case.get("alert_rule_test", []):
                key = "fires" if art.get("exp_alerts") else "quiet"
                tested.add(f"{art['alertname']}:{key}")
    for a in alerts:
        for key in ("fires", "quiet"):
            if f"{a}:{key}" not in tested:
                fail(f"config/prometheus/tests: no test where {a} {'fires' if key == 'fires' else 'does not fire'}")
    ok(f"{len(alerts)} alerts, each with summary/description/runbook, tested firing and not firing in {len(tests)} test files")
    finish()


def cmd_chart_rules(rendered: str) -> None:
    want = rule_spec(RULE_SRC)
    got = None
    for d in yaml.safe_load_all(Path(rendered).read_text()):
        if d and d.get("kind") == "PrometheusRule":
            got = d["spec"]
    if got is None:
        fail(f"{rendered}: the chart rendered no PrometheusRule with prometheusRule.enabled=true")
        finish()
    if json.dumps(got, sort_keys=True) != json.dumps(want, sort_keys=True):
        fail("the chart's PrometheusRule (default values) differs from config/prometheus/prometheusrule.yaml")
    else:
        ok("chart PrometheusRule with default values == config/prometheus/prometheusrule.yaml")
    finish()


# ------------------------------------------------------------------------------ dashboard
GRAFANA_VARS = {
    "$__rate_interval": "1m", "${__rate_interval}": "1m", "$__interval": "1m", "${__interval}": "1m",
    "$__range": "1h", "${__range}": "1h",
}


def cmd_dashboard(outfile: str) -> None:
    dash = json.loads(DASH_SRC.read_text())
    exprs: list[tuple[str, str]] = []

    def walk(panels):
        for p in panels:
            for t in p.get("targets", []):
                if t.get("expr"):
                    exprs.append((p.get("title", "?"), t["expr"]))
            walk(p.get("panels", []))

    walk(dash.get("panels", []))
    var_queries = []
    for v in dash.get("templating", {}).get("list", []):
        q = v.get("query")
        q = q.get("query") if isinstance(q, dict) else q
        m = re.fullmatch(r"label_values\((.*),\s*\w+\)", q or "")
        if m:
            var_queries.append((f"variable {v['name']}", m.group(1)))
        elif v.get("type") == "query":
            fail(f"{rel(DASH_SRC)}: variable {v['name']}: cannot check query {q!r}")
    var_names = {v["name"] for v in dash.get("templating", {}).get("list", [])}
    rules = []
    for i, (title, e) in enumerate(exprs + var_queries):
        s = e
        for k, v in GRAFANA_VARS.items():
            s = s.replace(k, v)
        for name in var_names:
            s = s.replace("${" + name + "}", "x").replace("$" + name, "x")
        if "$" in s:
            fail(f"{rel(DASH_SRC)}: panel {title!r}: unknown variable in {e!r}")
        rules.append({"record": f"dashboard:expr_{i}", "expr": s, "labels": {"panel": title[:60]}})
    Path(outfile).write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}, sort_keys=False))
    needed = ["sidecar_alerts", "sidecar_container_ready", "sidecar_container_restarts_total",
              "sidecar_startup_seconds_bucket", "sidecar_watch_reconcile_duration_seconds_bucket",
              "sidecar_watch_detection_latency_seconds_bucket", "sidecar_watch_reconcile_errors_total",
              "sidecar_watch_leader", "sidecar_watch_pods_tracked"]
    text = " ".join(e for _, e in exprs)
    for m in needed:
        if m not in text:
            fail(f"{rel(DASH_SRC)}: no panel uses {m}")
    ok(f"{len(exprs)} panel expressions + {len(var_queries)} variable queries written to {outfile}")
    finish()


# --------------------------------------------------------------------------- chart-static
def cmd_chart_static() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    for k in ("apiVersion", "name", "version", "appVersion"):
        if not chart.get(k):
            fail(f"charts/sidecar-watch/Chart.yaml: no {k}")
    if chart.get("apiVersion") != "v2":
        fail("charts/sidecar-watch/Chart.yaml: apiVersion must be v2 (Helm 3)")
    required = ["image.repository", "image.tag", "image.pullPolicy", "replicaCount", "leaderElection.enabled",
                "resources", "watchNamespaces", "logLevel", "logFormat", "serviceMonitor.enabled",
                "prometheusRule.enabled", "prometheusRule.additionalLabels", "networkPolicy.enabled",
                "podAnnotations", "nodeSelector", "tolerations", "affinity", "sharding.enabled",
                "grafanaDashboard.enabled"]
    for a in SIDECAR_ALERTS + OPERATOR_ALERTS:
        required += [f"prometheusRule.alerts.{a}.severity", f"prometheusRule.alerts.{a}.for"]

    def has(path: str) -> bool:
        node = values
        for part in path.split("."):
            if not isinstance(node, dict) or part not in node:
                return False
            node = node[part]
        return True

    for r in required:
        if not has(r):
            fail(f"charts/sidecar-watch/values.yaml: no {r}")
    n = 0
    for t in sorted((CHART / "templates").glob("*")):
        text = t.read_text()
        if t.suffix == ".yaml" and "{{" not in text:
            list(yaml.safe_load_all(text))  # a generator: parsing happens only when consumed
        if text.count("{{") != text.count("}}"):
            fail(f"{rel(t)}: unbalanced {{{{ }}}}")
        for m in re.finditer(r"\.Values((?:\.[A-Za-z_][A-Za-z0-9_]*)+)", text):
            n += 1
            if not has(m.group(1)[1:]):
                fail(f"{rel(t)}: .Values{m.group(1)} is not in values.yaml")
    ok(f"Chart.yaml, values.yaml: {len(required)} required values present; {n} .Values references resolve")
    finish()


# ----------------------------------------------------------------------------- dockerfile
def cmd_dockerfile() -> None:
    cargo = tomllib.loads((ROOT / "Cargo.toml").read_text())
    pkg = cargo["package"]["name"]
    bins = [b["name"] for b in cargo.get("bin", [])] or ([pkg] if (ROOT / "src/main.rs").is_file() else [])
    if not bins:
        fail("Cargo.toml: the root package has no binary")
    text = (ROOT / "Dockerfile").read_text()
    text = re.sub(r"\\\n", " ", text)  # join continuation lines
    lines = [l.strip() for l in text.splitlines() if l.strip() and not l.strip().startswith("#")]
    stages: list[dict] = []
    global_args: dict[str, str] = {}
    for l in lines:
        word, _, rest = l.partition(" ")
        word = word.upper()
        if word == "FROM":
            m = re.match(r"(?:--\S+\s+)*(\S+)(?:\s+AS\s+(\S+))?", rest, re.I)
            stages.append({"image": m.group(1), "name": (m.group(2) or "").lower(), "args": {}, "env": {},
                           "workdir": "/", "runs": [], "copies": [], "entrypoint": None, "cmd": None, "user": None})
            continue
        if word == "ARG":
            k, _, v = rest.partition("=")
            (stages[-1]["args"] if stages else global_args)[k.strip()] = v.strip()
            continue
        if not stages:
            continue
        st = stages[-1]
        if word == "WORKDIR":
            st["workdir"] = rest if rest.startswith("/") else st["workdir"].rstrip("/") + "/" + rest
        elif word == "ENV":
            for k, v in re.findall(r"(\w+)=(\S+)", rest):
                st["env"][k] = v
        elif word == "RUN":
            st["runs"].append(rest)
        elif word == "COPY":
            st["copies"].append(rest)
        elif word in ("ENTRYPOINT", "CMD"):
            st[word.lower()] = json.loads(rest) if rest.startswith("[") else rest
        elif word == "USER":
            st["user"] = rest

    def expand(s: str, st: dict) -> str:
        env = {**global_args, **st["args"], **st["env"]}
        return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: env.get(m.group(1) or m.group(2), m.group(0)), s)

    if len(stages) < 2:
        fail("Dockerfile: expected a multi-stage build (builder + runtime)")
        finish()
    runtime = stages[-1]
    if runtime["runs"]:
        fail("Dockerfile: the runtime stage must not RUN anything (no shell at runtime)")
    if not re.search(r"distroless/(static|cc)|^scratch$", runtime["image"]):
        fail(f"Dockerfile: runtime image {runtime['image']} is neither distroless nor scratch")
    if (runtime["user"] or "").split(":")[0] not in ("65532", "nonroot"):
        fail(f"Dockerfile: runtime USER must be 65532, got {runtime['user']}")
    ep = runtime["entrypoint"]
    cmd = runtime["cmd"]
    full = (ep if isinstance(ep, list) else [ep]) + (cmd if isinstance(cmd, list) else ([cmd] if cmd else []))
    if full[:2] != ["/sidecar-watch", "run"]:
        fail(f"Dockerfile: ENTRYPOINT/CMD must be [\"/sidecar-watch\"] [\"run\"], got {full}")
    copied = None
    for c in runtime["copies"]:
        m = re.match(r"--from=(\S+)\s+(\S+)\s+(\S+)$", c)
        if m and m.group(3) == "/sidecar-watch":
            copied = (m.group(1).lower(), expand(m.group(2), runtime))
    if not copied:
        fail("Dockerfile: the runtime stage does not COPY --from=<builder> ... /sidecar-watch")
        finish()
    builder = next((s for s in stages if s["name"] == copied[0]), None)
    if builder is None:
        fail(f"Dockerfile: COPY --from={copied[0]} names no stage")
        finish()
    build = next((expand(r, builder) for r in builder["runs"] if "cargo build" in r), None)
    if not build or "--release" not in build:
        fail("Dockerfile: the builder stage has no `cargo build --release`")
        finish()
    m = re.search(r"--target[= ](\S+)", build)
    target = m.group(1) if m else None
    m = re.search(r"--bin[= ](\S+)", build)
    if m and m.group(1) not in bins:
        fail(f"Dockerfile: cargo build --bin {m.group(1)}, but Cargo.toml's binaries are {bins}")
    tdir = builder["env"].get("CARGO_TARGET_DIR") or (builder["workdir"].rstrip("/") + "/target")
    want = f"{tdir}/{target + '/' if target else ''}release/{bins[0] if bins else '?'}"
    if copied[1] != want:
        fail(f"Dockerfile: runtime copies {copied[1]}, but `{build[build.index('cargo build'):].split('&&')[0].strip()}` in WORKDIR "
             f"{builder['workdir']} produces {want}")
    else:
        ok(f"Dockerfile: runtime copies {want} (binary `{bins[0]}` of package `{pkg}`, target {target}) to /sidecar-watch")
    if target and "musl" in target and "distroless/cc" in runtime["image"]:
        ok("note: musl binary on distroless/cc works but distroless/static suffices")
    if target and "gnu" in target and ("static" in runtime["image"] or runtime["image"] == "scratch"):
        fail("Dockerfile: a glibc (gnu) binary needs distroless/cc, not static/scratch")
    di = ROOT / ".dockerignore"
    if not di.is_file() or not re.search(r"^/?target/?$", di.read_text(), re.M):
        fail(".dockerignore must exclude target/")
    finish()


def main() -> None:
    args = sys.argv[1:]
    if not args:
        print(__doc__)
        sys.exit(2)
    cmd, rest = args[0], args[1:]
    if cmd == "copies":
        cmd_copies("--fix" in rest)
    elif cmd == "validate":
        cmd_validate(rest[0], rest[1])
    elif cmd == "rules":
        cmd_rules(rest[0])
    elif cmd == "chart-rules":
        cmd_chart_rules(rest[0])
    elif cmd == "dashboard":
        cmd_dashboard(rest[0])
    elif cmd == "chart-static":
        cmd_chart_static()
    elif cmd == "dockerfile":
        cmd_dockerfile()
    else:
        print(__doc__)
        sys.exit(2)


if __name__ == "__main__":
    main()
