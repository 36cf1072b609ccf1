//! REST semantics of the API-server simulator.

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
use sim_common::{code, fixtures, raw, sim_env};

fn widget_api(client: &kube::Client, ns: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("e2e.sidecarwatch.io", "v1alpha1", "Widget");
    let ar = ApiResource::from_gvk_with_plural(&gvk, "widgets");
    Api::namespaced_with(client.clone(), ns, &ar)
}

async fn pod_from(api: &Api<Pod>, v: Value) -> Pod {
    let pod: Pod = serde_json::from_value(v).expect("valid pod");
    api.create(&PostParams::default(), &pod).await.expect("pod created")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crud_and_stale_resource_version_conflict() {
    let env = sim_env().await;
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), "default");
    let mut v = test_pod("", &[("app", "a")], &["app"], &[]);
    v["metadata"] = json!({"generateName": "gen-"});
    let created = pod_from(&pods, v).await;
    let name = created.metadata.name.clone().unwrap();
    assert!(name.starts_with("gen-") && name.len() == 9, "{name}");
    assert!(created.metadata.uid.is_some());
    assert!(created.metadata.creation_timestamp.is_some());
    assert_eq!(created.metadata.generation, Some(1));
    assert_eq!(created.metadata.namespace.as_deref(), Some("default"));
    assert_eq!(created.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Pending"));
    let rv1: u64 = created.metadata.resource_version.clone().unwrap().parse().unwrap();

    // AlreadyExists
    let err = pods.create(&PostParams::default(), &created).await.unwrap_err();
    assert_eq!(code(&err), 409);

    // update bumps RV; stale RV conflicts
    let mut updated = created.clone();
    updated.metadata.labels.get_or_insert_with(Default::default).insert("x".into(), "y".into());
    let updated = pods.replace(&name, &PostParams::default(), &updated).await.unwrap();
    let rv2: u64 = updated.metadata.resource_version.clone().unwrap().parse().unwrap();
    assert!(rv2 > rv1);
    let err = pods.replace(&name, &PostParams::default(), &created).await.unwrap_err();
    assert_eq!(code(&err), 409);
    match &err {
        kube::Error::Api(s) => assert_eq!(s.reason, "Conflict"),
        _ => unreachable!(),
    }

    // namespace must exist
    let other: Api<Pod> = Api::namespaced(env.client.clone(), "nope");
    let err = other.create(&PostParams::default(), &created).await.unwrap_err();
    assert_eq!(code(&err), 404);

    // get / 404 / list RV
    assert_eq!(pods.get(&name).await.unwrap().metadata.labels.unwrap()["x"], "y");
    assert_eq!(code(&pods.get("missing").await.unwrap_err()), 404);
    let list = pods.list(&ListParams::default()).await.unwrap();
    assert_eq!(list.metadata.resource_version, Some(env.require_sim().unwrap().resource_version().to_string()));

    // Status shape of errors
    let err = raw(&env.client, "GET", "/api/v1/namespaces/default/pods/missing", &[], None).await.unwrap_err();
    match err {
        kube::Error::Api(s) => {
            assert_eq!((s.code, s.reason.as_str()), (404, "NotFound"));
            assert_eq!(s.message, "pods \"missing\" not found");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_pagination_and_selectors() {
    let env = sim_env().await;
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), "default");
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
    // An object created after the first page is listed and counted on the next one.
    let first = pods.list(&ListParams::default().limit(3)).await.unwrap();
    pod_from(&pods, test_pod("p9", &[("app", "late")], &["c"], &[])).await;
    let token = first.metadata.continue_.clone().unwrap();
    let second = pods.list(&ListParams::default().limit(3).continue_token(&token)).await.unwrap();
    assert_eq!(second.metadata.remaining_item_count, Some(2));
    let token = second.metadata.continue_.clone().unwrap();
    let last = pods.list(&ListParams::default().limit(3).continue_token(&token)).await.unwrap();
    let last_names: Vec<_> = last.items.iter().filter_map(|p| p.metadata.name.clone()).collect();
    assert_eq!(last_names, ["p6", "p9"]);
    assert_eq!(last.metadata.remaining_item_count, None);
    pods.delete("p9", &DeleteParams::default().grace_period(0)).await.unwrap();

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
    let by_ns = all.list(&ListParams::default().fields("metadata.namespace=default")).await.unwrap();
    assert_eq!(by_ns.items.len(), 7);
    let none = all.list(&ListParams::default().fields("metadata.namespace=other")).await.unwrap();
    assert!(none.items.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_from_resource_version_bookmarks_and_expiry() {
    let env = sim_env().await;
    let sim = env.require_sim().unwrap();
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), "default");
    let p = pod_from(&pods, test_pod("w", &[("app", "w")], &["c"], &[])).await;
    let rv0 = p.metadata.resource_version.clone().unwrap();
    pods.patch("w", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"labels": {"step": "1"}}})))
        .await
        .unwrap();

    // watch from rv0 replays the modification, then sends bookmarks
    let wp = WatchParams::default().timeout(10);
    let mut stream = pods.watch(&wp, &rv0).await.unwrap().boxed();
    let mut saw_modified = false;
    let mut saw_bookmark = false;
    while let Some(ev) = tokio::time::timeout(Duration::from_secs(10), stream.try_next()).await.unwrap().unwrap() {
        match ev {
            WatchEvent::Modified(p) => {
                assert_eq!(p.metadata.labels.unwrap()["step"], "1");
                saw_modified = true;
            }
            WatchEvent::Bookmark(b) => {
                assert!(saw_modified, "bookmark before replayed event");
                assert!(!b.metadata.resource_version.is_empty());
                saw_bookmark = true;
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(saw_modified && saw_bookmark);

    // watch with resourceVersion "0" starts with synthetic ADDED events
    let mut stream = pods.watch(&WatchParams::default().timeout(2), "0").await.unwrap().boxed();
    match stream.try_next().await.unwrap() {
        Some(WatchEvent::Added(p)) => assert_eq!(p.metadata.name.as_deref(), Some("w")),
        other => panic!("unexpected {other:?}"),
    }
    // timeoutSeconds closes the stream
    let started = std::time::Instant::now();
    while tokio::time::timeout(Duration::from_secs(10), stream.try_next()).await.unwrap().unwrap().is_some() {}
    assert!(started.elapsed() < Duration::from_secs(5));

    // compaction → 410 for old resource versions
    sim.compact();
    let mut stream = pods.watch(&WatchParams::default(), &rv0).await.unwrap().boxed();
    match stream.try_next().await.unwrap() {
        Some(WatchEvent::Error(e)) => {
            assert_eq!(e.code, 410);
            assert_eq!(e.reason, "Expired");
        }
        other => panic!("expected 410 ERROR event, got {other:?}"),
    }
    let err = raw(
        &env.client,
        "GET",
        &format!("/api/v1/namespaces/default/pods?resourceVersion={rv0}&resourceVersionMatch=Exact"),
        &[],
        None,
    )
    .await
    .unwrap_err();
    assert_eq!(code(&err), 410);

    // sendInitialEvents streaming list
    let mut stream = pods.watch(&WatchParams::streaming_lists().timeout(5), "").await.unwrap().boxed();
    assert!(matches!(stream.try_next().await.unwrap(), Some(WatchEvent::Added(_))));
    match stream.try_next().await.unwrap() {
        Some(WatchEvent::Bookmark(b)) => {
            assert_eq!(b.metadata.annotations.get("k8s.io/initial-events-end").map(String::as_str), Some("true"))
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_subresource_semantics_and_generation() {
    let env = sim_env().await;
    env.install_crds(&fixtures().join("widgets-crd.yaml")).await.unwrap();
    let api = widget_api(&env.client, "default");
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_patch_type() {
    let env = sim_env().await;
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), "default");
    pod_from(&pods, test_pod("p", &[("a", "1")], &["app", "other"], &["side"])).await;

    let p = pods
        .patch("p", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"labels": {"b": "2", "a": null}}})))
        .await
        .unwrap();
    let labels = p.metadata.labels.unwrap();
    assert_eq!((labels.get("a"), labels.get("b").map(String::as_str)), (None, Some("2")));

    let jp: json_patch::Patch = serde_json::from_value(json!([
        {"op": "add", "path": "/metadata/annotations", "value": {"k": "v"}},
        {"op": "test", "path": "/metadata/labels/b", "value": "2"}
    ]))
    .unwrap();
    let p = pods.patch("p", &PatchParams::default(), &Patch::<()>::Json(jp)).await.unwrap();
    assert_eq!(p.metadata.annotations.unwrap()["k"], "v");
    let bad: json_patch::Patch =
        serde_json::from_value(json!([{"op": "test", "path": "/metadata/labels/b", "value": "3"}])).unwrap();
    assert_eq!(code(&pods.patch("p", &PatchParams::default(), &Patch::<()>::Json(bad)).await.unwrap_err()), 422);

    // strategic merge: containers merged by name
    let p = pods
        .patch(
            "p",
            &PatchParams::default(),
            &Patch::Strategic(json!({"spec": {"containers": [{"name": "other", "image": "new"}]}})),
        )
        .await
        .unwrap();
    let cs = p.spec.unwrap().containers;
    assert_eq!(cs.len(), 2);
    assert_eq!(cs[0].image.as_deref(), Some("busybox"));
    assert_eq!(cs[1].image.as_deref(), Some("new"));
    // strategic merge on status: statuses merged by name, conditions by type
    let driver = PodDriver::new(env.client.clone(), "default", "p");
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
    let cst = st.container_statuses.unwrap();
    assert_eq!(cst.len(), 2);
    assert!(!cst.iter().find(|c| c.name == "app").unwrap().ready);
    assert!(cst.iter().find(|c| c.name == "other").unwrap().ready);
    let conds = st.conditions.unwrap();
    assert_eq!(conds.len(), 4);
    assert_eq!(conds.iter().find(|c| c.type_ == "Ready").unwrap().status, "False");
    assert_eq!(st.init_container_statuses.unwrap().len(), 1);

    // apply (YAML body)
    let yaml = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  labels:\n    applied: \"yes\"\n";
    let req = http::Request::builder()
        .method("PATCH")
        .uri("/api/v1/namespaces/default/pods/p?fieldManager=yaml-applier")
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
        .uri("/api/v1/namespaces/default/pods/p")
        .header("content-type", "application/apply-patch+yaml")
        .body(yaml.as_bytes().to_vec())
        .unwrap();
    let err = env.client.request::<Value>(req).await.unwrap_err();
    assert_eq!(code(&err), 422);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_side_apply_conflicts_and_force() {
    let env = sim_env().await;
    env.install_crds(&fixtures().join("widgets-crd.yaml")).await.unwrap();
    let api = widget_api(&env.client, "default");
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
            assert!(s.message.contains("conflict with \"bob\""), "{}", s.message)
        }
        _ => unreachable!(),
    }
    // carol conflicts with both; force takes ownership
    assert_eq!(code(&api.patch("s", &PatchParams::apply("carol"), &Patch::Apply(obj(3))).await.unwrap_err()), 409);
    let forced = api.patch("s", &PatchParams::apply("carol").force(), &Patch::Apply(obj(3))).await.unwrap();
    assert_eq!(forced.data["spec"]["size"], 3);
    let owners: Vec<String> = forced
        .metadata
        .managed_fields
        .unwrap()
        .iter()
        .filter(|m| m.fields_v1.as_ref().is_some_and(|f| f.0.get("f:spec").is_some()))
        .filter_map(|m| m.manager.clone())
        .collect();
    assert_eq!(owners, vec!["carol".to_string()]);
    // an update (merge patch) takes ownership without conflict, then apply conflicts with it
    api.patch("s", &PatchParams::default(), &Patch::Merge(json!({"spec": {"size": 4}}))).await.unwrap();
    assert_eq!(code(&api.patch("s", &PatchParams::apply("carol"), &Patch::Apply(obj(5))).await.unwrap_err()), 409);
    // status applied through /status by a controller
    let st = json!({"apiVersion": "e2e.sidecarwatch.io/v1alpha1", "kind": "Widget", "metadata": {"name": "s"}, "status": {"matchedPods": 2}});
    let s = api.patch_status("s", &PatchParams::apply("controller"), &Patch::Apply(st)).await.unwrap();
    assert_eq!(s.data["status"]["matchedPods"], 2);
    assert_eq!(s.data["spec"]["size"], 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_graceful_delete() {
    let env = sim_env().await;
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), "default");
    // Not on a node: deleted at once, as kube-apiserver does (no kubelet to wait for).
    pod_from(&pods, test_pod("unbound", &[], &["app"], &[])).await;
    pods.delete("unbound", &DeleteParams::default()).await.unwrap();
    assert!(pods.get_opt("unbound").await.unwrap().is_none(), "an unbound Pod stays terminating");

    // On a node: terminating until the kubelet deletes it with grace period 0, however its
    // containers end and however long ago its grace period ran out.
    pod_from(&pods, test_pod("g", &[], &["app"], &["side"])).await;
    sidecar_watch_e2e::kubelet::ensure_node(&env.client).await.unwrap();
    sidecar_watch_e2e::kubelet::bind(&env.client, "default", "g").await.unwrap();
    let again = sidecar_watch_e2e::kubelet::bind(&env.client, "default", "g").await.unwrap_err();
    assert!(matches!(again, sidecar_watch_e2e::kubelet::KubeletError::Kube(ref e) if code(e) == 409), "{again:?}");
    let driver = PodDriver::new(env.client.clone(), "default", "g");
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_documents() {
    let env = sim_env().await;
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
        ("", "events", true),
        ("events.k8s.io", "events", true),
        ("coordination.k8s.io", "leases", true),
        ("batch", "jobs", true),
        ("apiextensions.k8s.io", "customresourcedefinitions", false),
        ("e2e.sidecarwatch.io", "widgets", true),
        ("e2e.sidecarwatch.io", "clusterwidgets", false),
    ] {
        let want = (want.0.to_string(), want.1.to_string(), want.2);
        assert!(found.contains(&want), "{want:?} not in {found:?}");
    }
    let core = raw(&env.client, "GET", "/api/v1", &[], None).await.unwrap();
    let names: Vec<&str> = core["resources"].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert!(names.contains(&"pods/status"));
    let g = raw(&env.client, "GET", "/apis/e2e.sidecarwatch.io/v1alpha1", &[], None).await.unwrap();
    let w = g["resources"].as_array().unwrap().iter().find(|r| r["name"] == "widgets").unwrap().clone();
    assert_eq!(w["shortNames"], json!(["wdg"]));
    assert_eq!(w["singularName"], "widget");
    assert_eq!(w["kind"], "Widget");
    let v = raw(&env.client, "GET", "/version", &[], None).await.unwrap();
    assert_eq!(v["major"], "1");

    // deleting the CRD stops serving the resource
    let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
        Api::all(env.client.clone());
    crds.delete("widgets.e2e.sidecarwatch.io", &DeleteParams::default()).await.unwrap();
    let err = raw(&env.client, "GET", "/apis/e2e.sidecarwatch.io/v1alpha1/widgets", &[], None).await.unwrap_err();
    assert_eq!(code(&err), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn table_output() {
    let env = sim_env().await;
    env.install_crds(&fixtures().join("widgets-crd.yaml")).await.unwrap();
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), "default");
    pod_from(&pods, test_pod("t", &[], &["app"], &["side"])).await;
    let d = PodDriver::new(env.client.clone(), "default", "t");
    d.run_all().await.unwrap();
    d.restart("side", "Error", 1, true).await.unwrap();
    let accept = [("accept", "application/json;as=Table;v=v1;g=meta.k8s.io,application/json")];
    let t = raw(&env.client, "GET", "/api/v1/namespaces/default/pods", &accept, None).await.unwrap();
    assert_eq!(t["kind"], "Table");
    let cols: Vec<&str> =
        t["columnDefinitions"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(&cols[..5], &["Name", "Ready", "Status", "Restarts", "Age"]);
    let cells = &t["rows"][0]["cells"];
    assert_eq!(cells[0], "t");
    assert_eq!(cells[1], "2/2");
    assert_eq!(cells[2], "Running");
    assert!(cells[3].as_str().unwrap().starts_with("1 ("), "{}", cells[3]);
    assert_eq!(t["rows"][0]["object"]["kind"], "PartialObjectMetadata");
    let meta_accept = [("accept", "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json")];
    let m = raw(&env.client, "GET", "/api/v1/namespaces/default/pods", &meta_accept, None).await.unwrap();
    assert_eq!(m["kind"], "PartialObjectMetadataList");
    assert_eq!(m["items"][0]["metadata"]["name"], "t");
    assert!(m["items"][0].get("spec").is_none());

    let api = widget_api(&env.client, "default");
    let w: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "e2e.sidecarwatch.io/v1alpha1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {}
    }))
    .unwrap();
    api.create(&PostParams::default(), &w).await.unwrap();
    api.patch_status(
        "w",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"matchedPods": 4, "conditions": [{"type": "Synced", "status": "False"}, {"type": "Ready", "status": "True"}]}})),
    )
    .await
    .unwrap();
    let t = raw(
        &env.client,
        "GET",
        "/apis/e2e.sidecarwatch.io/v1alpha1/namespaces/default/widgets/w?includeObject=Object",
        &accept,
        None,
    )
    .await
    .unwrap();
    let cols: Vec<&str> =
        t["columnDefinitions"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(cols, vec!["Name", "Matched", "Ready", "Age"]);
    let cells = t["rows"][0]["cells"].as_array().unwrap();
    assert_eq!(cells[0], "w");
    assert_eq!(cells[1], 4);
    assert_eq!(cells[2], "True");
    assert!(cells[3].as_str().unwrap().ends_with('s'));
    assert_eq!(t["rows"][0]["object"]["kind"], "Widget");
}

