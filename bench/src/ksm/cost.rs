//! What each system costs at N Pods, each alone on the API server (so that kube-apiserver's
//! counters between two snapshots are its own): start to every Pod exported, its CPU and the
//! server's meanwhile, settled RSS, `/metrics` bytes and series, and its CPU and the
//! server's while kubelets send status updates at a steady rate.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use sidecar_watch_harness::env::HttpResponse;
use sidecar_watch_harness::ksm::exporter::{GoMemory, Ksm};
use sidecar_watch_harness::process::{self, Proc};

use super::cluster::Cluster;
use super::load::{self, Updates};
use super::server::{ServerCost, Snapshot};
use crate::args::Args;
use crate::operator::{self, Operator};
use crate::pods::PodFactory;
use crate::prom::{sample_quantile, Scrape};
use crate::rates::Detection;

/// The two systems.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum System {
    /// kube-state-metrics, Pods only, the rules' families only.
    Ksm,
    /// sidecar-watch with the benchmark's two ClusterSidecarPolicies.
    SidecarWatch,
}

impl System {
    /// Its name in tables.
    pub fn name(self) -> &'static str {
        match self {
            System::Ksm => "kube-state-metrics",
            System::SidecarWatch => "sidecar-watch",
        }
    }
}

/// One system alone at one N.
#[derive(Debug, Default, Clone)]
pub struct SystemCost {
    /// Spawn → every Pod exported (kube-state-metrics) or tracked (sidecar-watch).
    pub sync_s: f64,
    /// Its own CPU seconds until then.
    pub cpu_sync_s: f64,
    /// The API server's cost of the start (until synced and 5 s more).
    pub start: ServerCost,
    /// The highest RSS seen until synced, and at rest afterwards (median of 5), KiB.
    pub rss_peak_kib: u64,
    pub rss_settled_kib: u64,
    /// `/metrics`: median time of 3 scrapes, body bytes, samples.
    pub metrics_ms: f64,
    pub metrics_bytes: usize,
    pub series: usize,
    /// Samples by metric name, most first.
    pub families: Vec<(String, usize)>,
    /// The status-update phase: the load, the system's CPU (% of one core) and the server's.
    pub updates: Updates,
    pub cpu_updates_pct: f64,
    pub update_server: ServerCost,
    /// sidecar-watch only: its detection latency over the status-update phase.
    pub detection: Option<Detection>,
    /// sidecar-watch only: samples with `--metric-denylist 'sidecar_container_.*'`.
    pub series_denylisted: Option<usize>,
    /// kube-state-metrics only: Go's memory statistics right after the settled reading.
    pub go_memory: Option<GoMemory>,
    /// RSS (KiB) [`REST`] after the settled reading, kube-state-metrics after a forced
    /// garbage collection: what each returns to the OS soon after its initial list.
    pub rss_rest_kib: u64,
    /// kube-state-metrics only: Go's memory statistics at that reading.
    pub go_memory_rest: Option<GoMemory>,
    /// kube-state-metrics only: the top of its heap profile after the forced collection
    /// (`go tool pprof -top`), for where its memory goes.
    pub heap_top: Option<String>,
    /// With `--ksm-repeats` above 1: how many runs this is the median of, and the lowest and
    /// highest RSS at rest among them (KiB).
    pub runs: usize,
    pub rss_rest_range_kib: Option<(u64, u64)>,
}

