use std::sync::{Arc, Mutex};

use futures::TryStreamExt;
use kube::api::{Api, ListParams, WatchParams};

use super::*;
use crate::api::LenientPod;

const PODS_PB: &[u8] = include_bytes!("../../../tests/fixtures/protobuf/pods.pb");
const WATCH_PB: &[u8] = include_bytes!("../../../tests/fixtures/protobuf/watch.pb");
const NOT_FOUND_PB: &[u8] = include_bytes!("../../../tests/fixtures/protobuf/notfound.pb");

type Chunks = http_body_util::StreamBody<futures::stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, BoxError>>>>;

/// kube-apiserver as the fixtures recorded it: the body in chunks of `chunk` bytes, and the
/// `Accept` of every request noted.
#[derive(Clone, Default)]
struct Recorded {
    accepts: Arc<Mutex<Vec<(String, String)>>>,
}

impl Recorded {
    fn client(&self, status: u16, media_type: &'static str, body: &'static [u8], chunk: usize) -> kube::Client {
        let accepts = self.accepts.clone();
        let service = tower::service_fn(move |request: http::Request<kube::client::Body>| {
            let accept = request.headers().get(ACCEPT).map(|v| v.to_str().unwrap_or("?").to_string());
            accepts.lock().expect("lock").push((request.uri().path().to_string(), accept.unwrap_or_default()));
            let frames: Vec<Result<Frame<Bytes>, BoxError>> =
                body.chunks(chunk).map(|c| Ok(Frame::data(Bytes::from_static(c)))).collect();
            let response = http::Response::builder()
                .status(status)
                .header(CONTENT_TYPE, media_type)
                .body(Chunks::new(futures::stream::iter(frames)))
                .expect("response");
            async move { Ok::<_, BoxError>(response) }
        });
        kube::Client::new(tower::Layer::layer(&PodsAsProtobuf, service), "default")
    }
}

fn names(pods: &[LenientPod]) -> Vec<String> {
    pods.iter().map(|p| kube::Resource::meta(p).name.clone().unwrap_or_default()).collect()
}

#[tokio::test]
async fn kube_lists_pods_kube_apiserver_wrote_as_protobuf() {
    let recorded = Recorded::default();
    let client = recorded.client(200, MEDIA_TYPE, PODS_PB, 1000);
    let list =
        Api::<LenientPod>::namespaced(client, "fx").list(&ListParams::default().limit(500)).await.expect("lists");
    assert_eq!(names(&list.items), ["bare", "leaving", "mesh", "rules"]);
    assert!(list.items.iter().all(|p| matches!(p, LenientPod::Pod(_))));
    assert_eq!(list.metadata.resource_version.as_deref(), Some("261"));
    let accepts = recorded.accepts.lock().expect("lock").clone();
    assert_eq!(
        accepts,
        [(
            "/api/v1/namespaces/fx/pods".to_string(),
            "application/vnd.kubernetes.protobuf, application/json".to_string()
        )]
    );
}

#[tokio::test]
async fn kube_watches_pods_whatever_the_chunks_the_stream_arrives_in() {
    for chunk in [1, 7, 4096, WATCH_PB.len()] {
        let client =
            Recorded::default().client(200, "application/vnd.kubernetes.protobuf;stream=watch", WATCH_PB, chunk);
        let events =
            Api::<LenientPod>::namespaced(client, "fx").watch(&WatchParams::default(), "0").await.expect("watch");
        let events: Vec<_> = events.try_collect().await.expect("every event reads");
        let kinds: Vec<&str> = events
            .iter()
            .map(|e| match e {
                kube::core::WatchEvent::Added(_) => "ADDED",
                kube::core::WatchEvent::Bookmark(_) => "BOOKMARK",
                kube::core::WatchEvent::Deleted(_) => "DELETED",
                _ => "other",
            })
            .collect();
        assert_eq!(kinds, ["ADDED", "ADDED", "ADDED", "ADDED", "BOOKMARK", "DELETED"], "chunks of {chunk}");
    }
}

#[tokio::test]
async fn a_protobuf_error_reads_as_kube_apiservers_status() {
    let client = Recorded::default().client(404, MEDIA_TYPE, NOT_FOUND_PB, 10);
    let error = Api::<LenientPod>::namespaced(client, "fx").list(&ListParams::default()).await.expect_err("404");
    let kube::Error::Api(status) = error else { panic!("{error:?}") };
    assert_eq!((status.code, status.reason.as_str()), (404, "NotFound"));
}

#[tokio::test]
async fn json_answers_and_other_requests_pass_untouched() {
    let recorded = Recorded::default();
    let json = br#"{"apiVersion":"v1","kind":"PodList","metadata":{"resourceVersion":"7"},"items":[{"metadata":{"name":"j"}}]}"#;
    let client = recorded.client(200, "application/json", json, 5);
    let list = Api::<LenientPod>::all(client.clone()).list(&ListParams::default()).await.expect("JSON lists");
    assert_eq!(names(&list.items), ["j"]);
    // A single Pod, and anything but Pods, is not asked for as protobuf.
    let _ = Api::<LenientPod>::namespaced(client.clone(), "fx").get("j").await;
    let _ = Api::<k8s_openapi::api::core::v1::Event>::namespaced(client, "fx").list(&ListParams::default()).await;
    let accepts = recorded.accepts.lock().expect("lock").clone();
    let asked: Vec<(&str, bool)> =
        accepts.iter().map(|(path, accept)| (path.as_str(), accept.contains("protobuf"))).collect();
    assert_eq!(
        asked,
        [("/api/v1/pods", true), ("/api/v1/namespaces/fx/pods/j", false), ("/api/v1/namespaces/fx/events", false)]
    );
}

#[tokio::test]
async fn a_broken_stream_fails_the_watch_instead_of_waiting_or_buffering() {
    let too_long: &'static [u8] = &[0xff, 0xff, 0xff, 0xff, 1, 2, 3];
    let cut: &'static [u8] = &WATCH_PB[..WATCH_PB.len() - 10];
    for (body, expected) in [(too_long, "4294967295 bytes"), (cut, "ended inside an event")] {
        let client = Recorded::default().client(200, "application/vnd.kubernetes.protobuf;stream=watch", body, 64);
        let events = Api::<LenientPod>::all(client).watch(&WatchParams::default(), "0").await.expect("watch");
        let error = events.try_collect::<Vec<_>>().await.expect_err("fails");
        assert!(format!("{error:?}").contains(expected), "{error:?}");
    }
}
