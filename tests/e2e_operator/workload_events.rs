//! One Event per workload, on kube-apiserver: the Pods of a Deployment fail together, and
//! the Deployment gets one Warning (found as `kubectl describe deployment` finds Events: by
//! involvedObject name, namespace, kind and uid), then one `Resolved` when the last Pod
//! recovers, while each Pod keeps its own Events. There is no controller-manager here, so
//! the test makes the Deployment, its ReplicaSet and the Pods, with the owner references the
//! controllers would write.

use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Event as CoreEvent;
use kube::api::{Api, ListParams, PostParams};
use serde_json::{json, Value};

use crate::support::*;

/// The `pod-template-hash` of the ReplicaSet the tests make.
pub(crate) const HASH: &str = "7d9f8b6c5";

/// A Deployment `name` (Pods labelled `app=<name>`) and its ReplicaSet `<name>-<HASH>`,
/// owned by it as the Deployment controller would; returns the Deployment's UID and the
/// owner reference its Pods carry.
pub(crate) async fn deployment_with_replica_set(c: &Cluster, name: &str) -> (String, Value) {
    let template = |labels: Value| json!({"metadata": {"labels": labels}, "spec": {"containers": [{"name": "app", "image": "busybox"}]}});
    let deployment: Deployment = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {"replicas": 5, "selector": {"matchLabels": {"app": name}}, "template": template(json!({"app": name}))},
    }))
    .expect("a Deployment");
    let deployments: Api<Deployment> = Api::namespaced(c.env.client.clone(), &c.ns);
    let deployment = deployments.create(&PostParams::default(), &deployment).await.expect("Deployment created");
    let deployment_uid = deployment.metadata.uid.expect("a UID");
    let labels = json!({"app": name, "pod-template-hash": HASH});
    let replica_set: ReplicaSet = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": format!("{name}-{HASH}"), "labels": labels, "ownerReferences": [{
            "apiVersion": "apps/v1", "kind": "Deployment", "name": name, "uid": deployment_uid,
            "controller": true, "blockOwnerDeletion": true,
        }]},
        "spec": {"replicas": 5, "selector": {"matchLabels": labels}, "template": template(labels.clone())},
    }))
    .expect("a ReplicaSet");
    let replica_sets: Api<ReplicaSet> = Api::namespaced(c.env.client.clone(), &c.ns);
    let replica_set = replica_sets.create(&PostParams::default(), &replica_set).await.expect("ReplicaSet created");
    let owner = json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": format!("{name}-{HASH}"),
        "uid": replica_set.metadata.uid.expect("a UID"), "controller": true, "blockOwnerDeletion": true,
    });
    (deployment_uid, owner)
}

/// A native-sidecar Pod `name` of the ReplicaSet `owner` names (see
/// [`deployment_with_replica_set`]), labelled as the ReplicaSet controller labels its Pods.
pub(crate) fn replica_pod(name: &str, app: &str, owner: &Value) -> Value {
    let mut pod = native_pod(name, app, "app", "istio-proxy");
    pod["metadata"]["labels"]["pod-template-hash"] = json!(HASH);
    pod["metadata"]["ownerReferences"] = json!([owner]);
    pod
}

/// The Events `kubectl describe deployment <name>` shows: core/v1 Events selected by the
/// involved object's name, namespace, kind and uid.
async fn described_events(c: &Cluster, name: &str, uid: &str) -> Vec<CoreEvent> {
    let api: Api<CoreEvent> = Api::namespaced(c.env.client.clone(), &c.ns);
    let selector = format!(
        "involvedObject.name={name},involvedObject.namespace={},involvedObject.kind=Deployment,involvedObject.uid={uid}",
        c.ns
    );
    api.list(&ListParams::default().fields(&selector)).await.expect("Events listed").items
}