/// Lines of a watch that ends by itself (`timeoutSeconds`), parsed.
async fn watch_lines(client: &kube::Client, path: &str) -> Vec<Value> {
    let req = http::Request::get(path).body(Vec::new()).expect("valid request");
    let text = client.request_text(req).await.expect("watch answered");
    text.lines().map(|l| serde_json::from_str(l).expect("a JSON event")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn served_form_follows_the_requested_version() {
    let env = sim_env().await;
    let schema = json!({"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}});
    let crd = json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "gadgets.e2e.sidecarwatch.io"},
        "spec": {"group": "e2e.sidecarwatch.io", "scope": "Namespaced",
            "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget"},
            "versions": [
                {"name": "v1", "served": true, "storage": true, "schema": schema},
                {"name": "v1beta1", "served": true, "storage": false, "schema": schema},
            ]}
    });
    raw(&env.client, "POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", &[], Some(crd)).await.unwrap();
    let gadget = json!({"apiVersion": "e2e.sidecarwatch.io/v1", "kind": "Gadget", "metadata": {"name": "g"}, "spec": {"size": 3}});
    let gadgets = "/apis/e2e.sidecarwatch.io/{v}/namespaces/default/gadgets";
    raw(&env.client, "POST", &gadgets.replace("{v}", "v1"), &[], Some(gadget)).await.unwrap();
    for v in ["v1", "v1beta1"] {
        let path = gadgets.replace("{v}", v);
        let want = format!("e2e.sidecarwatch.io/{v}");
        let one = raw(&env.client, "GET", &format!("{path}/g"), &[], None).await.unwrap();
        assert_eq!((&one["apiVersion"], &one["spec"]["size"]), (&json!(want), &json!(3)), "{v}");
        let list = raw(&env.client, "GET", &format!("{path}?limit=10"), &[], None).await.unwrap();
        assert_eq!((&list["apiVersion"], &list["kind"]), (&json!(want), &json!("GadgetList")), "{v}");
        assert_eq!(list["items"][0]["apiVersion"], want);
        let events = watch_lines(&env.client, &format!("{path}?watch=true&resourceVersion=0&timeoutSeconds=1")).await;
        assert_eq!(events.len(), 1, "{events:?}");
        assert_eq!((&events[0]["type"], &events[0]["object"]["apiVersion"]), (&json!("ADDED"), &json!(want)));
    }

    // Core Events are served with events.k8s.io's field names there.
    let event = json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "e"}, "reason": "Test",
        "message": "hello", "involvedObject": {"kind": "Pod", "name": "p", "namespace": "default"}});
    raw(&env.client, "POST", "/api/v1/namespaces/default/events", &[], Some(event)).await.unwrap();
    let core = raw(&env.client, "GET", "/api/v1/namespaces/default/events", &[], None).await.unwrap();
    assert_eq!((&core["kind"], &core["items"][0]["message"]), (&json!("EventList"), &json!("hello")));
    let path = "/apis/events.k8s.io/v1/namespaces/default/events";
    let list = raw(&env.client, "GET", path, &[], None).await.unwrap();
    let item = &list["items"][0];
    assert_eq!(
        (&item["apiVersion"], &item["note"], &item["regarding"]["name"]),
        (&json!("events.k8s.io/v1"), &json!("hello"), &json!("p"))
    );
    assert!(item.get("message").is_none(), "{item}");
    let one = raw(&env.client, "GET", &format!("{path}/e"), &[], None).await.unwrap();
    assert_eq!(&one, item);
    let events = watch_lines(&env.client, &format!("{path}?watch=true&resourceVersion=0&timeoutSeconds=1")).await;
    assert_eq!(&events[0]["object"], item);
}