/// The median of several runs of one system at one N: the run whose RSS at rest is the
/// median (its families, Go statistics and heap profile), with every figure the cost table
/// shows replaced by that figure's own median, and the range of the RSS at rest.
pub fn median(mut runs: Vec<SystemCost>) -> SystemCost {
    let count = runs.len();
    if count < 2 {
        return runs.pop().map(|r| SystemCost { runs: 1, ..r }).unwrap_or_default();
    }
    let mid = |values: Vec<f64>| sample_quantile(&values, 0.5).unwrap_or(0.0);
    let of = |f: &dyn Fn(&SystemCost) -> f64| mid(runs.iter().map(f).collect());
    let kib = |f: fn(&SystemCost) -> u64| of(&|r| f(r) as f64).round() as u64;
    let (sync_s, cpu_sync_s, metrics_ms, cpu_updates_pct) =
        (of(&|r| r.sync_s), of(&|r| r.cpu_sync_s), of(&|r| r.metrics_ms), of(&|r| r.cpu_updates_pct));
    let (rss_peak_kib, rss_settled_kib, rss_rest_kib) =
        (kib(|r| r.rss_peak_kib), kib(|r| r.rss_settled_kib), kib(|r| r.rss_rest_kib));
    let start_apiserver = of(&|r| r.start.apiserver_cpu_s);
    let start_etcd = of(&|r| r.start.etcd_cpu_s);
    let start_list_bytes = of(&|r| r.start.list_bytes);
    let start_watch_bytes = of(&|r| r.start.watch_bytes);
    let update_apiserver = of(&|r| r.update_server.apiserver_cpu_s);
    let update_etcd = of(&|r| r.update_server.etcd_cpu_s);
    let detection = |q: fn(&Detection) -> Option<f64>| {
        let values: Vec<f64> = runs.iter().filter_map(|r| r.detection.as_ref().and_then(q)).collect();
        sample_quantile(&values, 0.5)
    };
    let (p50, p99) = (detection(|d| d.p50), detection(|d| d.p99));
    let low = runs.iter().map(|r| r.rss_rest_kib).min().unwrap_or(0);
    let high = runs.iter().map(|r| r.rss_rest_kib).max().unwrap_or(0);
    runs.sort_by_key(|r| r.rss_rest_kib);
    let mut m = runs.swap_remove(count / 2);
    m.sync_s = sync_s;
    m.cpu_sync_s = cpu_sync_s;
    m.metrics_ms = metrics_ms;
    m.cpu_updates_pct = cpu_updates_pct;
    m.rss_peak_kib = rss_peak_kib;
    m.rss_settled_kib = rss_settled_kib;
    m.rss_rest_kib = rss_rest_kib;
    m.start.apiserver_cpu_s = start_apiserver;
    m.start.etcd_cpu_s = start_etcd;
    m.start.list_bytes = start_list_bytes;
    m.start.watch_bytes = start_watch_bytes;
    m.update_server.apiserver_cpu_s = update_apiserver;
    m.update_server.etcd_cpu_s = update_etcd;
    if let Some(d) = m.detection.as_mut() {
        (d.p50, d.p99) = (p50, p99);
    }
    m.runs = count;
    m.rss_rest_range_kib = Some((low, high));
    m
}

/// The status-update load with no client watching: what the writes alone cost the server.
pub async fn writes_alone(cluster: &Cluster, factory: &PodFactory, args: &Args) -> Result<(Updates, ServerCost)> {
    let targets = cluster.update_targets(factory);
    let before = Snapshot::take(cluster.client(), cluster.apiserver_pid, cluster.etcd_pid).await?;
    let updates = load::run(cluster.client(), factory, &targets, args.update_rate, args.update_seconds as f64).await;
    let after = Snapshot::take(cluster.client(), cluster.apiserver_pid, cluster.etcd_pid).await?;
    Ok((updates, after.since(&before)))
}

