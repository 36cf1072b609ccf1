//! The recorder's requests and its reaction to each answer, on the in-process API
//! ([`crate::test_api`]); `tests/e2e_operator/event_recorder.rs` runs it on kube-apiserver.

use jiff::{SignedDuration, Timestamp};
use kube::runtime::events::{Event, EventType};
use serde_json::json;

use super::*;
use crate::test_api::{self, ApiServer};

const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/shop/events";

fn pod(name: &str) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        name: Some(name.into()),
        namespace: Some("shop".into()),
        uid: Some(format!("uid-{name}")),
        field_path: Some("spec.initContainers{istio-proxy}".into()),
        ..ObjectReference::default()
    }
}

fn event(reason: &str) -> Event {
    Event {
        type_: EventType::Warning,
        reason: reason.into(),
        note: Some("istio-proxy restarted 5 times".into()),
        action: "Evaluate".into(),
        secondary: None,
    }
}

fn start() -> Timestamp {
    Timestamp::from_second(1_700_000_000).expect("a time")
}

/// `<pod>.<creation in hex nanoseconds>`, the name the recorder gives.
fn name(pod: &str, created: Timestamp) -> String {
    format!("{pod}.{:x}", created.as_nanosecond())
}

fn recorder() -> (Recorder, ApiServer) {
    let (client, server) = test_api::client();
    (Recorder::new(client, "sidecar-watch", "sidecar-watch-0"), server)
}

/// Expects the create of a new Event named `name` and answers it with the object.
async fn expect_create(server: &mut ApiServer, name: &str) -> serde_json::Value {
    let call = server.next().await;
    call.expect("POST", EVENTS, &[]);
    assert_eq!(call.header("content-type"), "application/json");
    let body = call.json();
    assert_eq!(body["metadata"]["name"], name);
    call.respond_json(201, &body);
    body
}

/// Expects the merge patch that raises `name`'s series to `count` at `at`, and answers `status`.
async fn expect_series(server: &mut ApiServer, name: &str, count: i32, at: Timestamp, status: u16) {
    let call = server.next().await;
    call.expect("PATCH", &format!("{EVENTS}/{name}"), &[]);
    assert_eq!(call.header("content-type"), "application/merge-patch+json");
    let last_observed = serde_json::to_value(MicroTime(at)).expect("a time");
    assert_eq!(call.json(), json!({ "series": { "count": count, "lastObservedTime": last_observed } }));
    match status {
        200 => call.respond_json(200, &json!({ "metadata": { "name": name } })),
        404 => call.respond_status(404, "NotFound"),
        _ => call.respond_status(status, "InternalError"),
    }
}

#[tokio::test(start_paused = true)]
async fn a_new_event_is_created_with_every_field_and_repeats_raise_its_series() {
    let (mut recorder, mut server) = recorder();
    let (t0, first) = (start(), name("web", start()));
    let publish = tokio::spawn(async move {
        recorder.publish(&event("SidecarRestarting"), &pod("web"), t0).await.expect("created");
        for minutes in [1, 2] {
            let at = t0 + SignedDuration::from_mins(minutes);
            recorder.publish(&event("SidecarRestarting"), &pod("web"), at).await.expect("folded");
        }
        recorder.remembered()
    });
    let body = expect_create(&mut server, &first).await;
    let regarding = serde_json::to_value(pod("web")).expect("JSON");
    assert_eq!(
        body,
        json!({
            "apiVersion": "events.k8s.io/v1", "kind": "Event",
            "metadata": { "name": first, "namespace": "shop" },
            "action": "Evaluate", "reason": "SidecarRestarting", "note": "istio-proxy restarted 5 times",
            "type": "Warning", "eventTime": serde_json::to_value(MicroTime(t0)).expect("a time"),
            "regarding": regarding,
            "reportingController": "sidecar-watch", "reportingInstance": "sidecar-watch-0",
        })
    );
    expect_series(&mut server, &first, 2, t0 + SignedDuration::from_mins(1), 200).await;
    expect_series(&mut server, &first, 3, t0 + SignedDuration::from_mins(2), 200).await;
    assert_eq!(publish.await.expect("publisher"), 1);
}

#[tokio::test(start_paused = true)]
async fn a_repeat_after_the_window_is_an_event_of_its_own() {
    let (mut recorder, mut server) = recorder();
    let later = start() + SERIES_WINDOW;
    let publish = tokio::spawn(async move {
        for at in [start(), later] {
            recorder.publish(&event("SidecarRestarting"), &pod("web"), at).await.expect("created");
        }
    });
    expect_create(&mut server, &name("web", start())).await;
    expect_create(&mut server, &name("web", later)).await;
    publish.await.expect("publisher");
}

#[tokio::test(start_paused = true)]
async fn a_repeat_whose_event_is_gone_is_created_anew_and_folds_from_there() {
    let (mut recorder, mut server) = recorder();
    let (t0, t1, t2) = (start(), start() + SignedDuration::from_mins(1), start() + SignedDuration::from_mins(2));
    let publish = tokio::spawn(async move {
        for at in [t0, t1, t2] {
            recorder.publish(&event("SidecarRestarting"), &pod("web"), at).await.expect("published");
        }
    });
    expect_create(&mut server, &name("web", t0)).await;
    expect_series(&mut server, &name("web", t0), 2, t1, 404).await;
    expect_create(&mut server, &name("web", t1)).await;
    expect_series(&mut server, &name("web", t1), 2, t2, 200).await;
    publish.await.expect("publisher");
}

