//! The workload half of `SidecarVersionDrift` on a real node, with the real workload
//! controllers: a StatefulSet rolled to a new release of its sidecar with a partition, and a
//! Deployment whose rollout to a new release stalls halfway (its new Pods never become
//! ready). The operator reports the Pods left on the old release once the rule's `for` has
//! passed since the first Pod on the new one was created, never the new ones, and resolves
//! when the rollout completes.

use std::time::Duration;

use serde_json::json;
use sidecar_watch_harness::env::wait_until;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};

use crate::support::{container, native, partitioned_statefulset, probe, Scenario, MINUTE};

const OLD: &str = "sidecar-watch.test/proxy:1.0.0";
const NEW: &str = "sidecar-watch.test/proxy:1.1.0";

/// StatefulSet `db` of two Pods with a native sidecar `proxy` of `image`, updating only
/// ordinals from `partition` up.
fn stateful_set(image: &str, partition: u32) -> serde_json::Value {
    let mut proxy = native("proxy", "exec sleep 3600", json!({}));
    proxy["image"] = json!(image);
    partitioned_statefulset(proxy, partition)
}

/// Sets the seed policy's `versionDrift` to fire after 20 s.
async fn drift_after_20s(s: &Scenario) {
    let patch = json!({"spec": {"rules": {"versionDrift": {"for": "20s"}}}}).to_string();
    let policy = ["-n", s.ns.as_str(), "patch", "sidecarpolicy", "seed", "--type", "merge", "-p", patch.as_str()];
    s.env.kubectl(policy).await.expect("versionDrift for 20s");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pod_left_behind_by_a_partitioned_rollout_is_reported_and_resolved() {
    let s = Scenario::start("node-drift").await;
    drift_after_20s(&s).await;
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
        &[
            ("SidecarVersionDrift", "db-0", "spec.initContainers{proxy}"),
            // One on the StatefulSet too: its first firing Pod.
            ("SidecarVersionDrift", "db", "spec.template.spec.initContainers{proxy}"),
        ],
    )
    .await;
    let events = s.events().await;
    let on_pod =
        |e: &&k8s_openapi::api::events::v1::Event| e.regarding.as_ref().and_then(|r| r.kind.as_deref()) == Some("Pod");
    let event = events
        .iter()
        .filter(on_pod)
        .find(|e| e.reason.as_deref() == Some("SidecarVersionDrift"))
        .expect("the Pod's Event");
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

/// Deployment `web` of two Pods with a native sidecar `proxy` of `image` beside `app`, whose
/// readiness probe runs `ready`; a rollout adds one Pod at a time and removes none before
/// the new one is ready.
fn deployment(image: &str, ready: &str) -> serde_json::Value {
    let mut proxy = native("proxy", "exec sleep 3600", json!({}));
    proxy["image"] = json!(image);
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 2,
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"initContainers": [proxy],
                         "containers": [container("app", "exec sleep 3600", json!({"readinessProbe": probe(ready)}))],
                         "terminationGracePeriodSeconds": 1},
            },
        },
    })
}

/// The names of the namespace's Pods whose `proxy` runs `image`, sorted.
async fn pods_on(s: &Scenario, image: &str) -> Vec<String> {
    let pods: Api<Pod> = Api::namespaced(s.env.client.clone(), &s.ns);
    let list = pods.list(&ListParams::default()).await.expect("Pods listed");
    let mut names: Vec<String> = list
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| {
            let init = p.spec.as_ref().and_then(|s| s.init_containers.as_ref());
            init.is_some_and(|c| c.iter().any(|c| c.image.as_deref() == Some(image)))
        })
        .filter_map(|p| p.metadata.name)
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deployment_rolled_halfway_reports_its_old_pods_until_the_rollout_completes() {
    let s = Scenario::start("node-drift-deploy").await;
    drift_after_20s(&s).await;
    s.apply(deployment(OLD, "true")).await;
    wait_until(2 * MINUTE, "two Pods on 1.0.0", || async {
        match pods_on(&s, OLD).await.len() {
            2 => Ok(()),
            n => Err(format!("{n}: {}", s.describe_pods().await)),
        }
    })
    .await
    .expect("the Deployment's Pods");
    let old = pods_on(&s, OLD).await;
    // The new ReplicaSet's Pod never becomes ready: the rollout stays at two old, one new.
    s.apply(deployment(NEW, "false")).await;
    let field = "spec.initContainers{proxy}";
    let mut expected: Vec<(&str, &str, &str)> =
        old.iter().map(|p| ("SidecarVersionDrift", p.as_str(), field)).collect();
    // One on the Deployment too (its UID read through the old Pods' ReplicaSet), not one per Pod.
    expected.push(("SidecarVersionDrift", "web", "spec.template.spec.initContainers{proxy}"));
    s.expect_warnings(2 * MINUTE, Duration::from_secs(10), &expected).await;
    assert_eq!(pods_on(&s, NEW).await.len(), 1, "the rollout is halfway: {}", s.describe_pods().await);
    let note =
        s.events().await.into_iter().find_map(|e| e.note.filter(|n| n.contains("runs version"))).unwrap_or_default();
    assert!(note.contains("while the Pods of Deployment web created since "), "{note}");
    assert!(
        note.contains(&format!("restart the workload: kubectl rollout restart deployment/web -n {} ", s.ns)),
        "{note}"
    );

    // The new Pods become ready: the rollout completes, the old Pods go, both resolve.
    s.apply(deployment(NEW, "true")).await;
    wait_until(3 * MINUTE, "SidecarVersionDriftResolved for both old Pods", || async {
        let events = s.events().await;
        let resolved: Vec<String> = events
            .iter()
            .filter(|e| e.reason.as_deref() == Some("SidecarVersionDriftResolved"))
            .filter_map(|e| e.regarding.as_ref().and_then(|r| r.name.clone()))
            .collect();
        match old.iter().all(|p| resolved.contains(p)) {
            true => Ok(()),
            false => Err(format!("resolved {resolved:?}; pods: {}", s.describe_pods().await)),
        }
    })
    .await
    .expect("resolved");
}
