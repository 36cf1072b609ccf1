//! A hostile tenant: one Pod with thousands of `*-sidecar` containers (never scheduled)
//! covered by a SidecarPolicy in its own namespace, while the rest of the cluster keeps
//! writing. Measures what it costs everyone else: Event latency of crash-looping sidecars in
//! other namespaces, operator RSS with and without it, the series it exports, and the cost
//! of one label-only update of it against a normal Pod's.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use serde_json::json;
use sidecar_watch_harness::sim::Shared;

use super::args::Args;
use super::latency::EventWatch;
use super::operator::{scrape_parsed, wait_metric, Operator};
use super::pods::{self, FLOOD_NAMESPACE};
use super::preload::{create, delete_pod, put_pod, write_pod};
use super::prom::{sample_quantile, Histogram};
use super::rates::run_rate;

/// The operator's histogram of one input's (or timer's) processing.
pub const RECONCILE: &str = "sidecar_watch_reconcile_duration_seconds";

/// Results of the hostile-tenant phase.
#[derive(Debug, Default, Clone)]
pub struct Hostile {
    pub containers: usize,
    /// Settled RSS before the flood Pod exists and once its series are exported.
    pub rss_before_kib: u64,
    pub rss_after_kib: u64,
    /// Seconds from creating the flood Pod to its first series on `/metrics`.
    pub flood_seen_s: Option<f64>,
    /// Series with `namespace="flood"`.
    pub flood_series: usize,
    /// Reconcile time of label-only updates (histogram difference) of the flood Pod and of
    /// a normal Pod.
    pub reconcile_flood: Histogram,
    pub reconcile_normal: Histogram,
    /// Background status writes in the other namespaces meanwhile (achieved rate).
    pub bg_writes: u64,
    pub bg_achieved: f64,
    /// Crash-looping sidecars (an OOM kill each) in other namespaces, and the latency from
    /// each status write to its Event in the store, in seconds.
    pub samples: usize,
    pub event: Vec<f64>,
}

/// Label-only updates of `pod`, 20 ms apart, and the reconcile histogram's difference.
async fn label_updates(shared: &Shared, port: u16, pod: &(String, String), updates: usize) -> Result<Histogram> {
    let before = Histogram::of(&scrape_parsed(port).await?, RECONCILE);
    for i in 0..updates {
        write_pod(shared, &pod.0, &pod.1, |p| p["metadata"]["labels"]["bench-touch"] = json!(i.to_string()));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    Ok(Histogram::of(&scrape_parsed(port).await?, RECONCILE).minus(&before))
}

/// Runs the phase; `crash` are Pods in other namespaces no other phase touches, `background`
/// the Pods the background writes flip, `normal` a 3-container Pod for the label updates.
pub async fn phase(
    args: &Args,
    shared: &Arc<Shared>,
    op: &Operator,
    crash: &[(String, String)],
    background: &[(String, String)],
    normal: &(String, String),
) -> Result<Hostile> {
    let mut h = Hostile { containers: args.flood_containers, ..Hostile::default() };
    h.rss_before_kib = op.proc.settled_rss().await;
    h.reconcile_normal = label_updates(shared, op.port, normal, args.label_updates).await?;

    create(shared, "", "v1", "namespaces", None, json!({"metadata": {"name": FLOOD_NAMESPACE}}))?;
    create(shared, "sidecarwatch.io", "v1alpha1", "sidecarpolicies", Some(FLOOD_NAMESPACE), pods::flood_policy())?;
    let t0 = Instant::now();
    let flood = put_pod(shared, pods::flood_pod(args.flood_containers));
    let ns_part = format!("namespace=\"{FLOOD_NAMESPACE}\"");
    h.flood_seen_s = wait_metric(op.port, &[&ns_part, "pod=\"flood\""], t0, Duration::from_secs(60)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    h.rss_after_kib = op.proc.settled_rss().await;
    h.flood_series = scrape_parsed(op.port).await?.series_with(&[("namespace", FLOOD_NAMESPACE)]);
    say!(
        "hostile: flood Pod ({} containers) on /metrics after {} s, {} series; RSS {} → {} MiB",
        h.containers,
        super::fmt(h.flood_seen_s, 1.0, 2),
        h.flood_series,
        h.rss_before_kib / 1024,
        h.rss_after_kib / 1024
    );
    h.reconcile_flood = label_updates(shared, op.port, &flood, args.label_updates).await?;
    say!(
        "hostile: label-only update reconcile mean {} ms (flood, {} obs) vs {} ms (normal, {} obs)",
        super::fmt(h.reconcile_flood.mean(), 1e3, 3),
        h.reconcile_flood.count,
        super::fmt(h.reconcile_normal.mean(), 1e3, 3),
        h.reconcile_normal.count
    );

    // Crash-looping sidecars elsewhere while the cluster keeps writing.
    let secs = 3 + crash.len() as u64 / 4;
    let bg = {
        let (shared, targets, rate) = (shared.clone(), background.to_vec(), args.hostile_rate);
        tokio::task::spawn_blocking(move || run_rate(shared, targets, rate, secs))
    };
    let mut events = EventWatch::start(shared);
    tokio::time::sleep(Duration::from_secs(1)).await;
    for pod in crash {
        h.samples += 1;
        h.event.extend(events.oom_kill(shared, pod, Duration::from_secs(10)).await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(events);
    (h.bg_writes, h.bg_achieved) = bg.await?;
    delete_pod(shared, FLOOD_NAMESPACE, &flood.1);
    say!(
        "hostile: Event latency p50 {} / p99 {} ms over {}/{} samples, background {} writes ({:.0}/s)",
        super::fmt(sample_quantile(&h.event, 0.5), 1e3, 2),
        super::fmt(sample_quantile(&h.event, 0.99), 1e3, 2),
        h.event.len(),
        h.samples,
        h.bg_writes,
        h.bg_achieved
    );
    Ok(h)
}
