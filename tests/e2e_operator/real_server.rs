//! What only a real kube-apiserver and etcd can show: each test runs a control plane of its
//! own (`harness/control-plane`) and breaks it as production does: kube-apiserver killed and
//! started again (every watch drops), etcd compacted under it (resuming watches get 410 Gone),
//! the API server down when the operator starts, and the WatchList feature gate on and off
//! for streaming lists. Afterwards every alert was announced exactly once.

use std::time::Duration;

use serde_json::json;
use sidecar_watch_harness::control_plane::Options;
use sidecar_watch_harness::env::wait_until;

use crate::support::*;

fn firing(ns: &str, pod: &str) -> Labels {
    AlertSeries { namespace: ns, pod, ..MESH_NOT_READY }.labels()
}

/// A cluster of the test's own with the one policy these tests use and `pods` Pods whose
/// sidecar is not ready (so each fires `SidecarContainerNotReady` after 1 s).
async fn own_cluster_with_alerting_pods(prefix: &str, options: Options, pods: &[&str]) -> Cluster {
    let c = Cluster::start_own_control_plane(prefix, options).await;
    c.apply_app_policy("mesh", "web", json!({"sidecarNotReady": {"for": "1s", "severity": "warning"}})).await;
    for name in pods {
        let pod = c.create_pod(native_pod(name, "web", "app", "istio-proxy")).await;
        drive(&pod, &[("app", true), ("istio-proxy", false)]).await;
    }
    c
}

/// kube-apiserver is killed and started again: every watch breaks. The operator resumes,
/// sees what changed afterwards, and announces nothing twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_server_restart_loses_nothing_and_repeats_nothing() {
    let c = own_cluster_with_alerting_pods("apiserver-restart", Options::default(), &["p1"]).await;
    let ns = c.ns.clone();
    let op = Operator::start(&c, "op-0", &["--lease-duration", "15s"]).await;
    op.wait_alerts("p1 firing", vec![firing(&ns, "p1")]).await;
    c.wait_events("p1", "Warning", "SidecarContainerNotReady", 1).await;

    c.control_plane().restart_apiserver().await.expect("kube-apiserver restarted");

    // After the restart: a new alerting Pod, and p1's sidecar recovers.
    let p2 = c.create_pod(native_pod("p2", "web", "app", "istio-proxy")).await;
    drive(&p2, &[("app", true), ("istio-proxy", false)]).await;
    let p1 = sidecar_watch_harness::kubelet::PodDriver::new(c.env.client.clone(), &ns, "p1");
    set_ready(&p1, "istio-proxy", true).await;
    op.wait_alerts("p2 firing, p1 resolved", vec![firing(&ns, "p2")]).await;
    c.wait_events("p1", "Normal", "SidecarContainerNotReadyResolved", 1).await;
    c.wait_events("p2", "Warning", "SidecarContainerNotReady", 1).await;
    c.wait_status("mesh", "p2 alerting", |s| status_counts(s, 2, 1, json!({"SidecarContainerNotReady": 1}), 0)).await;
    // Exactly once each, counted from the server's Events.
    let events = c.events().await;
    assert_eq!(count_events(&events, "p1", "Warning", "SidecarContainerNotReady"), 1, "{}", describe_events(&events));
    assert_eq!(count_events(&events, "p2", "Warning", "SidecarContainerNotReady"), 1, "{}", describe_events(&events));
    let restarts = op.scrape().await.expect("scrape").value("sidecar_watch_watch_restarts_total", &[]);
    assert!(restarts.is_some_and(|r| r >= 1.0), "the broken watches were not counted: {restarts:?}\n{}", op.log());
}

/// etcd is compacted while kube-apiserver is down, then it starts again on the compacted
/// store: the operator's watches resume from resourceVersions that no longer exist, get
/// 410 Gone, list again, and end up agreeing with a fresh operator.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compacted_etcd_makes_the_operator_list_again() {
    let c = own_cluster_with_alerting_pods("compaction", Options::default(), &["p1", "p2"]).await;
    let ns = c.ns.clone();
    let op = Operator::start(&c, "op-0", &["--lease-duration", "15s"]).await;
    op.wait_alerts("p1 and p2 firing", vec![firing(&ns, "p1"), firing(&ns, "p2")]).await;
    // Both announced before the outage: what this test counts afterwards is the relist's work.
    c.wait_events("p1", "Warning", "SidecarContainerNotReady", 1).await;
    c.wait_events("p2", "Warning", "SidecarContainerNotReady", 1).await;

    let cp = c.control_plane();
    cp.stop_apiserver().await.expect("kube-apiserver stopped");
    // The operator's Lease renewals and Events have moved etcd past the Pods' last change.
    let revision = cp.compact_etcd().await.expect("etcd compacted");
    cp.start_apiserver().await.expect("kube-apiserver started");
    // While the operator reconnects: p2 goes, p1 recovers.
    c.delete_pod_now("p2").await;
    let p1 = sidecar_watch_harness::kubelet::PodDriver::new(c.env.client.clone(), &ns, "p1");
    set_ready(&p1, "istio-proxy", true).await;
    op.wait_alerts("nothing firing", vec![]).await;
    c.wait_events("p1", "Normal", "SidecarContainerNotReadyResolved", 1).await;
    c.wait_status("mesh", "p1 matched, nothing alerting", |s| status_counts(s, 1, 0, json!({}), 0)).await;

    let fresh = Operator::start(&c, "op-fresh", &["--leader-elect=false"]).await;
    let scrape = fresh.wait_alerts("a fresh operator agrees", vec![]).await;
    assert_eq!(scrape.value("sidecar_watch_pods_tracked", &[]), Some(1.0), "{}", scrape.text);
    let log = op.log();
    assert!(
        log.contains("too old resource version") || log.contains("410"),
        "compacted at revision {revision}, yet no watch was told its resourceVersion is gone:\n{log}"
    );
    let events = c.events().await;
    assert_eq!(count_events(&events, "p1", "Warning", "SidecarContainerNotReady"), 1, "{}", describe_events(&events));
}

