//! Lists: pagination and label/field selectors, the resourceVersion semantics of a list,
//! metadata-only lists, gets and watches, and Events listed by reporting controller.

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{
    Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{json, Value};
use sidecar_watch_harness::env::wait_until;
use sidecar_watch_harness::kubelet::test_pod;

use crate::pod_from;
use sidecar_watch_harness::both_servers::{client_without_retries, latest_resource_version, namespace, raw, Server};

/// Pages are cut from one snapshot: the resourceVersion of the first page, as etcd serves
/// them (apiserver pkg/storage/etcd3/store.go, GetList: a continue token carries the revision).
/// `remainingItemCount` only without selectors (pkg/storage/continue.go, PrepareContinueToken).
pub(crate) async fn list_pagination_and_selectors(server: Server) {
    let env = server.env().await;
    let ns = namespace(&env, "paging").await;
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), &ns);
    for i in 0..7 {
        let tier = if i % 2 == 0 { "web" } else { "db" };
        let mut labels = vec![("app", "demo"), ("tier", tier)];
        if i == 0 {
            labels.push(("canary", "true"));
        }
        pod_from(&pods, test_pod(&format!("p{i}"), &labels, &["c"], &[])).await;
    }
    // pagination
    let mut names = Vec::new();
    let mut remaining = Vec::new();
    let mut lp = ListParams::default().limit(3);
    loop {
        let page = pods.list(&lp).await.unwrap();
        names.extend(page.items.iter().map(|p| p.metadata.name.clone().unwrap()));
        remaining.push(page.metadata.remaining_item_count);
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(c) => lp = ListParams::default().limit(3).continue_token(&c),
            None => break,
        }
    }
    assert_eq!(remaining, [Some(4), Some(1), None]);
    assert_eq!(names, (0..7).map(|i| format!("p{i}")).collect::<Vec<_>>());
    // A list continues at its first page's snapshot: an object created, changed or deleted
    // after that page is not seen by the next ones, nor counted.
    let first = pods.list(&ListParams::default().limit(3)).await.unwrap();
    pod_from(&pods, test_pod("p9", &[("app", "late")], &["c"], &[])).await;
    pods.delete("p4", &DeleteParams::default()).await.unwrap();
    pods.patch("p5", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"labels": {"late": "yes"}}})))
        .await
        .unwrap();
    let token = first.metadata.continue_.clone().unwrap();
    let second = pods.list(&ListParams::default().limit(3).continue_token(&token)).await.unwrap();
    assert_eq!(second.metadata.resource_version, first.metadata.resource_version);
    assert_eq!(second.metadata.remaining_item_count, Some(1));
    let second_names: Vec<_> = second.items.iter().filter_map(|p| p.metadata.name.clone()).collect();
    assert_eq!(second_names, ["p3", "p4", "p5"]);
    let p5 = second.items.iter().find(|p| p.metadata.name.as_deref() == Some("p5")).unwrap();
    assert!(!p5.metadata.labels.as_ref().unwrap().contains_key("late"), "p5 as it was at the snapshot");
    let token = second.metadata.continue_.clone().unwrap();
    let last = pods.list(&ListParams::default().limit(3).continue_token(&token)).await.unwrap();
    let last_names: Vec<_> = last.items.iter().filter_map(|p| p.metadata.name.clone()).collect();
    assert_eq!(last_names, ["p6"]);
    assert_eq!(last.metadata.remaining_item_count, None);
    let now: Vec<_> =
        pods.list(&ListParams::default()).await.unwrap().items.into_iter().filter_map(|p| p.metadata.name).collect();
    assert_eq!(now, ["p0", "p1", "p2", "p3", "p5", "p6", "p9"]);
    pods.delete("p9", &DeleteParams::default()).await.unwrap();
    pod_from(&pods, test_pod("p4", &[("app", "demo"), ("tier", "web")], &["c"], &[])).await;

    // With a selector, pages are as long as the limit, but nothing counts what is left.
    let page = pods.list(&ListParams::default().labels("tier=web").limit(2)).await.unwrap();
    assert_eq!(page.items.len(), 2);
    assert!(page.metadata.continue_.as_deref().is_some_and(|c| !c.is_empty()));
    assert_eq!(page.metadata.remaining_item_count, None);

    let count = |sel: &'static str| {
        let pods = pods.clone();
        async move { pods.list(&ListParams::default().labels(sel)).await.unwrap().items.len() }
    };
    assert_eq!(count("tier=web").await, 4);
    assert_eq!(count("tier!=web").await, 3);
    assert_eq!(count("tier in (web,db)").await, 7);
    assert_eq!(count("tier notin (web)").await, 3);
    assert_eq!(count("canary").await, 1);
    assert_eq!(count("!canary").await, 6);
    assert_eq!(count("app=demo,tier=db,!canary").await, 3);
    let by_name = pods.list(&ListParams::default().fields("metadata.name=p3")).await.unwrap();
    assert_eq!(by_name.items.len(), 1);
    let all: Api<Pod> = Api::all(env.client.clone());
    let by_ns = all.list(&ListParams::default().fields(&format!("metadata.namespace={ns}"))).await.unwrap();
    assert_eq!(by_ns.items.len(), 7);
    let none = all.list(&ListParams::default().fields(&format!("metadata.namespace={ns}-other"))).await.unwrap();
    assert!(none.items.is_empty());
    // A field the kind does not index is refused (pkg/registry/core/pod/strategy.go,
    // ToSelectableFields), where a selector on any path would silently match nothing.
    let err = pods.list(&ListParams::default().fields("spec.hostname=x")).await.unwrap_err();
    match &err {
        kube::Error::Api(s) => {
            assert_eq!((s.code, s.reason.as_str()), (400, "BadRequest"), "{s:?}");
            assert_eq!(s.message, "field label not supported: spec.hostname");
        }
        other => panic!("{other:?}"),
    }
    let running = pods.list(&ListParams::default().fields("status.phase=Running")).await.unwrap();
    assert!(running.items.is_empty());
}

