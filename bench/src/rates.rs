//! Sustained status-update rates: detection latency (the operator's own histogram), inputs
//! seen, catch-up after the phase, dropped Events and watch restarts.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use sidecar_watch_harness::sim::api::now_string;
use sidecar_watch_harness::sim::Shared;

use super::operator::{scrape_parsed, wait_metric};
use super::pods::{self, MESH_SIDECAR};
use super::preload::write_pod;
use super::prom::{Histogram, Scrape};

/// The operator's histogram from watch event received to evaluated.
pub const DETECTION: &str = "sidecar_watch_detection_latency_seconds";

/// The operator's detection latency (watch event received → evaluated, its own histogram)
/// over one phase: what the simulator's rate phases and `--against ksm` report.
#[derive(Debug, Default, Clone, Copy)]
pub struct Detection {
    /// Pod inputs evaluated in the phase.
    pub observed: f64,
    pub p50: Option<f64>,
    pub p99: Option<f64>,
}

impl Detection {
    /// `p50 / p99 (inputs)` in milliseconds, for logs and tables.
    pub fn describe(&self) -> String {
        let ms = |q: Option<f64>| q.map_or_else(|| "–".to_string(), |s| format!("{:.3} ms", s * 1e3));
        format!("{} / {} ({:.0} inputs)", ms(self.p50), ms(self.p99), self.observed)
    }

    /// What the histogram gained between two scrapes.
    pub fn between(before: &Scrape, after: &Scrape) -> Self {
        let h = Histogram::of(after, DETECTION).minus(&Histogram::of(before, DETECTION));
        Detection { observed: h.count, p50: h.quantile(0.5), p99: h.quantile(0.99) }
    }
}

/// One rate phase.
#[derive(Debug, Default, Clone)]
pub struct RatePhase {
    pub rate: u64,
    pub events_ok: f64,
    /// Writes per second actually made.
    pub achieved: f64,
    pub writes: u64,
    /// Pod inputs the operator evaluated (detection histogram count).
    pub observed: f64,
    pub p50: Option<f64>,
    pub p99: Option<f64>,
    /// Seconds from one write after the phase to `/metrics` showing it.
    pub catch_up: Option<f64>,
    pub dropped: f64,
    pub restarts: f64,
    /// Watches the simulator expired (410 Gone).
    pub expired: u64,
    pub tracked: f64,
    pub rss_kib: u64,
}

/// `after - before` of the counter `name` with `matching` labels.
pub fn delta(before: &Scrape, after: &Scrape, name: &str, matching: &[(&str, &str)]) -> f64 {
    after.sum(name, matching) - before.sum(name, matching)
}

/// Sustained readiness flips at `rate`/s for `secs` (blocking: run it on a blocking
/// thread): every flip of an istio-proxy to not-ready is undone 1 s later (both count as
/// updates), so alerts go pending and back. Returns (writes, achieved rate).
pub fn run_rate(shared: Arc<Shared>, targets: Vec<(String, String)>, rate: u64, secs: u64) -> (u64, f64) {
    let started = Instant::now();
    let end = started + Duration::from_secs(secs);
    let mut pending: VecDeque<(Instant, usize)> = VecDeque::new();
    let mut cursor = 0usize;
    let mut done = 0u64;
    while Instant::now() < end && !targets.is_empty() {
        let due = (started.elapsed().as_secs_f64() * rate as f64) as u64;
        let now_s = now_string();
        while done < due {
            let now = Instant::now();
            match pending.front() {
                Some((t, i)) if *t <= now => {
                    let (ns, name) = &targets[*i];
                    write_pod(&shared, ns, name, |p| pods::set_ready(p, MESH_SIDECAR, true, &now_s));
                    pending.pop_front();
                }
                _ => {
                    let i = cursor % targets.len();
                    cursor += 1;
                    let (ns, name) = &targets[i];
                    write_pod(&shared, ns, name, |p| pods::set_ready(p, MESH_SIDECAR, false, &now_s));
                    pending.push_back((now + Duration::from_secs(1), i));
                }
            }
            done += 1;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let achieved = done as f64 / started.elapsed().as_secs_f64();
    let now_s = now_string();
    // Undo the flips still pending (these writes count too: the operator sees them).
    for (_, i) in pending {
        let (ns, name) = &targets[i];
        write_pod(&shared, ns, name, |p| pods::set_ready(p, MESH_SIDECAR, true, &now_s));
        done += 1;
    }
    (done, achieved)
}

/// One rate phase against the operator on `port`; `marker` is a Pod no other phase writes.
pub async fn phase(
    shared: &Arc<Shared>,
    port: u16,
    targets: &[(String, String)],
    marker: &(String, String),
    rate: u64,
    secs: u64,
) -> Result<RatePhase> {
    let before = scrape_parsed(port).await?;
    let exp_before = shared.expired_watches();
    let (writes, achieved) = {
        let (shared, targets) = (shared.clone(), targets.to_vec());
        tokio::task::spawn_blocking(move || run_rate(shared, targets, rate, secs)).await?
    };
    // Catch-up: one more write after the phase; how long until /metrics reflects it.
    let t0 = Instant::now();
    write_pod(shared, &marker.0, &marker.1, |p| pods::set_ready(p, MESH_SIDECAR, false, &now_string()));
    let ready0 = format!("pod=\"{}\",container=\"{MESH_SIDECAR}\"", marker.1);
    let catch_up = wait_metric(port, &["sidecar_container_ready{", &ready0, "} 0"], t0, Duration::from_secs(60)).await;
    let after = scrape_parsed(port).await?;
    write_pod(shared, &marker.0, &marker.1, |p| pods::set_ready(p, MESH_SIDECAR, true, &now_string()));
    let detection = Detection::between(&before, &after);
    let events = "sidecar_watch_events_total";
    Ok(RatePhase {
        rate,
        events_ok: delta(&before, &after, events, &[("result", "ok")]),
        achieved,
        writes,
        observed: detection.observed,
        p50: detection.p50,
        p99: detection.p99,
        catch_up,
        dropped: delta(&before, &after, events, &[("result", "dropped")]),
        restarts: delta(&before, &after, "sidecar_watch_watch_restarts_total", &[]),
        expired: shared.expired_watches() - exp_before,
        tracked: after.sum("sidecar_watch_pods_tracked", &[]),
        rss_kib: 0,
    })
}
