"""checks.py `rules`, `chart-rules` and `dashboard`: the PrometheusRule and its promtool tests,
the chart's copy of it, and the dashboard's PromQL as a rule file.
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
    ROOT,
    RULE_SRC,
    SIDECAR_ALERTS,
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