/// `resourceVersion=0` lists ("any": on kube-apiserver, served from the watch cache) and
/// kube-apiserver's checks of `resourceVersionMatch`.
pub(crate) async fn list_resource_version_semantics(server: Server) {
    let env = server.env().await;
    let ns = namespace(&env, "rvmatch").await;
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), &ns);
    for name in ["a", "b", "c"] {
        pod_from(&pods, test_pod(name, &[], &["app"], &[])).await;
    }
    let current = latest_resource_version(&env.client, &ns).await;
    let get = |query: String| {
        let client = env.client.clone();
        let ns = ns.clone();
        async move { raw(&client, "GET", &format!("/api/v1/namespaces/{ns}/pods?{query}"), &[], None).await }
    };
    let names = |list: &Value| -> Vec<String> {
        list["items"].as_array().unwrap().iter().map(|p| p["metadata"]["name"].as_str().unwrap().to_string()).collect()
    };
    let rv_of_list = |list: &Value| -> u64 { list["metadata"]["resourceVersion"].as_str().unwrap().parse().unwrap() };
    // "Any": everything, at a version not older than the writes the watch cache has seen.
    // (The creates above were answered, so a watch cache may still lag behind them: wait.)
    wait_until(Duration::from_secs(10), "resourceVersion=0 lists every Pod", || async {
        let list =
            get("resourceVersion=0&resourceVersionMatch=NotOlderThan".into()).await.map_err(|e| e.to_string())?;
        match names(&list) == ["a", "b", "c"] {
            true => Ok(()),
            false => Err(list.to_string()),
        }
    })
    .await
    .unwrap();
    let list = get("resourceVersion=0".into()).await.unwrap();
    assert_eq!(names(&list), ["a", "b", "c"]);
    // The watch cache ignores a limit at "0" (apiserver pkg/storage/cacher/cacher.go,
    // computeListLimit): everything in one page.
    let list = get("resourceVersion=0&limit=2".into()).await.unwrap();
    assert_eq!(names(&list), ["a", "b", "c"]);
    assert!(list["metadata"].get("continue").is_none(), "{list}");
    // kube's "any" semantic as the operator sends it (no limit, so kube keeps resourceVersion=0).
    let listed = pods.list(&ListParams::default().match_any()).await.unwrap();
    assert_eq!(listed.items.len(), 3);
    // Not older than a version the server has: served at that version or later.
    let list = get(format!("resourceVersion={}&resourceVersionMatch=NotOlderThan", current - 1)).await.unwrap();
    assert!(rv_of_list(&list) >= current - 1, "{list}");
    assert_eq!(names(&list), ["a", "b", "c"]);
    // Not older than a version the server has not reached: 504 Timeout (asked without kube's
    // retries). kube-apiserver waits 3 s for it first (apiserver pkg/storage/cacher/watch_cache.go,
    // waitUntilFreshAndBlock), the simulator answers at once.
    let no_retries = client_without_retries(&env).await;
    let too_large = current + 1_000_000;
    let path = format!("/api/v1/namespaces/{ns}/pods?resourceVersion={too_large}&resourceVersionMatch=NotOlderThan");
    match raw(&no_retries, "GET", &path, &[], None).await.unwrap_err() {
        kube::Error::Api(s) => {
            assert_eq!((s.code, s.reason.as_str()), (504, "Timeout"), "{s:?}");
            let prefix = format!("Timeout: Too large resource version: {too_large}, current: ");
            let server_current: u64 = s
                .message
                .strip_prefix(&prefix)
                .and_then(|c| c.parse().ok())
                .unwrap_or_else(|| panic!("{:?} is not {prefix:?} and a number", s.message));
            assert!(server_current >= current, "{s:?}");
        }
        other => panic!("{other:?}"),
    }
    // resourceVersionMatch needs a resourceVersion, and "Exact" one other than "0".
    for (query, detail) in [
        ("resourceVersionMatch=NotOlderThan", "resourceVersionMatch is forbidden unless resourceVersion is provided"),
        (
            "resourceVersion=0&resourceVersionMatch=Exact",
            "resourceVersionMatch \"exact\" is forbidden for resourceVersion \"0\"",
        ),
    ] {
        match get(query.into()).await.unwrap_err() {
            kube::Error::Api(s) => {
                assert_eq!((s.code, s.reason.as_str()), (422, "Invalid"), "{query}");
                assert_eq!(
                    s.message,
                    format!("ListOptions.meta.k8s.io \"\" is invalid: resourceVersionMatch: Forbidden: {detail}")
                );
            }
            other => panic!("{query}: {other:?}"),
        }
    }
}

