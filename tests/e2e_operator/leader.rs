//! Leader election: of two replicas exactly one exports alert series; after the leader is
//! killed (SIGKILL, no release) the standby leads within the lease duration and nothing is
//! announced twice.

use std::time::{Duration, Instant};

use serde_json::json;
use sidecar_watch_harness::env::wait_until;

use crate::support::*;

fn leading(s: &Scrape) -> Option<bool> {
    s.value("sidecar_watch_leader", &[]).map(|v| v == 1.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standby_takes_over_when_the_leader_dies() {
    let c = Cluster::start("leader").await;
    let ns = c.ns.clone();
    c.apply_app_policy("mesh", "web", json!({"sidecarNotReady": {"for": "2s", "severity": "warning"}})).await;
    let args = ["--leader-elect=true", "--lease-duration", "3s"];
    let mut ops = vec![Operator::start(&c, "op-a", &args).await, Operator::start(&c, "op-b", &args).await];
    let x = c.create_pod(native_pod("x", "web", "app", "istio-proxy")).await;
    drive(&x, &[("app", true), ("istio-proxy", false)]).await;
    let firing = |pod: &str| AlertSeries { namespace: &ns, pod, ..MESH_NOT_READY }.labels();

    let leader = wait_until(WAIT, "exactly one leader exporting the alert", || async {
        let a = ops[0].scrape().await?;
        let b = ops[1].scrape().await?;
        let (l, s) = match (leading(&a), leading(&b)) {
            (Some(true), Some(false)) => (0, &b),
            (Some(false), Some(true)) => (1, &a),
            other => return Err(format!("leader flags {other:?}")),
        };
        let (ls, ss) = if l == 0 { (&a, s) } else { (&b, s) };
        if ls.alerts() != vec![firing("x")] {
            return Err(format!("leader alerts {:?}", ls.alerts()));
        }
        if !ss.find("sidecar_alerts", &[]).is_empty() || !ss.find("sidecar_policy_pods", &[]).is_empty() {
            return Err(format!("standby exports alert series:\n{}", ss.text));
        }
        Ok(l)
    })
    .await
    .unwrap();
    let standby = 1 - leader;
    c.wait_events("x", "Warning", "SidecarContainerNotReady", 1).await;
    c.wait_status("mesh", "x alerting", |s| status_counts(s, 1, 1, json!({"SidecarContainerNotReady": 1}), 0)).await;

    let killed = Instant::now();
    ops[leader].kill9().await;
    let s = ops[standby]
        .wait_scrape("standby leads and exports", |s| {
            if leading(s) == Some(true) && s.alerts() == vec![firing("x")] {
                Ok(())
            } else {
                Err(format!("{:?} {:?}", leading(s), s.alerts()))
            }
        })
        .await;
    let took = killed.elapsed();
    assert!(took <= Duration::from_secs(3 + 5), "takeover took {took:?}");
    assert_eq!(s.value("sidecar_policy_pods", &[("policy", "mesh"), ("state", "alerting")]), Some(1.0));

    // The new leader announces new alerts, and not x's again.
    let y = c.create_pod(native_pod("y", "web", "app", "istio-proxy")).await;
    drive(&y, &[("app", true), ("istio-proxy", false)]).await;
    ops[standby].wait_alerts("x and y firing", vec![firing("x"), firing("y")]).await;
    c.wait_events("y", "Warning", "SidecarContainerNotReady", 1).await;
    let events = c.events().await;
    assert_eq!(count_events(&events, "x", "Warning", "SidecarContainerNotReady"), 1, "{}", describe_events(&events));
    c.wait_status("mesh", "x and y alerting", |s| status_counts(s, 2, 2, json!({"SidecarContainerNotReady": 2}), 0))
        .await;
    ops.clear();
}
