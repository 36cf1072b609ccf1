//! SARIF 2.1.0 output for code-scanning tools (GitHub code scanning, GitLab, Azure DevOps):
//! one rule per alert, and per check of `SidecarMisconfigured`, with the runbook as help;
//! one result per finding, located at the object (and the input file, when there is one).

use serde_json::{json, Value};

use super::Finding;
use crate::api::Severity;
use crate::engine::{AlertName, Check};

/// The runbook of each alert, embedded so that the binary stands alone.
fn runbook(alert: AlertName) -> &'static str {
    match alert {
        AlertName::SidecarContainerNotReady => include_str!("../../docs/runbooks/SidecarContainerNotReady.md"),
        AlertName::MainContainerReadyButSidecarNot => {
            include_str!("../../docs/runbooks/MainContainerReadyButSidecarNot.md")
        }
        AlertName::SidecarRestartingFrequently => include_str!("../../docs/runbooks/SidecarRestartingFrequently.md"),
        AlertName::SidecarCrashLooping => include_str!("../../docs/runbooks/SidecarCrashLooping.md"),
        AlertName::SidecarOomKilled => include_str!("../../docs/runbooks/SidecarOOMKilled.md"),
        AlertName::MainStartedBeforeSidecarReady => {
            include_str!("../../docs/runbooks/MainStartedBeforeSidecarReady.md")
        }
        AlertName::JobBlockedBySidecar => include_str!("../../docs/runbooks/JobBlockedBySidecar.md"),
        AlertName::SidecarStoppedBeforeMain => include_str!("../../docs/runbooks/SidecarStoppedBeforeMain.md"),
        AlertName::SidecarMissing => include_str!("../../docs/runbooks/SidecarMissing.md"),
        AlertName::SidecarVersionDrift => include_str!("../../docs/runbooks/SidecarVersionDrift.md"),
        AlertName::SidecarMisconfigured => include_str!("../../docs/runbooks/SidecarMisconfigured.md"),
        AlertName::SidecarInjectionFailed => include_str!("../../docs/runbooks/SidecarInjectionFailed.md"),
        AlertName::RolloutBlockedBySidecar => include_str!("../../docs/runbooks/RolloutBlockedBySidecar.md"),
    }
}

/// One line on what an alert means.
fn summary(alert: AlertName) -> &'static str {
    match alert {
        AlertName::SidecarContainerNotReady => "A sidecar container is running or waiting but not ready.",
        AlertName::MainContainerReadyButSidecarNot => "A main container is ready while a sidecar is not.",
        AlertName::SidecarRestartingFrequently => "A sidecar restarted at least the threshold within the window.",
        AlertName::SidecarCrashLooping => "A sidecar is in CrashLoopBackOff.",
        AlertName::SidecarOomKilled => "A sidecar was OOM-killed within the window.",
        AlertName::MainStartedBeforeSidecarReady => "A main container started before a sidecar was ready.",
        AlertName::JobBlockedBySidecar => "A sidecar keeps a Job's Pod running after its main containers finished.",
        AlertName::SidecarStoppedBeforeMain => "On shutdown a sidecar stopped while a main container still ran.",
        AlertName::SidecarMissing => "A Pod lacks a sidecar that its injector's markers or the policy ask for.",
        AlertName::SidecarVersionDrift => "A sidecar runs a release older than the policy's minimum for it.",
        AlertName::SidecarMisconfigured => "A static check of the Pod spec failed.",
        AlertName::SidecarInjectionFailed => "A workload cannot create Pods because of a sidecar or its injector.",
        AlertName::RolloutBlockedBySidecar => "A sidecar fails on every Pod of a rollout's new revision.",
    }
}