/// Samples a process' RSS every 100 ms until dropped; the highest value seen.
pub(super) struct PeakRss {
    peak: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl PeakRss {
    pub(super) fn start(pid: u32) -> Self {
        let peak = Arc::new(AtomicU64::new(0));
        let p = peak.clone();
        let task = tokio::spawn(async move {
            loop {
                p.fetch_max(process::rss_kib(pid).unwrap_or(0), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        Self { peak, task }
    }

    pub(super) fn stop(self) -> u64 {
        self.task.abort();
        self.peak.load(Ordering::Relaxed)
    }
}

/// A started system and how to read its `/metrics`.
enum Running {
    Ksm(Ksm),
    Operator(Operator),
}

impl Running {
    fn proc(&self) -> &Proc {
        match self {
            Running::Ksm(k) => &k.proc,
            Running::Operator(o) => &o.proc,
        }
    }

    async fn scrape(&self) -> Result<HttpResponse> {
        match self {
            Running::Ksm(k) => k.scrape().await,
            Running::Operator(o) => operator::scrape(o.port).await,
        }
    }

    /// sidecar-watch's `/metrics`, parsed, for its detection histogram; kube-state-metrics
    /// has none.
    async fn detection_scrape(&self) -> Result<Option<Scrape>> {
        match self {
            Running::Ksm(_) => Ok(None),
            Running::Operator(o) => operator::scrape_parsed(o.port).await.map(Some),
        }
    }

    async fn stop(self) {
        match self {
            Running::Ksm(k) => k.proc.stop().await,
            Running::Operator(o) => o.proc.stop().await,
        }
    }
}

/// Samples of a Prometheus text page (lines that are neither comments nor blank).
pub fn sample_count(text: &str) -> usize {
    text.lines().filter(|l| !l.is_empty() && !l.starts_with('#')).count()
}

/// Samples by metric name, most first.
pub fn families(text: &str) -> Vec<(String, usize)> {
    let mut counts: std::collections::HashMap<&str, usize> = Default::default();
    for line in text.lines().filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let name = line.split(['{', ' ']).next().unwrap_or_default();
        *counts.entry(name).or_default() += 1;
    }
    let mut out: Vec<(String, usize)> = counts.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    out.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    out
}

const SYNC_DEADLINE: Duration = Duration::from_secs(1800);

/// How long after the settled reading RSS is read again. sidecar-watch's trims purge what
/// mimalloc freed after the initial list within one 20 s `smaps` sample (30k Pods: 84.8 MiB
/// settled, 54.9-57.8 MiB from 20 s later). Go's scavenger is slower: at 10k Pods
/// kube-state-metrics' RSS was still 391 MiB 30 s after a forced collection (live heap
/// 32 MB), and fell from 312 to 114 MiB about 100 s after its start when left alone; its
/// RSS at rest is the side-by-side phase's after the scenarios (10 minutes at full scale).
pub const REST: Duration = Duration::from_secs(30);

/// A fresh kubeconfig of the system's ServiceAccount (a TokenRequest: made before the
/// snapshot that starts a phase, so that it is not counted as the system's).
async fn kubeconfig(system: System, cluster: &Cluster) -> Result<PathBuf> {
    match system {
        System::Ksm => cluster.ksm_kubeconfig().await,
        System::SidecarWatch => cluster.operator_kubeconfig().await,
    }
}

/// Starts the system with `kubeconfig`, its log in `dir`; `extra` flags for sidecar-watch.
fn spawn(
    system: System,
    kubeconfig: &Path,
    args: &Args,
    ksm_bin: &Path,
    dir: &Path,
    extra: &[&str],
) -> Result<Running> {
    Ok(match system {
        System::Ksm => Running::Ksm(Ksm::spawn(ksm_bin, kubeconfig, &dir.join("ksm.log"))?),
        System::SidecarWatch => {
            Running::Operator(Operator::spawn(&args.operator(), kubeconfig, &dir.join("operator.log"), extra)?)
        }
    })
}

impl Running {
    /// Waits until every Pod of the cluster is exported (kube-state-metrics) or tracked.
    async fn wait_synced(&self, cluster: &Cluster) -> Result<()> {
        match self {
            Running::Ksm(k) => k.wait_synced(cluster.containers, SYNC_DEADLINE).await.map(drop),
            Running::Operator(o) => {
                o.wait_ready(SYNC_DEADLINE).await?;
                o.wait_tracked(cluster.pods, SYNC_DEADLINE).await.map(drop)
            }
        }
    }
}

/// Measures `system` alone at the cluster's current N.
pub async fn alone(
    system: System,
    cluster: &Cluster,
    factory: &PodFactory,
    args: &Args,
    ksm_bin: &Path,
    dir: &Path,
) -> Result<SystemCost> {
    let n = cluster.pods;
    let hz = process::clock_ticks_per_sec() as f64;
    let config = kubeconfig(system, cluster).await?;
    let quiet_s = super::server::wait_quiet(cluster.apiserver_pid).await;
    say!("N={n}: kube-apiserver quiet after {quiet_s:.0} s; starting {}", system.name());
    let before = Snapshot::take(cluster.client(), cluster.apiserver_pid, cluster.etcd_pid).await?;
    let running = spawn(system, &config, args, ksm_bin, dir, &[])?;
    let pid = running.proc().pid;
    let peak = PeakRss::start(pid);
    running.wait_synced(cluster).await?;
    let mut cost = SystemCost {
        sync_s: running.proc().started.elapsed().as_secs_f64(),
        cpu_sync_s: process::cpu_ticks(pid).unwrap_or(0) as f64 / hz,
        ..SystemCost::default()
    };
    tokio::time::sleep(Duration::from_secs(5)).await;
    cost.start = Snapshot::take(cluster.client(), cluster.apiserver_pid, cluster.etcd_pid).await?.since(&before);
    cost.rss_settled_kib = running.proc().settled_rss().await;
    cost.rss_peak_kib = peak.stop().max(cost.rss_settled_kib);
    say!(
        "N={n}: {} synced in {:.1} s ({:.1} s CPU), RSS {} MiB settled; API server: {}",
        system.name(),
        cost.sync_s,
        cost.cpu_sync_s,
        cost.rss_settled_kib / 1024,
        cost.start.describe()
    );
    if let Running::Ksm(k) = &running {
        cost.go_memory = k.go_memory().await.ok();
        match k.heap_profile(&dir.join("ksm.heap.pb.gz"), 22).await {
            Ok(top) => cost.heap_top = Some(top),
            Err(e) => say!("N={n}: no heap profile of kube-state-metrics: {e:#}"),
        }
        tokio::time::sleep(REST).await;
        cost.rss_rest_kib = k.proc.settled_rss().await;
        cost.go_memory_rest = k.go_memory().await.ok();
        say!(
            "N={n}: kube-state-metrics {:?}; 30 s after a forced GC: RSS {} MiB, {:?}; heap:\n{}",
            cost.go_memory,
            cost.rss_rest_kib / 1024,
            cost.go_memory_rest,
            cost.heap_top.as_deref().unwrap_or("")
        );
    }
    if let Running::Operator(o) = &running {
        tokio::time::sleep(REST).await;
        cost.rss_rest_kib = o.proc.settled_rss().await;
        say!("N={n}: sidecar-watch 30 s later: RSS {} MiB", cost.rss_rest_kib / 1024);
    }
    let mut times = Vec::new();
    for _ in 0..3 {
        let r = running.scrape().await?;
        times.push(r.elapsed.as_secs_f64());
        cost.metrics_bytes = r.body.len();
        cost.series = sample_count(&r.body);
        cost.families = families(&r.body);
    }
    cost.metrics_ms = sample_quantile(&times, 0.5).unwrap_or(0.0) * 1000.0;
    say!(
        "N={n}: {} /metrics {:.0} ms, {} KiB, {} series ({:.2} per Pod)",
        system.name(),
        cost.metrics_ms,
        cost.metrics_bytes / 1024,
        cost.series,
        cost.series as f64 / n.max(1) as f64
    );

    let targets = cluster.update_targets(factory);
    // Scrapes outside the CPU window: at 100,000 Pods a render costs the operator ~0.1 s.
    let histogram_before = running.detection_scrape().await?;
    let snap = Snapshot::take(cluster.client(), cluster.apiserver_pid, cluster.etcd_pid).await?;
    let cpu0 = process::cpu_ticks(pid).unwrap_or(0);
    cost.updates = load::run(cluster.client(), factory, &targets, args.update_rate, args.update_seconds as f64).await;
    // The last updates reach the watch within milliseconds; a second for the client to
    // process them is part of the phase.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let cpu_s = process::cpu_ticks(pid).unwrap_or(0).saturating_sub(cpu0) as f64 / hz;
    cost.update_server = Snapshot::take(cluster.client(), cluster.apiserver_pid, cluster.etcd_pid).await?.since(&snap);
    if let (Some(before), Some(after)) = (histogram_before, running.detection_scrape().await?) {
        cost.detection = Some(Detection::between(&before, &after));
    }
    cost.cpu_updates_pct = cpu_s * 100.0 / cost.update_server.secs.max(1e-9);
    if let Some(e) = &cost.updates.first_error {
        say!("N={n}: a status write failed: {e}");
    }
    say!(
        "N={n}: {} at {:.0} updates/s ({} writes, {} errors): CPU {:.2} % of a core; API server: {}; detection {}",
        system.name(),
        cost.updates.achieved,
        cost.updates.writes,
        cost.updates.errors,
        cost.cpu_updates_pct,
        cost.update_server.describe(),
        cost.detection.map_or_else(|| "–".to_string(), |d| d.describe())
    );
    running.stop().await;

    if system == System::SidecarWatch {
        let config = kubeconfig(system, cluster).await?;
        let denied = spawn(system, &config, args, ksm_bin, dir, &["--metric-denylist", &args.denylist])?;
        denied.wait_synced(cluster).await?;
        let r = denied.scrape().await?;
        cost.series_denylisted = Some(sample_count(&r.body));
        say!("N={n}: sidecar-watch --metric-denylist {}: {} series", args.denylist, sample_count(&r.body));
        denied.stop().await;
    }
    Ok(cost)
}

/// Starts both systems and waits until both have every Pod (the phase where they run side
/// by side).
pub async fn start_both(cluster: &Cluster, args: &Args, ksm_bin: &Path, dir: &Path) -> Result<(Ksm, Operator)> {
    let ksm = spawn(System::Ksm, &kubeconfig(System::Ksm, cluster).await?, args, ksm_bin, dir, &[])?;
    let op = spawn(System::SidecarWatch, &kubeconfig(System::SidecarWatch, cluster).await?, args, ksm_bin, dir, &[])?;
    ksm.wait_synced(cluster).await?;
    op.wait_synced(cluster).await?;
    match (ksm, op) {
        (Running::Ksm(ksm), Running::Operator(op)) => Ok((ksm, op)),
        _ => anyhow::bail!("started the wrong systems"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(rss_rest_kib: u64, sync_s: f64, series: usize) -> SystemCost {
        SystemCost { rss_rest_kib, sync_s, series, ..SystemCost::default() }
    }

    #[test]
    fn the_median_of_three_runs_takes_each_figure_s_median_and_the_rss_range() {
        let m = median(vec![run(50 * 1024, 1.0, 5), run(40 * 1024, 3.0, 4), run(60 * 1024, 2.0, 6)]);
        assert_eq!((m.rss_rest_kib, m.sync_s, m.runs), (50 * 1024, 2.0, 3));
        assert_eq!(m.rss_rest_range_kib, Some((40 * 1024, 60 * 1024)));
        // What is not a median comes from the run whose RSS at rest is the median.
        assert_eq!(m.series, 5);
    }

    #[test]
    fn the_median_of_three_runs_takes_each_detection_quantile_s_median() {
        let with = |p50: f64, p99: f64| SystemCost {
            detection: Some(Detection { observed: 10.0, p50: Some(p50), p99: Some(p99) }),
            ..run(40 * 1024, 1.0, 4)
        };
        let m = median(vec![with(0.3, 9.0), with(0.1, 30.0), with(0.2, 20.0)]);
        let d = m.detection.expect("sidecar-watch's runs keep their detection latency");
        assert_eq!((d.p50, d.p99), (Some(0.2), Some(20.0)));
        assert_eq!(d.describe(), "200.000 ms / 20000.000 ms (10 inputs)");
    }

    #[test]
    fn one_run_is_its_own_median_without_a_range() {
        let m = median(vec![run(40 * 1024, 3.0, 4)]);
        assert_eq!((m.rss_rest_kib, m.runs, m.rss_rest_range_kib), (40 * 1024, 1, None));
    }
}
