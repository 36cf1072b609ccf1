//! One Event per workload, on kube-apiserver: the Pods of a Deployment fail together, and
//! the Deployment gets one Warning (found as `kubectl describe deployment` finds Events: by
//! involvedObject name, namespace, kind and uid), then one `Resolved` when the last Pod
//! recovers, while each Pod keeps its own Events; and a new leader or a restart neither
//! repeats nor falsely resolves an alert on a workload (`SidecarInjectionFailed` on an
//! injected sidecar, `RolloutBlockedBySidecar`). There is no controller-manager here, so
//! the test makes the Deployment, its ReplicaSet and the Pods, with the owner references the
//! controllers would write.

use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Event as CoreEvent;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::{json, Value};

use crate::support::*;

/// The `pod-template-hash` of the ReplicaSet the tests make.
pub(crate) const HASH: &str = "7d9f8b6c5";

/// A Pod template labelled `labels` that declares only `app`: a sidecar is injected.
fn template(labels: Value) -> Value {
    json!({"metadata": {"labels": labels}, "spec": {"containers": [{"name": "app", "image": "busybox"}]}})
}

/// A Deployment `name` (Pods labelled `app=<name>`) and its ReplicaSet `<name>-<HASH>`,
/// owned by it as the Deployment controller would; returns the Deployment's UID and the
/// owner reference its Pods carry.
pub(crate) async fn deployment_with_replica_set(c: &Cluster, name: &str) -> (String, Value) {
    let deployment: Deployment = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {"replicas": 5, "selector": {"matchLabels": {"app": name}}, "template": template(json!({"app": name}))},
    }))
    .expect("a Deployment");
    let deployments: Api<Deployment> = Api::namespaced(c.env.client.clone(), &c.ns);
    let deployment = deployments.create(&PostParams::default(), &deployment).await.expect("Deployment created");
    let deployment_uid = deployment.metadata.uid.expect("a UID");
    let owner = replica_set(c, name, &deployment_uid, HASH).await;
    (deployment_uid, owner)
}

/// The ReplicaSet `<name>-<hash>` of Deployment `name` (UID `deployment_uid`), as the
/// Deployment controller makes one per revision; returns the owner reference its Pods carry.
pub(crate) async fn replica_set(c: &Cluster, name: &str, deployment_uid: &str, hash: &str) -> Value {
    let labels = json!({"app": name, "pod-template-hash": hash});
    let replica_set: ReplicaSet = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": format!("{name}-{hash}"), "labels": labels, "ownerReferences": [{
            "apiVersion": "apps/v1", "kind": "Deployment", "name": name, "uid": deployment_uid,
            "controller": true, "blockOwnerDeletion": true,
        }]},
        "spec": {"replicas": 5, "selector": {"matchLabels": labels},
                 "template": template(labels.clone())},
    }))
    .expect("a ReplicaSet");
    let replica_sets: Api<ReplicaSet> = Api::namespaced(c.env.client.clone(), &c.ns);
    let replica_set = replica_sets.create(&PostParams::default(), &replica_set).await.expect("ReplicaSet created");
    json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": format!("{name}-{hash}"),
        "uid": replica_set.metadata.uid.expect("a UID"), "controller": true, "blockOwnerDeletion": true,
    })
}

/// A native-sidecar Pod `name` of the ReplicaSet `owner` names (see
/// [`deployment_with_replica_set`]), labelled as the ReplicaSet controller labels its Pods.
pub(crate) fn replica_pod(name: &str, app: &str, owner: &Value) -> Value {
    revision_pod(name, app, owner, HASH)
}

