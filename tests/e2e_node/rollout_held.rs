//! A rollout its controller holds on purpose is not blocked, on a real node with the real
//! StatefulSet controller: a StatefulSet rolled with `partition: 1` to a template whose native
//! sidecar never becomes ready updates only its last Pod, as asked. That Pod fires its per-Pod
//! alert; `RolloutBlockedBySidecar` stays silent, though by the Pods alone (the newest
//! revision's only Pod failing beside an old one) it would fire. Lowering the partition to 0
//! makes the controller wait for the failing Pod: now the rollout is blocked, and the operator
//! says so once it reads the StatefulSet again (every 30 s while the Pods say blocked).

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::{native, partitioned_statefulset, probe, seed_alert_states, wait, Scenario, MINUTE};

const SIDECAR: &str = "proxy";

/// StatefulSet db of two Pods, updated from ordinal `partition` up, whose native sidecar's
/// readiness probe runs `ready`; `revision` makes each template (and revision) its own.
fn statefulset(revision: &str, ready: &str, partition: u32) -> Value {
    let proxy = native(
        SIDECAR,
        "exec sleep 3600",
        json!({"readinessProbe": probe(ready), "env": [{"name": "REVISION", "value": revision}]}),
    );
    partitioned_statefulset(proxy, partition)
}

/// `sidecar_alerts` of `alert` on `pod` ("" for the workload) of StatefulSet db, by state.
async fn alert_states(s: &Scenario, alert: &str, pod: &str) -> Vec<String> {
    let matching = [("alertname", alert), ("namespace", s.ns.as_str()), ("pod", pod), ("workload", "db")];
    seed_alert_states(s, &matching).await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_partitioned_statefulset_is_not_blocked_until_the_partition_is_lowered() {
    let s = Scenario::start("node-rollout-held").await;
    s.shorten_rollout_rules().await;
    s.apply(statefulset("1", "true", 1)).await;
    wait(2 * MINUTE, "db-0 and db-1 ready", || async {
        let mut ready = Vec::new();
        for pod in ["db-0", "db-1"] {
            let condition = "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}";
            ready.push(s.env.kubectl(["-n", s.ns.as_str(), "get", "pod", pod, "-o", condition]).await.ok());
        }
        match ready.as_slice() {
            [Some(a), Some(b)] if a == "True" && b == "True" => Ok(()),
            other => Err(format!("{other:?}; {}", s.describe_pods().await)),
        }
    })
    .await;

    // Partition 1: only db-1 gets the new template, whose sidecar never becomes ready.
    s.apply(statefulset("2", "false", 1)).await;
    wait(2 * MINUTE, "SidecarContainerNotReady firing on db-1, the updated Pod", || async {
        match alert_states(&s, "SidecarContainerNotReady", "db-1").await.as_slice() {
            [state] if state == "firing" => Ok(()),
            other => Err(format!("{other:?}; {}", s.describe_pods().await)),
        }
    })
    .await;
    // Past the rule's 10 s, a controller read and a judgement batch: still nothing.
    for _ in 0..25 {
        let blocked = alert_states(&s, "RolloutBlockedBySidecar", "").await;
        assert_eq!(blocked, Vec::<String>::new(), "a partitioned rollout is not blocked");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }

    // Partition 0: the controller would update db-0 next, but waits for db-1 to be ready.
    let patch = r#"{"spec":{"updateStrategy":{"rollingUpdate":{"partition":0}}}}"#;
    let args = ["-n", s.ns.as_str(), "patch", "statefulset", "db", "--type", "merge", "-p", patch];
    s.env.kubectl(args).await.expect("partition 0");
    wait(2 * MINUTE, "RolloutBlockedBySidecar firing on StatefulSet db", || async {
        match alert_states(&s, "RolloutBlockedBySidecar", "").await.as_slice() {
            [state] if state == "firing" => Ok(()),
            other => Err(format!("{other:?}; {}", s.describe_pods().await)),
        }
    })
    .await;
}
