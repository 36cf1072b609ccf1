//! `--initial-list` on the simulator, which counts every LIST and streaming watch per client
//! and can pose as a 1.26 server: streaming lists where the server serves them (no LIST at
//! all), the fall back to paginated lists where it rejects them (WatchList feature gate off),
//! and `auto` deciding by the server's version. `real_server.rs` runs the same against
//! kube-apiserver 1.37 with the gate on and off.

use sidecar_watch_e2e::sim::{SimConfig, StreamingWatch};

use crate::support::*;

/// Pods in the test namespace before the operator starts.
const PODS: usize = 25;

/// Every resource the operator watches, by plural (its `watch` name in logs and metrics).
const RESOURCES: [&str; 4] = ["clustersidecarpolicies", "namespaces", "pods", "sidecarpolicies"];

const FALLBACK: &str = "the API server does not serve streaming lists; this watch uses paginated lists from now on";

async fn cluster_with_pods(prefix: &str, config: SimConfig) -> Cluster {
    let c = Cluster::start_simulator(prefix, config).await;
    for i in 0..PODS {
        c.create_pod(native_pod(&format!("web-{i}"), "web", "app", "istio-proxy")).await;
    }
    c
}

/// The `watch` field of every line of a JSON log whose `msg` is `message`, sorted.
fn watches_logging(log: &str, message: &str) -> Vec<String> {
    let mut watches: Vec<String> = log
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|line| line["msg"] == message)
        .map(|line| line["watch"].as_str().unwrap_or("(no watch field)").to_string())
        .collect();
    watches.sort();
    watches
}

/// Waits until every Pod is tracked and checks `sidecar_watch_initial_list` per resource.
async fn assert_tracks_all_pods(op: &Operator, pods: usize, strategy: &str) -> Scrape {
    let other = if strategy == "streaming" { "paginated" } else { "streaming" };
    op.wait_scrape("every Pod tracked", |s| {
        has_value(s, "sidecar_watch_pods_tracked", &[], pods as f64)?;
        for resource in RESOURCES {
            has_value(s, "sidecar_watch_initial_list", &[("resource", resource), ("strategy", strategy)], 1.0)?;
            match s.value("sidecar_watch_initial_list", &[("resource", resource), ("strategy", other)]) {
                None | Some(0.0) => {}
                Some(v) => return Err(format!("{resource} has {v} watchers with {other} lists")),
            }
        }
        Ok(())
    })
    .await
}

/// Which of the operator's calls were LISTs, as `resource` names.
fn listed(c: &Cluster) -> Vec<String> {
    let mut listed: Vec<String> = c
        .sim()
        .shared()
        .calls_by("sidecar-watch/")
        .into_iter()
        .filter(|call| call.verb == "list" && RESOURCES.contains(&call.resource.as_str()))
        .map(|call| call.resource)
        .collect();
    listed.sort();
    listed.dedup();
    listed
}

