//! REST semantics the simulator serves, each checked against the simulator and against
//! kube-apiserver (`<test>::simulator`, `<test>::kube_apiserver`): what a test asserts here
//! is what kube-apiserver does. The simulator-only controls (injected failures, counters)
//! have their own tests, which say why they run on the simulator alone.

#[macro_use]
mod sim_common;

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{
    Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::core::{ApiResource, GroupVersionKind};
use kube::discovery::{Discovery, Scope};
use serde_json::{json, Value};
use sidecar_watch_e2e::harness::wait_until;
use sidecar_watch_e2e::kubelet::{test_pod, PodDriver, State};
use sim_common::{client_without_retries, code, compact, fixtures, latest_resource_version, namespace, raw, Server};

on_both_servers!(
    crud_and_stale_resource_version_conflict,
    list_pagination_and_selectors,
    watch_from_resource_version_with_bookmarks,
    compacted_resource_versions_expire,
    status_subresource_semantics_and_generation,
    merge_strategic_and_apply_patches,
    metadata_only_lists_gets_and_watches,
    server_side_apply_conflicts_and_force,
    pod_graceful_delete,
    discovery_documents,
    list_resource_version_semantics,
    events_by_reporting_controller,
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

async fn crud_and_stale_resource_version_conflict(server: Server) {
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

/// Pages are cut from one snapshot: the resourceVersion of the first page, as etcd serves
/// them (apiserver pkg/storage/etcd3/store.go, GetList: a continue token carries the revision).
/// `remainingItemCount` only without selectors (pkg/storage/continue.go, PrepareContinueToken).
async fn list_pagination_and_selectors(server: Server) {
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

/// A watch from a resourceVersion replays what changed since, then bookmarks (kube-apiserver
/// sends one 2 s before `timeoutSeconds` ends, apiserver pkg/storage/cacher/cache_watcher.go,
/// nextBookmarkTime); "0" starts with the current objects; `sendInitialEvents` ends its
/// initial objects with the `k8s.io/initial-events-end` bookmark.
async fn watch_from_resource_version_with_bookmarks(server: Server) {
    let env = server.env().await;
    let ns = namespace(&env, "watch").await;
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), &ns);
    let rv0 = created_then_labelled(&pods).await;

    // A watch from rv0 replays the modification. A bookmark follows once the server has
    // moved past it (here a Pod elsewhere), before the watch times out.
    let mut stream = pods.watch(&WatchParams::default().timeout(5), &rv0).await.unwrap().boxed();
    match tokio::time::timeout(Duration::from_secs(10), stream.try_next()).await.unwrap().unwrap() {
        Some(WatchEvent::Modified(p)) => assert_eq!(p.metadata.labels.unwrap()["step"], "1"),
        other => panic!("expected the replayed change, got {other:?}"),
    }
    let elsewhere = namespace(&env, "watch-elsewhere").await;
    let moved =
        rv_of(&pod_from(&Api::namespaced(env.client.clone(), &elsewhere), test_pod("x", &[], &["c"], &[])).await);
    match tokio::time::timeout(Duration::from_secs(10), stream.try_next()).await.unwrap().unwrap() {
        Some(WatchEvent::Bookmark(b)) => {
            let at: u64 = b.metadata.resource_version.parse().unwrap();
            assert!(at >= moved, "a bookmark at {at}, before the write at {moved}");
        }
        other => panic!("expected a bookmark, got {other:?}"),
    }

    // A watch from "0" starts with the objects as ADDED events and, since the WatchList
    // feature gate defaults such a watch to a streaming list (apimachinery
    // pkg/apis/meta/internalversion/defaults.go, SetListOptionsDefaults), ends them with the
    // initial-events-end bookmark.
    let mut stream = pods.watch(&WatchParams::default().timeout(2), "0").await.unwrap().boxed();
    match stream.try_next().await.unwrap() {
        Some(WatchEvent::Added(p)) => assert_eq!(p.metadata.name.as_deref(), Some("w")),
        other => panic!("unexpected {other:?}"),
    }
    match stream.try_next().await.unwrap() {
        Some(WatchEvent::Bookmark(b)) => {
            assert_eq!(b.metadata.annotations.get("k8s.io/initial-events-end").map(String::as_str), Some("true"))
        }
        other => panic!("{other:?}"),
    }
    // timeoutSeconds closes the stream
    let started = std::time::Instant::now();
    while tokio::time::timeout(Duration::from_secs(10), stream.try_next()).await.unwrap().unwrap().is_some() {}
    assert!(started.elapsed() < Duration::from_secs(5));

    // sendInitialEvents streaming list
    let mut stream = pods.watch(&WatchParams::streaming_lists().timeout(5), "").await.unwrap().boxed();
    assert!(matches!(stream.try_next().await.unwrap(), Some(WatchEvent::Added(_))));
    match stream.try_next().await.unwrap() {
        Some(WatchEvent::Bookmark(b)) => {
            assert_eq!(b.metadata.annotations.get("k8s.io/initial-events-end").map(String::as_str), Some("true"))
        }
        other => panic!("{other:?}"),
    }

    // A watch with a label selector sees an object enter it as ADDED and leave it as DELETED.
    let from = pods.get("w").await.unwrap().metadata.resource_version.unwrap();
    let selected = WatchParams::default().labels("step=2").timeout(5);
    let mut stream = pods.watch(&selected, &from).await.unwrap().boxed();
    for (step, want) in [("2", "ADDED"), ("3", "DELETED")] {
        let labels = json!({"metadata": {"labels": {"step": step}}});
        pods.patch("w", &PatchParams::default(), &Patch::Merge(labels)).await.unwrap();
        let event = tokio::time::timeout(Duration::from_secs(10), stream.try_next()).await.unwrap().unwrap();
        let (got, name) = match event {
            Some(WatchEvent::Added(p)) => ("ADDED", p.metadata.name),
            Some(WatchEvent::Deleted(p)) => ("DELETED", p.metadata.name),
            other => panic!("{other:?}"),
        };
        assert_eq!((got, name.as_deref()), (want, Some("w")), "step {step}");
    }
}

/// Events as the operator writes and finds them: `events.k8s.io/v1`, listed by
/// `reportingController` (a field events.k8s.io maps to the core Event's
/// `reportingComponent`, pkg/apis/events/v1/conversion.go).
async fn events_by_reporting_controller(server: Server) {
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

/// Once the history is compacted, a watch from an older resourceVersion gets one ERROR event,
/// 410 Expired, and an exact list at it 410 too.
async fn compacted_resource_versions_expire(server: Server) {
    let env = server.own_env().await;
    let ns = namespace(&env, "expiry").await;
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), &ns);
    let rv0 = created_then_labelled(&pods).await;
    compact(&env).await;
    let mut stream = pods.watch(&WatchParams::default(), &rv0).await.unwrap().boxed();
    match stream.try_next().await.unwrap() {
        Some(WatchEvent::Error(e)) => {
            assert_eq!((e.code, e.reason.as_str()), (410, "Expired"), "{e:?}");
            assert!(e.message.starts_with(&format!("too old resource version: {rv0} (")), "{e:?}");
        }
        other => panic!("expected 410 ERROR event, got {other:?}"),
    }
    let err = raw(
        &env.client,
        "GET",
        &format!("/api/v1/namespaces/{ns}/pods?resourceVersion={rv0}&resourceVersionMatch=Exact"),
        &[],
        None,
    )
    .await
    .unwrap_err();
    assert_eq!(code(&err), 410, "{err:?}");
}

async fn status_subresource_semantics_and_generation(server: Server) {
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

/// Merge patches, strategic merge patches and server-side apply: the patch types the
/// operator, kube-lease-manager (strategic, on Leases), kubectl apply `--server-side` and the
/// suite send (the simulator answers JSON patches with 415, see
/// `what_the_simulator_does_not_serve`).
async fn merge_strategic_and_apply_patches(server: Server) {
    let env = server.env().await;
    let ns = namespace(&env, "patch").await;
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), &ns);
    pod_from(&pods, test_pod("p", &[("a", "1")], &["app", "other"], &["side"])).await;

    let p = pods
        .patch("p", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"labels": {"b": "2", "a": null}}})))
        .await
        .unwrap();
    let labels = p.metadata.labels.unwrap();
    assert_eq!((labels.get("a"), labels.get("b").map(String::as_str)), (None, Some("2")));

    // strategic merge: containers merged by name
    let p = pods
        .patch(
            "p",
            &PatchParams::default(),
            &Patch::Strategic(json!({"spec": {"containers": [{"name": "other", "image": "new"}]}})),
        )
        .await
        .unwrap();
    let images: Vec<_> =
        p.spec.unwrap().containers.into_iter().map(|c| (c.name, c.image.unwrap_or_default())).collect();
    assert_eq!(images, [("app".to_string(), "busybox".to_string()), ("other".to_string(), "new".to_string())]);
    // strategic merge on status: conditions merged by type, container statuses replaced
    // (`+listType=atomic` in k8s.io/api core/v1 types.go)
    let driver = PodDriver::new(env.client.clone(), &ns, "p");
    driver.run_all().await.unwrap();
    let p = pods
        .patch_status(
            "p",
            &PatchParams::default(),
            &Patch::Strategic(json!({"status": {
                "containerStatuses": [{"name": "app", "ready": false}],
                "conditions": [{"type": "Ready", "status": "False"}]
            }})),
        )
        .await
        .unwrap();
    let st = p.status.unwrap();
    let ready: Vec<_> = st.container_statuses.unwrap().into_iter().map(|c| (c.name, c.ready)).collect();
    assert_eq!(ready, [("app".to_string(), false)]);
    let mut conditions: Vec<_> = st.conditions.unwrap().into_iter().map(|c| (c.type_, c.status)).collect();
    conditions.sort();
    let want = [
        ("ContainersReady", "True"),
        ("Initialized", "True"),
        ("PodReadyToStartContainers", "True"),
        ("PodScheduled", "True"),
        ("Ready", "False"),
    ];
    assert_eq!(conditions, want.map(|(t, s)| (t.to_string(), s.to_string())));
    assert_eq!(st.init_container_statuses.unwrap().len(), 1);

    // apply (YAML body)
    let yaml = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  labels:\n    applied: \"yes\"\n";
    let req = http::Request::builder()
        .method("PATCH")
        .uri(format!("/api/v1/namespaces/{ns}/pods/p?fieldManager=yaml-applier"))
        .header("content-type", "application/apply-patch+yaml")
        .body(yaml.as_bytes().to_vec())
        .unwrap();
    let v: Value = env.client.request(req).await.unwrap();
    assert_eq!(v["metadata"]["labels"]["applied"], "yes");
    let managers: Vec<&str> =
        v["metadata"]["managedFields"].as_array().unwrap().iter().map(|m| m["manager"].as_str().unwrap()).collect();
    assert!(managers.contains(&"yaml-applier"), "{managers:?}");
    // apply without fieldManager is rejected
    let req = http::Request::builder()
        .method("PATCH")
        .uri(format!("/api/v1/namespaces/{ns}/pods/p"))
        .header("content-type", "application/apply-patch+yaml")
        .body(yaml.as_bytes().to_vec())
        .unwrap();
    let err = env.client.request::<Value>(req).await.unwrap_err();
    assert_eq!(code(&err), 422);
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

