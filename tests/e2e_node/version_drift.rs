//! The workload half of `SidecarVersionDrift` on a real node: a StatefulSet rolled to a new
//! release of its sidecar with a partition, so that the real StatefulSet controller replaces
//! `db-1` and leaves `db-0` on the old release (a rollout left halfway). The operator
//! reports `db-0` once the rule's `for` has passed since `db-1` was created on the new
//! release, never `db-1`, and resolves when the partition is lifted and `db-0` is replaced.

use std::time::Duration;

use serde_json::json;
use sidecar_watch_harness::harness::wait_until;

use crate::support::{container, native, Scenario, MINUTE};

const OLD: &str = "sidecar-watch.test/proxy:1.0.0";
const NEW: &str = "sidecar-watch.test/proxy:1.1.0";

/// StatefulSet `db` of two Pods with a native sidecar `proxy` of `image`, updating only
/// ordinals from `partition` up.
fn stateful_set(image: &str, partition: u32) -> serde_json::Value {
    let mut proxy = native("proxy", "exec sleep 3600", json!({}));
    proxy["image"] = json!(image);
    json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "db"},
        "spec": {
            "replicas": 2, "serviceName": "db", "podManagementPolicy": "Parallel",
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": partition}},
            "selector": {"matchLabels": {"app": "db"}},
            "template": {
                "metadata": {"labels": {"app": "db"}},
                "spec": {"initContainers": [proxy], "containers": [container("app", "exec sleep 3600", json!({}))],
                         "terminationGracePeriodSeconds": 1},
            },
        },
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pod_left_behind_by_a_partitioned_rollout_is_reported_and_resolved() {
    let s = Scenario::start("node-drift").await;
    let patch = json!({"spec": {"rules": {"versionDrift": {"for": "20s"}}}}).to_string();
    let policy = ["-n", s.ns.as_str(), "patch", "sidecarpolicy", "seed", "--type", "merge", "-p", patch.as_str()];
    s.env.kubectl(policy).await.expect("versionDrift for 20s");
    s.apply(stateful_set(OLD, 1)).await;
    wait_until(2 * MINUTE, "db-0 and db-1 running on 1.0.0", || async {
        let pods = s.describe_pods().await;
        match pods.matches("running").count() >= 4 {
            true => Ok(()),
            false => Err(pods),
        }
    })
    .await
    .expect("the StatefulSet's Pods");
    s.apply(stateful_set(NEW, 1)).await;
    // db-1 is replaced on 1.1.0; db-0 stays on 1.0.0 and is reported 20 s after db-1's creation.
    s.expect_warnings(
        2 * MINUTE,
        Duration::from_secs(10),
        &[("SidecarVersionDrift", "db-0", "spec.initContainers{proxy}")],
    )
    .await;
    let events = s.events().await;
    let event = events.iter().find(|e| e.reason.as_deref() == Some("SidecarVersionDrift")).expect("the Event");
    let note = event.note.clone().unwrap_or_default();
    let expected = format!(
        "Sidecar proxy in Pod {}/db-0 runs version \"1.0.0\", while the Pods of StatefulSet db created since ",
        s.ns
    );
    assert!(note.starts_with(&expected), "{note}");
    assert!(note.contains(" run \"1.1.0\": the workload has run more than one version of it since then; restart the workload: kubectl rollout restart statefulset/db"), "{note}");

    // The partition lifted, db-0 is replaced on 1.1.0: one version again.
    s.apply(stateful_set(NEW, 0)).await;
    wait_until(2 * MINUTE, "SidecarVersionDriftResolved", || async {
        let events = s.events().await;
        match events.iter().any(|e| e.reason.as_deref() == Some("SidecarVersionDriftResolved")) {
            true => Ok(()),
            false => Err(format!(
                "{:?}; pods: {}",
                events.iter().map(|e| e.reason.clone()).collect::<Vec<_>>(),
                s.describe_pods().await
            )),
        }
    })
    .await
    .expect("resolved");
}
