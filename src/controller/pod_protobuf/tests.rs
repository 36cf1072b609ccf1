//! The layer under a real [`kube::Client`] on the in-process API ([`crate::test_api`]), answered
//! with what kube-apiserver wrote (`tests/fixtures/protobuf/`, README there): the `Accept` it
//! adds, protobuf lists and watches read as JSON, JSON passed through, broken bodies failing.
//! `tests/e2e_operator/` watches Pods as protobuf from kube-apiserver itself.

use futures::{StreamExt, TryStreamExt};
use kube::api::{Api, ListParams, WatchParams};
use kube::core::WatchEvent;

use super::*;
use crate::api::LenientPod;
use crate::test_api::{self, ApiServer};

const PODS_PB: &[u8] = include_bytes!("../../../tests/fixtures/protobuf/pods.pb");
const WATCH_PB: &[u8] = include_bytes!("../../../tests/fixtures/protobuf/watch.pb");
const NOT_FOUND_PB: &[u8] = include_bytes!("../../../tests/fixtures/protobuf/notfound.pb");

/// The `Accept` of a Pod collection read: protobuf, JSON where a server has no protobuf.
const ASKS_PROTOBUF: &str = "application/vnd.kubernetes.protobuf, application/json";
const WATCH_MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf;stream=watch";
/// [`kube::api::WatchParams::default()`] from resource version 0, as kube writes it.
const WATCH_QUERY: &[(&str, &str)] =
    &[("watch", "true"), ("timeoutSeconds", "290"), ("allowWatchBookmarks", "true"), ("resourceVersion", "0")];

/// A client carrying the layer, on the in-process API.
fn client() -> (kube::Client, ApiServer) {
    let (service, server) = test_api::service();
    (kube::Client::new(tower::Layer::layer(&PodsAsProtobuf, service), "default"), server)
}

fn names(pods: &[LenientPod]) -> Vec<String> {
    pods.iter().map(|p| kube::Resource::meta(p).name.clone().unwrap_or_default()).collect()
}

fn kind(event: &WatchEvent<LenientPod>) -> &'static str {
    match event {
        WatchEvent::Added(_) => "ADDED",
        WatchEvent::Modified(_) => "MODIFIED",
        WatchEvent::Deleted(_) => "DELETED",
        WatchEvent::Bookmark(_) => "BOOKMARK",
        WatchEvent::Error(_) => "ERROR",
    }
}

/// The length of the watch stream's first frame, its 4-byte prefix included.
fn first_frame_len() -> usize {
    let prefix: [u8; 4] = WATCH_PB[..4].try_into().expect("a length prefix");
    4 + u32::from_be_bytes(prefix) as usize
}

#[tokio::test(start_paused = true)]
async fn kube_lists_pods_kube_apiserver_wrote_as_protobuf() {
    let (client, mut server) = client();
    let api = Api::<LenientPod>::namespaced(client, "fx");
    let answer = async {
        let call = server.next().await;
        call.expect("GET", "/api/v1/namespaces/fx/pods", &[("limit", "500")]);
        assert_eq!(call.header("accept"), ASKS_PROTOBUF);
        call.respond_bytes(200, MEDIA_TYPE, PODS_PB);
    };
    let params = ListParams::default().limit(500);
    let (list, ()) = tokio::join!(api.list(&params), answer);
    let list = list.expect("lists");
    assert_eq!(names(&list.items), ["bare", "leaving", "mesh", "rules"]);
    assert!(list.items.iter().all(|p| matches!(p, LenientPod::Object(_))));
    assert_eq!(list.metadata.resource_version.as_deref(), Some("261"));
}