/// `resourceVersion=0` lists ("any": on a real server, served from the watch cache) and
/// kube-apiserver's checks of `resourceVersionMatch`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_resource_version_semantics() {
    let env = sim_env().await;
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), "default");
    for name in ["a", "b", "c"] {
        pod_from(&pods, test_pod(name, &[], &["app"], &[])).await;
    }
    let current = env.require_sim().unwrap().resource_version();
    let get = |query: String| {
        let client = env.client.clone();
        async move { raw(&client, "GET", &format!("/api/v1/namespaces/default/pods?{query}"), &[], None).await }
    };
    let names = |list: &Value| -> Vec<String> {
        list["items"].as_array().unwrap().iter().map(|p| p["metadata"]["name"].as_str().unwrap().to_string()).collect()
    };
    // "Any": everything, at the latest version the simulator has.
    let list = get("resourceVersion=0&resourceVersionMatch=NotOlderThan".into()).await.unwrap();
    assert_eq!(names(&list), ["a", "b", "c"]);
    assert_eq!(list["metadata"]["resourceVersion"], json!(current.to_string()));
    let list = get("resourceVersion=0".into()).await.unwrap();
    assert_eq!(names(&list), ["a", "b", "c"]);
    // kube's "any" semantic as the operator sends it (no limit, so kube keeps resourceVersion=0).
    let listed = pods.list(&ListParams::default().match_any()).await.unwrap();
    assert_eq!(listed.items.len(), 3);
    assert_eq!(listed.metadata.resource_version, Some(current.to_string()));
    // Not older than a version the server has: served at the latest.
    let list = get(format!("resourceVersion={}&resourceVersionMatch=NotOlderThan", current - 1)).await.unwrap();
    assert_eq!(list["metadata"]["resourceVersion"], json!(current.to_string()));
    // Not older than a version the server has not reached: 504 Timeout (asked without kube's
    // client, which would retry a 504).
    let port = env.require_sim().unwrap().addr().port();
    let too_large =
        format!("/api/v1/namespaces/default/pods?resourceVersion={}&resourceVersionMatch=NotOlderThan", current + 5);
    let response = sidecar_watch_e2e::http::get(port, &too_large, &Default::default()).await.unwrap();
    assert_eq!(response.status, 504);
    let status: Value = serde_json::from_str(&response.text().unwrap()).unwrap();
    assert_eq!(status["reason"], "Timeout");
    assert_eq!(status["message"], format!("Too large resource version: {}, current: {current}", current + 5));
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