/// The API server is down when the operator starts: it neither exits nor reports ready, and
/// becomes ready and alerts once the server is up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_server_down_at_start_is_waited_for() {
    let c = own_cluster_with_alerting_pods("down-at-start", Options::default(), &["p1"]).await;
    let ns = c.ns.clone();
    c.control_plane().stop_apiserver().await.expect("kube-apiserver stopped");
    let (port, args) = Operator::default_args(&c, "op-0", &[]);
    let mut op = Operator::launch(&c, "op-0", port, &args, &[]);
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(op.exit_status().is_none(), "the operator exited while the API server was down:\n{}", op.log());
    let readyz = sidecar_watch_harness::env::http_get(port, "/readyz").await;
    assert!(!readyz.as_ref().is_ok_and(|(code, _)| *code == 200), "ready without an API server: {readyz:?}");

    c.control_plane().start_apiserver().await.expect("kube-apiserver started");
    op.wait_ready().await;
    op.wait_alerts("p1 firing", vec![firing(&ns, "p1")]).await;
    c.wait_events("p1", "Warning", "SidecarContainerNotReady", 1).await;
}

const RESOURCES: [&str; 5] = ["clustersidecarpolicies", "events", "namespaces", "pods", "sidecarpolicies"];

/// Waits until both Pods are tracked and every watcher got its initial state by `strategy`.
async fn expect_initial_lists(op: &Operator, strategy: &str) {
    op.wait_scrape(&format!("two Pods tracked, every watcher {strategy}"), |s| {
        has_value(s, "sidecar_watch_pods_tracked", &[], 2.0)?;
        for resource in RESOURCES {
            has_value(s, "sidecar_watch_initial_list", &[("resource", resource), ("strategy", strategy)], 1.0)?;
        }
        Ok(())
    })
    .await;
}

/// Waits until the operator's log says, once per watcher, that it fell back to paginated lists.
async fn expect_one_fall_back_per_watcher(op: &Operator) {
    let fallback = "the API server does not serve streaming lists; this watch uses paginated lists from now on";
    let fell_back = wait_until(WAIT, "one fall back per watcher", || async {
        let n = op.log().matches(fallback).count();
        if n == RESOURCES.len() {
            Ok(n)
        } else {
            Err(n)
        }
    })
    .await;
    assert!(fell_back.is_ok(), "{}", op.log());
}

/// Streaming lists from kube-apiserver's watch cache (WatchList on, as 1.37 ships it), and
/// with the gate off each watcher falls back to paginated lists once. Both track every Pod.
/// On 1.33 as it ships (WatchList off by default) the first start is the fall back too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaming_lists_and_their_fall_back_on_kube_apiserver() {
    let fallback = "the API server does not serve streaming lists; this watch uses paginated lists from now on";
    let on = own_cluster_with_alerting_pods("watchlist-on", Options::default(), &["p1", "p2"]).await;
    let op = Operator::start(&on, "op-0", &["--initial-list", "auto", "--leader-elect=false"]).await;
    if streams_by_default(server_minor(&on.env).await) {
        expect_initial_lists(&op, "streaming").await;
        assert!(!op.log().contains(fallback), "fell back on a server with WatchList on:\n{}", op.log());
    } else {
        expect_initial_lists(&op, "paginated").await;
        expect_one_fall_back_per_watcher(&op).await;
    }
    drop(op);
    drop(on);

    let gate_off = Options { feature_gates: Some("WatchList=false".into()), ..Options::default() };
    let off = own_cluster_with_alerting_pods("watchlist-off", gate_off, &["p1", "p2"]).await;
    let op = Operator::start(&off, "op-0", &["--initial-list", "streaming", "--leader-elect=false"]).await;
    expect_initial_lists(&op, "paginated").await;
    expect_one_fall_back_per_watcher(&op).await;
}

/// Runs `sidecar-watch-control-plane up` with `args`; its exit status and standard error,
/// or a panic if it neither ends nor becomes ready within a minute (a hang).
fn control_plane_up_fails(args: &[&str]) -> (std::process::ExitStatus, String) {
    use std::process::{Command, Stdio};
    let binary = sidecar_watch_harness::control_plane::binary().expect("control plane binary");
    let dir = std::env::temp_dir().join(format!("sidecar-watch-cp-fails-{}-{}", std::process::id(), args.len()));
    let mut child = Command::new(binary)
        .args(["up", "--remove-dir", "--dir"])
        .arg(&dir)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the control plane");
    let started = std::time::Instant::now();
    while child.try_wait().expect("wait").is_none() {
        assert!(started.elapsed() < Duration::from_secs(60), "control plane up {args:?} neither failed nor ended");
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().expect("output");
    assert!(out.stdout.is_empty(), "it said ready: {}", String::from_utf8_lossy(&out.stdout));
    (out.status, String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn a_control_plane_that_cannot_start_says_which_step_and_does_not_hang() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = busy.local_addr().expect("addr").port().to_string();
    let (status, stderr) = control_plane_up_fails(&["--port", &port]);
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("step 'ports'") && stderr.contains(&port), "port in use: {stderr}");

    let (status, stderr) = control_plane_up_fails(&["--timeout", "1ms"]);
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("not ready within 1ms"), "not healthy in time: {stderr}");
}