/// [`replica_pod`] of the revision `hash`.
pub(crate) fn revision_pod(name: &str, app: &str, owner: &Value, hash: &str) -> Value {
    let mut pod = native_pod(name, app, "app", "istio-proxy");
    pod["metadata"]["labels"]["pod-template-hash"] = json!(hash);
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
/// recover. A tenant's Event posing as the operator's with a time nobody can decode
/// (events.k8s.io, stored as written) does not make it read nothing back.
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
    // In a tenant's namespace: the test's own Event reads are typed and cannot read it.
    let tenant = format!("{}-tenant", c.ns);
    c.env.create_namespace(&tenant).await.expect("tenant namespace");
    let resource = kube::core::ApiResource::erase::<k8s_openapi::api::events::v1::Event>(&());
    let forged: kube::api::DynamicObject = serde_json::from_value(json!({
        "apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "forged", "namespace": tenant},
        "eventTime": "9999-12-31T23:59:59.000000Z", "reportingController": "sidecar-watch",
        "reportingInstance": "tenant", "action": "Alert", "reason": "SidecarContainerNotReady", "type": "Warning",
        "regarding": {"kind": "Pod", "name": "web", "namespace": tenant}}))
    .expect("an Event");
    kube::Api::<kube::api::DynamicObject>::namespaced_with(c.env.client.clone(), &tenant, &resource)
        .create(&kube::api::PostParams::default(), &forged)
        .await
        .expect("kube-apiserver stores it");
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
    let errors =
        standby.scrape().await.ok().and_then(|s| s.value("sidecar_watch_decode_errors_total", &[("kind", "Event")]));
    assert_eq!(errors, Some(1.0), "the forged Event is counted");
    for pod in &pods {
        set_ready(pod, "istio-proxy", true).await;
    }
    c.wait_events("web", "Normal", "SidecarContainerNotReadyResolved", 1).await;
    assert_eq!(c.event_count("web", "Warning", "SidecarContainerNotReady").await, 1);
}

/// The `FailedCreate` Events of the test's namespace.
async fn failed_create_events(c: &Cluster) -> (Api<CoreEvent>, Vec<CoreEvent>) {
    let api: Api<CoreEvent> = Api::namespaced(c.env.client.clone(), &c.ns);
    let listed = api.list(&ListParams::default().fields("reason=FailedCreate")).await.expect("Events listed");
    (api, listed.items)
}

/// Istio's injector is down for ReplicaSet `name` (`uid`), its latest failure now, as the
/// controller updates its Event on a repeat: after every Pod the test made before, so that
/// none of them is taken for one the ReplicaSet created since.
async fn record_istio_down_now(c: &Cluster, name: &str, uid: &str) {
    crate::injection_failed::record_istio_down(c, "ReplicaSet", name, uid).await;
    // Timestamps are whole seconds: the latest failure strictly after the Pods' creation.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let patch = json!({"lastTimestamp": jiff::Timestamp::now().to_string(), "count": 4});
    let (api, events) = failed_create_events(c).await;
    for event in events {
        let event_name = event.metadata.name.expect("a name");
        api.patch(&event_name, &PatchParams::default(), &Patch::Merge(&patch)).await.expect("Event updated");
    }
}

/// The injector is back: the `FailedCreate` Events go (as they expire).
async fn delete_failed_create_events(c: &Cluster) {
    let (api, events) = failed_create_events(c).await;
    for event in events {
        let event_name = event.metadata.name.expect("a name");
        api.delete(&event_name, &DeleteParams::default()).await.expect("Event deleted");
    }
}

/// The second revision's `pod-template-hash` in the restart test.
pub(crate) const NEW_HASH: &str = "5c6b8f9d7";

/// (Warning, Resolved) Events of `alert` on Deployment `name`.
pub(crate) async fn workload_events(c: &Cluster, name: &str, uid: &str, alert: &str) -> (usize, usize) {
    let events = described_events(c, name, uid).await;
    let count = |reason: &str| events.iter().filter(|e| e.reason.as_deref() == Some(reason)).count();
    (count(alert), count(&format!("{alert}Resolved")))
}

