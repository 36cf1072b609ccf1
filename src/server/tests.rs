//! A scrape's body gives its render slot back between chunks: a client that does not read
//! holds no slot, and everyone else's scrapes complete meanwhile.

use std::io::Read;
use std::net::{IpAddr, Ipv4Addr};

use futures::StreamExt;

use super::*;
use crate::api::{PolicySpec, SlimPod};
use crate::engine::{CompiledPolicy, PolicyRef};
use crate::index::PolicyEntry;
use crate::index::Writes;

/// An index of `pods` Pods with a native sidecar each, under the built-in policy, led.
fn source(pods: usize) -> (scrape::Source, crate::leadership::RoleSender) {
    let index = Index::new();
    let now = jiff::Timestamp::now();
    let policy = PolicyRef::cluster("default");
    let compiled = CompiledPolicy::compile(policy.clone(), &PolicySpec::default());
    index.apply_policy(policy, PolicyEntry::new(compiled), now);
    for i in 0..pods {
        let pod: SlimPod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": format!("web-{i}"), "namespace": "shop", "uid": format!("uid-{i}")},
            "spec": {
                "initContainers": [{"name": "istio-proxy", "image": "istio/proxyv2:1.26", "restartPolicy": "Always"}],
                "containers": [{"name": "app", "image": "shop/web:1.0"}]
            }
        }))
        .expect("valid Pod");
        index.apply_pod(index.view_of(&pod), now);
    }
    let (role_tx, role) = crate::leadership::channel();
    crate::leadership::set_leader(&role_tx, true);
    (scrape::Source { index: Arc::new(index), metrics: Metrics::new(), role }, role_tx)
}

/// An admitted scrape, from a client address of its own.
fn ticket(open_scrapes: &Arc<OpenScrapes>) -> open_scrapes::Ticket {
    let client = IpAddr::V4(Ipv4Addr::from(0x7f00_0001 + open_scrapes.count() as u32));
    open_scrapes.admit(client, CancellationToken::new()).expect("admitted").0
}

async fn collect(body: axum::body::Body) -> Vec<u8> {
    let mut stream = body.into_data_stream();
    let mut out = Vec::new();
    while let Some(piece) = stream.next().await {
        out.extend_from_slice(&piece.expect("a body without errors"));
    }
    out
}

fn gunzip(bytes: &[u8]) -> String {
    let mut text = String::new();
    flate2::read::GzDecoder::new(bytes).read_to_string(&mut text).expect("valid gzip");
    text
}

/// The registry part holds timings (process CPU, …) that differ from scrape to scrape: the
/// per-Pod families do not.
fn per_pod(text: &str) -> Vec<&str> {
    text.lines().filter(|l| l.starts_with("sidecar_container_") || l.starts_with("sidecar_alerts")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_does_not_read_holds_no_render_slot() {
    let (source, _role) = source(3000);
    let open_scrapes = Arc::new(OpenScrapes::default());
    let slots = Arc::new(Semaphore::new(scrape::RENDER_SLOTS));

    // RENDER_SLOTS + 2 clients take their first chunk, then stop reading.
    let mut stalled = Vec::new();
    for _ in 0..scrape::RENDER_SLOTS + 2 {
        let mut body = scrape::body(source.clone(), false, slots.clone(), ticket(&open_scrapes)).into_data_stream();
        let first = body.next().await.expect("a first chunk").expect("no error");
        assert!(!first.is_empty());
        stalled.push((body, first.to_vec()));
    }
    assert_eq!(slots.available_permits(), scrape::RENDER_SLOTS, "no slot held while the clients do not read");

    // Meanwhile a normal scrape, gzip, completes.
    let normal = collect(scrape::body(source.clone(), true, slots.clone(), ticket(&open_scrapes))).await;
    let normal = gunzip(&normal);
    assert_eq!(per_pod(&normal).iter().filter(|l| l.starts_with("sidecar_container_ready")).count(), 3000);

    // The stalled clients read on later and get the same series.
    for (mut body, mut text) in stalled {
        while let Some(piece) = body.next().await {
            text.extend_from_slice(&piece.expect("no error"));
        }
        let text = String::from_utf8(text).expect("UTF-8");
        assert_eq!(per_pod(&text), per_pod(&normal));
    }
    assert_eq!(open_scrapes.count(), 0, "finished scrapes freed their places");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_and_gzip_bodies_equal_the_render() {
    let (source, _role) = source(200);
    let open_scrapes = Arc::new(OpenScrapes::default());
    let slots = Arc::new(Semaphore::new(scrape::RENDER_SLOTS));
    let mut expected = String::new();
    source.metrics.render(&source.index, true, |chunk| {
        expected.push_str(&chunk);
        true
    });
    let plain = collect(scrape::body(source.clone(), false, slots.clone(), ticket(&open_scrapes))).await;
    let plain = String::from_utf8(plain).expect("UTF-8");
    let zipped = gunzip(&collect(scrape::body(source.clone(), true, slots.clone(), ticket(&open_scrapes))).await);
    assert_eq!(per_pod(&plain), per_pod(&expected));
    assert_eq!(per_pod(&zipped), per_pod(&expected));
    assert!(per_pod(&expected).len() >= 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_body_frees_its_place() {
    let (source, _role) = source(50);
    let open_scrapes = Arc::new(OpenScrapes::default());
    let slots = Arc::new(Semaphore::new(scrape::RENDER_SLOTS));
    let mut body = scrape::body(source, false, slots.clone(), ticket(&open_scrapes)).into_data_stream();
    body.next().await.expect("a chunk").expect("no error");
    assert_eq!(open_scrapes.count(), 1);
    drop(body);
    assert_eq!(open_scrapes.count(), 0);
    assert_eq!(slots.available_permits(), scrape::RENDER_SLOTS);
}
