//! The operator's Event recorder against kube-apiserver (the test control plane, or the
//! cluster of `E2E_KUBECONFIG`; the failed-call test on a control plane of its own, whose
//! kube-apiserver it stops): one Event per occurrence outside the series window, a repeat
//! folded into its predecessor's `series`, one container's Event kept apart from another's, a
//! repeat whose Event is gone published anew, a name the API server accepts for the longest
//! Pod name, a bounded cache, and failed calls (an error; the next occurrence tries again).

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event as K8sEvent;
use kube::api::{Api, DeleteParams, ListParams};
use kube::runtime::events::{Event, EventType};
use sidecar_watch::events::recorder::{SERIES_WINDOW, SWEEP_EVERY};
use sidecar_watch::events::Recorder;
use sidecar_watch_harness::control_plane::Options;
use sidecar_watch_harness::env::TestEnv;

/// A call to a stopped kube-apiserver is refused: it fails at once, well within this.
const REFUSED_WITHIN: std::time::Duration = std::time::Duration::from_secs(30);

fn pod(namespace: &str, name: &str, container: &str) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        name: Some(name.into()),
        namespace: Some(namespace.into()),
        uid: Some(format!("uid-{name}")),
        field_path: Some(format!("spec.containers{{{container}}}")),
        ..ObjectReference::default()
    }
}

fn event(reason: &str, note: &str) -> Event {
    Event {
        type_: EventType::Warning,
        reason: reason.into(),
        note: Some(note.into()),
        action: "Evaluate".into(),
        secondary: Some(ObjectReference {
            api_version: Some("sidecar.watch/v1alpha1".into()),
            kind: Some("ClusterSidecarPolicy".into()),
            name: Some("default".into()),
            ..ObjectReference::default()
        }),
    }
}

/// An API server with the namespace `ns`, and a recorder publishing to it.
async fn start(ns: &str) -> (TestEnv, Recorder) {
    let env = TestEnv::start().await.expect("API server");
    env.assert_reached_server().await.expect("/version");
    env.create_namespace(ns).await.expect("namespace");
    let recorder = Recorder::new(env.client.clone(), "sidecar-watch", "sidecar-watch-0");
    (env, recorder)
}

/// The Events in `namespace`, oldest first.
async fn events(env: &TestEnv, namespace: &str) -> Vec<K8sEvent> {
    let api: Api<K8sEvent> = Api::namespaced(env.client.clone(), namespace);
    let mut list = api.list(&ListParams::default()).await.expect("list Events").items;
    list.sort_by_key(|e| e.event_time.as_ref().map(|t| t.0));
    list
}

