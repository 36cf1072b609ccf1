"""Paths, alert names and the failure report the checks.py subcommands share."""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path.cwd()
CRD_NAMES = ["sidecarwatch.io_sidecarpolicies.yaml", "sidecarwatch.io_clustersidecarpolicies.yaml"]
CHART = ROOT / "charts" / "sidecar-watch"
RULE_SRC = ROOT / "config/prometheus/prometheusrule.yaml"
# The per-Pod form of the sidecar alerts (chart prometheusRule.perPodAlerts=true).
PER_POD_RULE_SRC = ROOT / "config/prometheus/per-pod/prometheusrule.yaml"
AM_SRC = ROOT / "config/alertmanager/alertmanager.yaml"
DASH_SRC = ROOT / "config/grafana/sidecar-watch-dashboard.json"
VAP_SRC = ROOT / "config/components/admission-policies/validatingadmissionpolicy.yaml"
K8S_VERSION = "1.32.0"

SIDECAR_ALERTS = [
    "SidecarContainerNotReady", "MainContainerReadyButSidecarNot", "SidecarRestartingFrequently",
    "SidecarCrashLooping", "SidecarOOMKilled", "MainStartedBeforeSidecarReady",
    "JobBlockedBySidecar", "SidecarStoppedBeforeMain", "SidecarMissing", "SidecarVersionDrift",
    "SidecarMisconfigured", "SidecarInjectionFailed", "RolloutBlockedBySidecar",
]
# The sidecar alerts on a workload, not a Pod (engine AlertName::on_workload): sidecar_alerts
# has pod="" for them, so no annotation or description may name or count Pods.
WORKLOAD_ALERTS = ["SidecarInjectionFailed", "RolloutBlockedBySidecar"]
# The alerts of the shipped PrometheusRule that the engine does not raise (no AlertName, no
# sidecar_alerts series, no Event): they join a product's own series or the kubelet's cAdvisor
# to sidecar_container_ready (groups sidecar-watch.sidecar-signals.*, docs/operations.md,
# "Functional health"). The one list the deploy checks and docs read for "rule-only" alerts.
RULE_ONLY_ALERTS = [
    "SidecarConfigRejected", "SidecarProxyNotLive", "SidecarControlPlaneUnreachable",
    "SidecarCertificateExpiring", "SidecarDataLoss", "SidecarPipelineStalled", "SidecarSyncFailing",
    "SidecarComponentInitFailed", "SidecarMemoryNearLimit", "SidecarCPUThrottled", "SidecarOOMKillInside",
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


def dashboard_exprs(dash: dict) -> list[tuple[str, str]]:
    """Every (panel title, PromQL expression) of a Grafana dashboard, nested rows included."""
    exprs: list[tuple[str, str]] = []

    def walk(panels):
        for p in panels:
            for t in p.get("targets", []):
                if t.get("expr"):
                    exprs.append((p.get("title", "?"), t["expr"]))
            walk(p.get("panels", []))

    walk(dash.get("panels", []))
    return exprs
