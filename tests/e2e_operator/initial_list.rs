//! `--initial-list` on kube-apiserver 1.37, each test on a control plane of its own whose
//! audit log tells which way each watcher asked for its initial state: streaming lists where
//! the server serves them (no LIST at all), the fall back to paginated lists where it refuses
//! them (WatchList feature gate off), `auto` (the default) asking a server that reports 1.26
//! for none (the fault proxy poses as one), and a streaming watch cut off by an outage
//! streaming again. Then the default with the gate on (as 1.37 ships it) and off: which way
//! each watcher went, what kube-apiserver says it served, and the alerts and Events after the
//! start. `real_server.rs` runs `--initial-list streaming` on the shared control plane too.
//! (A real 1.26 refuses streaming lists with 422 Invalid on `resourceVersionMatch`, where
//! 1.37 without the gate names `sendInitialEvents`: the same fall back, whose recognition of
//! both messages `controller::initial_list`'s unit tests check.)
//!
//! On a release whose WatchList gate is off by default ([`streams_by_default`]: 1.33, which CI
//! runs too, and 1.27-1.31) the tests that count on streaming lists assert what that server
//! really does instead: it refuses them with the same message as 1.37 without the gate, and
//! each watcher falls back to paginated lists once, with the designed warning.

use std::collections::BTreeSet;

use serde_json::json;
use sidecar_watch_harness::control_plane::{AuditLog, Options};
use sidecar_watch_harness::env::wait_until;
use sidecar_watch_harness::fault_proxy::{FaultProxy, MediaTypes};

use crate::server_side::{compact_history, initial_states, outage, InitialStates};
use crate::support::*;

/// Pods in the test namespace before the operator starts.
const PODS: usize = 25;

/// Every resource the operator watches, by plural (its `watch` name in logs and metrics).
const RESOURCES: [&str; 5] = ["clustersidecarpolicies", "events", "namespaces", "pods", "sidecarpolicies"];

const FALLBACK: &str = "the API server does not serve streaming lists; this watch uses paginated lists from now on";

/// Streamed, refused and listed per resource ([`InitialStates::counts`]), in
/// [`RESOURCES`]' order, and the whole record for messages.
fn every_initial_state(audit: &AuditLog) -> (Vec<(u64, u64, u64)>, String) {
    let states: Vec<InitialStates> = RESOURCES.iter().map(|r| initial_states(audit, r)).collect();
    (states.iter().map(InitialStates::counts).collect(), format!("{states:?}"))
}

/// Each resource's (streamed, refused, listed) as `one`.
fn each(one: (u64, u64, u64)) -> Vec<(u64, u64, u64)> {
    vec![one; RESOURCES.len()]
}