fn streaming_watches(c: &Cluster, outcome: StreamingWatch) -> Vec<u64> {
    RESOURCES.iter().map(|r| c.sim().shared().streaming_watches(r, outcome)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaming_lists_get_the_initial_state_without_a_list() {
    let c = cluster_with_pods("stream", SimConfig::default()).await;
    let op = Operator::start(&c, "op-0", &["--initial-list", "streaming", "--log-format", "json"]).await;
    assert_tracks_all_pods(&op, PODS, "streaming").await;
    // One streaming watch per resource, served; not one LIST.
    assert_eq!(streaming_watches(&c, StreamingWatch::Served), [1, 1, 1, 1]);
    assert_eq!(streaming_watches(&c, StreamingWatch::Rejected), [0, 0, 0, 0]);
    assert_eq!(listed(&c), Vec::<String>::new());
    // After the initial state, the same watch carries the changes.
    c.create_pod(native_pod("web-late", "web", "app", "istio-proxy")).await;
    op.wait_scrape("the new Pod tracked", |s| has_value(s, "sidecar_watch_pods_tracked", &[], (PODS + 1) as f64)).await;
    assert_eq!(watches_logging(&op.log(), FALLBACK), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_watchlist_gate_each_watcher_falls_back_to_paginated_lists_once() {
    let c = cluster_with_pods("fallback", SimConfig { watch_list: false, ..SimConfig::default() }).await;
    let op = Operator::start(&c, "op-0", &["--initial-list", "streaming", "--log-format", "json"]).await;
    let scrape = assert_tracks_all_pods(&op, PODS, "paginated").await;
    // Each watcher asked once, was refused, and listed instead: no retrying of the refusal.
    assert_eq!(streaming_watches(&c, StreamingWatch::Rejected), [1, 1, 1, 1]);
    assert_eq!(streaming_watches(&c, StreamingWatch::Served), [0, 0, 0, 0]);
    assert_eq!(listed(&c), RESOURCES);
    assert_eq!(watches_logging(&op.log(), FALLBACK), RESOURCES, "{}", op.log());
    // A fall back is no failed watch.
    assert_eq!(scrape.value("sidecar_watch_watch_restarts_total", &[]), Some(0.0));
    c.create_pod(native_pod("web-late", "web", "app", "istio-proxy")).await;
    op.wait_scrape("the new Pod tracked", |s| has_value(s, "sidecar_watch_pods_tracked", &[], (PODS + 1) as f64)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_streams_from_kubernetes_1_27_on() {
    let old = cluster_with_pods("auto-old", SimConfig { minor_version: 26, ..SimConfig::default() }).await;
    let op = Operator::start(&old, "op-0", &["--initial-list", "auto"]).await;
    assert_tracks_all_pods(&op, PODS, "paginated").await;
    // Not even asked: a 1.26 server does not know streaming lists.
    assert_eq!(streaming_watches(&old, StreamingWatch::Rejected), [0, 0, 0, 0]);
    assert_eq!(streaming_watches(&old, StreamingWatch::Served), [0, 0, 0, 0]);
    assert!(op.log().contains("the API server predates streaming lists (1.27); using paginated lists"), "{}", op.log());

    let current = cluster_with_pods("auto-new", SimConfig::default()).await;
    let op = Operator::start(&current, "op-0", &["--initial-list", "auto"]).await;
    assert_tracks_all_pods(&op, PODS, "streaming").await;
    assert_eq!(streaming_watches(&current, StreamingWatch::Served), [1, 1, 1, 1]);
    assert_eq!(listed(&current), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaming_lists_asked_of_a_1_26_server_fall_back_too() {
    // 1.19 to 1.26 know no sendInitialEvents and reject the resourceVersionMatch sent with it.
    let c = cluster_with_pods("old-stream", SimConfig { minor_version: 26, ..SimConfig::default() }).await;
    let op = Operator::start(&c, "op-0", &["--initial-list", "streaming", "--log-format", "json"]).await;
    assert_tracks_all_pods(&op, PODS, "paginated").await;
    assert_eq!(listed(&c), RESOURCES);
    assert_eq!(watches_logging(&op.log(), FALLBACK), RESOURCES, "{}", op.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streaming_watch_cut_off_streams_its_state_again_and_forgets_what_went() {
    let c = cluster_with_pods("stream-cut", SimConfig::default()).await;
    let op = Operator::start(&c, "op-0", &["--initial-list", "streaming", "--log-format", "json"]).await;
    assert_tracks_all_pods(&op, PODS, "streaming").await;
    let sim = c.sim();
    // The connection drops and stays down (every request fails) while a Pod is deleted and
    // the history compacted, so resuming gives 410 Gone and a new initial state is needed.
    crate::faults::outage(sim).await;
    crate::faults::direct_delete_pod(sim, &c.ns, "web-0");
    sim.compact();
    sim.fail_next_500(0);
    sim.restart();
    // Streamed again, not listed, not fallen back: an outage is no rejection.
    assert_tracks_all_pods(&op, PODS - 1, "streaming").await;
    assert!(c.sim().shared().streaming_watches("pods", StreamingWatch::Served) >= 2);
    assert_eq!(streaming_watches(&c, StreamingWatch::Rejected), [0, 0, 0, 0]);
    assert_eq!(listed(&c), Vec::<String>::new());
    assert_eq!(watches_logging(&op.log(), FALLBACK), Vec::<String>::new());
}
