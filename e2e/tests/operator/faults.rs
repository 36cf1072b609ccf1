//! Faults (simulator only): watches dropped, history compacted (410 → relist), requests
//! failing with 500 and 429, the API server restarting, Pods changing meanwhile. Afterwards
//! the operator agrees with a freshly started one and no alert was announced twice.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, PodStatus};
use serde_json::json;
use sidecar_watch_e2e::harness::wait_until;
use sidecar_watch_e2e::sim::api::{Caller, Params};
use sidecar_watch_e2e::sim::patch::Scope;
use sidecar_watch_e2e::sim::{SimConfig, Simulator};

use crate::support::*;

fn caller() -> Caller {
    Caller { manager: "e2e-kubelet".into(), dry_run: false }
}

/// Deletes a Pod at once in the simulator's state (no HTTP, so no injected fault).
pub(crate) fn direct_delete_pod(sim: &Simulator, ns: &str, name: &str) {
    let mut st = sim.shared().state();
    let info = st.registry.find("", "v1", "pods").cloned().expect("pods served");
    st.delete(&info, Some(ns), name, &json!({"gracePeriodSeconds": 0}), &Params::new(), &caller())
        .expect("direct delete");
}

/// An outage: every request fails with 500 and every watch ends. Returns once the operator
/// has hit the fault (a few failed requests); `sim.fail_next_500(0)` ends it.
pub(crate) async fn outage(sim: &Simulator) {
    let failed_before = sim.shared().failed_requests();
    sim.fail_next_500(u32::MAX);
    sim.drop_watches();
    wait_until(WAIT, "the operator to hit the injected 500s", || async {
        let n = sim.shared().failed_requests();
        if n > failed_before + 3 {
            Ok(())
        } else {
            Err(n)
        }
    })
    .await
    .unwrap();
}

/// Changes a Pod's status in the simulator's state (no HTTP, so no injected fault), the
/// kubelet's derivations with it.
fn direct_pod_status(sim: &Simulator, ns: &str, name: &str, f: impl FnOnce(&mut PodStatus)) {
    let mut st = sim.shared().state();
    let info = st.registry.find("", "v1", "pods").cloned().expect("pods served");
    let current = st.get(&info, Some(ns), name).expect("pod");
    let mut pod: Pod = serde_json::from_value(current).expect("a Pod");
    f(pod.status.get_or_insert_with(Default::default));
    sidecar_watch_e2e::kubelet::derive_status(&mut pod);
    let body = serde_json::to_value(&pod).unwrap();
    st.update(&info, Some(ns), name, body, Scope::Status, &caller()).expect("direct status update");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_recovers_from_api_faults() {
    let c = Cluster::start_simulator("faults", SimConfig::default()).await;
    let ns = c.ns.clone();
    c.apply_app_policy("mesh", "web", json!({"sidecarNotReady": {"for": "2s", "severity": "warning"}})).await;
    let op = Operator::start(&c, "op-0", &["--lease-duration", "15s"]).await;
    for (name, ready) in [("p1", false), ("p2", true), ("p3", true)] {
        let pod = c.create_pod(native_pod(name, "web", "app", "istio-proxy")).await;
        drive(&pod, &[("app", true), ("istio-proxy", ready)]).await;
    }
    let firing = |pod: &str| AlertSeries { namespace: &ns, pod, ..MESH_NOT_READY }.labels();
    op.wait_alerts("p1 firing", vec![firing("p1")]).await;
    c.wait_events("p1", "Warning", "SidecarContainerNotReady", 1).await;
    c.wait_status("mesh", "p1 alerting", |s| status_counts(s, 3, 1, json!({"SidecarContainerNotReady": 1}), 0)).await;

    let sim = c.sim();
    let expired_before = sim.shared().expired_watches();
    // Outage: every request fails with 500 and every watch ends; once the operator has hit
    // the fault, p1 is deleted and p2's sidecar stops being ready (directly in the
    // simulator's state, bypassing the failing HTTP API), and the history is compacted so
    // that resuming the watches gives 410 Gone and a relist.
    outage(sim).await;
    direct_delete_pod(sim, &ns, "p1");
    direct_pod_status(sim, &ns, "p2", |s| {
        for cs in s.init_container_statuses.iter_mut().flatten() {
            cs.ready = false;
        }
    });
    sim.compact();
    // Then 429s with Retry-After, and the API server restarts (connections closed).
    sim.fail_next_429(10, 1);
    sim.restart();
    let s = op.wait_alerts("after the outage: p2 firing, p1 gone", vec![firing("p2")]).await;
    assert!(
        s.find("sidecar_container_ready", &[("pod", "p1")]).is_empty(),
        "stale series of the deleted p1:\n{}",
        s.text
    );
    assert!(sim.shared().failed_requests() > 0, "no request failed");
    assert!(
        sim.shared().expired_watches() > expired_before,
        "no watch resumed into the compacted history (410)\n{}",
        op.log()
    );
    assert!(s.value("sidecar_watch_watch_restarts_total", &[]).unwrap_or(0.0) >= 1.0, "{}", s.text);
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
