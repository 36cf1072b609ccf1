//! Operator restart in the middle of a `for`: the API's timestamps carry the clock, so a
//! pending alert fires on time after the restart, and an alert already announced is not
//! announced again.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_alert_fires_on_time_across_a_restart() {
    let c = Cluster::start("restart").await;
    let ns = c.ns.clone();
    let for_ = Duration::from_secs(8);
    c.apply_app_policy("mesh", "web", json!({"sidecarNotReady": {"for": "8s", "severity": "warning"}})).await;
    let lease = ["--lease-duration", "3s"];
    let mut op1 = Operator::start(&c, "op-1", &lease).await;
    let a = c.create_pod(native_pod("a", "web", "app", "istio-proxy")).await;
    let b = c.create_pod(native_pod("b", "web", "app", "istio-proxy")).await;
    drive(&a, &[("app", true), ("istio-proxy", false)]).await;
    drive(&b, &[("app", true), ("istio-proxy", true)]).await;
    let alert_on = |pod: &str, state: AlertState| AlertSeries { state, namespace: &ns, pod, ..MESH_NOT_READY }.labels();
    // a fires and is announced before the restart.
    op1.wait_alerts("a firing", vec![alert_on("a", AlertState::Firing)]).await;
    c.wait_events("a", "Warning", "SidecarContainerNotReady", 1).await;

    // b's sidecar stops being ready; its alert is pending when the operator stops.
    let t_b = Instant::now();
    set_ready(&b, "istio-proxy", false).await;
    op1.wait_alerts("b pending", vec![alert_on("a", AlertState::Firing), alert_on("b", AlertState::Pending)]).await;
    // Position the restart in the middle of b's `for` (this sleep is not a wait for a
    // condition: it makes a clock restarted by the restart observable).
    tokio::time::sleep((t_b + Duration::from_secs(3)).saturating_duration_since(Instant::now())).await;
    op1.terminate().await;
    drop(op1);

    let op2 = Operator::start(&c, "op-2", &lease).await;
    let (_, fired) = observe_firing(&op2, "b", "SidecarContainerNotReady").await;
    let took = fired.duration_since(t_b);
    assert!(took + Duration::from_millis(1500) >= for_, "b fired too early after {took:?}");
    // A clock restarted with the operator would fire at least 3 s + start-up later.
    assert!(took <= for_ + Duration::from_millis(2500), "b fired late, after {took:?}: the restart reset its clock");
    op2.wait_alerts("both firing", vec![alert_on("a", AlertState::Firing), alert_on("b", AlertState::Firing)]).await;
    c.wait_events("b", "Warning", "SidecarContainerNotReady", 1).await;
    // a was announced before the restart and is not announced again.
    let events = c.events().await;
    assert_eq!(count_events(&events, "a", "Warning", "SidecarContainerNotReady"), 1, "{}", describe_events(&events));
    assert_eq!(count_events(&events, "b", "Warning", "SidecarContainerNotReady"), 1, "{}", describe_events(&events));
    c.wait_status("mesh", "both firing", |s| status_counts(s, 2, 2, json!({"SidecarContainerNotReady": 2}), 0)).await;
}
