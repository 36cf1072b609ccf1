//! Faults (simulator only): watches dropped, history compacted (410 → relist), requests
//! failing with 500 and 429, the API server restarting, Pods changing meanwhile. Afterwards
//! the operator agrees with a freshly started one and no alert was announced twice.

use std::time::Duration;

use kube::api::DeleteParams;
use serde_json::json;
use sidecar_watch_e2e::harness::wait_until;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_recovers_from_api_faults() {
    if !simulator_only("operator_recovers_from_api_faults") {
        return;
    }
    let c = Cluster::start("faults").await;
    let ns = c.ns.clone();
    c.apply_policy(
        "mesh",
        json!({
            "selector": {"matchLabels": {"app": "web"}},
            "rules": rules(json!({"sidecarNotReady": {"for": "2s", "severity": "warning"}})),
        }),
    )
    .await;
    let op = Operator::start(&c, "op-0", &["--lease-duration", "15s"]).await;
    let mut drivers = Vec::new();
    for (name, ready) in [("p1", false), ("p2", true), ("p3", true)] {
        let pod = c.create_pod(native_pod(name, "web", "app", "istio-proxy")).await;
        drive(&pod, &[("app", true), ("istio-proxy", ready)]).await;
        drivers.push(pod);
    }
    let firing = |pod: &str| alert("SidecarContainerNotReady", "firing", "warning", "mesh", &ns, pod, "istio-proxy");
    op.wait_alerts("p1 firing", vec![firing("p1")]).await;
    c.wait_events("p1", "Warning", "SidecarContainerNotReady", 1).await;
    c.wait_status("mesh", "p1 alerting", |s| status_counts(s, 3, 1, json!({"SidecarContainerNotReady": 1}), 0)).await;

    let sim = c.sim();
    let expired_before = sim.shared().expired_watches();
    // Outage: requests fail with 500, every watch ends; meanwhile p1 is deleted and p2's
    // sidecar stops being ready; then the history is compacted (resuming gives 410), the
    // failures turn into 429 with Retry-After, and the API server restarts.
    sim.fail_next_500(25);
    sim.drop_watches();
    let pods = c.pods();
    let now = DeleteParams::default().grace_period(0);
    retry("delete p1", || pods.delete("p1", &now)).await;
    let p2 = drivers[1].clone();
    retry("p2 not ready", || {
        p2.update(|_, s| {
            for cs in s.init_container_statuses.iter_mut().flatten() {
                cs.ready = false;
            }
            set_pod_conditions(s);
            Ok(())
        })
    })
    .await;
    sim.compact();
    sim.fail_next_429(10, 1);
    sim.drop_watches();
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
    c.wait_status("mesh", "after the outage", |s| {
        status_counts(s, 2, 1, json!({"SidecarContainerNotReady": 1}), 0)
    })
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
        if s.text.contains("sidecar_watch_leader 1") {
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
