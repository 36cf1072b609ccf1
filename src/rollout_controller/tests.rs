//! What a controller says of its rollout, from its object, and the reads of a Deployment's
//! ReplicaSets against the in-process API.

use serde_json::json;

use super::*;

use crate::test_api::{self, Call};

fn said(kind: WorkloadKind, body: Value) -> ControllerRollout {
    let meta = serde_json::from_value(body.get("metadata").cloned().unwrap_or(json!({}))).expect("metadata");
    controller_rollout(&kind, &meta, &body)
}

#[test]
fn each_kind_says_its_newest_revision_and_whether_it_holds_the_rollout() {
    let sts = |strategy: Value| json!({"spec": {"updateStrategy": strategy}, "status": {"updateRevision": "web-7c9d"}});
    let rolling = said(WorkloadKind::StatefulSet, sts(json!({"type": "RollingUpdate"})));
    assert_eq!(rolling, ControllerRollout { newest: Some("web-7c9d".into()), held: None });
    let partitioned =
        said(WorkloadKind::StatefulSet, sts(json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 2}})));
    assert_eq!(partitioned.held, Some(RolloutHold::Partition(2)));
    let zero =
        said(WorkloadKind::StatefulSet, sts(json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}})));
    assert_eq!(zero.held, None, "partition 0 holds nothing");
    assert_eq!(said(WorkloadKind::StatefulSet, sts(json!({"type": "OnDelete"}))).held, Some(RolloutHold::OnDelete));
    assert_eq!(
        said(WorkloadKind::DaemonSet, json!({"spec": {"updateStrategy": {"type": "OnDelete"}}})).held,
        Some(RolloutHold::OnDelete)
    );
    assert_eq!(said(WorkloadKind::DaemonSet, json!({"spec": {}})), ControllerRollout::default());
    let generation = |value: &str| json!({"metadata": {"annotations": {TEMPLATE_GENERATION: value}}, "spec": {}});
    assert_eq!(said(WorkloadKind::DaemonSet, generation("3")).newest.as_deref(), Some("3"));
    assert_eq!(said(WorkloadKind::DaemonSet, generation("03")).newest.as_deref(), Some("3"), "as its Pods spell it");
    assert_eq!(said(WorkloadKind::DaemonSet, generation("three")), ControllerRollout::default(), "a tenant's edit");
    assert_eq!(said(WorkloadKind::Deployment, json!({"spec": {"paused": true}})).held, Some(RolloutHold::Paused));
    assert_eq!(said(WorkloadKind::Deployment, json!({"spec": {"paused": false}})), ControllerRollout::default());
    // A body of the wrong shape says nothing: the Pods decide.
    assert_eq!(
        said(WorkloadKind::StatefulSet, json!({"spec": "x", "status": {"updateRevision": 3}})),
        ControllerRollout::default()
    );
}

fn read() -> RolloutRead {
    RolloutRead {
        workload: WorkloadId::new("shop", "Deployment", "web"),
        revisions: vec!["bbbb".into(), "aaaa".into()],
        recheck: false,
    }
}

fn object(kind: &str, name: &str, uid: &str, revision: &str, owner: Option<&str>) -> Value {
    let owners: Vec<Value> = owner
        .map(|o| json!({"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "uid": o, "controller": true}))
        .into_iter()
        .collect();
    json!({"apiVersion": "apps/v1", "kind": kind,
           "metadata": {"name": name, "namespace": "shop", "uid": uid, "ownerReferences": owners,
                        "annotations": {REVISION: revision}},
           "spec": {}})
}

fn path(resource: &str, name: &str) -> String {
    format!("/apis/apps/v1/namespaces/shop/{resource}/{name}")
}

fn expect(call: Call, resource: &str, name: &str) -> Call {
    assert_eq!(call.parts.uri.path(), path(resource, name));
    call
}

#[tokio::test]
async fn a_deployments_newest_revision_is_its_replicaset_with_its_revision_number() {
    let (client, mut server) = test_api::client();
    let reading = tokio::spawn(async move { read_controller(&client, &read()).await });
    // Rolled back: revision 3 is aaaa again, though bbbb's Pods were created last.
    expect(server.next().await, "deployments", "web").respond_json(200, &object("Deployment", "web", "d1", "3", None));
    expect(server.next().await, "replicasets", "web-bbbb")
        .respond_json(200, &object("ReplicaSet", "web-bbbb", "r2", "2", Some("d1")));
    expect(server.next().await, "replicasets", "web-aaaa")
        .respond_json(200, &object("ReplicaSet", "web-aaaa", "r1", "3", Some("d1")));
    let rollout = reading.await.expect("joined").expect("read");
    assert_eq!(rollout, ControllerRollout { newest: Some("aaaa".into()), held: None });
}

#[tokio::test]
async fn a_replicaset_of_another_owner_or_a_deleted_deployment_says_nothing() {
    let (client, mut server) = test_api::client();
    let reading = tokio::spawn({
        let client = client.clone();
        async move { read_controller(&client, &read()).await }
    });
    expect(server.next().await, "deployments", "web").respond_json(200, &object("Deployment", "web", "d1", "2", None));
    // A tenant's ReplicaSet of the expected name, with the right number, owned by nothing.
    expect(server.next().await, "replicasets", "web-bbbb")
        .respond_json(200, &object("ReplicaSet", "web-bbbb", "r9", "2", None));
    expect(server.next().await, "replicasets", "web-aaaa").respond_status(404, "NotFound");
    assert_eq!(reading.await.expect("joined").expect("read"), ControllerRollout::default());

    let reading = tokio::spawn(async move { read_controller(&client, &read()).await });
    expect(server.next().await, "deployments", "web").respond_status(404, "NotFound");
    assert_eq!(reading.await.expect("joined").expect("read"), ControllerRollout::default());
}

#[tokio::test]
async fn a_paused_deployment_reads_no_replicaset_and_a_server_error_is_an_error() {
    let (client, mut server) = test_api::client();
    let reading = tokio::spawn({
        let client = client.clone();
        async move { read_controller(&client, &read()).await }
    });
    let mut paused = object("Deployment", "web", "d1", "2", None);
    paused["spec"]["paused"] = json!(true);
    expect(server.next().await, "deployments", "web").respond_json(200, &paused);
    assert_eq!(reading.await.expect("joined").expect("read").held, Some(RolloutHold::Paused));

    let reading = tokio::spawn(async move { read().read(client).await });
    expect(server.next().await, "deployments", "web").respond_status(500, "InternalError");
    assert!(reading.await.expect("joined").is_err(), "retried by the reader, not taken as an answer");
}