/// A streaming list (`sendInitialEvents`) asked of a server without it: rejected with the
/// Status kube-apiserver sends, with the WatchList feature gate off or before 1.27.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaming_watch_rejected_like_kube_apiserver() {
    use sidecar_watch_e2e::harness::TestEnv;
    use sidecar_watch_e2e::sim::{SimConfig, StreamingWatch};

    let gate_off = TestEnv::start_simulator(SimConfig { watch_list: false, ..SimConfig::default() }).await.unwrap();
    let pods: Api<Pod> = Api::namespaced(gate_off.client.clone(), "default");
    let status = match pods.watch(&WatchParams::streaming_lists(), "0").await {
        Err(kube::Error::Api(s)) => s,
        Err(other) => panic!("{other:?}"),
        Ok(_) => panic!("a streaming list was served with the WatchList feature gate off"),
    };
    let detail = "sendInitialEvents is forbidden for watch unless the WatchList feature gate is enabled";
    assert_eq!((status.code, status.reason.as_str()), (422, "Invalid"));
    assert_eq!(
        status.message,
        format!("ListOptions.meta.k8s.io \"\" is invalid: sendInitialEvents: Forbidden: {detail}")
    );
    let details = status.details.as_ref().expect("details");
    assert_eq!((details.group.as_str(), details.kind.as_str()), ("meta.k8s.io", "ListOptions"));
    let causes: Vec<_> =
        details.causes.iter().map(|c| (c.reason.as_str(), c.field.as_str(), c.message.clone())).collect();
    assert_eq!(causes, [("FieldValueForbidden", "sendInitialEvents", format!("Forbidden: {detail}"))]);
    let sim = gate_off.require_sim().unwrap().shared();
    assert_eq!(sim.streaming_watches("pods", StreamingWatch::Rejected), 1);
    assert_eq!(sim.streaming_watches("pods", StreamingWatch::Served), 0);
    // Plain watches are served as before.
    let _served = pods.watch(&WatchParams::default().timeout(1), "0").await.unwrap();

    let old = TestEnv::start_simulator(SimConfig { minor_version: 26, ..SimConfig::default() }).await.unwrap();
    assert_eq!(old.client.apiserver_version().await.unwrap().minor, "26");
    let pods: Api<Pod> = Api::namespaced(old.client.clone(), "default");
    match pods.watch(&WatchParams::streaming_lists(), "0").await {
        Err(kube::Error::Api(s)) => {
            assert_eq!((s.code, s.reason.as_str()), (422, "Invalid"));
            assert_eq!(
                s.message,
                "ListOptions.meta.k8s.io \"\" is invalid: resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden for watch"
            );
        }
        Err(other) => panic!("{other:?}"),
        Ok(_) => panic!("a 1.26 server served a watch with resourceVersionMatch"),
    }
}
