"""The helm helpers the chart_checks.py subcommands share, with the paths and failure report of
checks_common.py."""
from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from checks_common import CHART, ROOT, fail, failures, finish, ok  # noqa: F401  (re-exported)

NS = "sidecar-watch-system"


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
