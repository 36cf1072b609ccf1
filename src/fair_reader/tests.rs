//! The reader against the in-process API, reading what `FailedCreate` Events name: fair per
//! namespace, never held up by another namespace's hung read, retrying what failed.

use serde_json::json;
use tokio::time::Instant;

use super::*;
use crate::engine::WorkloadKind;
use crate::injection_failure::Involved;
use crate::test_api::{self, ApiServer, Call};

/// The `limit` label the tests' reader counts under.
const LIMIT: &str = "failed-create-reads";

fn involved(namespace: &str, name: &str) -> Involved {
    Involved {
        namespace: namespace.into(),
        kind: WorkloadKind::ReplicaSet,
        name: name.into(),
        uid: format!("uid-{name}"),
    }
}

fn path(namespace: &str, name: &str) -> String {
    format!("/apis/apps/v1/namespaces/{namespace}/replicasets/{name}")
}

/// The namespace and name a GET asks for.
fn asked(call: &Call) -> (String, String) {
    let parts: Vec<&str> = call.parts.uri.path().split('/').collect();
    (parts[5].to_string(), parts[7].to_string())
}

fn answer(call: Call) {
    let (namespace, name) = asked(&call);
    call.respond_json(
        200,
        &json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": name, "namespace": namespace, "uid": format!("uid-{name}")},
            "spec": {"replicas": 1}}),
    );
}

fn start() -> (Reader<Involved>, ApiServer, mpsc::Receiver<Read<Involved>>, Metrics) {
    let (client, server) = test_api::client();
    let (tx, rx) = mpsc::channel(16);
    let metrics = Metrics::new();
    (Reader::spawn(client, metrics.clone(), LIMIT, 20_000, tx), server, rx, metrics)
}

/// A thousand reads queued for namespace a, then one for b: b's is the second read sent.
#[tokio::test(start_paused = true)]
async fn another_namespace_is_served_before_a_floods_thousandth_read() {
    let (reader, mut server, mut reads, _) = start();
    for i in 0..1_000 {
        assert_eq!(reader.request(Request::new(involved("a", &format!("rs-{i}")), false)), None);
    }
    assert_eq!(reader.request(Request::new(involved("b", "web"), false)), None);
    let mut order = Vec::new();
    while !order.contains(&("b".to_string(), "web".to_string())) {
        let call = server.next().await;
        order.push(asked(&call));
        answer(call);
    }
    assert_eq!(order, [("a".to_string(), "rs-0".to_string()), ("b".to_string(), "web".to_string())]);
    let mut read = Vec::new();
    for _ in 0..2 {
        read.push(reads.recv().await.expect("a read").lookup.namespace);
    }
    read.sort();
    assert_eq!(read, ["a", "b"]);
}

/// A's read hangs: b's is sent and answered at once, without waiting for a's timeout; a's
/// then times out, is retried after the backoff, and succeeds.
#[tokio::test(start_paused = true)]
async fn a_hung_read_delays_no_other_namespace_and_a_failed_one_is_retried() {
    let (reader, mut server, mut reads, metrics) = start();
    let began = Instant::now();
    reader.request(Request::new(involved("a", "stuck"), false));
    reader.request(Request::new(involved("a", "next"), false));
    reader.request(Request::new(involved("b", "web"), false));
    let hung = server.next().await;
    hung.expect("GET", &path("a", "stuck"), &[]);
    let b = server.next().await;
    b.expect("GET", &path("b", "web"), &[]);
    answer(b);
    let read = reads.recv().await.expect("b's read");
    assert_eq!((read.lookup.namespace.as_str(), began.elapsed()), ("b", Duration::ZERO));
    assert!(matches!(read.found, Ok(Some(ref o)) if o.needs_pods));
    // A's next read waits for its first, which times out and is retried after 1 s; its
    // next one runs meanwhile.
    let next = server.next().await;
    next.expect("GET", &path("a", "next"), &[]);
    assert_eq!(began.elapsed(), READ_TIMEOUT);
    answer(next);
    assert_eq!(reads.recv().await.expect("a read").lookup.name, "next");
    let retried = server.next().await;
    retried.expect("GET", &path("a", "stuck"), &[]);
    assert_eq!(began.elapsed(), READ_TIMEOUT + Duration::from_secs(1));
    retried.respond_status(500, "InternalError");
    let again = server.next().await;
    again.expect("GET", &path("a", "stuck"), &[]);
    assert_eq!(began.elapsed(), READ_TIMEOUT + Duration::from_secs(3));
    answer(again);
    let read = reads.recv().await.expect("a's read");
    assert_eq!(read.lookup.name, "stuck");
    assert!(read.found.is_ok());
    assert_eq!(metrics.limited.with_label_values(&[LIMIT]).get(), 2);
    drop(hung);
}

/// Every attempt failing: reported failed after three, each counted.
#[tokio::test(start_paused = true)]
async fn a_read_failing_every_time_is_reported_once() {
    let (reader, mut server, mut reads, metrics) = start();
    reader.request(Request::new(involved("a", "web"), false));
    for _ in 0..ATTEMPTS {
        server.next().await.respond_status(503, "ServiceUnavailable");
    }
    let read = reads.recv().await.expect("a read");
    assert!(read.found.is_err());
    assert_eq!(metrics.limited.with_label_values(&[LIMIT]).get(), u64::from(ATTEMPTS));
    server.expect_silence(Duration::from_secs(60)).await;
}
