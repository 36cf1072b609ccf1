//! REST semantics the simulator serves, each checked against the simulator and against
//! kube-apiserver (`<test>::simulator`, `<test>::kube_apiserver`): what a test asserts here
//! is what kube-apiserver does. The simulator-only controls (injected failures, counters)
//! have their own tests, which say why they run on the simulator alone.
//!
//! One module per API area; the behaviours are listed here, so that each test keeps its
//! name (`<behaviour>::simulator`, `<behaviour>::kube_apiserver`).

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{json, Value};
use sidecar_watch_harness::both_servers::{raw, Server};
use sidecar_watch_harness::kubelet::test_pod;
use sidecar_watch_harness::on_both_servers;

mod lists;
mod objects;
mod patches;
mod watches;

use lists::{
    core_events_by_reason, events_by_reporting_controller, list_pagination_and_selectors,
    list_resource_version_semantics, metadata_only_lists_gets_and_watches,
};
use objects::{
    crud_and_stale_resource_version_conflict, pod_graceful_delete, status_subresource_semantics_and_generation,
};
use patches::{merge_strategic_and_apply_patches, server_side_apply_with_force};
use watches::{compacted_resource_versions_expire, watch_from_resource_version_with_bookmarks};

on_both_servers!(
    crud_and_stale_resource_version_conflict,
    list_pagination_and_selectors,
    watch_from_resource_version_with_bookmarks,
    compacted_resource_versions_expire,
    status_subresource_semantics_and_generation,
    merge_strategic_and_apply_patches,
    metadata_only_lists_gets_and_watches,
    server_side_apply_with_force,
    pod_graceful_delete,
    list_resource_version_semantics,
    events_by_reporting_controller,
    core_events_by_reason,
);

fn widget_api(client: &kube::Client, ns: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("e2e.sidecarwatch.io", "v1alpha1", "Widget");
    let ar = ApiResource::from_gvk_with_plural(&gvk, "widgets");
    Api::namespaced_with(client.clone(), ns, &ar)
}

async fn pod_from(api: &Api<Pod>, v: Value) -> Pod {
    let pod: Pod = serde_json::from_value(v).expect("valid pod");
    api.create(&PostParams::default(), &pod).await.expect("pod created")
}

/// Creates the Pod `w` and labels it once; returns the resourceVersion of its creation.
async fn created_then_labelled(pods: &Api<Pod>) -> String {
    let p = pod_from(pods, test_pod("w", &[("app", "w")], &["c"], &[])).await;
    let rv0 = p.metadata.resource_version.clone().expect("a resourceVersion");
    pods.patch("w", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"labels": {"step": "1"}}})))
        .await
        .expect("labelled");
    rv0
}

fn rv_of(pod: &Pod) -> u64 {
    pod.metadata.resource_version.as_deref().expect("a resourceVersion").parse().expect("a number")
}

/// What kube-apiserver serves and the simulator refuses rather than do its own way, since
/// nothing that runs on it needs it: JSON patches (415 Unsupported Media Type) and `Table`s
/// (406 Not Acceptable, unless the client accepts plain JSON too, as kubectl does).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_the_simulator_does_not_serve() {
    let env = Server::Simulator.env().await;
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), "default");
    pod_from(&pods, test_pod("p", &[("a", "1")], &["app"], &[])).await;
    let path = "/api/v1/namespaces/default/pods/p";
    let json_patch = json!([{"op": "add", "path": "/metadata/annotations", "value": {"k": "v"}}]);
    match raw(&env.client, "PATCH", path, &[("content-type", "application/json-patch+json")], Some(json_patch))
        .await
        .unwrap_err()
    {
        kube::Error::Api(s) => assert_eq!((s.code, s.reason.as_str()), (415, "UnsupportedMediaType"), "{s:?}"),
        other => panic!("{other:?}"),
    }
    let table = "application/json;as=Table;v=v1;g=meta.k8s.io";
    match raw(&env.client, "GET", path, &[("accept", table)], None).await.unwrap_err() {
        kube::Error::Api(s) => assert_eq!((s.code, s.reason.as_str()), (406, "NotAcceptable"), "{s:?}"),
        other => panic!("{other:?}"),
    }
    let pod = raw(&env.client, "GET", path, &[("accept", &format!("{table},application/json"))], None).await.unwrap();
    assert_eq!((&pod["kind"], &pod["metadata"]["name"]), (&json!("Pod"), &json!("p")));
}
