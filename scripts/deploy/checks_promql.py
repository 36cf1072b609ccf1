"""checks.py `rules`, `chart-rules` and `dashboard`: the PrometheusRule (per-workload and per-Pod
forms) and its promtool tests, the chart's copy of it, and the dashboard's PromQL as a rule file.
"""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import yaml

from checks_common import (
    dashboard_exprs,
    DASH_SRC,
    OPERATOR_ALERTS,
    PER_POD_RULE_SRC,
    ROOT,
    RULE_ONLY_ALERTS,
    RULE_SRC,
    SIDECAR_ALERTS,
    WORKLOAD_ALERTS,
    fail,
    finish,
    ok,
    rel,
)


# ---------------------------------------------------------------------------------- rules
def rule_spec(path: Path) -> dict:
    doc = yaml.safe_load(path.read_text())
    if doc.get("kind") != "PrometheusRule":
        fail(f"{rel(path)}: not a PrometheusRule")
        finish()
    return doc["spec"]


# The rule file each form's .spec is written to; the promtool tests name it in rule_files.
RULE_FILES = {"sidecar-watch.rules.yaml": RULE_SRC, "sidecar-watch-per-pod.rules.yaml": PER_POD_RULE_SRC}
# The group of RULE_SRC that the per-Pod form replaces (the chart, the kustomize Component).
SIDECAR_GROUP = "sidecar-watch.sidecars"


def check_alert(src: Path, r: dict, per_pod: bool) -> None:
    a = r["alert"]
    ann = r.get("annotations", {})
    for k in ("summary", "description", "runbook_url"):
        if not ann.get(k):
            fail(f"{rel(src)}: {a} has no {k} annotation")
    url = ann.get("runbook_url", "")
    if not url.endswith(f"docs/runbooks/{a}.md"):
        fail(f"{rel(src)}: {a} runbook_url {url} does not point at docs/runbooks/{a}.md")
    if not (ROOT / "docs/runbooks" / f"{a}.md").is_file():
        fail(f"docs/runbooks/{a}.md missing (runbook of {a})")
    if a in RULE_ONLY_ALERTS:
        check_signal_alert(src, r)
        return
    if a not in SIDECAR_ALERTS:
        return
    if f'alertname="{a}"' not in r["expr"] or 'alertstate="firing"' not in r["expr"]:
        fail(f"{rel(src)}: {a} must read sidecar_alerts{{alertname=\"{a}\", alertstate=\"firing\"}}")
    if "severity" in r.get("labels", {}):
        fail(f"{rel(src)}: {a} must keep the series' severity (no severity label)")
    # `without`, not `by`: label_<key> namespace labels are dynamic and routes read them
    if " by (" in r["expr"] or " without (" not in r["expr"]:
        fail(f"{rel(src)}: {a} must aggregate with `without (...)` to keep product and label_* labels")
    if a in WORKLOAD_ALERTS:
        check_workload_alert(src, r, per_pod)
        return
    names = ("namespace", "pod", "container") if per_pod else ("namespace", "workload_kind", "workload", "container")
    for w in names:
        if f"$labels.{w}" not in ann.get("description", ""):
            fail(f"{rel(src)}: {a} description does not name the {w}")
    if not per_pod:
        if "count without (pod)" not in r["expr"]:
            fail(f"{rel(src)}: {a} must fire once per workload: count without (pod)")
        if ann.get("pods") != "{{ $value }}" or "sortByLabel \"pod\"" not in ann.get("example_pod", ""):
            fail(f"{rel(src)}: {a} needs the annotations pods ({{{{ $value }}}}) and example_pod")


def check_signal_alert(src: Path, r: dict) -> None:
    """A rule-only alert joins a product's series to the per-Pod sidecar identity, fires once
    per workload (count without (pod), `pods`), names the workload and carries its own severity."""
    a, e = r["alert"], r["expr"]
    ann = r.get("annotations", {})
    if "sidecar_container_ready" not in e or "and on (namespace, pod" not in e:
        fail(f"{rel(src)}: {a} must join its source `and on (namespace, pod[, container])` onto sidecar_container_ready")
    if not e.startswith("count without (pod) ("):
        fail(f"{rel(src)}: {a} must fire once per workload: count without (pod) (...)")
    if r.get("labels", {}).get("severity") not in ("info", "warning", "critical"):
        fail(f"{rel(src)}: {a} needs a severity label (no sidecar_alerts series carries one)")
    if r.get("labels", {}).get("source") != "sidecar-watch":
        fail(f"{rel(src)}: {a} needs the label source: sidecar-watch (the Alertmanager routes match it)")
    if ann.get("pods") != "{{ $value }}":
        fail(f"{rel(src)}: {a} needs the annotation pods: '{{{{ $value }}}}'")
    for w in ("namespace", "workload_kind", "workload", "container"):
        if f"$labels.{w}" not in ann.get("description", ""):
            fail(f"{rel(src)}: {a} description does not name the {w}")


