//! Faults on the operator's way to kube-apiserver (a control plane of the test's own, the
//! operator's connection through the fault proxy): every request failing with 500 while Pods
//! change, etcd compacted and kube-apiserver restarted (resuming a watch gives 410 Gone, so a
//! new initial state), then 429s with `Retry-After` and every connection dropped. Afterwards
//! the operator agrees with a freshly started one and no alert was announced twice.

use std::time::Duration;

use serde_json::json;
use sidecar_watch_harness::control_plane::{AuditLog, Options};
use sidecar_watch_harness::env::wait_until;
use sidecar_watch_harness::kubelet::PodDriver;

use crate::server_side::{compact_history, initial_states, outage};
use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_recovers_from_api_faults() {
    let audit = AuditLog::new().expect("an audit policy");
    let (c, proxy) = Cluster::start_behind_fault_proxy(
        "faults",
        Options { apiserver_args: audit.apiserver_args(), ..Options::default() },
    )
    .await;
    let ns = c.ns.clone();
    c.apply_app_policy("mesh", "web", json!({"sidecarNotReady": {"for": "2s", "severity": "warning"}})).await;
    // The outage below (500s, then kube-apiserver restarted on a compacted etcd, then 429s)
    // blocks Lease renewals too, for about 10 s on a loaded machine: with the default renew
    // deadline (10 s at a 15 s lease) the operator rightly stepped down and exited once in CI.
    // This test is about the watches' recovery; leadership loss is `leader::`'s.
    let op = Operator::start(&c, "op-0", &["--lease-duration", "40s", "--lease-renew-deadline", "30s"]).await;
    for (name, ready) in [("p1", false), ("p2", true), ("p3", true)] {
        let pod = c.create_pod(native_pod(name, "web", "app", "istio-proxy")).await;
        drive(&pod, &[("app", true), ("istio-proxy", ready)]).await;
    }
    let firing = |pod: &str| AlertSeries { namespace: &ns, pod, ..MESH_NOT_READY }.labels();
    op.wait_alerts("p1 firing", vec![firing("p1")]).await;
    c.wait_events("p1", "Warning", "SidecarContainerNotReady", 1).await;
    c.wait_status("mesh", "p1 alerting", |s| status_counts(s, 3, 1, json!({"SidecarContainerNotReady": 1}), 0)).await;
    let pods_before = initial_states(&audit, "pods");

    // Outage: every request of the operator fails with 500 and every connection closes; once
    // the operator has hit the fault, p1 is deleted and p2's sidecar stops being ready (the
    // test's client reaches kube-apiserver directly), and the history is compacted so that
    // resuming the watches gives 410 Gone and a new initial state.
    outage(&proxy).await;
    c.delete_pod_now("p1").await;
    set_ready(&PodDriver::new(c.env.client.clone(), &ns, "p2"), "istio-proxy", false).await;
    compact_history(&c).await;
    // Then 429s with Retry-After, and every connection dropped once more.
    proxy.fail_next(10, 429, 1);
    proxy.drop_connections();
    let s = op.wait_alerts("after the outage: p2 firing, p1 gone", vec![firing("p2")]).await;
    assert!(
        s.find("sidecar_container_ready", &[("pod", "p1")]).is_empty(),
        "stale series of the deleted p1:\n{}",
        s.text
    );
    assert!(proxy.injected() > 0, "no request failed");
    assert!(s.value("sidecar_watch_watch_restarts_total", &[]).unwrap_or(0.0) >= 1.0, "{}", s.text);
    // The Pods' watch could not resume into the compacted history: the operator asked for
    // their whole state again.
    let pods_after = initial_states(&audit, "pods");
    assert!(
        pods_after.requests() > pods_before.requests(),
        "no new initial state of the Pods after the compaction: {pods_before:?} → {pods_after:?}\n{}",
        op.log()
    );
    c.wait_status("mesh", "after the outage", |s| status_counts(s, 2, 1, json!({"SidecarContainerNotReady": 1}), 0))
        .await;

    // A freshly started operator computes the same series.
    let fresh = Operator::start(&c, "fresh", &["--leader-elect=false"]).await;
    wait_until(WAIT, "fresh operator agrees", || async {
        let a = op.scrape().await?.pod_series();
        let b = fresh.scrape().await?.pod_series();
        if a == b {
            Ok(())
        } else {
            Err(format!("recovered:\n{}\nfresh:\n{}", a.join("\n"), b.join("\n")))
        }
    })
    .await
    .unwrap();
    // Both have announced (or reconciled) by now: no alert has more than one Warning.
    c.wait_events("p2", "Warning", "SidecarContainerNotReady", 1).await;
    wait_until(Duration::from_secs(5), "fresh operator reconciled Events", || async {
        let s = fresh.scrape().await?;
        if s.value("sidecar_watch_leader", &[]) == Some(1.0) {
            Ok(())
        } else {
            Err(s.text)
        }
    })
    .await
    .unwrap();
    let events = c.events().await;
    for pod in ["p1", "p2", "p3"] {
        let n = count_events(&events, pod, "Warning", "SidecarContainerNotReady");
        let want = u32::from(pod != "p3");
        assert_eq!(n, want, "{pod}: {}", describe_events(&events));
    }
}