/// Metadata only (`PartialObjectMetadata`), as the operator watches Namespaces: lists, gets
/// and watches, bookmarks included.
pub(crate) async fn metadata_only_lists_gets_and_watches(server: Server) {
    use k8s_openapi::api::core::v1::Namespace;
    let env = server.env().await;
    let ns = namespace(&env, "meta").await;
    let namespaces: Api<Namespace> = Api::all(env.client.clone());
    let one = namespaces.get_metadata(&ns).await.unwrap();
    assert_eq!(
        (one.types.as_ref().map(|t| t.kind.as_str()), one.metadata.name.as_deref()),
        (Some("PartialObjectMetadata"), Some(ns.as_str()))
    );
    assert_eq!(one.metadata.labels.unwrap()["kubernetes.io/metadata.name"], ns);
    let list = namespaces.list_metadata(&ListParams::default().fields(&format!("metadata.name={ns}"))).await.unwrap();
    let names: Vec<String> = list.items.into_iter().filter_map(|n| n.metadata.name).collect();
    assert_eq!(names, std::slice::from_ref(&ns));
    let raw_list = raw(
        &env.client,
        "GET",
        &format!("/api/v1/namespaces?fieldSelector=metadata.name%3D{ns}"),
        &[("accept", "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1")],
        None,
    )
    .await
    .unwrap();
    assert_eq!(
        (&raw_list["kind"], &raw_list["apiVersion"]),
        (&json!("PartialObjectMetadataList"), &json!("meta.k8s.io/v1"))
    );
    assert!(raw_list["items"][0].get("spec").is_none(), "{raw_list}");
    let wp = WatchParams::default().fields(&format!("metadata.name={ns}")).timeout(3);
    let mut stream = namespaces.watch_metadata(&wp, "0").await.unwrap().boxed();
    match stream.try_next().await.unwrap() {
        Some(WatchEvent::Added(n)) => assert_eq!(n.metadata.name.as_deref(), Some(ns.as_str())),
        other => panic!("{other:?}"),
    }
    match stream.try_next().await.unwrap() {
        Some(WatchEvent::Bookmark(b)) => assert_eq!(b.types.kind, "PartialObjectMetadata"),
        other => panic!("{other:?}"),
    }
}