/// One line on what a check means.
fn check_summary(check: Check) -> &'static str {
    match check {
        Check::NoReadinessProbe => "A sidecar has no readinessProbe.",
        Check::NoStartupProbe => "A native sidecar has neither a startupProbe nor a postStart hook.",
        Check::LegacySidecar => "A sidecar is declared in spec.containers instead of as a native sidecar.",
        Check::LatestImage => "A sidecar image has no pinned tag or digest.",
        Check::NoResources => "A sidecar declares no resource requests or limits.",
        Check::PortConflict => "A sidecar declares a port another container declares too.",
        Check::SidecarSprawl => "A Pod runs five or more sidecars.",
        Check::MainProbeOnSidecar => "A main container's liveness probe targets a sidecar's port.",
        Check::InitBeforeProxy => {
            "An init container runs before a native mesh proxy that already receives its traffic."
        }
        Check::NativePreStop => "A native sidecar's preStop hook runs while the main containers still run.",
        Check::MetricsDisabled => {
            "A catalog sidecar's own metrics are switched off: its functional-health alerts cannot fire."
        }
        Check::MetricsUnreachable => {
            "A catalog sidecar's own metrics are served where Prometheus does not scrape them."
        }
        Check::HealthCheckDisabled => "A catalog sidecar's health endpoint is switched off: no probe can watch it.",
    }
}

/// The rules: every alert but `SidecarMisconfigured`, then one per check: (id, summary, runbook).
fn rules() -> Vec<(String, &'static str, &'static str)> {
    let alerts = AlertName::ALL
        .into_iter()
        .filter(|a| *a != AlertName::SidecarMisconfigured)
        .map(|a| (a.as_str().to_string(), summary(a), runbook(a)));
    let checks = Check::ALL.into_iter().map(|c| {
        let id = format!("{}/{}", AlertName::SidecarMisconfigured.as_str(), c.as_str());
        (id, check_summary(c), runbook(AlertName::SidecarMisconfigured))
    });
    alerts.chain(checks).collect()
}

fn level(severity: Severity) -> &'static str {
    match severity {
        Severity::Critical => "error",
        Severity::Warning => "warning",
        Severity::Info => "note",
    }
}

/// The SARIF log of `findings` (`audit -o sarif`).
pub fn log(findings: &[Finding]) -> Value {
    let rules = rules();
    let descriptors: Vec<Value> = rules
        .iter()
        .map(|(id, summary, help)| {
            json!({
                "id": id,
                "name": id.replace('/', "_"),
                "shortDescription": {"text": summary},
                "fullDescription": {"text": summary},
                "help": {"text": help, "markdown": help},
            })
        })
        .collect();
    let results: Vec<Value> = findings
        .iter()
        .map(|f| {
            let id = match &f.check {
                Some(check) => format!("{}/{check}", f.alertname),
                None => f.alertname.clone(),
            };
            let index = rules.iter().position(|(rule, _, _)| *rule == id);
            let (kind, name) = match f.pod.split_once('/') {
                // An alert on a workload: no Pod, the workload.
                _ if f.pod.is_empty() => (f.workload_kind.as_str(), f.workload.as_str()),
                Some((kind, name)) if f.kind != "Pod" => (kind, name),
                _ => ("Pod", f.pod.as_str()),
            };
            let mut location = json!({"logicalLocations": [{
                "name": name,
                "fullyQualifiedName": format!("{}/{kind}/{name}", f.namespace),
                "kind": "resource",
            }]});
            if let Some(file) = &f.file {
                location["physicalLocation"] = json!({"artifactLocation": {"uri": file}});
            }
            let mut result = json!({
                "ruleId": id,
                "level": level(f.severity),
                "message": {"text": f.message},
                "locations": [location],
                "properties": {
                    "state": f.state.as_str(),
                    "container": f.container,
                    "policy": f.policy,
                    "policyNamespace": f.policy_namespace,
                    "workloadKind": f.workload_kind,
                    "workload": f.workload,
                    "identifiedBy": f.identified_by,
                    "since": f.since,
                },
            });
            if let Some(index) = index {
                result["ruleIndex"] = json!(index);
            }
            result
        })
        .collect();
    json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "sidecar-watch",
                "version": env!("CARGO_PKG_VERSION"),
                "rules": descriptors,
            }},
            "results": results,
        }],
    })
}