def check_workload_alert(src: Path, r: dict, per_pod: bool) -> None:
    """A workload alert (pod="") names the workload in both forms and claims no Pod: no `pods`
    count (the value is 1, not a number of Pods), no `$labels.pod`."""
    a = r["alert"]
    ann = r.get("annotations", {})
    desc = ann.get("description", "")
    for w in ("namespace", "workload_kind", "workload", "container"):
        if f"$labels.{w}" not in desc:
            fail(f"{rel(src)}: {a} description does not name the {w}")
    if "$labels.pod" in desc or "$value" in desc:
        fail(f"{rel(src)}: {a} is on a workload (pod=\"\"): its description must not name or count Pods")
    if "pods" in ann:
        fail(f"{rel(src)}: {a} is on a workload (pod=\"\"): no `pods` annotation")
    if not per_pod and "count without (pod)" not in r["expr"]:
        fail(f"{rel(src)}: {a} must use the same aggregation as the others (count without (pod)): pod=\"\" passes it")
    # example_pod, where present, must name a Pod that exists: a per-Pod series (pod!="")
    if "example_pod" in ann and 'pod!=\\"\\"' not in ann["example_pod"]:
        fail(f"{rel(src)}: {a} example_pod must query the per-Pod series (pod!=\"\"), not the workload alert's own")


# The engine's alert names (the `alertname` of sidecar_alerts) and which of them are on a
# workload: a new alert must get a rule in both forms, a runbook and tests, and a workload alert
# the checks above.
ALERT_RS = ROOT / "crates/engine/src/alert.rs"


def engine_alerts() -> tuple[list[str], list[str]]:
    """(every AlertName's label, those AlertName::on_workload matches), read from ALERT_RS:
    the enum is declared by `labelled_enum!` as `Variant => "label",` lines."""
    text = ALERT_RS.read_text()
    enum = re.search(r"pub enum AlertName \{(.*?)\n    \}", text, re.S)
    on_workload = re.search(r"fn on_workload\(self\)[^{]*\{(.*?)\n    \}", text, re.S)
    if not enum or not on_workload:
        fail(f"{rel(ALERT_RS)}: cannot find enum AlertName and AlertName::on_workload")
        finish()
    names = dict(re.findall(r"^\s*(\w+) => \"(\w+)\",", enum.group(1), re.M))
    workload = [names.get(v, v) for v in re.findall(r"AlertName::(\w+)", on_workload.group(1))]
    return list(names.values()), workload


def check_engine_alerts() -> None:
    names, workload = engine_alerts()
    if sorted(names) != sorted(SIDECAR_ALERTS):
        fail(f"scripts/deploy/checks_common.py SIDECAR_ALERTS {sorted(SIDECAR_ALERTS)} differs from "
             f"{rel(ALERT_RS)}'s alert names {sorted(names)}")
    if sorted(workload) != sorted(WORKLOAD_ALERTS):
        fail(f"scripts/deploy/checks_common.py WORKLOAD_ALERTS {sorted(WORKLOAD_ALERTS)} differs from "
             f"{rel(ALERT_RS)}'s AlertName::on_workload {sorted(workload)}")


