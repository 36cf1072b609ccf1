//! Objects: create, get, update and delete with resourceVersion conflicts, the status
//! subresource and `generation`, and a Pod's graceful deletion.

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{
    Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use serde_json::json;
use sidecar_watch_harness::env::wait_until;
use sidecar_watch_harness::kubelet::{test_pod, PodDriver, State};

use crate::{pod_from, rv_of, widget_api};
use sidecar_watch_harness::both_servers::{code, fixtures, namespace, raw, Server};

pub(crate) async fn crud_and_stale_resource_version_conflict(server: Server) {
    let env = server.env().await;
    let ns = namespace(&env, "crud").await;
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), &ns);
    let mut v = test_pod("", &[("app", "a")], &["app"], &[]);
    v["metadata"] = json!({"generateName": "gen-"});
    let created = pod_from(&pods, v).await;
    let name = created.metadata.name.clone().unwrap();
    assert!(name.starts_with("gen-") && name.len() == 9, "{name}");
    assert!(created.metadata.uid.is_some());
    assert!(created.metadata.creation_timestamp.is_some());
    assert_eq!(created.metadata.generation, Some(1));
    assert_eq!(created.metadata.namespace.as_deref(), Some(ns.as_str()));
    assert_eq!(created.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Pending"));
    let rv1 = rv_of(&created);

    // An object to create must not carry a resourceVersion: etcd3's store refuses it before
    // looking for the key (apiserver pkg/storage/etcd3/store.go, Create), an error that is not
    // a Status, so a 500 without a reason.
    let err = pods.create(&PostParams::default(), &created).await.unwrap_err();
    match &err {
        kube::Error::Api(s) => {
            assert_eq!((s.code, s.reason.as_str()), (500, ""), "{s:?}");
            assert_eq!(s.message, "resourceVersion should not be set on objects to be created");
        }
        other => panic!("{other:?}"),
    }
    // AlreadyExists, worded for a generated name when the object asked for one
    // (apiserver pkg/registry/rest/create.go, CheckGeneratedNameError).
    let mut again = created.clone();
    again.metadata.resource_version = None;
    let generated = ", the server was not able to generate a unique name for the object";
    for suffix in [generated, ""] {
        match pods.create(&PostParams::default(), &again).await.unwrap_err() {
            kube::Error::Api(s) => {
                assert_eq!((s.code, s.reason.as_str()), (409, "AlreadyExists"), "{s:?}");
                assert_eq!(s.message, format!("pods \"{name}\" already exists{suffix}"));
            }
            other => panic!("{other:?}"),
        }
        again.metadata.generate_name = None;
    }

    // update bumps RV; stale RV conflicts
    let mut updated = created.clone();
    updated.metadata.labels.get_or_insert_with(Default::default).insert("x".into(), "y".into());
    let updated = pods.replace(&name, &PostParams::default(), &updated).await.unwrap();
    let rv2 = rv_of(&updated);
    assert!(rv2 > rv1);
    let err = pods.replace(&name, &PostParams::default(), &created).await.unwrap_err();
    match &err {
        kube::Error::Api(s) => {
            assert_eq!((s.code, s.reason.as_str()), (409, "Conflict"));
            assert_eq!(
                s.message,
                format!("Operation cannot be fulfilled on pods \"{name}\": the object has been modified; please apply your changes to the latest version and try again")
            );
        }
        other => panic!("{other:?}"),
    }

    // The namespace must be the request's, then exist.
    let missing = format!("{ns}-missing");
    let other: Api<Pod> = Api::namespaced(env.client.clone(), &missing);
    match other.create(&PostParams::default(), &again).await.unwrap_err() {
        kube::Error::Api(s) => {
            assert_eq!((s.code, s.reason.as_str()), (400, "BadRequest"), "{s:?}");
            assert_eq!(
                s.message,
                "the namespace of the provided object does not match the namespace sent on the request"
            );
        }
        other => panic!("{other:?}"),
    }
    again.metadata.namespace = None;
    match other.create(&PostParams::default(), &again).await.unwrap_err() {
        kube::Error::Api(s) => {
            assert_eq!((s.code, s.reason.as_str()), (404, "NotFound"), "{s:?}");
            assert_eq!(s.message, format!("namespaces \"{missing}\" not found"));
        }
        other => panic!("{other:?}"),
    }

    // get / 404 / list RV
    assert_eq!(pods.get(&name).await.unwrap().metadata.labels.unwrap()["x"], "y");
    assert_eq!(code(&pods.get("missing").await.unwrap_err()), 404);
    let list = pods.list(&ListParams::default()).await.unwrap();
    let list_rv: u64 = list.metadata.resource_version.unwrap().parse().unwrap();
    assert!(list_rv >= rv2, "a list is not older than the writes before it: {list_rv} < {rv2}");

    // Status shape of errors
    let err = raw(&env.client, "GET", &format!("/api/v1/namespaces/{ns}/pods/missing"), &[], None).await.unwrap_err();
    match err {
        kube::Error::Api(s) => {
            assert_eq!((s.code, s.reason.as_str()), (404, "NotFound"));
            assert_eq!(s.message, "pods \"missing\" not found");
        }
        other => panic!("{other:?}"),
    }
}

