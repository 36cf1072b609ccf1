//! `JobBlockedBySidecar` on every Pod that runs to completion, whoever owns it.

use jiff::Timestamp;
use serde_json::{json, Value};

use crate::alert::{AlertName, AlertState};
use crate::history::PodHistory;
use crate::pod::PodView;
use crate::policy::CompiledPolicy;
use crate::rules::{evaluate, Around};
use crate::PolicyRef;
use sidecar_watch_api::{PolicySpec, SlimPod};

/// `ci/step-1`, started at 10:00: `step` completed at 10:20, the legacy sidecar
/// `log-sidecar` still runs; `owner` is its owner reference, if any.
fn finished_step(restart_policy: &str, owner: Option<Value>) -> Value {
    let mut pod = json!({
        "metadata": {"name": "step-1", "namespace": "ci", "uid": "u1"},
        "spec": {"restartPolicy": restart_policy, "containers": [
            {"name": "step", "image": "ci/step:1"}, {"name": "log-sidecar", "image": "fluent/fluent-bit:3.0.4"}]},
        "status": {"phase": "Running", "startTime": "2025-06-03T10:00:00Z", "containerStatuses": [
            {"name": "step", "ready": false, "restartCount": 0, "state": {"terminated": {"reason": "Completed",
                "exitCode": 0, "startedAt": "2025-06-03T10:00:01Z", "finishedAt": "2025-06-03T10:20:00Z"}}},
            {"name": "log-sidecar", "ready": true, "restartCount": 0,
                "state": {"running": {"startedAt": "2025-06-03T10:00:00Z"}}}]}
    });
    if let Some(owner) = owner {
        pod["metadata"]["ownerReferences"] = json!([owner]);
    }
    pod
}

/// The `JobBlockedBySidecar` alert's state and message at 10:30, if any.
fn blocked(pod: Value) -> Option<(AlertState, String)> {
    let spec: PolicySpec = serde_norway::from_str("rules: {misconfiguration: {enabled: false}}").expect("a spec");
    let policy = CompiledPolicy::compile(PolicyRef::namespaced("ci", "test"), &spec).expect("compiles");
    let view = PodView::from_pod(&serde_json::from_value::<SlimPod>(pod).expect("a Pod"));
    let now: Timestamp = "2025-06-03T10:30:00Z".parse().expect("a time");
    let evaluation = evaluate(&view, &policy, &PodHistory::default(), now, Around::default());
    evaluation.alerts.into_iter().find(|a| a.name == AlertName::JobBlockedBySidecar).map(|a| (a.state, a.message))
}

#[test]
fn a_bare_pod_that_runs_to_completion_is_held_open_like_a_job() {
    let (state, message) = blocked(finished_step("Never", None)).expect("reported");
    assert_eq!(state, AlertState::Firing);
    assert!(
        message.starts_with(
            "Pod ci/step-1: every main container finished 10m ago but sidecar log-sidecar is still running, so the \
             Pod (restartPolicy Never or OnFailure, no owner) never completes; "
        ),
        "{message}"
    );
    assert!(blocked(finished_step("OnFailure", None)).is_some());
    // A Pod the kubelet restarts is never finished: nothing to hold open.
    assert_eq!(blocked(finished_step("Always", None)), None);
}

#[test]
fn a_pod_of_another_workload_names_its_owners_kind() {
    let workflow = json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow", "name": "build", "uid": "w1",
                          "controller": true});
    let (_, message) = blocked(finished_step("Never", Some(workflow))).expect("reported");
    assert!(message.starts_with("Workflow Pod ci/step-1: every main container finished 10m ago"), "{message}");
    assert!(message.contains("so the Pod never completes and its Workflow waits;"), "{message}");
    let job = json!({"apiVersion": "batch/v1", "kind": "Job", "name": "build", "uid": "j1", "controller": true});
    let (_, message) = blocked(finished_step("Never", Some(job))).expect("reported");
    assert!(message.starts_with("Job Pod ci/step-1:") && message.contains("so the Job cannot complete;"), "{message}");
}
