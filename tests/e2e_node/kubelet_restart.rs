//! A kubelet restart under the built-in default rules: healthy Pods with native sidecars stay
//! quiet. No Warning Event, no firing alert, no restart counted.
//!
//! Before Kubernetes 1.35 a restarted kubelet set every container's `ready` (and `started`)
//! false until its probes passed again; KEP-4781 (1.35: the gate
//! `ChangeContainerStatusOnKubeletRestart` deprecated and off) keeps them as they were. An
//! older kubelet (`E2E_KUBELET_BIN`, e.g. a v1.34 one under the 1.37 control plane) shows
//! every sidecar unready for a moment after the restart, which the default `for`s must
//! absorb. The test prints what it saw ("kubelet restart: ..." with `--nocapture`).
//!
//! Observed (2026-11-26, 1.37.2 control plane, cgroup-v1 host; the Pods' transitions are in
//! `target/tmp/node-transitions/kubelet-restart-*.jsonl`):
//! - kubelet v1.37.2: passed. The restarted kubelet still wrote each native sidecar's `ready`
//!   and `started` false (Pod `Ready=False`), for about 1.8 s, until its startup and readiness
//!   probes passed again; the main containers (no probes) stayed ready. Up to 8 alerts went
//!   pending, none fired, no Warning Event, no restart counted.
//! - kubelet v1.34.12 (`E2E_KUBELET_BIN`): passed, the same: each sidecar `ready`/`started`
//!   false for about 1.8 s after the restart, then true; nothing fired.
//!
//! So on this host the 1.37 kubelet still resets a native sidecar with a startup probe after
//! its restart, as the 1.34 one does (KEP-4781's kept status did not show for a restartable
//! init container): the default `for`s are what keeps the restart quiet on both.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use serde_json::json;
use sidecar_watch_harness::env::wait_until;
use sidecar_watch_testkit::prom::Scrape;

use crate::support::{healthy, leader_metrics, node, Scenario, MINUTE, POLICY};

/// (containers, ready containers, started containers, restarts) over the namespace's Pods.
async fn counts(pods: &Api<Pod>) -> (usize, usize, usize, i32) {
    let list = pods.list(&ListParams::default()).await.expect("pods");
    let mut out = (0, 0, 0, 0);
    for p in list.items {
        let status = p.status.unwrap_or_default();
        for c in
            status.init_container_statuses.into_iter().flatten().chain(status.container_statuses.into_iter().flatten())
        {
            out.0 += 1;
            out.1 += usize::from(c.ready);
            out.2 += usize::from(c.started == Some(true));
            out.3 += c.restart_count;
        }
    }
    out
}

/// (restarts counted, runtime alerts pending or firing, firing ones, their labels) of the
/// namespace, from every policy (the chart's cluster-wide default one too). The static
/// `SidecarMisconfigured` findings (the test's Pods set no resources) are not the restart's.
fn alert_counts(m: &Scrape, ns: &str) -> (f64, f64, f64, Vec<String>) {
    let alerts: Vec<_> = m
        .alerts()
        .into_iter()
        .filter(|l| l.get("namespace").map(String::as_str) == Some(ns))
        .filter(|l| l.get("alertname").map(String::as_str) != Some("SidecarMisconfigured"))
        .collect();
    let firing = alerts.iter().filter(|l| l.get("alertstate").map(String::as_str) == Some("firing")).count();
    (
        m.sum("sidecar_container_restarts_total", &[("namespace", ns)]),
        alerts.len() as f64,
        firing as f64,
        alerts.iter().map(|l| format!("{l:?}")).collect(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_kubelet_restart_under_default_rules_alerts_nothing() {
    let s = Scenario::exclusive("kubelet-restart").await;
    let node = node();
    // The namespace's policy with the built-in rules (no `for` of the seed's): only the static
    // checks stay off, as in every scenario (they judge specs, not a restart).
    let policy = json!({
        "apiVersion": "sidecarwatch.io/v1alpha1", "kind": "SidecarPolicy",
        "metadata": {"name": POLICY, "namespace": s.ns},
        "spec": {"selector": {}, "rules": {"misconfiguration": {"enabled": false}}},
    });
    s.env.kubectl_apply(&policy.to_string()).await.expect("default-rules policy");
    s.apply(healthy("first")).await;
    s.apply(healthy("second")).await;
    let pods: Api<Pod> = Api::namespaced(s.env.client.clone(), &s.ns);
    wait_until(2 * MINUTE, "every container ready", || async {
        let (all, ready, _, _) = counts(&pods).await;
        if all == 4 && ready == 4 {
            Ok(())
        } else {
            Err(s.describe_pods().await)
        }
    })
    .await
    .unwrap();
    s.expect_warnings(MINUTE, Duration::from_secs(5), &[]).await;
    let before = counts(&pods).await;
    let metrics_before = alert_counts(&leader_metrics(&s).await, &s.ns);
    assert_eq!(metrics_before.1, 0.0, "no alert before the restart: {metrics_before:?}");

    let restarted = Instant::now();
    node.restart("kubelet").await.expect("kubelet restarted");
    // What the restarted kubelet reports, until every container is ready again and the
    // kubelet has been up for 20 s (a late reset would show by then).
    let (mut min_ready, mut min_started, mut back) = (before.1, before.2, None);
    let mut max_alerts = 0.0_f64;
    while restarted.elapsed() < 2 * MINUTE {
        let (all, ready, started, _) = counts(&pods).await;
        min_ready = min_ready.min(ready);
        min_started = min_started.min(started);
        if all == 4 && ready == 4 && back.is_none() && min_ready < 4 {
            back = Some(restarted.elapsed());
        }
        let (_, alerts, firing, labels) = alert_counts(&leader_metrics(&s).await, &s.ns);
        max_alerts = max_alerts.max(alerts);
        assert_eq!(
            firing,
            0.0,
            "no alert fires after the kubelet's restart: {labels:?}; pods: {}",
            s.describe_pods().await
        );
        if all == 4 && ready == 4 && restarted.elapsed() > Duration::from_secs(20) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    eprintln!(
        "kubelet restart: kubelet {}: fewest ready containers {min_ready}/4, fewest started {min_started}/4, \
         all ready again after {back:?} (None: never unready), most alerts pending {max_alerts}",
        node.info().node_versions.kubelet
    );
    let after = counts(&pods).await;
    assert_eq!((after.0, after.1), (4, 4), "every container ready again: {}", s.describe_pods().await);
    assert_eq!(after.3, before.3, "no container restarted: {}", s.describe_pods().await);
    // Settle: the default `for`s are longer than any reset seen; nothing may come late.
    tokio::time::sleep(Duration::from_secs(30)).await;
    s.expect_warnings(Duration::from_secs(5), Duration::from_secs(1), &[]).await;
    let metrics_after = alert_counts(&leader_metrics(&s).await, &s.ns);
    assert_eq!(metrics_after.0, metrics_before.0, "sidecar_container_restarts_total unchanged");
    assert_eq!(metrics_after.1, 0.0, "no alert pending or firing after the restart: {metrics_after:?}");
}