pub(crate) async fn status_subresource_semantics_and_generation(server: Server) {
    let env = server.env().await;
    let ns = namespace(&env, "status").await;
    env.install_crds(&fixtures().join("widgets-crd.yaml")).await.unwrap();
    let api = widget_api(&env.client, &ns);
    let w: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "e2e.sidecarwatch.io/v1alpha1", "kind": "Widget",
        "metadata": {"name": "w"}, "spec": {"size": 1}, "status": {"matchedPods": 9}
    }))
    .unwrap();
    let created = api.create(&PostParams::default(), &w).await.unwrap();
    assert!(created.data.get("status").is_none(), "status dropped on create");
    assert_eq!(created.metadata.generation, Some(1));

    // main endpoint ignores status, bumps generation on spec change
    let mut next = created.clone();
    next.data["spec"] = json!({"size": 2});
    next.data["status"] = json!({"matchedPods": 5});
    let after = api.replace("w", &PostParams::default(), &next).await.unwrap();
    assert_eq!(after.metadata.generation, Some(2));
    assert!(after.data.get("status").is_none());

    // /status ignores everything but status and does not bump generation
    let mut st = after.clone();
    st.data["spec"] = json!({"size": 100});
    st.data["status"] = json!({"matchedPods": 5});
    let after_status = api.replace_status("w", &PostParams::default(), &st).await.unwrap();
    assert_eq!(after_status.data["spec"]["size"], 2);
    assert_eq!(after_status.data["status"]["matchedPods"], 5);
    assert_eq!(after_status.metadata.generation, Some(2));

    // a merge patch of status on the main endpoint is ignored; on /status it applies
    let p =
        api.patch("w", &PatchParams::default(), &Patch::Merge(json!({"status": {"matchedPods": 1}}))).await.unwrap();
    assert_eq!(p.data["status"]["matchedPods"], 5);
    let p = api
        .patch_status("w", &PatchParams::default(), &Patch::Merge(json!({"status": {"matchedPods": 1}})))
        .await
        .unwrap();
    assert_eq!(p.data["status"]["matchedPods"], 1);

    // a no-op update does not bump the resourceVersion
    let rv = p.metadata.resource_version.clone();
    let same = api.patch("w", &PatchParams::default(), &Patch::Merge(json!({"spec": {"size": 2}}))).await.unwrap();
    assert_eq!(same.metadata.resource_version, rv);

    // custom objects require a resourceVersion on PUT
    let mut no_rv = same.clone();
    no_rv.metadata.resource_version = None;
    assert_eq!(code(&api.replace("w", &PostParams::default(), &no_rv).await.unwrap_err()), 422);
}

pub(crate) async fn pod_graceful_delete(server: Server) {
    let env = server.env().await;
    let ns = namespace(&env, "graceful").await;
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), &ns);
    // Not on a node: deleted at once, as kube-apiserver does (no kubelet to wait for).
    pod_from(&pods, test_pod("unbound", &[], &["app"], &[])).await;
    pods.delete("unbound", &DeleteParams::default()).await.unwrap();
    assert!(pods.get_opt("unbound").await.unwrap().is_none(), "an unbound Pod stays terminating");

    // On a node: terminating until the kubelet deletes it with grace period 0, however its
    // containers end and however long ago its grace period ran out.
    pod_from(&pods, test_pod("g", &[], &["app"], &["side"])).await;
    sidecar_watch_harness::kubelet::ensure_node(&env.client).await.unwrap();
    sidecar_watch_harness::kubelet::bind(&env.client, &ns, "g").await.unwrap();
    let again = sidecar_watch_harness::kubelet::bind(&env.client, &ns, "g").await.unwrap_err();
    assert!(matches!(again, sidecar_watch_harness::kubelet::KubeletError::Kube(ref e) if code(e) == 409), "{again:?}");
    let bound = pods.get("g").await.unwrap();
    let scheduled = bound.status.and_then(|s| s.conditions).unwrap_or_default();
    assert!(scheduled.iter().any(|c| c.type_ == "PodScheduled" && c.status == "True"), "{scheduled:?}");
    let driver = PodDriver::new(env.client.clone(), &ns, "g");
    driver.run_all().await.unwrap();
    let rv = pods.get("g").await.unwrap().metadata.resource_version.unwrap();
    let mut events = pods.watch(&WatchParams::default().fields("metadata.name=g"), &rv).await.unwrap().boxed();

    pods.delete("g", &DeleteParams::default().grace_period(1)).await.unwrap();
    let p = pods.get("g").await.unwrap();
    assert!(p.metadata.deletion_timestamp.is_some());
    assert_eq!(p.metadata.deletion_grace_period_seconds, Some(1));
    driver.set_state("app", State::terminated("Completed", 0)).await.unwrap();
    driver.set_state("side", State::terminated("Error", 137)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(pods.get("g").await.is_ok(), "gone before its kubelet deleted it");
    pods.delete("g", &DeleteParams::default().grace_period(0)).await.unwrap();
    wait_until(Duration::from_secs(5), "pod g gone", || async {
        match pods.get_opt("g").await {
            Ok(None) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await
    .unwrap();
    let mut saw_deleted = false;
    while let Ok(Some(ev)) = tokio::time::timeout(Duration::from_secs(2), events.try_next()).await.unwrap() {
        if let WatchEvent::Deleted(p) = ev {
            assert_eq!(p.metadata.name.as_deref(), Some("g"));
            saw_deleted = true;
            break;
        }
    }
    assert!(saw_deleted);
}