def cmd_rules(outdir: str) -> None:
    check_engine_alerts()
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    specs = {name: rule_spec(src) for name, src in RULE_FILES.items()}
    alerts: dict[str, list[str]] = {}
    for name, spec in specs.items():
        src = RULE_FILES[name]
        per_pod = src == PER_POD_RULE_SRC
        (out / name).write_text(yaml.safe_dump(spec, sort_keys=False))
        alerts[name] = [r["alert"] for g in spec["groups"] for r in g["rules"] if "alert" in r]
        for a in SIDECAR_ALERTS + ([] if per_pod else OPERATOR_ALERTS + RULE_ONLY_ALERTS):
            if a not in alerts[name]:
                fail(f"{rel(src)}: alert {a} missing")
        for g in spec["groups"]:
            for r in g["rules"]:
                if r.get("alert"):
                    check_alert(src, r, per_pod)
    # both forms: the same alerts, summaries, runbooks, labels and keep_firing_for
    agg = {r["alert"]: r for g in specs["sidecar-watch.rules.yaml"]["groups"] if g["name"] == SIDECAR_GROUP
           for r in g["rules"]}
    pp = {r["alert"]: r for g in specs["sidecar-watch-per-pod.rules.yaml"]["groups"] for r in g["rules"]}
    if list(agg) != list(pp):
        fail(f"{rel(PER_POD_RULE_SRC)}: alerts {list(pp)} differ from the {SIDECAR_GROUP} group's {list(agg)}")
    for a in set(agg) & set(pp):
        for k in ("labels", "keep_firing_for", "for"):
            if agg[a].get(k) != pp[a].get(k):
                fail(f"{rel(PER_POD_RULE_SRC)}: {a} {k} {pp[a].get(k)!r} differs from the per-workload form's {agg[a].get(k)!r}")
        for k in ("summary", "runbook_url"):
            if agg[a]["annotations"].get(k) != pp[a]["annotations"].get(k):
                fail(f"{rel(PER_POD_RULE_SRC)}: {a} annotation {k} differs from the per-workload form's")
    tests = sorted((ROOT / "config/prometheus/tests").glob("*.yaml"))
    tested: set[str] = set()
    for t in tests:
        shutil.copyfile(t, out / t.name)
        doc = yaml.safe_load(t.read_text())
        files = doc.get("rule_files", [])
        if len(files) != 1 or files[0] not in RULE_FILES:
            fail(f"{rel(t)}: rule_files must be one of {sorted(RULE_FILES)}")
            continue
        for case in doc.get("tests", []):
            for art in case.get("alert_rule_test", []):
                key = "fires" if art.get("exp_alerts") else "quiet"
                tested.add(f"{files[0]}:{art['alertname']}:{key}")
    n = 0
    for name, names in alerts.items():
        for a in names:
            n += 1
            for key in ("fires", "quiet"):
                if f"{name}:{a}:{key}" not in tested:
                    fail(f"config/prometheus/tests: no test of {name} where {a} {'fires' if key == 'fires' else 'does not fire'}")
    ok(f"{n} alerts in 2 forms (per workload, per Pod), each with summary/description/runbook, "
       f"tested firing and not firing in {len(tests)} test files")
    finish()


def cmd_chart_rules(rendered: str, per_pod: bool = False) -> None:
    want = rule_spec(RULE_SRC)
    what = "config/prometheus/prometheusrule.yaml"
    if per_pod:
        pp_groups = rule_spec(PER_POD_RULE_SRC)["groups"]
        groups = []
        for g in want["groups"]:
            groups += pp_groups if g["name"] == SIDECAR_GROUP else [g]
        want = {"groups": groups}
        what += f" with its {SIDECAR_GROUP} group replaced by config/prometheus/per-pod's"
    got = None
    for d in yaml.safe_load_all(Path(rendered).read_text()):
        if d and d.get("kind") == "PrometheusRule":
            got = d["spec"]
    if got is None:
        fail(f"{rendered}: the chart rendered no PrometheusRule with prometheusRule.enabled=true")
        finish()
    if json.dumps(got, sort_keys=True) != json.dumps(want, sort_keys=True):
        fail(f"the chart's PrometheusRule (perPodAlerts={str(per_pod).lower()}) differs from {what}")
    else:
        ok(f"chart PrometheusRule (perPodAlerts={str(per_pod).lower()}) == {what}")
    finish()


# ------------------------------------------------------------------------------ dashboard
GRAFANA_VARS = {
    "$__rate_interval": "1m", "${__rate_interval}": "1m", "$__interval": "1m", "${__interval}": "1m",
    "$__range": "1h", "${__range}": "1h",
}


def cmd_dashboard(outfile: str) -> None:
    dash = json.loads(DASH_SRC.read_text())
    exprs = dashboard_exprs(dash)
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
