#!/usr/bin/env python3
"""The inhibit rules of config/alertmanager/alertmanager.yaml against the cases of
config/alertmanager/tests/inhibition.yaml, used by scripts/check-deploy.sh (amtool has no
inhibition tester). Alertmanager's rule, modelled: a rule hides an alert matching its target
matchers while another alert matches its source matchers with the same value (absent = "") of
every `equal` label, unless the alert matches the source matchers too and that other alert the
target matchers. Each case must hide exactly the alerts it lists, by exactly those sources.
tests/e2e_operator/alertmanager/inhibition.rs posts the same cases to a real Alertmanager.

  python3 scripts/deploy/checks_inhibit.py      (from the repository root)
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).parent))

from checks_common import AM_SRC, OPERATOR_ALERTS, SIDECAR_ALERTS, fail, finish, ok, rel  # noqa: E402

CASES = AM_SRC.parent / "tests/inhibition.yaml"


def matcher(text: str):
    """A plain Alertmanager matcher string (`name=~"value"`, quotes optional) as a predicate."""
    name, op, value = re.fullmatch(r'\s*(\w+)\s*(=~|!~|!=|=)\s*"?(.*?)"?\s*', text).groups()
    if op in ("=~", "!~"):
        pattern = re.compile(f"(?:{value})")
        return lambda ls: (pattern.fullmatch(ls.get(name, "")) is not None) == (op == "=~")
    return lambda ls: (ls.get(name, "") == value) == (op == "=")


def matches(matchers, labels: dict) -> bool:
    return all(m(labels) for m in matchers)


def hidden_by(rules, alerts: dict[str, dict]) -> dict[str, set[str]]:
    """Each hidden alert's id -> the ids of every alert that hides it."""
    out: dict[str, set[str]] = {}
    for target, t in alerts.items():
        for src_m, tgt_m, equal in rules:
            if not matches(tgt_m, t):
                continue
            two_sided = matches(src_m, t)
            for source, s in alerts.items():
                if (matches(src_m, s) and all(s.get(n, "") == t.get(n, "") for n in equal)
                        and not (two_sided and matches(tgt_m, s))):
                    out.setdefault(target, set()).add(source)
    return out


def main() -> None:
    config = yaml.safe_load(AM_SRC.read_text())
    rules = [([matcher(m) for m in r["source_matchers"]], [matcher(m) for m in r["target_matchers"]], r.get("equal", []))
             for r in config["inhibit_rules"]]
    known = set(SIDECAR_ALERTS) | set(OPERATOR_ALERTS)
    for case in yaml.safe_load(CASES.read_text())["cases"]:
        alerts = {i: {**case["labels"], **labels} for i, labels in case["alerts"].items()}
        for i, labels in alerts.items():
            if labels.get("alertname") not in known:
                fail(f"{rel(CASES)}, case {case['name']!r}: alert {i} names no shipped alert: {labels}")
        want = {t: set(s) for t, s in (case.get("inhibited") or {}).items()}
        got = hidden_by(rules, alerts)
        if got == want:
            ok(f"inhibition: {case['name']}")
        else:
            fail(f"inhibition, case {case['name']!r} ({rel(CASES)}): {rel(AM_SRC)} hides {got or 'nothing'}, "
                 f"want {want or 'nothing'}")
    finish()


if __name__ == "__main__":
    main()
