//! What a client costs the real API server, read from kube-apiserver's own `/metrics`
//! (`apiserver_request_total`, `apiserver_response_sizes`, `apiserver_watch_events_*`, the
//! open watches) and from `/proc` for the CPU and memory of kube-apiserver and etcd. One
//! client runs alone in a phase, so the difference between two snapshots is its cost.

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::{Context, Result};
use kube::Client;
use sidecar_watch_harness::process;

use crate::prom::Scrape;

/// The families read (the rest of the ~2 MB page is skipped before parsing).
const FAMILIES: [&str; 5] = [
    "apiserver_request_total{",
    "apiserver_response_sizes_sum{",
    "apiserver_watch_events_total{",
    "apiserver_watch_events_sizes_sum{",
    "apiserver_longrunning_requests{",
];

/// Waits until kube-apiserver spends under 5 % of a core over 2 s (at most 40 s), so that a
/// measured phase does not pay for the previous one's aftermath (its garbage collection, a
/// stopped client's watches closing). Gives the seconds waited.
///
/// Without it, three starts in a row of the same system at 10k Pods cost kube-apiserver
/// 1.07, 1.11 and 2.49 s of CPU.
pub async fn wait_quiet(apiserver_pid: u32) -> f64 {
    let started = Instant::now();
    let hz = process::clock_ticks_per_sec() as f64;
    let window = std::time::Duration::from_secs(2);
    while started.elapsed() < std::time::Duration::from_secs(40) {
        let before = process::cpu_ticks(apiserver_pid).unwrap_or(0);
        tokio::time::sleep(window).await;
        let spent = process::cpu_ticks(apiserver_pid).unwrap_or(0).saturating_sub(before) as f64 / hz;
        if spent < 0.05 * window.as_secs_f64() {
            break;
        }
    }
    started.elapsed().as_secs_f64()
}

/// One reading of the API server's counters and of its processes.
#[derive(Debug, Clone)]
pub struct Snapshot {
    at: Instant,
    metrics: Scrape,
    apiserver_ticks: u64,
    etcd_ticks: u64,
    /// kube-apiserver's and etcd's RSS, KiB.
    pub apiserver_rss_kib: u64,
    pub etcd_rss_kib: u64,
}

/// Requests by kind of call and what they cost, between two snapshots.
#[derive(Debug, Default, Clone)]
pub struct ServerCost {
    pub secs: f64,
    /// `LIST` requests and their response bytes (every resource).
    pub lists: f64,
    pub list_bytes: f64,
    /// `WATCH` requests that ended (a watch is counted when it closes) and open at the end.
    pub watches_ended: f64,
    pub watches_open: f64,
    /// Watch events sent on Pod watches, and their bytes.
    pub watch_events: f64,
    pub watch_bytes: f64,
    /// `GET`s of objects (not the benchmark's own `/metrics` reads).
    pub gets: f64,
    /// Writes other than the benchmark's Pod creations and status patches (Events, policy
    /// status…), by verb and resource.
    pub writes: BTreeMap<String, f64>,
    /// The benchmark's own status patches.
    pub load_patches: f64,
    /// CPU seconds of kube-apiserver and of etcd.
    pub apiserver_cpu_s: f64,
    pub etcd_cpu_s: f64,
}

impl Snapshot {
    /// Reads kube-apiserver's `/metrics` (as the admin) and both processes.
    pub async fn take(client: &Client, apiserver_pid: u32, etcd_pid: u32) -> Result<Self> {
        let request = http::Request::get("/metrics").body(Vec::new()).context("request")?;
        let text = client.request_text(request).await.context("kube-apiserver /metrics")?;
        let kept: String =
            text.lines().filter(|l| FAMILIES.iter().any(|f| l.starts_with(f))).flat_map(|l| [l, "\n"]).collect();
        Ok(Self {
            at: Instant::now(),
            metrics: Scrape::parse(&kept)?,
            apiserver_ticks: process::cpu_ticks(apiserver_pid).unwrap_or(0),
            etcd_ticks: process::cpu_ticks(etcd_pid).unwrap_or(0),
            apiserver_rss_kib: process::rss_kib(apiserver_pid).unwrap_or(0),
            etcd_rss_kib: process::rss_kib(etcd_pid).unwrap_or(0),
        })
    }

    fn sum(&self, name: &str, matching: &[(&str, &str)]) -> f64 {
        self.metrics.sum(name, matching)
    }