/// Events as the operator writes and finds them: `events.k8s.io/v1`, listed by
/// `reportingController` (a field events.k8s.io maps to the core Event's
/// `reportingComponent`, pkg/apis/events/v1/conversion.go).
pub(crate) async fn events_by_reporting_controller(server: Server) {
    let env = server.env().await;
    let ns = namespace(&env, "events").await;
    let resource = ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("events.k8s.io", "v1", "Event"), "events");
    let events: Api<DynamicObject> = Api::namespaced_with(env.client.clone(), &ns, &resource);
    for (name, controller) in [("a", "sidecar-watch"), ("b", "someone-else")] {
        let event: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": name},
            "eventTime": "2025-01-01T00:00:00.000000Z", "reportingController": controller,
            "reportingInstance": format!("{controller}-0"), "action": "Observe", "reason": "Test",
            "type": "Warning", "note": "hello",
            "regarding": {"apiVersion": "v1", "kind": "Pod", "name": "p", "namespace": ns}
        }))
        .unwrap();
        events.create(&PostParams::default(), &event).await.unwrap();
    }
    let ours = events.list(&ListParams::default().fields("reportingController=sidecar-watch")).await.unwrap();
    let names: Vec<_> = ours.items.iter().filter_map(|e| e.metadata.name.clone()).collect();
    assert_eq!(names, ["a"]);
    assert_eq!((&ours.items[0].data["note"], &ours.items[0].data["regarding"]["name"]), (&json!("hello"), &json!("p")));
    match events.list(&ListParams::default().fields("message=hello")).await.unwrap_err() {
        kube::Error::Api(s) => assert_eq!((s.code, s.message.as_str()), (400, "field label not supported: message")),
        other => panic!("{other:?}"),
    }
}

/// Core `v1` Events selected by `reason`, as the operator's `FailedCreate` watch asks for
/// them; a field kube-apiserver does not select core Events by is refused naming it.
pub(crate) async fn core_events_by_reason(server: Server) {
    let env = server.env().await;
    let ns = namespace(&env, "core-events").await;
    let resource = ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("", "v1", "Event"), "events");
    let events: Api<DynamicObject> = Api::namespaced_with(env.client.clone(), &ns, &resource);
    for (name, reason) in [("a", "FailedCreate"), ("b", "SuccessfulCreate")] {
        let event: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Event", "metadata": {"name": name},
            "reason": reason, "type": "Warning", "message": "Error creating: denied",
            "involvedObject": {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-1", "namespace": ns},
            "source": {"component": "replicaset-controller"}
        }))
        .unwrap();
        events.create(&PostParams::default(), &event).await.unwrap();
    }
    let failed = events.list(&ListParams::default().fields("reason=FailedCreate")).await.unwrap();
    let names: Vec<_> = failed.items.iter().filter_map(|e| e.metadata.name.clone()).collect();
    assert_eq!(names, ["a"]);
    assert_eq!(failed.items[0].data["involvedObject"]["name"], json!("web-1"));
    match events.list(&ListParams::default().fields("note=x")).await.unwrap_err() {
        kube::Error::Api(s) => assert_eq!((s.code, s.message.as_str()), (400, "field label not supported: note")),
        other => panic!("{other:?}"),
    }
}