fn count(e: &K8sEvent) -> i32 {
    e.series.as_ref().map_or(1, |s| s.count)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeats_fold_into_a_series_within_the_window_and_start_anew_after_it() {
    let ns = "recorder-series";
    let (env, mut recorder) = start(ns).await;
    // Whole microseconds: what an Event's times keep.
    let t0 = Timestamp::from_microsecond(Timestamp::now().as_microsecond()).expect("a time");
    let proxy = pod(ns, "web-1", "istio-proxy");
    let first = event("SidecarNotReady", "istio-proxy has not been ready for 5m");

    recorder.publish(&first, &proxy, t0).await.expect("created");
    let created = events(&env, ns).await;
    assert_eq!(created.len(), 1);
    let e = &created[0];
    let name = e.metadata.name.as_deref().expect("a name");
    assert!(name.starts_with("web-1."), "{name}");
    assert_eq!(e.reason.as_deref(), Some("SidecarNotReady"));
    assert_eq!(e.type_.as_deref(), Some("Warning"));
    assert_eq!(e.action.as_deref(), Some("Evaluate"));
    assert_eq!(e.note.as_deref(), Some("istio-proxy has not been ready for 5m"));
    assert_eq!(e.reporting_controller.as_deref(), Some("sidecar-watch"));
    assert_eq!(e.reporting_instance.as_deref(), Some("sidecar-watch-0"));
    assert_eq!(e.regarding.as_ref(), Some(&proxy));
    assert_eq!(e.related.as_ref().and_then(|r| r.name.as_deref()), Some("default"));
    assert!(e.series.is_none(), "a first occurrence has no series");

    // The same Event twice more within the window: one Event, counted three times, its
    // first note kept (kube-runtime's and client-go's behaviour).
    let later = event("SidecarNotReady", "istio-proxy has not been ready for 6m");
    recorder.publish(&later, &proxy, t0 + SignedDuration::from_secs(60)).await.expect("folded");
    recorder.publish(&later, &proxy, t0 + SignedDuration::from_secs(300)).await.expect("folded");
    let folded = events(&env, ns).await;
    assert_eq!(folded.len(), 1, "{folded:?}");
    assert_eq!(folded[0].metadata.name.as_deref(), Some(name));
    assert_eq!(count(&folded[0]), 3);
    let series = folded[0].series.as_ref().expect("a series");
    assert_eq!(series.last_observed_time.0, t0 + SignedDuration::from_secs(300));
    assert_eq!(folded[0].note.as_deref(), Some("istio-proxy has not been ready for 5m"));

    // Another container of the same Pod, another reason, another Pod: Events of their own,
    // and differently named although published at the same instant as the first.
    recorder.publish(&first, &pod(ns, "web-1", "log-shipper"), t0).await.expect("created");
    recorder.publish(&event("SidecarRestarting", "restarts"), &proxy, t0).await.expect("created");
    recorder.publish(&first, &pod(ns, "web-2", "istio-proxy"), t0).await.expect("created");
    assert_eq!(events(&env, ns).await.len(), 4);
    assert_eq!(recorder.remembered(), 4);

    // Six minutes after the last repeat the window has passed: a new Event, and the sweep
    // forgets every Event whose window passed.
    let after = t0 + SignedDuration::from_secs(300) + SERIES_WINDOW;
    recorder.publish(&later, &proxy, after).await.expect("created");
    let all = events(&env, ns).await;
    assert_eq!(all.len(), 5);
    let mut counts: Vec<i32> = all.iter().map(count).collect();
    counts.sort_unstable();
    assert_eq!(counts, [1, 1, 1, 1, 3]);
    recorder.forget_expired(after + SWEEP_EVERY);
    assert_eq!(recorder.remembered(), 1, "only the Event published at `after` is still within its window");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeat_whose_event_is_gone_is_published_anew() {
    let ns = "recorder-gone";
    let (env, mut recorder) = start(ns).await;
    let t0 = Timestamp::now();
    let proxy = pod(ns, "web-1", "istio-proxy");
    let e = event("SidecarNotReady", "not ready");
    recorder.publish(&e, &proxy, t0).await.expect("created");
    let api: Api<K8sEvent> = Api::namespaced(env.client.clone(), ns);
    let name = events(&env, ns).await[0].metadata.name.clone().expect("a name");
    api.delete(&name, &DeleteParams::default()).await.expect("deleted");

    recorder.publish(&e, &proxy, t0 + SignedDuration::from_secs(10)).await.expect("published anew, not an error");
    let now = events(&env, ns).await;
    assert_eq!(now.len(), 1);
    assert_ne!(now[0].metadata.name.as_deref(), Some(name.as_str()));
    assert!(now[0].series.is_none());

    // And the new one is what later repeats fold into.
    recorder.publish(&e, &proxy, t0 + SignedDuration::from_secs(20)).await.expect("folded");
    assert_eq!(events(&env, ns).await.iter().map(count).collect::<Vec<_>>(), [2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_longest_pod_name_still_gives_a_valid_event_name() {
    let ns = "recorder-long";
    let (env, mut recorder) = start(ns).await;
    // 253 characters, a valid DNS subdomain; cut to make room for the 17-character suffix
    // (`.` and 16 hex digits) it would end in '-' without the trim.
    let long = format!("{}-{}", "a".repeat(235), "b".repeat(17));
    assert_eq!(long.len(), 253);
    recorder
        .publish(&event("SidecarNotReady", "x"), &pod(ns, &long, "proxy"), Timestamp::now())
        .await
        .expect("created");
    let name = events(&env, ns).await[0].metadata.name.clone().expect("a name");
    assert!(name.len() <= 253, "{} characters", name.len());
    assert!(name.starts_with(&"a".repeat(200)), "{name}");
    let labels_valid = name.split('.').all(|label| {
        !label.is_empty()
            && label.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    });
    assert!(labels_valid, "not a DNS subdomain: {name}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_cache_publishes_repeats_as_events_of_their_own() {
    let ns = "recorder-full";
    let (env, recorder) = start(ns).await;
    let mut recorder = recorder.remembering_at_most(2);
    let t0 = Timestamp::now();
    let e = event("SidecarNotReady", "not ready");
    for name in ["web-1", "web-2", "web-3"] {
        recorder.publish(&e, &pod(ns, name, "proxy"), t0).await.expect("created");
    }
    assert_eq!(recorder.remembered(), 2);
    // web-1 is remembered and folded; web-3 is not, so its repeat is a second Event.
    let later = t0 + SignedDuration::from_secs(30);
    recorder.publish(&e, &pod(ns, "web-1", "proxy"), later).await.expect("folded");
    recorder.publish(&e, &pod(ns, "web-3", "proxy"), later).await.expect("created");
    let all = events(&env, ns).await;
    let of = |pod: &str| -> Vec<i32> {
        all.iter().filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(pod)).map(count).collect()
    };
    assert_eq!(of("web-1"), [2]);
    assert_eq!(of("web-2"), [1]);
    assert_eq!(of("web-3"), [1, 1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_call_is_an_error_and_the_next_occurrence_tries_again() {
    // A control plane of the test's own, whatever `E2E_KUBECONFIG` says: the calls fail for
    // real, kube-apiserver stopped (killed: its port refuses connections).
    let env = TestEnv::start_control_plane(Options::default()).await.expect("control plane");
    env.assert_reached_server().await.expect("/version");
    let ns = "recorder-faults";
    env.create_namespace(ns).await.expect("namespace");
    let control_plane = env.own_control_plane().expect("the test's own control plane");
    let mut recorder = Recorder::new(env.client.clone(), "sidecar-watch", "sidecar-watch-0");
    let t0 = Timestamp::now();
    let proxy = pod(ns, "web-1", "istio-proxy");
    let e = event("SidecarNotReady", "not ready");

    // The create fails: an error, nothing remembered, so the next occurrence creates.
    control_plane.stop_apiserver().await.expect("kube-apiserver stopped");
    let failed = tokio::time::timeout(REFUSED_WITHIN, recorder.publish(&e, &proxy, t0)).await;
    assert!(failed.expect("a refused create fails at once").is_err());
    assert_eq!(recorder.remembered(), 0);
    control_plane.start_apiserver().await.expect("kube-apiserver started");
    recorder.publish(&e, &proxy, t0 + SignedDuration::from_secs(10)).await.expect("created");
    assert_eq!(events(&env, ns).await.iter().map(count).collect::<Vec<_>>(), [1]);

    // A patch fails: an error, the Event still remembered, so the next repeat patches it.
    control_plane.stop_apiserver().await.expect("kube-apiserver stopped");
    let failed =
        tokio::time::timeout(REFUSED_WITHIN, recorder.publish(&e, &proxy, t0 + SignedDuration::from_secs(20))).await;
    assert!(failed.expect("a refused patch fails at once").is_err());
    assert_eq!(recorder.remembered(), 1);
    control_plane.start_apiserver().await.expect("kube-apiserver started");
    recorder.publish(&e, &proxy, t0 + SignedDuration::from_secs(30)).await.expect("folded");
    assert_eq!(events(&env, ns).await.iter().map(count).collect::<Vec<_>>(), [2]);
}
