//! A DaemonSet's rollout on a real node, with the real DaemonSet controller: rolled
//! (`maxSurge: 1`, `maxUnavailable: 0`) to a template whose native sidecar never becomes
//! ready, it keeps its old Pod beside the new one. The operator takes the newest revision from
//! the DaemonSet's template generation (its Pods' `pod-template-generation`), names both in
//! its Warning on the DaemonSet, and resolves once the DaemonSet is switched to `OnDelete`
//! (the controller then holds the rollout on purpose; no Pod changes, the 30 s re-read says
//! so).

use serde_json::{json, Value};

use crate::support::{container, native, probe, seed_alert_states, wait, Scenario, MINUTE};

const SIDECAR: &str = "proxy";

/// DaemonSet `agent` with a native sidecar whose readiness probe runs `ready`; `revision`
/// makes each template its own.
fn daemonset(revision: &str, ready: &str) -> Value {
    let proxy = native(
        SIDECAR,
        "exec sleep 3600",
        json!({"readinessProbe": probe(ready), "env": [{"name": "REVISION", "value": revision}]}),
    );
    json!({
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": "agent"},
        "spec": {
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "selector": {"matchLabels": {"app": "agent"}},
            "template": {
                "metadata": {"labels": {"app": "agent"}},
                "spec": {"initContainers": [proxy], "containers": [container("app", "exec sleep 3600", json!({}))],
                         "terminationGracePeriodSeconds": 1},
            },
        },
    })
}

/// The states of the `RolloutBlockedBySidecar` series on DaemonSet `agent`.
async fn blocked_states(s: &Scenario) -> Vec<String> {
    let matching = [
        ("alertname", "RolloutBlockedBySidecar"),
        ("namespace", s.ns.as_str()),
        ("workload_kind", "DaemonSet"),
        ("workload", "agent"),
    ];
    seed_alert_states(s, &matching).await
}

/// The operator's Events of `reason` on DaemonSet `agent`: their notes.
async fn daemonset_notes(s: &Scenario, reason: &str) -> Vec<String> {
    let events = s.workload_events("DaemonSet", "agent", reason).await;
    events.into_iter().map(|e| e.note.unwrap_or_default()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_daemonsets_newest_generation_is_its_controllers_and_on_delete_holds_it() {
    let s = Scenario::start("node-rollout-daemonset").await;
    s.shorten_rollout_rules().await;
    s.apply(daemonset("1", "true")).await;
    let ready = "jsonpath={.status.numberReady}/{.status.desiredNumberScheduled}";
    wait(2 * MINUTE, "the DaemonSet's one Pod ready", || async {
        match s.env.kubectl(["-n", s.ns.as_str(), "get", "daemonset", "agent", "-o", ready]).await {
            Ok(out) if out.trim() == "1/1" => Ok(()),
            other => Err(format!("{other:?}; {}", s.describe_pods().await)),
        }
    })
    .await;

    // Generation 2: the controller surges a new Pod beside the old one and waits for it.
    s.apply(daemonset("2", "false")).await;
    let notes = wait(2 * MINUTE, "a RolloutBlockedBySidecar Warning on DaemonSet agent", || async {
        let notes = daemonset_notes(&s, "RolloutBlockedBySidecar").await;
        match (blocked_states(&s).await.as_slice(), notes.len()) {
            ([state], 1) if state == "firing" => Ok(notes),
            (states, _) => Err(format!("{states:?} {notes:?}; {}", s.describe_pods().await)),
        }
    })
    .await;
    assert!(
        notes[0].contains("the 1 Pod of revision 2 has proxy") && notes[0].contains("1 Pod of revision 1 still runs"),
        "the newest revision is the controller's generation 2: {notes:?}"
    );

    // OnDelete: the controller replaces no Pod until one is deleted; the rollout is held.
    let patch = r#"{"spec":{"updateStrategy":{"type":"OnDelete","rollingUpdate":null}}}"#;
    let args = ["-n", s.ns.as_str(), "patch", "daemonset", "agent", "--type", "merge", "-p", patch];
    s.env.kubectl(args).await.expect("OnDelete");
    wait(2 * MINUTE, "RolloutBlockedBySidecar resolved once the DaemonSet is OnDelete", || async {
        let resolved = daemonset_notes(&s, "RolloutBlockedBySidecarResolved").await;
        match (blocked_states(&s).await.as_slice(), resolved.len()) {
            ([], 1) => Ok(()),
            (states, _) => Err(format!("{states:?} {resolved:?}; {}", s.describe_pods().await)),
        }
    })
    .await;
}