/// Metadata only (`PartialObjectMetadata`), as the operator watches Namespaces: lists, gets
/// and watches, bookmarks included.
async fn metadata_only_lists_gets_and_watches(server: Server) {
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

async fn server_side_apply_conflicts_and_force(server: Server) {
    let env = server.env().await;
    let ns = namespace(&env, "ssa").await;
    env.install_crds(&fixtures().join("widgets-crd.yaml")).await.unwrap();
    let api = widget_api(&env.client, &ns);
    let obj = |size: i64| json!({"apiVersion": "e2e.sidecarwatch.io/v1alpha1", "kind": "Widget", "metadata": {"name": "s"}, "spec": {"size": size}});
    // apply creates
    let created = api.patch("s", &PatchParams::apply("alice"), &Patch::Apply(obj(1))).await.unwrap();
    assert_eq!(created.data["spec"]["size"], 1);
    // same value from another manager: shared, no conflict
    api.patch("s", &PatchParams::apply("bob"), &Patch::Apply(obj(1))).await.unwrap();
    // alice changes its own field while bob co-owns it → conflict with bob
    let err = api.patch("s", &PatchParams::apply("alice"), &Patch::Apply(obj(2))).await.unwrap_err();
    assert_eq!(code(&err), 409);
    match &err {
        kube::Error::Api(s) => {
            assert_eq!(s.message, "Apply failed with 1 conflict: conflict with \"bob\": .spec.size")
        }
        _ => unreachable!(),
    }
    // carol conflicts with both; force takes ownership
    assert_eq!(code(&api.patch("s", &PatchParams::apply("carol"), &Patch::Apply(obj(3))).await.unwrap_err()), 409);
    let forced = api.patch("s", &PatchParams::apply("carol").force(), &Patch::Apply(obj(3))).await.unwrap();
    assert_eq!(forced.data["spec"]["size"], 3);
    // Ownership is per field: carol took `spec.size`; alice and bob keep `spec` itself.
    let mut owned: Vec<(String, Value)> = forced
        .metadata
        .managed_fields
        .unwrap()
        .into_iter()
        .map(|m| (m.manager.unwrap_or_default(), m.fields_v1.map(|f| f.0).unwrap_or_default()))
        .collect();
    owned.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        owned,
        [
            ("alice".to_string(), json!({"f:spec": {}})),
            ("bob".to_string(), json!({"f:spec": {}})),
            ("carol".to_string(), json!({"f:spec": {".": {}, "f:size": {}}})),
        ]
    );
    // an update (merge patch) takes ownership without conflict, then apply conflicts with it
    api.patch("s", &PatchParams::default(), &Patch::Merge(json!({"spec": {"size": 4}}))).await.unwrap();
    assert_eq!(code(&api.patch("s", &PatchParams::apply("carol"), &Patch::Apply(obj(5))).await.unwrap_err()), 409);
    // status applied through /status by a controller
    let st = json!({"apiVersion": "e2e.sidecarwatch.io/v1alpha1", "kind": "Widget", "metadata": {"name": "s"}, "status": {"matchedPods": 2}});
    let s = api.patch_status("s", &PatchParams::apply("controller"), &Patch::Apply(st)).await.unwrap();
    assert_eq!(s.data["status"]["matchedPods"], 2);
    assert_eq!(s.data["spec"]["size"], 4);
}