#[tokio::test(start_paused = true)]
async fn kube_watches_pods_whatever_the_chunks_the_stream_arrives_in() {
    for chunk in [1, 7, 4096, WATCH_PB.len()] {
        let (client, mut server) = client();
        let api = Api::<LenientPod>::namespaced(client, "fx");
        let answer = async {
            let call = server.next().await;
            call.expect("GET", "/api/v1/namespaces/fx/pods", WATCH_QUERY);
            assert_eq!(call.header("accept"), ASKS_PROTOBUF);
            let body = call.respond_stream(200, WATCH_MEDIA_TYPE);
            for piece in WATCH_PB.chunks(chunk) {
                body.unbounded_send(Ok(Bytes::from_static(piece))).expect("the client reads");
            }
        };
        let params = WatchParams::default();
        let (events, ()) = tokio::join!(api.watch(&params, "0"), answer);
        let events: Vec<_> = events.expect("watch").try_collect().await.expect("every event reads");
        let kinds: Vec<&str> = events.iter().map(kind).collect();
        assert_eq!(kinds, ["ADDED", "ADDED", "ADDED", "ADDED", "BOOKMARK", "DELETED"], "chunks of {chunk}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_watch_event_is_handed_on_as_soon_as_its_frame_is_complete() {
    let (client, mut server) = client();
    let api = Api::<LenientPod>::all(client);
    let answer = async { server.next().await.respond_stream(200, WATCH_MEDIA_TYPE) };
    let params = WatchParams::default();
    let (events, body) = tokio::join!(api.watch(&params, "0"), answer);
    let mut events = events.expect("watch").boxed();
    let (first, rest) = WATCH_PB.split_at(first_frame_len());
    // The first frame in two pieces, the stream left open: the event comes all the same.
    let (start, end) = first.split_at(first.len() / 2);
    for piece in [start, end] {
        body.unbounded_send(Ok(Bytes::from_static(piece))).expect("the client reads");
    }
    let event = events.next().await.expect("an event").expect("it reads");
    assert_eq!(kind(&event), "ADDED");
    body.unbounded_send(Ok(Bytes::from_static(rest))).expect("the client reads");
    drop(body);
    assert_eq!(events.try_collect::<Vec<_>>().await.expect("the rest reads").len(), 5);
}

#[tokio::test(start_paused = true)]
async fn a_protobuf_error_reads_as_kube_apiservers_status() {
    let (client, mut server) = client();
    let api = Api::<LenientPod>::namespaced(client, "fx");
    let answer = async { server.next().await.respond_bytes(404, MEDIA_TYPE, NOT_FOUND_PB) };
    let params = ListParams::default();
    let (error, ()) = tokio::join!(api.list(&params), answer);
    let kube::Error::Api(status) = error.expect_err("404") else { panic!("not kube-apiserver's Status") };
    assert_eq!((status.code, status.reason.as_str()), (404, "NotFound"));
}

#[tokio::test(start_paused = true)]
async fn json_answers_and_other_requests_pass_untouched() {
    let (client, mut server) = client();
    let json = br#"{"apiVersion":"v1","kind":"PodList","metadata":{"resourceVersion":"7"},"items":[{"metadata":{"name":"j"}}]}"#;
    let lines = concat!(
        r#"{"type":"ADDED","object":{"apiVersion":"v1","kind":"Pod","metadata":{"name":"j","resourceVersion":"8"}}}"#,
        "\n"
    );
    let requests = async {
        let mut accepts = Vec::new();
        for (content_type, body) in
            [("application/json", &json[..]), ("application/json", lines.as_bytes()), ("application/json", b"{}")]
        {
            let call = server.next().await;
            accepts.push((call.parts.uri.path().to_string(), call.header("accept").to_string()));
            call.respond_bytes(200, content_type, body);
        }
        let call = server.next().await;
        accepts.push((call.parts.uri.path().to_string(), call.header("accept").to_string()));
        call.respond_json(
            200,
            &serde_json::json!({ "apiVersion": "v1", "kind": "EventList", "metadata": {}, "items": [] }),
        );
        accepts
    };
    let reads = async {
        let list = Api::<LenientPod>::all(client.clone()).list(&ListParams::default()).await.expect("JSON lists");
        let events = Api::<LenientPod>::all(client.clone()).watch(&WatchParams::default(), "0").await.expect("watch");
        let events: Vec<_> = events.try_collect().await.expect("JSON lines read");
        // A single Pod, and anything but Pods, is not asked for as protobuf.
        let _ = Api::<LenientPod>::namespaced(client.clone(), "fx").get("j").await;
        let _ = Api::<k8s_openapi::api::core::v1::Event>::namespaced(client, "fx").list(&ListParams::default()).await;
        (names(&list.items), events.iter().map(kind).collect::<Vec<_>>())
    };
    let ((listed, watched), accepts) = tokio::join!(reads, requests);
    assert_eq!((listed, watched), (vec!["j".to_string()], vec!["ADDED"]));
    let asked: Vec<(&str, bool)> =
        accepts.iter().map(|(path, accept)| (path.as_str(), accept.contains("protobuf"))).collect();
    assert_eq!(
        asked,
        [
            ("/api/v1/pods", true),
            ("/api/v1/pods", true),
            ("/api/v1/namespaces/fx/pods/j", false),
            ("/api/v1/namespaces/fx/events", false)
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_malformed_or_cut_list_fails_the_list() {
    let cut = &PODS_PB[..PODS_PB.len() / 2];
    for (body, expected) in [(&b"{\"items\": []}"[..], "protobuf magic"), (cut, "reading Pods as protobuf")] {
        let (client, mut server) = client();
        let api = Api::<LenientPod>::all(client);
        let answer = async { server.next().await.respond_bytes(200, MEDIA_TYPE, body) };
        let params = ListParams::default();
        let (error, ()) = tokio::join!(api.list(&params), answer);
        let error = error.expect_err("no list from a broken body");
        assert!(format!("{error:?}").contains(expected), "{error:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_broken_or_dropped_stream_fails_the_watch_instead_of_waiting_or_buffering() {
    let too_long: &'static [u8] = &[0xff, 0xff, 0xff, 0xff, 1, 2, 3];
    let cut: &'static [u8] = &WATCH_PB[..WATCH_PB.len() - 10];
    let first = &WATCH_PB[..first_frame_len()];
    for (body, dropped, expected) in [
        (too_long, false, "4294967295 bytes"),
        (cut, false, "ended inside an event"),
        (first, true, "connection reset"),
    ] {
        let (client, mut server) = client();
        let api = Api::<LenientPod>::all(client);
        let answer = async {
            let sender = server.next().await.respond_stream(200, WATCH_MEDIA_TYPE);
            sender.unbounded_send(Ok(Bytes::from_static(body))).expect("the client reads");
            if dropped {
                sender.unbounded_send(Err("connection reset".into())).expect("the client reads");
            }
        };
        let params = WatchParams::default();
        let (events, ()) = tokio::join!(api.watch(&params, "0"), answer);
        let error = events.expect("watch").try_collect::<Vec<_>>().await.expect_err("fails");
        assert!(format!("{error:?}").contains(expected), "{error:?}");
    }
}