    /// What happened between `before` and this snapshot.
    pub fn since(&self, before: &Snapshot) -> ServerCost {
        let d = |name: &str, matching: &[(&str, &str)]| self.sum(name, matching) - before.sum(name, matching);
        let requests = "apiserver_request_total";
        let hz = process::clock_ticks_per_sec() as f64;
        let mut writes = BTreeMap::new();
        let mut load_patches = 0.0;
        for s in self.metrics.find(requests, &[]) {
            let label = |k: &str| s.labels.get(k).map_or("", String::as_str);
            let (verb, resource, sub) = (label("verb"), label("resource"), label("subresource"));
            if !matches!(verb, "POST" | "PUT" | "PATCH" | "DELETE" | "APPLY" | "DELETECOLLECTION") {
                continue;
            }
            let before_value = before
                .metrics
                .samples
                .iter()
                .find(|b| b.name == s.name && b.labels == s.labels)
                .map_or(0.0, |b| b.value);
            let n = s.value - before_value;
            if n <= 0.0 {
                continue;
            }
            match (verb, resource, sub) {
                ("PATCH", "pods", "status") => load_patches += n,
                // The benchmark's Pod creations and tokens; kube-apiserver's own identity
                // Lease, renewed every 10 s (neither system under test writes Leases).
                ("POST", "pods", "") | ("POST", "serviceaccounts", "token") | ("PUT", "leases", "") => {}
                _ => {
                    let key =
                        if sub.is_empty() { format!("{verb} {resource}") } else { format!("{verb} {resource}/{sub}") };
                    *writes.entry(key).or_default() += n;
                }
            }
        }
        ServerCost {
            secs: self.at.duration_since(before.at).as_secs_f64(),
            lists: d(requests, &[("verb", "LIST")]),
            list_bytes: d("apiserver_response_sizes_sum", &[("verb", "LIST")]),
            watches_ended: d(requests, &[("verb", "WATCH")]),
            watches_open: self.sum("apiserver_longrunning_requests", &[("verb", "WATCH"), ("resource", "pods")]),
            watch_events: d("apiserver_watch_events_total", &[("resource", "pods")]),
            watch_bytes: d("apiserver_watch_events_sizes_sum", &[("resource", "pods")]),
            gets: d(requests, &[("verb", "GET")]) - d(requests, &[("verb", "GET"), ("subresource", "/metrics")]),
            writes,
            load_patches,
            apiserver_cpu_s: self.apiserver_ticks.saturating_sub(before.apiserver_ticks) as f64 / hz,
            etcd_cpu_s: self.etcd_ticks.saturating_sub(before.etcd_ticks) as f64 / hz,
        }
    }
}

impl ServerCost {
    /// Pod watch events and bytes sent to the client under test: this phase's minus what
    /// the status writes alone send (kube-apiserver's own PodSecurity admission watches Pods
    /// too), per status write of `alone`.
    pub fn client_watch(&self, alone: &ServerCost) -> (f64, f64) {
        let per_write = |x: f64| if alone.load_patches > 0.0 { x / alone.load_patches } else { 0.0 };
        (
            (self.watch_events - self.load_patches * per_write(alone.watch_events)).max(0.0),
            (self.watch_bytes - self.load_patches * per_write(alone.watch_bytes)).max(0.0),
        )
    }

    /// Writes in total.
    pub fn write_count(&self) -> f64 {
        // A fold from +0.0: an empty float `sum()` is -0.0, printed "-0".
        self.writes.values().fold(0.0, |a, b| a + b)
    }

    /// `12 LIST (41.2 MiB), 3 watches, 20,000 events (80.1 MiB), 2 GET, writes {…}; CPU …`.
    pub fn describe(&self) -> String {
        format!(
            "{:.0} LIST ({}), {:.0} watches open (+{:.0} ended), {:.0} Pod watch events ({}), {:.0} GET, writes {:?}; kube-apiserver CPU {:.2} s, etcd {:.2} s in {:.1} s",
            self.lists,
            mib(self.list_bytes),
            self.watches_open,
            self.watches_ended,
            self.watch_events,
            mib(self.watch_bytes),
            self.gets,
            self.writes,
            self.apiserver_cpu_s,
            self.etcd_cpu_s,
            self.secs
        )
    }
}

/// Bytes as MiB with one decimal.
pub fn mib(bytes: f64) -> String {
    format!("{:.1} MiB", bytes / 1048576.0)
}
