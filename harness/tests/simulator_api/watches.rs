//! Watches: from a resourceVersion with bookmarks, and resourceVersions that expire once the
//! history is compacted.

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, Patch, PatchParams, WatchEvent, WatchParams};
use serde_json::json;
use sidecar_watch_harness::kubelet::test_pod;

use crate::{created_then_labelled, pod_from, rv_of};
use sidecar_watch_harness::both_servers::{code, compact, namespace, raw, Server};

/// A watch from a resourceVersion replays what changed since, then bookmarks (kube-apiserver
/// sends one 2 s before `timeoutSeconds` ends, apiserver pkg/storage/cacher/cache_watcher.go,
/// nextBookmarkTime); "0" starts with the current objects; `sendInitialEvents` ends its
/// initial objects with the `k8s.io/initial-events-end` bookmark.
pub(crate) async fn watch_from_resource_version_with_bookmarks(server: Server) {
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

/// Once the history is compacted, a watch from an older resourceVersion gets one ERROR event,
/// 410 Expired, and an exact list at it 410 too.
pub(crate) async fn compacted_resource_versions_expire(server: Server) {
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