async fn pod_graceful_delete(server: Server) {
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
    sidecar_watch_e2e::kubelet::ensure_node(&env.client).await.unwrap();
    sidecar_watch_e2e::kubelet::bind(&env.client, &ns, "g").await.unwrap();
    let again = sidecar_watch_e2e::kubelet::bind(&env.client, &ns, "g").await.unwrap_err();
    assert!(matches!(again, sidecar_watch_e2e::kubelet::KubeletError::Kube(ref e) if code(e) == 409), "{again:?}");
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

/// Discovery of built-in and CRD-defined kinds; deleting the CRD stops serving its kind.
async fn discovery_documents(server: Server) {
    let env = server.own_env().await;
    env.install_crds(&fixtures().join("widgets-crd.yaml")).await.unwrap();
    let discovery = Discovery::new(env.client.clone()).run().await.unwrap();
    let mut found = Vec::new();
    for group in discovery.groups() {
        for (ar, caps) in group.recommended_resources() {
            found.push((ar.group.clone(), ar.plural.clone(), caps.scope == Scope::Namespaced));
        }
    }
    for want in [
        ("", "pods", true),
        ("", "namespaces", false),
        ("", "nodes", false),
        ("events.k8s.io", "events", true),
        ("coordination.k8s.io", "leases", true),
        ("apiextensions.k8s.io", "customresourcedefinitions", false),
        ("e2e.sidecarwatch.io", "widgets", true),
        ("e2e.sidecarwatch.io", "clusterwidgets", false),
    ] {
        let want = (want.0.to_string(), want.1.to_string(), want.2);
        assert!(found.contains(&want), "{want:?} not in {found:?}");
    }
    let core = raw(&env.client, "GET", "/api/v1", &[], None).await.unwrap();
    let names: Vec<&str> = core["resources"].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap()).collect();
    for sub in ["pods/status", "pods/binding"] {
        assert!(names.contains(&sub), "{sub} not in {names:?}");
    }
    let g = raw(&env.client, "GET", "/apis/e2e.sidecarwatch.io/v1alpha1", &[], None).await.unwrap();
    let w = g["resources"].as_array().unwrap().iter().find(|r| r["name"] == "widgets").unwrap().clone();
    assert_eq!(w["shortNames"], json!(["wdg"]));
    assert_eq!(w["singularName"], "widget");
    assert_eq!(w["kind"], "Widget");
    let v = raw(&env.client, "GET", "/version", &[], None).await.unwrap();
    assert_eq!(v["major"], "1");

    // Deleting the CRD stops serving the resource (once its objects are gone: at once on the
    // simulator, after the CRD's finalizer on kube-apiserver).
    let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
        Api::all(env.client.clone());
    crds.delete("widgets.e2e.sidecarwatch.io", &DeleteParams::default()).await.unwrap();
    wait_until(Duration::from_secs(30), "widgets no longer served", || async {
        match raw(&env.client, "GET", "/apis/e2e.sidecarwatch.io/v1alpha1/widgets", &[], None).await {
            Err(e) if code(&e) == 404 => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await
    .unwrap();
}

/// `resourceVersion=0` lists ("any": on kube-apiserver, served from the watch cache) and
/// kube-apiserver's checks of `resourceVersionMatch`.
async fn list_resource_version_semantics(server: Server) {
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