#[tokio::test(start_paused = true)]
async fn a_failed_patch_is_returned_and_the_next_repeat_patches_the_same_count() {
    let (mut recorder, mut server) = recorder();
    let (t0, t1, t2) = (start(), start() + SignedDuration::from_mins(1), start() + SignedDuration::from_mins(2));
    let publish = tokio::spawn(async move {
        recorder.publish(&event("SidecarRestarting"), &pod("web"), t0).await.expect("created");
        let failed = recorder.publish(&event("SidecarRestarting"), &pod("web"), t1).await;
        let retried = recorder.publish(&event("SidecarRestarting"), &pod("web"), t2).await;
        (failed, retried)
    });
    expect_create(&mut server, &name("web", t0)).await;
    expect_series(&mut server, &name("web", t0), 2, t1, 500).await;
    // Not counted: the same occurrence number is patched again, and nothing is created.
    expect_series(&mut server, &name("web", t0), 2, t2, 200).await;
    let (failed, retried) = publish.await.expect("publisher");
    assert!(matches!(failed, Err(kube::Error::Api(ref s)) if s.code == 500), "{failed:?}");
    retried.expect("the repeat after the failure");
}

#[tokio::test(start_paused = true)]
async fn a_failed_create_is_returned_and_not_remembered() {
    for (code, reason) in [(409, "AlreadyExists"), (429, "TooManyRequests"), (500, "InternalError")] {
        let (mut recorder, mut server) = recorder();
        let t0 = start();
        let publish = tokio::spawn(async move {
            let failed = recorder.publish(&event("SidecarRestarting"), &pod("web"), t0).await;
            let remembered = recorder.remembered();
            // The next occurrence in the same clock tick creates again, under a new name.
            recorder.publish(&event("SidecarRestarting"), &pod("web"), t0).await.expect("created");
            (failed, remembered)
        });
        let call = server.next().await;
        call.expect("POST", EVENTS, &[]);
        call.respond_status(code, reason);
        expect_create(&mut server, &name("web", t0 + SignedDuration::from_nanos(1))).await;
        let (failed, remembered) = publish.await.expect("publisher");
        assert!(matches!(failed, Err(kube::Error::Api(ref s)) if s.code == code), "{failed:?}");
        assert_eq!(remembered, 0, "{reason}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_dropped_connection_or_a_malformed_answer_fails_the_publish() {
    let (mut recorder, mut server) = recorder();
    let publish = tokio::spawn(async move {
        let dropped = recorder.publish(&event("SidecarRestarting"), &pod("web"), start()).await;
        let malformed = recorder.publish(&event("SidecarRestarting"), &pod("web"), start()).await;
        (dropped, malformed, recorder.remembered())
    });
    server.next().await.drop_connection();
    server.next().await.respond_bytes(201, "application/json", "{\"kind\": \"Event\", \"metadata\": ");
    let (dropped, malformed, remembered) = publish.await.expect("publisher");
    assert!(matches!(dropped, Err(kube::Error::Service(_))), "{dropped:?}");
    assert!(matches!(malformed, Err(kube::Error::SerdeError(_))), "{malformed:?}");
    assert_eq!(remembered, 0);
}

#[tokio::test(start_paused = true)]
async fn events_about_other_objects_or_reasons_are_not_folded_together() {
    let (mut recorder, mut server) = recorder();
    let t0 = start();
    let publish = tokio::spawn(async move {
        recorder.publish(&event("SidecarRestarting"), &pod("web"), t0).await.expect("created");
        recorder.publish(&event("SidecarOOMKilled"), &pod("web"), t0).await.expect("created");
        recorder.publish(&event("SidecarRestarting"), &pod("api"), t0).await.expect("created");
    });
    // One clock tick, three Events: each a nanosecond after the last, so no two names clash.
    expect_create(&mut server, &name("web", t0)).await;
    expect_create(&mut server, &name("web", t0 + SignedDuration::from_nanos(1))).await;
    expect_create(&mut server, &name("api", t0 + SignedDuration::from_nanos(2))).await;
    publish.await.expect("publisher");
}

#[tokio::test(start_paused = true)]
async fn an_event_about_a_cluster_scoped_object_goes_to_the_default_namespace() {
    let (mut recorder, mut server) = recorder();
    let policy = ObjectReference {
        api_version: Some("sidecarwatch.io/v1alpha1".into()),
        kind: Some("ClusterSidecarPolicy".into()),
        name: Some("default".into()),
        ..ObjectReference::default()
    };
    let publish = tokio::spawn(async move { recorder.publish(&event("InvalidSpec"), &policy, start()).await });
    let call = server.next().await;
    call.expect("POST", "/apis/events.k8s.io/v1/namespaces/default/events", &[]);
    let body = call.json();
    assert_eq!(body["metadata"], json!({ "name": name("default", start()) }));
    call.respond_json(201, &body);
    publish.await.expect("publisher").expect("created");
}