/// (type, reason, count) of each Event, sorted.
fn summary(events: &[CoreEvent]) -> Vec<(String, String, i32)> {
    let mut out: Vec<_> = events
        .iter()
        .map(|e| {
            let count = e.series.as_ref().and_then(|s| s.count).or(e.count).unwrap_or(1);
            (e.type_.clone().unwrap_or_default(), e.reason.clone().unwrap_or_default(), count)
        })
        .collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_failing_pods_give_their_deployment_one_warning_and_one_resolved() {
    let c = Cluster::start("workload-events").await;
    c.apply_app_policy("mesh", "web", json!({"sidecarNotReady": {"for": "1s", "severity": "warning"}})).await;
    let (uid, owner) = deployment_with_replica_set(&c, "web").await;
    let _op = Operator::start(&c, "op-0", &[]).await;
    let mut pods = Vec::new();
    for i in 0..5 {
        let pod = c.create_pod(replica_pod(&format!("web-{HASH}-p{i}"), "web", &owner)).await;
        drive(&pod, &[("app", true), ("istio-proxy", false)]).await;
        pods.push(pod);
    }
    // Each Pod keeps its own Warning; the Deployment gets one.
    for i in 0..5 {
        c.wait_events(&format!("web-{HASH}-p{i}"), "Warning", "SidecarContainerNotReady", 1).await;
    }
    let events = c.wait_events("web", "Warning", "SidecarContainerNotReady", 1).await;
    let warning = the_event(&events, "web", "SidecarContainerNotReady");
    let note = warning.note.as_deref().unwrap_or_default();
    assert!(
        note.starts_with("SidecarContainerNotReady on sidecar container istio-proxy in ")
            && note.contains(" of Deployment/web, e.g. Pod web-")
            && note.ends_with(&format!("(policy SidecarPolicy {}/mesh)", c.ns)),
        "{note}"
    );
    let regarding = warning.regarding.clone().unwrap_or_default();
    assert_eq!(
        (regarding.kind.as_deref(), regarding.api_version.as_deref(), regarding.uid.as_deref()),
        (Some("Deployment"), Some("apps/v1"), Some(uid.as_str()))
    );
    let warned = vec![("Warning".to_string(), "SidecarContainerNotReady".to_string(), 1)];
    assert_eq!(summary(&described_events(&c, "web", &uid).await), warned, "what describe selects");
    let described = c.env.kubectl(["describe", "deployment", "web", "-n", &c.ns]).await.expect("kubectl describe");
    let lines: Vec<&str> = described.lines().filter(|l| l.contains("SidecarContainerNotReady")).collect();
    assert_eq!(lines.len(), 1, "{described}");
    assert!(lines[0].trim_start().starts_with("Warning"), "{described}");

    // Four Pods recover: the Deployment's alert still fires on the fifth.
    for pod in &pods[..4] {
        set_ready(pod, "istio-proxy", true).await;
    }
    for i in 0..4 {
        c.wait_events(&format!("web-{HASH}-p{i}"), "Normal", "SidecarContainerNotReadyResolved", 1).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(summary(&described_events(&c, "web", &uid).await), warned, "the fifth Pod still fires");
    set_ready(&pods[4], "istio-proxy", true).await;
    c.wait_events("web", "Normal", "SidecarContainerNotReadyResolved", 1).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut settled = warned.clone();
    settled.insert(0, ("Normal".to_string(), "SidecarContainerNotReadyResolved".to_string(), 1));
    assert_eq!(summary(&described_events(&c, "web", &uid).await), settled, "one Warning, one Resolved");
}

/// A Pod whose owner reference names a Deployment that does not exist (a tenant's forgery):
/// its own Events as ever, none on a workload, and the operator goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_owner_gets_no_workload_event() {
    let c = Cluster::start("workload-forged").await;
    c.apply_app_policy("mesh", "web", json!({"sidecarNotReady": {"for": "1s", "severity": "warning"}})).await;
    let op = Operator::start(&c, "op-0", &[]).await;
    let owner = json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": format!("ghost-{HASH}"),
        "uid": "00000000-0000-0000-0000-00000000dead", "controller": true,
    });
    let pod = c.create_pod(replica_pod(&format!("ghost-{HASH}-p0"), "web", &owner)).await;
    drive(&pod, &[("app", true), ("istio-proxy", false)]).await;
    c.wait_events(&format!("ghost-{HASH}-p0"), "Warning", "SidecarContainerNotReady", 1).await;
    // The read of Deployment `ghost` fails (404): counted as an Event not published.
    op.wait_scrape("the workload Event counted as failed", |s| {
        match s.value("sidecar_watch_events_total", &[("reason", "SidecarContainerNotReady"), ("result", "error")]) {
            Some(1.0) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert_eq!(op.log().matches("reading the Deployment failed").count(), 1, "logged once: {}", op.log());
    let events = c.events().await;
    assert_eq!(
        count_events(&events, "ghost", "Warning", "SidecarContainerNotReady"),
        0,
        "{}",
        describe_events(&events)
    );
}

async fn leads(op: &Operator) -> bool {
    op.scrape().await.ok().and_then(|s| s.value("sidecar_watch_leader", &[])) == Some(1.0)
}

/// The leader that announced the Deployment's Warning is killed (SIGKILL: nothing flushed):
/// the next one reads the Warning back, does not repeat it, and resolves it when the Pods
/// recover.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_leader_neither_repeats_nor_loses_the_workload_events() {
    let c = Cluster::start("workload-failover").await;
    c.apply_app_policy("mesh", "web", json!({"sidecarNotReady": {"for": "1s", "severity": "warning"}})).await;
    let (uid, owner) = deployment_with_replica_set(&c, "web").await;
    let args = ["--leader-elect=true", "--lease-duration", "3s"];
    let mut replicas = [Operator::start(&c, "op-0", &args).await, Operator::start(&c, "op-1", &args).await];
    let mut pods = Vec::new();
    for i in 0..3 {
        let pod = c.create_pod(replica_pod(&format!("web-{HASH}-p{i}"), "web", &owner)).await;
        drive(&pod, &[("app", true), ("istio-proxy", false)]).await;
        pods.push(pod);
    }
    c.wait_events("web", "Warning", "SidecarContainerNotReady", 1).await;
    let mut leader = None;
    for (i, op) in replicas.iter().enumerate() {
        if leads(op).await {
            leader = Some(i);
        }
    }
    let leader = leader.expect("a replica leads");
    replicas[leader].kill9().await;
    let standby = &replicas[1 - leader];
    sidecar_watch_harness::env::wait_until(WAIT, "the standby leads", || async {
        if leads(standby).await {
            Ok(())
        } else {
            Err("not yet".to_string())
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    // Its reconciliation is done once it publishes; give it the time a repeat would take.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let warned = vec![("Warning".to_string(), "SidecarContainerNotReady".to_string(), 1)];
    assert_eq!(summary(&described_events(&c, "web", &uid).await), warned, "not announced again");
    for pod in &pods {
        set_ready(pod, "istio-proxy", true).await;
    }
    c.wait_events("web", "Normal", "SidecarContainerNotReadyResolved", 1).await;
    assert_eq!(c.event_count("web", "Warning", "SidecarContainerNotReady").await, 1);
}