/// The one replica of `replicas` that leads, within [`WAIT`].
async fn the_leader(replicas: &[Operator]) -> usize {
    sidecar_watch_harness::env::wait_until(WAIT, "a replica leads", || async {
        for (i, op) in replicas.iter().enumerate() {
            if leads(op).await {
                return Ok(i);
            }
        }
        Err("none yet".to_string())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"))
}

/// A SIGKILL of the leader, then a plain restart of the next, while an injection failure (an
/// injected `istio-proxy` of Deployment `web`, whose old Pods run) and a blocked rollout (of
/// Deployment `api`) fire: one Warning each, no `Resolved` while they fire, then exactly one
/// each once they end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarts_and_leader_kills_neither_repeat_nor_resolve_workload_alerts() {
    let c = Cluster::start("workload-restart").await;
    let fast = json!({"for": "1s"});
    let spec = json!({"sidecarNotReady": fast, "injectionFailed": fast, "rolloutBlocked": fast});
    c.apply_policy("mesh", json!({"rules": rules(spec)})).await;
    // web: its old Pods run; then its ReplicaSet cannot create more (Istio's injector down).
    let (web_uid, web_owner) = deployment_with_replica_set(&c, "web").await;
    for i in 0..2 {
        let pod = c.create_pod(replica_pod(&format!("web-{HASH}-p{i}"), "web", &web_owner)).await;
        drive(&pod, &[("app", true), ("istio-proxy", true)]).await;
    }
    let rs_uid = web_owner["uid"].as_str().expect("the ReplicaSet's UID");
    record_istio_down_now(&c, &format!("web-{HASH}"), rs_uid).await;
    // api: two old Pods run, the new revision's Pod never gets its sidecar ready.
    let (api_uid, api_owner) = deployment_with_replica_set(&c, "api").await;
    for i in 0..2 {
        let pod = c.create_pod(replica_pod(&format!("api-{HASH}-p{i}"), "api", &api_owner)).await;
        drive(&pod, &[("app", true), ("istio-proxy", true)]).await;
    }
    // The newest revision is the one whose first Pod was created last (whole seconds).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let new_owner = replica_set(&c, "api", &api_uid, NEW_HASH).await;
    let new_pod = c.create_pod(revision_pod(&format!("api-{NEW_HASH}-p0"), "api", &new_owner, NEW_HASH)).await;
    drive(&new_pod, &[("app", true), ("istio-proxy", false)]).await;

    let args = ["--leader-elect=true", "--lease-duration", "3s"];
    let mut replicas = vec![Operator::start(&c, "op-0", &args).await, Operator::start(&c, "op-1", &args).await];
    c.wait_events("web", "Warning", "SidecarInjectionFailed", 1).await;
    c.wait_events("api", "Warning", "RolloutBlockedBySidecar", 1).await;
    let standing = || async {
        let web = workload_events(&c, "web", &web_uid, "SidecarInjectionFailed").await;
        let api = workload_events(&c, "api", &api_uid, "RolloutBlockedBySidecar").await;
        (web, api)
    };
    let leader = the_leader(&replicas).await;
    replicas[leader].kill9().await;
    replicas.remove(leader);
    the_leader(&replicas).await;
    // A repeat or a false `Resolved` comes with the new leader's reconciliation, within a
    // second or two of its taking over; give it more.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(standing().await, ((1, 0), (1, 0)), "after a SIGKILL of the leader:\n{}", replicas[0].log());

    replicas[0].terminate().await;
    replicas[0] = Operator::start(&c, "op-2", &args).await;
    the_leader(&replicas).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(standing().await, ((1, 0), (1, 0)), "after a restart:\n{}", replicas[0].log());

    // Both end: the injector is back (the Event is gone), the new Pod's sidecar is ready.
    delete_failed_create_events(&c).await;
    set_ready(&new_pod, "istio-proxy", true).await;
    c.wait_events("web", "Normal", "SidecarInjectionFailedResolved", 1).await;
    c.wait_events("api", "Normal", "RolloutBlockedBySidecarResolved", 1).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(standing().await, ((1, 1), (1, 1)), "one Warning and one Resolved each");
}