/// A control plane of the test's own with an audit log (`watch_list`: the WatchList feature
/// gate), the operator's connection through the fault proxy, and [`PODS`] Pods.
async fn cluster_with_pods(prefix: &str, watch_list: bool) -> (Cluster, AuditLog, FaultProxy) {
    let audit = AuditLog::new().expect("an audit policy");
    let feature_gates = (!watch_list).then(|| "WatchList=false".to_string());
    let options = Options { feature_gates, apiserver_args: audit.apiserver_args() };
    let (c, proxy) = Cluster::start_behind_fault_proxy(prefix, options).await;
    for i in 0..PODS {
        c.create_pod(native_pod(&format!("web-{i}"), "web", "app", "istio-proxy")).await;
    }
    (c, audit, proxy)
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

const PROTOBUF: &str = "application/vnd.kubernetes.protobuf";

/// The distinct `Content-Type`s of the answers to the operator's Pod reads, and whether it
/// asked anything else of kube-apiserver in protobuf (it must not: only the Pod watch's
/// client reads protobuf).
fn pod_media_types(proxy: &FaultProxy) -> (BTreeSet<String>, Vec<MediaTypes>) {
    let is_pod_read = |m: &MediaTypes| {
        let parts: Vec<&str> = m.request.trim_start_matches("GET /").split('/').collect();
        m.request.starts_with("GET ")
            && matches!(parts.as_slice(), ["api", "v1", "pods"] | ["api", "v1", "namespaces", _, "pods"])
    };
    let all = proxy.media_types();
    let pods = all.iter().filter(|m| is_pod_read(m));
    for m in pods.clone() {
        assert_eq!(m.accept, format!("{PROTOBUF}, application/json"), "{m:?}");
    }
    let others =
        all.iter().filter(|m| !is_pod_read(m) && (m.accept.contains(PROTOBUF) || m.content_type.contains(PROTOBUF)));
    (pods.map(|m| m.content_type.clone()).collect(), others.cloned().collect())
}

/// Each watcher asked once, was refused, and listed (one page) instead, logging the fall back;
/// no retrying of the refusal, and a fall back is no failed watch. What a server without
/// streaming lists answers `--initial-list streaming` with.
async fn assert_fell_back_once(op: &Operator, audit: &AuditLog) -> Scrape {
    let scrape = assert_tracks_all_pods(op, PODS, "paginated").await;
    let (counts, record) = every_initial_state(audit);
    assert_eq!(counts, each((0, 1, 1)), "{record}");
    assert_eq!(watches_logging(&op.log(), FALLBACK), RESOURCES, "{}", op.log());
    assert_eq!(scrape.value("sidecar_watch_watch_restarts_total", &[]), Some(0.0));
    scrape
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaming_lists_get_the_initial_state_without_a_list() {
    let (c, audit, proxy) = cluster_with_pods("stream", true).await;
    let op = Operator::start(&c, "op-0", &["--initial-list", "streaming", "--log-format", "json"]).await;
    if !streams_by_default(server_minor(&c.env).await) {
        // 1.33 (WatchList off by default): refused, and paginated lists instead, as designed;
        // the changes still come on the watch.
        assert_fell_back_once(&op, &audit).await;
        c.create_pod(native_pod("web-late", "web", "app", "istio-proxy")).await;
        op.wait_scrape("the new Pod tracked", |s| has_value(s, "sidecar_watch_pods_tracked", &[], (PODS + 1) as f64))
            .await;
        let (counts, record) = every_initial_state(&audit);
        assert_eq!(counts, each((0, 1, 1)), "{record}");
        return;
    }
    assert_tracks_all_pods(&op, PODS, "streaming").await;
    // One streaming watch per resource, served; not one LIST.
    let (counts, record) = every_initial_state(&audit);
    assert_eq!(counts, each((1, 0, 0)), "{record}");
    // After the initial state, the same watch carries the changes.
    c.create_pod(native_pod("web-late", "web", "app", "istio-proxy")).await;
    op.wait_scrape("the new Pod tracked", |s| has_value(s, "sidecar_watch_pods_tracked", &[], (PODS + 1) as f64)).await;
    let (counts, record) = every_initial_state(&audit);
    assert_eq!(counts, each((1, 0, 0)), "{record}");
    assert_eq!(watches_logging(&op.log(), FALLBACK), Vec::<String>::new());
    // Pods were streamed as protobuf, nothing else was.
    let (pods, others) = pod_media_types(&proxy);
    assert_eq!(pods, BTreeSet::from([format!("{PROTOBUF};stream=watch")]));
    assert_eq!(others, []);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_watchlist_gate_each_watcher_falls_back_to_paginated_lists_once() {
    let (c, audit, proxy) = cluster_with_pods("fallback", false).await;
    let op = Operator::start(&c, "op-0", &["--initial-list", "streaming", "--log-format", "json"]).await;
    assert_fell_back_once(&op, &audit).await;
    // The refusal (a Status) and the pages came as protobuf: the refusal was read as one.
    let (pods, others) = pod_media_types(&proxy);
    assert_eq!(pods, BTreeSet::from([PROTOBUF.to_string(), format!("{PROTOBUF};stream=watch")]));
    assert_eq!(others, []);
    c.create_pod(native_pod("web-late", "web", "app", "istio-proxy")).await;
    op.wait_scrape("the new Pod tracked", |s| has_value(s, "sidecar_watch_pods_tracked", &[], (PODS + 1) as f64)).await;
}

/// A proxy in front of kube-apiserver that drops `sendInitialEvents` (as one that does not
/// know it would): kube-apiserver answers each streaming list as a plain watch, the objects
/// and never the bookmark that ends the initial state. At the deadline each watcher says so and
/// lists in pages instead; the operator is ready then, and changes keep coming.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_initial_state_that_never_ends_falls_back_to_paginated_lists_at_the_deadline() {
    let (c, _audit, proxy) = cluster_with_pods("never-ends", true).await;
    proxy.drop_send_initial_events();
    let started = std::time::Instant::now();
    let args = ["--initial-list", "streaming", "--initial-state-deadline", "10s", "--log-format", "json"];
    let op = Operator::start(&c, "op-0", &args).await;
    assert_tracks_all_pods(&op, PODS, "paginated").await;
    assert!(started.elapsed() >= std::time::Duration::from_secs(10), "ready before the deadline");
    assert_eq!(watches_logging(&op.log(), FALLBACK), RESOURCES, "{}", op.log());
    let reason = "the initial state of a streaming list did not end within 10s: the API server (or a proxy in front \
                  of it) accepted the watch but ignores sendInitialEvents";
    assert!(op.log().contains(reason), "{}", op.log());
    c.create_pod(native_pod("web-late", "web", "app", "istio-proxy")).await;
    op.wait_scrape("the new Pod tracked", |s| has_value(s, "sidecar_watch_pods_tracked", &[], (PODS + 1) as f64)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_are_read_as_json_when_asked() {
    let (c, _audit, proxy) = cluster_with_pods("json", true).await;
    let op = Operator::start(&c, "op-0", &["--pod-encoding", "json"]).await;
    // The default `auto`: streaming lists, or on 1.33 the refusal and paginated lists, all JSON.
    let strategy = if streams_by_default(server_minor(&c.env).await) { "streaming" } else { "paginated" };
    assert_tracks_all_pods(&op, PODS, strategy).await;
    c.create_pod(native_pod("web-late", "web", "app", "istio-proxy")).await;
    op.wait_scrape("the new Pod tracked", |s| has_value(s, "sidecar_watch_pods_tracked", &[], (PODS + 1) as f64)).await;
    let json: Vec<_> = proxy.media_types().into_iter().filter(|m| m.request.ends_with("/pods")).collect();
    assert!(
        !json.is_empty() && json.iter().all(|m| m.accept.is_empty() && m.content_type == "application/json"),
        "{json:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_asks_a_server_before_1_27_for_no_streaming_list() {
    // kube-apiserver 1.37 would serve streaming lists; posing as 1.26, it is not asked.
    let (c, audit, proxy) = cluster_with_pods("default-old", true).await;
    proxy.pose_as_minor(26);
    let op = Operator::start(&c, "op-0", &[]).await;
    assert_tracks_all_pods(&op, PODS, "paginated").await;
    let (counts, record) = every_initial_state(&audit);
    assert_eq!(counts, each((0, 0, 1)), "{record}");
    assert!(op.log().contains("the API server predates streaming lists (1.27); using paginated lists"), "{}", op.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streaming_watch_cut_off_streams_its_state_again_and_forgets_what_went() {
    let (c, audit, proxy) = cluster_with_pods("stream-cut", true).await;
    let op = Operator::start(&c, "op-0", &["--initial-list", "streaming", "--log-format", "json"]).await;
    if !streams_by_default(server_minor(&c.env).await) {
        // 1.33 (WatchList off by default): each watcher fell back once; after the outage and a
        // 410 Gone it lists again in pages and does not ask for a streaming list again.
        assert_fell_back_once(&op, &audit).await;
        outage(&proxy).await;
        c.delete_pod_now("web-0").await;
        compact_history(&c).await;
        proxy.heal();
        proxy.drop_connections();
        wait_until(WAIT, "the Pods listed again", || async {
            let pods = initial_states(&audit, "pods");
            if pods.listed >= 2 {
                Ok(())
            } else {
                Err(format!("{pods:?}"))
            }
        })
        .await
        .expect("a second paginated list of Pods");
        assert_tracks_all_pods(&op, PODS - 1, "paginated").await;
        for resource in RESOURCES {
            let states = initial_states(&audit, resource);
            assert_eq!((states.streamed, states.refused), (0, 1), "{resource}: {states:?}");
        }
        assert_eq!(watches_logging(&op.log(), FALLBACK), RESOURCES, "{}", op.log());
        return;
    }
    assert_tracks_all_pods(&op, PODS, "streaming").await;
    // The connection drops and stays down (every request fails) while a Pod is deleted and
    // the history compacted, so resuming gives 410 Gone and a new initial state is needed.
    outage(&proxy).await;
    c.delete_pod_now("web-0").await;
    compact_history(&c).await;
    proxy.heal();
    proxy.drop_connections();
    // Streamed again, not listed, not fallen back: an outage is no refusal.
    assert_tracks_all_pods(&op, PODS - 1, "streaming").await;
    let pods = initial_states(&audit, "pods");
    assert!(pods.streamed >= 2, "{pods:?}");
    for resource in RESOURCES {
        let states = initial_states(&audit, resource);
        assert_eq!((states.refused, states.listed), (0, 0), "{resource}: {states:?}");
    }
    assert_eq!(watches_logging(&op.log(), FALLBACK), Vec::<String>::new());
}

// ---------------------------------------------------------------------------------------
// The default on kube-apiserver 1.37

/// What kube-apiserver says it served for Pods, from its own `/metrics`: streaming lists it
/// completed (`apiserver_watch_list_duration_seconds`, observed when it sends the bookmark
/// that ends the initial events) and LIST requests.
#[derive(Clone, Copy, Debug, PartialEq)]
struct ServedPods {
    streamed: f64,
    listed: f64,
}

async fn served_pods(c: &Cluster) -> ServedPods {
    let request = http::Request::get("/metrics").body(Vec::new()).expect("request");
    let text = c.env.client.request_text(request).await.expect("kube-apiserver /metrics");
    let families = ["apiserver_watch_list_duration_seconds_count{", "apiserver_request_total{"];
    let lines: Vec<&str> = text.lines().filter(|l| families.iter().any(|f| l.starts_with(f))).collect();
    let scrape = Scrape::parse(&lines.join("\n")).expect("kube-apiserver's metrics parse");
    ServedPods {
        streamed: scrape.sum("apiserver_watch_list_duration_seconds_count", &[("resource", "pods")]),
        listed: scrape.sum("apiserver_request_total", &[("verb", "LIST"), ("resource", "pods")]),
    }
}

fn firing(ns: &str, pod: &str) -> Labels {
    AlertSeries { namespace: ns, pod, ..MESH_NOT_READY }.labels()
}

/// Starts the operator with the default `--initial-list` against a control plane of the
/// test's own (`options`) holding the policy `mesh` (`sidecarNotReady` after 1 s) and two
/// Pods, p1 with its sidecar not ready and p2 ready; checks that every watcher got its initial
/// state by streaming lists where the server serves them (`gate_off` false and the release's
/// default on: [`streams_by_default`]), by paginated lists otherwise (exactly one watcher
/// each, none the other way), what kube-apiserver served, the fall back warnings, and the
/// alerts, status and Events of the start and of changes after it.
async fn default_start(prefix: &str, options: Options, gate_off: bool) {
    let c = Cluster::start_own_control_plane(prefix, options).await;
    let strategy = if !gate_off && streams_by_default(server_minor(&c.env).await) { "streaming" } else { "paginated" };
    let ns = c.ns.clone();
    c.apply_app_policy("mesh", "web", json!({"sidecarNotReady": {"for": "1s", "severity": "warning"}})).await;
    for (name, ready) in [("p1", false), ("p2", true)] {
        let pod = c.create_pod(native_pod(name, "web", "app", "istio-proxy")).await;
        drive(&pod, &[("app", true), ("istio-proxy", ready)]).await;
    }
    let before = served_pods(&c).await;
    let op = Operator::start(&c, "op-0", &["--log-format", "json"]).await;
    let scrape = assert_tracks_all_pods(&op, 2, strategy).await;
    for resource in RESOURCES {
        let other = |s: &str| scrape.value("sidecar_watch_initial_list", &[("resource", resource), ("strategy", s)]);
        match strategy {
            // Never counted as paginated: no series at all.
            "streaming" => assert_eq!(other("paginated"), None, "{resource}\n{}", scrape.text),
            // Counted as streaming, then moved over: 0.
            _ => assert_eq!(other("streaming"), Some(0.0), "{resource}\n{}", scrape.text),
        }
    }
    let fell_back = if strategy == "streaming" { Vec::new() } else { RESOURCES.map(String::from).to_vec() };
    assert_eq!(watches_logging(&op.log(), FALLBACK), fell_back, "{}", op.log());
    // A fall back is no failed watch, and streaming needs no retry either.
    assert_eq!(scrape.value("sidecar_watch_watch_restarts_total", &[]), Some(0.0), "{}", op.log());

    // kube-apiserver's side: the Pods came as a streaming list and not one LIST, or the
    // other way round.
    let served = wait_until(WAIT, "kube-apiserver's count of the operator's start", || async {
        let now = served_pods(&c).await;
        let delta = ServedPods { streamed: now.streamed - before.streamed, listed: now.listed - before.listed };
        let expected = if strategy == "streaming" { delta.streamed >= 1.0 } else { delta.listed >= 1.0 };
        if expected {
            Ok(delta)
        } else {
            Err(delta)
        }
    })
    .await;
    let served = served.expect("kube-apiserver served the operator's initial Pods");
    match strategy {
        "streaming" => assert_eq!(served.listed, 0.0, "the operator listed Pods: {served:?}"),
        _ => assert_eq!(served.streamed, 0.0, "a streaming list was served with WatchList off: {served:?}"),
    }

    // The start's alerts, status and Events.
    op.wait_alerts("p1 firing", vec![firing(&ns, "p1")]).await;
    c.wait_events("p1", "Warning", "SidecarContainerNotReady", 1).await;
    c.wait_status("mesh", "p1 alerting", |s| status_counts(s, 2, 1, json!({"SidecarContainerNotReady": 1}), 0)).await;

    // Changes after the initial state come on the same watches.
    let p3 = c.create_pod(native_pod("p3", "web", "app", "istio-proxy")).await;
    drive(&p3, &[("app", true), ("istio-proxy", false)]).await;
    let p1 = sidecar_watch_harness::kubelet::PodDriver::new(c.env.client.clone(), &ns, "p1");
    set_ready(&p1, "istio-proxy", true).await;
    op.wait_alerts("p3 firing, p1 resolved", vec![firing(&ns, "p3")]).await;
    c.wait_events("p1", "Normal", "SidecarContainerNotReadyResolved", 1).await;
    c.wait_events("p3", "Warning", "SidecarContainerNotReady", 1).await;
    c.wait_status("mesh", "p3 alerting", |s| status_counts(s, 3, 1, json!({"SidecarContainerNotReady": 1}), 0)).await;
    let events = c.events().await;
    for (pod, warnings) in [("p1", 1), ("p2", 0), ("p3", 1)] {
        let n = count_events(&events, pod, "Warning", "SidecarContainerNotReady");
        assert_eq!(n, warnings, "{pod}: {}", describe_events(&events));
    }
    let scrape = assert_tracks_all_pods(&op, 3, strategy).await;
    assert_eq!(scrape.value("sidecar_watch_watch_restarts_total", &[]), Some(0.0), "{}", op.log());
}

/// The default on kube-apiserver 1.37 (WatchList on, as it ships): streaming lists for every
/// watcher, no LIST of Pods, and the same alerts and Events as ever. On 1.33, as it ships
/// (WatchList off), what most clusters of that release do: each watcher is refused once and
/// falls back to paginated lists, and the start is as correct.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn by_default_kube_apiserver_streams_the_initial_state() {
    default_start("default-watchlist", Options::default(), false).await;
}

/// The default on kube-apiserver 1.37 with `--feature-gates=WatchList=false`: each watcher is
/// refused once, falls back to paginated lists, and the start is as correct.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn by_default_without_the_watchlist_gate_each_watcher_falls_back_to_paginated_lists() {
    let gate_off = Options { feature_gates: Some("WatchList=false".into()), ..Options::default() };
    default_start("default-no-watchlist", gate_off, true).await;
}
