//! `sidecar-watch-bench`: runs the real operator (`sidecar-watch run`) against the in-process
//! simulator preloaded with N realistic Pods, for each N, and prints one table: memory (and
//! the slope per Pod, beside a kube-rs reflector baseline), time to ready, detection latency
//! under sustained status-update rates, end-to-end alert latency, `/metrics` cost and idle
//! CPU. Loopback only; everything is bounded in time and children are killed at the end.
//!
//! ```sh
//! cargo run --release -p sidecar-watch-e2e --bin sidecar-watch-bench -- \
//!     [--pods 10000,50000,100000] [--churn-seconds 300] [--rates 1000,5000] \
//!     [--operator target/release/sidecar-watch] [--baseline target/release/reflector-baseline] \
//!     [--rate-seconds 30] [--idle-seconds 30] [--e2e-samples 50] [--churn-rate 200] [--out FILE]
//! ```
//!
//! Writes go straight into the simulator's store (in-process, like a kubelet's status PUT
//! without the HTTP hop), so the load generator is cheap and the operator and the watches
//! see ordinary API-server watch events.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, WatchEvent, WatchParams};
use serde_json::{json, Value};
use sidecar_watch_e2e::bench::pods::{self, PodFactory, MESH_SIDECAR};
use sidecar_watch_e2e::bench::prom::{self, Histogram};
use sidecar_watch_e2e::bench::sys;
use sidecar_watch_e2e::sim::api::{now_string, Caller, Params};
use sidecar_watch_e2e::sim::{self, store::EventType, SimConfig, Simulator};
use tokio::io::AsyncBufReadExt;
use tokio::process::{Child, Command};

const DETECTION: &str = "sidecar_watch_detection_latency_seconds";

#[derive(Debug, Clone)]
struct Args {
    pods: Vec<usize>,
    churn_seconds: u64,
    churn_rate: u64,
    rates: Vec<u64>,
    rate_seconds: u64,
    idle_seconds: u64,
    e2e_samples: usize,
    operator: PathBuf,
    baseline: PathBuf,
    out: Option<PathBuf>,
    workdir: PathBuf,
}

fn parse_list<T: std::str::FromStr>(s: &str) -> Result<Vec<T>> {
    s.split(',')
        .filter(|x| !x.is_empty())
        .map(|x| x.trim().parse::<T>().map_err(|_| anyhow::anyhow!("bad number {x:?}")))
        .collect()
}

fn parse_args() -> Result<Args> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap_or(Path::new(".")).to_path_buf();
    let mut a = Args {
        pods: vec![10_000, 50_000, 100_000],
        churn_seconds: 300,
        churn_rate: 200,
        rates: vec![1000, 5000],
        rate_seconds: 30,
        idle_seconds: 30,
        e2e_samples: 50,
        operator: root.join("target/release/sidecar-watch"),
        baseline: std::env::current_exe()?.with_file_name("reflector-baseline"),
        out: None,
        workdir: std::env::temp_dir().join(format!("sidecar-watch-bench-{}", std::process::id())),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let (flag, inline) = match flag.split_once('=') {
            Some((f, v)) => (f.to_string(), Some(v.to_string())),
            None => (flag, None),
        };
        if flag == "-h" || flag == "--help" {
            println!(
                "{}",
                include_str!("bench.rs")
                    .lines()
                    .take_while(|l| l.starts_with("//!"))
                    .map(|l| l.trim_start_matches("//!").trim_start_matches(' '))
                    .collect::<Vec<_>>()
                    .join("\n")
            );
            std::process::exit(0);
        }
        let v = match inline {
            Some(v) => v,
            None => it.next().with_context(|| format!("{flag} needs a value"))?,
        };
        match flag.as_str() {
            "--pods" => a.pods = parse_list(&v)?,
            "--churn-seconds" => a.churn_seconds = v.parse()?,
            "--churn-rate" => a.churn_rate = v.parse()?,
            "--rates" => a.rates = parse_list(&v)?,
            "--rate-seconds" => a.rate_seconds = v.parse()?,
            "--idle-seconds" => a.idle_seconds = v.parse()?,
            "--e2e-samples" => a.e2e_samples = v.parse()?,
            "--operator" => a.operator = v.into(),
            "--baseline" => a.baseline = v.into(),
            "--out" => a.out = Some(v.into()),
            "--workdir" => a.workdir = v.into(),
            other => bail!("unknown option {other} (see --help)"),
        }
    }
    if a.pods.is_empty() {
        bail!("--pods is empty");
    }
    Ok(a)
}

macro_rules! say {
    ($($t:tt)*) => { eprintln!("[bench {:>7.1}s] {}", START.get_or_init(Instant::now).elapsed().as_secs_f64(), format!($($t)*)) };
}
static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();

fn pods_key() -> (String, String) {
    (String::new(), "pods".to_string())
}

// ---------------------------------------------------------------------------------------
// Simulator setup and writes (in-process).

fn caller() -> Caller {
    Caller { manager: "bench".into(), dry_run: false }
}

fn create(shared: &sim::Shared, group: &str, version: &str, plural: &str, ns: Option<&str>, obj: Value) -> Result<()> {
    let mut st = shared.state();
    let info =
        st.registry.find(group, version, plural).cloned().with_context(|| format!("no resource {group}/{plural}"))?;
    st.create(&info, version, ns, obj, &caller(), false).map_err(|e| anyhow::anyhow!("create {plural}: {e:?}"))?;
    Ok(())
}

/// CRDs, namespaces, policies and `n` Pods.
fn preload(shared: &sim::Shared, factory: &PodFactory, n: usize) -> Result<Vec<(String, String)>> {
    let crds = Path::new(env!("CARGO_MANIFEST_DIR")).join("../crds");
    let mut files: Vec<_> = std::fs::read_dir(&crds)?.filter_map(|e| e.ok()).map(|e| e.path()).collect();
    files.sort();
    for f in files {
        let crd: Value = serde_norway::from_str(&std::fs::read_to_string(&f)?)?;
        create(shared, "apiextensions.k8s.io", "v1", "customresourcedefinitions", None, crd)?;
    }
    for i in 0..pods::NAMESPACES {
        let ns = pods::namespace(i);
        create(
            shared,
            "",
            "v1",
            "namespaces",
            None,
            json!({"metadata": {"name": ns, "labels": {"team": format!("team-{}", i % 7)}}}),
        )?;
    }
    for p in pods::policies() {
        create(shared, "sidecarwatch.io", "v1alpha1", "clustersidecarpolicies", None, p)?;
    }
    let key = pods_key();
    let mut names = Vec::with_capacity(n);
    let now = now_string();
    for i in 0..n {
        let mut pod = factory.pod(i);
        pod["metadata"]["creationTimestamp"] = json!(now);
        let ns = pod["metadata"]["namespace"].as_str().unwrap_or_default().to_string();
        let name = pod["metadata"]["name"].as_str().unwrap_or_default().to_string();
        // Serialized now, while the Pod is in the CPU cache: the first LIST would otherwise
        // pay for it, reading 100k cold objects (several times slower).
        shared.state().store.put(&key, &ns, &name, pod).json();
        names.push((ns, name));
    }
    Ok(names)
}

/// Read-modify-write of a Pod in the store (one lock hold); returns the new resourceVersion.
/// The one copy is the editable next version: stored versions are shared and immutable.
fn write_pod(shared: &sim::Shared, ns: &str, name: &str, f: impl FnOnce(&mut Value)) -> Option<u64> {
    let key = pods_key();
    let mut st = shared.state();
    let mut next = st.store.get(&key, ns, name)?.clone();
    f(&mut next);
    st.store.put(&key, ns, name, next);
    Some(st.store.rv())
}

fn delete_pod(shared: &sim::Shared, ns: &str, name: &str) -> bool {
    let mut st = shared.state();
    let Some(info) = st.registry.find("", "v1", "pods").cloned() else { return false };
    let q: Params = [("gracePeriodSeconds".to_string(), "0".to_string())].into_iter().collect();
    st.delete(&info, "v1", Some(ns), name, &json!({}), &q, &caller()).is_ok()
}

fn create_pod(shared: &sim::Shared, factory: &PodFactory, i: usize) -> (String, String) {
    let mut pod = factory.pod(i);
    pod["metadata"]["creationTimestamp"] = json!(now_string());
    let ns = pod["metadata"]["namespace"].as_str().unwrap_or_default().to_string();
    let name = pod["metadata"]["name"].as_str().unwrap_or_default().to_string();
    shared.state().store.put(&pods_key(), &ns, &name, pod);
    (ns, name)
}

// ---------------------------------------------------------------------------------------
// Children.

struct Proc {
    child: Child,
    pid: u32,
    started: Instant,
}

impl Proc {
    fn rss(&self) -> u64 {
        sys::rss_kib(self.pid).unwrap_or(0)
    }

    /// RSS at rest: the median of five samples a second apart, so that one sample taken
    /// while the allocator still holds a burst's garbage does not stand for the phase.
    async fn settled_rss(&self) -> u64 {
        let mut samples = Vec::with_capacity(5);
        for i in 0..5 {
            if i > 0 {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            samples.push(self.rss());
        }
        samples.sort_unstable();
        samples[samples.len() / 2]
    }

    async fn stop(mut self) {
        let _ = Command::new("kill").arg("-TERM").arg(self.pid.to_string()).status().await;
        if tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await.is_err() {
            let _ = self.child.kill().await;
        }
    }
}

fn spawn(program: &Path, args: &[&str], kubeconfig: &Path, log: &Path, stdout: Stdio) -> Result<Proc> {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .env("KUBECONFIG", kubeconfig)
        .env("RUST_LOG", std::env::var("BENCH_RUST_LOG").unwrap_or_else(|_| "warn".into()))
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(std::fs::File::create(log)?)
        .kill_on_drop(true);
    let started = Instant::now();
    let child = cmd.spawn().with_context(|| format!("starting {}", program.display()))?;
    let pid = child.id().context("child pid")?;
    Ok(Proc { child, pid, started })
}

async fn scrape(port: u16) -> Result<sys::HttpResponse> {
    let r = sys::get(port, "/metrics").await?;
    if r.code != 200 {
        bail!("/metrics answered {}", r.code);
    }
    Ok(r)
}

// ---------------------------------------------------------------------------------------
// Results.

#[derive(Debug, Default, Clone)]
struct RatePhase {
    rate: u64,
    events_ok: f64,
    achieved: f64,
    writes: u64,
    observed: f64,
    p50: Option<f64>,
    p99: Option<f64>,
    catch_up: Option<f64>,
    dropped: f64,
    restarts: f64,
    expired: u64,
    tracked: f64,
    rss_kib: u64,
}

#[derive(Debug, Default, Clone)]
struct E2e {
    samples: usize,
    watch: Vec<f64>,
    metrics: Vec<f64>,
    event: Vec<f64>,
    scrape_ms: Vec<f64>,
}

#[derive(Debug, Default, Clone)]
struct Row {
    n: usize,
    avg_pod_bytes: usize,
    preload_s: f64,
    base_sync_s: f64,
    base_rss_kib: u64,
    ready_s: f64,
    /// CPU seconds of this process (the simulator, serving the initial list) until ready.
    sim_cpu_ready_s: f64,
    tracked_s: f64,
    /// RSS at rest after the initial sync (see `settled_rss`).
    rss_ready_kib: u64,
    /// The highest RSS seen from ready until then: what the initial list costs at its peak.
    rss_sync_peak_kib: u64,
    metrics_ms: f64,
    metrics_bytes: usize,
    metrics_series: usize,
    startup_events: f64,
    rates: Vec<RatePhase>,
    e2e: E2e,
    churn_ops: u64,
    churn_s: f64,
    rss_churn_kib: u64,
    tracked_after: f64,
    store_after: usize,
    idle_cpu_pct: f64,
    dropped_total: f64,
    restarts_total: f64,
    expired_total: u64,
}

// ---------------------------------------------------------------------------------------
// Phases.

/// Sustained readiness flips at `rate`/s for `secs`: every flip of an istio-proxy to
/// not-ready is undone 1 s later (both count as updates), so alerts go pending and back.
fn run_rate(shared: Arc<sim::Shared>, targets: Vec<(String, String)>, rate: u64, secs: u64) -> (u64, f64) {
    let started = Instant::now();
    let end = started + Duration::from_secs(secs);
    let mut pending: VecDeque<(Instant, usize)> = VecDeque::new();
    let mut cursor = 0usize;
    let mut done = 0u64;
    while Instant::now() < end {
        let due = (started.elapsed().as_secs_f64() * rate as f64) as u64;
        let now_s = now_string();
        while done < due {
            let now = Instant::now();
            if pending.front().is_some_and(|(t, _)| *t <= now) {
                let (_, i) = pending.pop_front().unwrap_or((now, 0));
                let (ns, name) = &targets[i];
                write_pod(&shared, ns, name, |p| pods::set_ready(p, MESH_SIDECAR, true, &now_s));
            } else {
                let i = cursor % targets.len();
                cursor += 1;
                let (ns, name) = &targets[i];
                write_pod(&shared, ns, name, |p| pods::set_ready(p, MESH_SIDECAR, false, &now_s));
                pending.push_back((now + Duration::from_secs(1), i));
            }
            done += 1;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let elapsed = started.elapsed().as_secs_f64();
    let now_s = now_string();
    let achieved = done as f64 / elapsed;
    // Undo the flips still pending (these writes count too: the operator sees them).
    for (_, i) in pending {
        let (ns, name) = &targets[i];
        write_pod(&shared, ns, name, |p| pods::set_ready(p, MESH_SIDECAR, true, &now_s));
        done += 1;
    }
    (done, achieved)
}

/// Churn at `rate`/s for `secs`: 50 % readiness flips (undone 2 s later), 20 % restarts,
/// 15 % deletions, 15 % creations.
fn run_churn(
    shared: Arc<sim::Shared>,
    factory: PodFactory,
    mut live: Vec<(String, String)>,
    mut next_index: usize,
    rate: u64,
    secs: u64,
) -> (u64, f64) {
    let started = Instant::now();
    let end = started + Duration::from_secs(secs);
    let mut pending: VecDeque<(Instant, String, String)> = VecDeque::new();
    let mut done = 0u64;
    let mut rng = fastrand::Rng::with_seed(42);
    while Instant::now() < end {
        let due = (started.elapsed().as_secs_f64() * rate as f64) as u64;
        let now_s = now_string();
        while done < due {
            let now = Instant::now();
            done += 1;
            if pending.front().is_some_and(|(t, _, _)| *t <= now) {
                if let Some((_, ns, name)) = pending.pop_front() {
                    write_pod(&shared, &ns, &name, |p| pods::set_ready(p, MESH_SIDECAR, true, &now_s));
                }
                continue;
            }
            if live.is_empty() {
                break;
            }
            let roll = rng.u32(0..100);
            let i = rng.usize(0..live.len());
            if roll < 50 {
                let (ns, name) = live[i].clone();
                write_pod(&shared, &ns, &name, |p| pods::set_ready(p, MESH_SIDECAR, false, &now_s));
                pending.push_back((now + Duration::from_secs(2), ns, name));
            } else if roll < 70 {
                let (ns, name) = &live[i];
                write_pod(&shared, ns, name, |p| pods::restart(p, MESH_SIDECAR, "Error", 1, true, &now_s));
            } else if roll < 85 {
                let (ns, name) = live.swap_remove(i);
                pending.retain(|(_, pns, pname)| !(pns == &ns && pname == &name));
                delete_pod(&shared, &ns, &name);
            } else {
                live.push(create_pod(&shared, &factory, next_index));
                next_index += 1;
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let elapsed = started.elapsed().as_secs_f64();
    let now_s = now_string();
    for (_, ns, name) in pending {
        write_pod(&shared, &ns, &name, |p| pods::set_ready(p, MESH_SIDECAR, true, &now_s));
    }
    (done, elapsed)
}

/// Polls `/metrics` until `needle` (all parts on one line) shows; returns seconds since `t0`.
async fn wait_metric(port: u16, parts: &[&str], t0: Instant, timeout: Duration) -> Option<f64> {
    while t0.elapsed() < timeout {
        if let Ok(r) = scrape(port).await {
            if r.body.lines().any(|l| parts.iter().all(|p| l.contains(p))) {
                return Some(t0.elapsed().as_secs_f64());
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    None
}

fn f(v: Option<f64>, scale: f64, digits: usize) -> String {
    v.map_or("–".into(), |x| format!("{:.*}", digits, x * scale))
}

async fn bench_n(args: &Args, factory: &PodFactory, n: usize) -> Result<Row> {
    let mut row = Row { n, ..Default::default() };
    let dir = args.workdir.join(format!("n{n}"));
    std::fs::create_dir_all(&dir)?;
    let sim = Simulator::start(SimConfig { history_limit: 20_000, ..SimConfig::default() }).await?;
    let shared = sim.shared().clone();
    let kubeconfig = dir.join("kubeconfig");
    sim.write_kubeconfig(&kubeconfig)?;

    let t = Instant::now();
    let names = {
        let shared = shared.clone();
        let factory = factory.clone();
        tokio::task::spawn_blocking(move || preload(&shared, &factory, n)).await??
    };
    row.preload_s = t.elapsed().as_secs_f64();
    row.avg_pod_bytes = (0..50).map(|i| pods::json_size(&factory.pod(i * 97 % n.max(1)))).sum::<usize>() / 50;
    say!("N={n}: preloaded {} Pods (~{} B JSON each) in {:.1}s", names.len(), row.avg_pod_bytes, row.preload_s);

    // Baseline alone first (no other load).
    if args.baseline.exists() {
        let mut base = spawn(&args.baseline, &[], &kubeconfig, &dir.join("baseline.log"), Stdio::piped())?;
        let stdout = base.child.stdout.take().context("baseline stdout")?;
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let line = tokio::time::timeout(Duration::from_secs(600), lines.next_line()).await;
        match line {
            Ok(Ok(Some(l))) if l.starts_with("synced") => {
                row.base_sync_s = base.started.elapsed().as_secs_f64();
                tokio::time::sleep(Duration::from_secs(2)).await;
                row.base_rss_kib = base.rss();
                say!("N={n}: baseline {l}; RSS {} MiB", row.base_rss_kib / 1024);
            }
            other => say!("N={n}: baseline did not sync: {other:?}"),
        }
        base.stop().await;
    } else {
        say!("baseline binary {} missing; skipped", args.baseline.display());
    }

    // The operator.
    let hz = sys::clock_ticks_per_sec() as f64;
    let sim_cpu = || sys::cpu_ticks(std::process::id()).unwrap_or(0);
    let sim_cpu0 = sim_cpu();
    let port = sys::free_port()?;
    let addr = format!("127.0.0.1:{port}");
    let op = spawn(
        &args.operator,
        &["run", "--leader-elect=false", "--metrics-secure=false", "--metrics-addr", &addr],
        &kubeconfig,
        &dir.join("operator.log"),
        Stdio::null(),
    )?;
    let deadline = Duration::from_secs(600);
    loop {
        if op.started.elapsed() > deadline {
            bail!("operator not ready after {deadline:?}; see {}", dir.display());
        }
        if sys::get(port, "/readyz").await.is_ok_and(|r| r.code == 200) {
            row.ready_s = op.started.elapsed().as_secs_f64();
            row.sim_cpu_ready_s = sim_cpu().saturating_sub(sim_cpu0) as f64 / hz;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    row.rss_sync_peak_kib = op.rss();
    say!(
        "N={n}: operator ready in {:.2}s, RSS {} MiB; simulator CPU meanwhile {:.2}s ({:.1} µs per Pod)",
        row.ready_s,
        row.rss_sync_peak_kib / 1024,
        row.sim_cpu_ready_s,
        row.sim_cpu_ready_s * 1e6 / n.max(1) as f64
    );
    loop {
        let text = scrape(port).await?.body;
        if prom::sum(&text, "sidecar_watch_pods_tracked", &[]) as usize >= n {
            row.tracked_s = op.started.elapsed().as_secs_f64();
            break;
        }
        if op.started.elapsed() > deadline {
            bail!("operator never tracked {n} Pods");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    row.rss_sync_peak_kib = row.rss_sync_peak_kib.max(op.rss());
    tokio::time::sleep(Duration::from_secs(3)).await;
    row.rss_ready_kib = op.settled_rss().await;
    row.rss_sync_peak_kib = row.rss_sync_peak_kib.max(row.rss_ready_kib);
    let mut times = Vec::new();
    for _ in 0..5 {
        let r = scrape(port).await?;
        times.push(r.elapsed.as_secs_f64());
        row.metrics_bytes = r.body.len();
        row.metrics_series = prom::series_count(&r.body);
    }
    row.metrics_ms = prom::sample_quantile(&times, 0.5).unwrap_or(0.0) * 1000.0;
    say!(
        "N={n}: /metrics {:.1} ms (median of 5), {} KiB, {} series; RSS {} MiB",
        row.metrics_ms,
        row.metrics_bytes / 1024,
        row.metrics_series,
        row.rss_ready_kib / 1024
    );

    // Pods reserved for end-to-end samples and the catch-up marker; never churned.
    let healthy = |p: &&(String, String)| {
        let i = names.iter().position(|x| x == *p).unwrap_or(0);
        i % 100 >= 10
    };
    let reserved: Vec<(String, String)> =
        names.iter().take(200.min(n)).filter(healthy).take(args.e2e_samples + 2).cloned().collect();
    let marker = reserved.last().cloned().context("no Pods")?;
    // Status updates and churn touch only healthy Pods (the not-ready/restarted few % keep
    // their alerts), and never the reserved ones.
    let flip_targets: Vec<(String, String)> = names
        .iter()
        .enumerate()
        .filter(|(i, p)| i % 100 >= 10 && !reserved.contains(p))
        .map(|(_, p)| p.clone())
        .collect();
    let before_all = scrape(port).await?.body;
    row.startup_events = prom::sum(&before_all, "sidecar_watch_events_total", &[]);
    let expired0 = shared.expired_watches();

    for &rate in &args.rates {
        let before = scrape(port).await?.body;
        let exp_before = shared.expired_watches();
        let (writes, achieved) = {
            let shared = shared.clone();
            let targets = flip_targets.clone();
            let secs = args.rate_seconds;
            tokio::task::spawn_blocking(move || run_rate(shared, targets, rate, secs)).await?
        };
        // Catch-up: one more write after the phase; how long until /metrics reflects it.
        let t0 = Instant::now();
        write_pod(&shared, &marker.0, &marker.1, |p| pods::set_ready(p, MESH_SIDECAR, false, &now_string()));
        let ready0 = format!("pod=\"{}\",container=\"{MESH_SIDECAR}\"", marker.1);
        let catch_up =
            wait_metric(port, &["sidecar_container_ready{", &ready0, "} 0"], t0, Duration::from_secs(60)).await;
        let after = scrape(port).await?.body;
        write_pod(&shared, &marker.0, &marker.1, |p| pods::set_ready(p, MESH_SIDECAR, true, &now_string()));
        let h = Histogram::parse(&after, DETECTION).minus(&Histogram::parse(&before, DETECTION));
        let phase = RatePhase {
            rate,
            events_ok: prom::sum(&after, "sidecar_watch_events_total", &["result=\"ok\""])
                - prom::sum(&before, "sidecar_watch_events_total", &["result=\"ok\""]),
            achieved,
            writes,
            observed: h.count,
            p50: h.quantile(0.5),
            p99: h.quantile(0.99),
            catch_up,
            dropped: prom::sum(&after, "sidecar_watch_events_total", &["result=\"dropped\""])
                - prom::sum(&before, "sidecar_watch_events_total", &["result=\"dropped\""]),
            restarts: prom::sum(&after, "sidecar_watch_watch_restarts_total", &[])
                - prom::sum(&before, "sidecar_watch_watch_restarts_total", &[]),
            expired: shared.expired_watches() - exp_before,
            tracked: prom::sum(&after, "sidecar_watch_pods_tracked", &[]),
            rss_kib: op.rss(),
        };
        say!(
            "N={n}: rate {}/s: {writes} writes ({achieved:.0}/s), operator saw {} inputs, p50 {} ms, p99 {} ms, catch-up {} s, dropped {}, restarts {}, expired {}, RSS {} MiB",
            phase.rate,
            phase.observed,
            f(phase.p50, 1e3, 3),
            f(phase.p99, 1e3, 3),
            f(phase.catch_up, 1.0, 3),
            phase.dropped,
            phase.restarts,
            phase.expired,
            phase.rss_kib / 1024
        );
        row.rates.push(phase);
        tokio::time::sleep(Duration::from_secs(3)).await;
    }

    // End-to-end: OOM kill of a sidecar → watch / metrics / Event.
    {
        let client = sidecar_watch_e2e::harness::client_from(&kubeconfig).await?;
        let api: Api<Pod> = Api::all(client);
        let rv = shared.resource_version().to_string();
        let stream = api.watch(&WatchParams::default().timeout(290), &rv).await?;
        let (wtx, mut wrx) = tokio::sync::mpsc::unbounded_channel::<(String, Instant)>();
        let watch_task = tokio::spawn(async move {
            futures::pin_mut!(stream);
            while let Some(ev) = stream.next().await {
                if let Ok(WatchEvent::Modified(p)) = ev {
                    let _ = wtx.send((p.metadata.name.unwrap_or_default(), Instant::now()));
                }
            }
        });
        let (etx, mut erx) = tokio::sync::mpsc::unbounded_channel::<(String, String, Instant)>();
        let mut sub = shared.state().store.subscribe();
        let event_task = tokio::spawn(async move {
            loop {
                match sub.recv().await {
                    Ok(ev) => {
                        if ev.key.1 == "events" && ev.kind == EventType::Added {
                            let at = Instant::now();
                            let event = ev.object.value();
                            let pod = event.pointer("/involvedObject/name").and_then(Value::as_str).unwrap_or("");
                            let reason = event.get("reason").and_then(Value::as_str).unwrap_or("");
                            let _ = etx.send((pod.to_string(), reason.to_string(), at));
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(_) => return,
                }
            }
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut e2e = E2e::default();
        for (ns, name) in reserved.iter().take(args.e2e_samples) {
            while wrx.try_recv().is_ok() {}
            while erx.try_recv().is_ok() {}
            let t0 = Instant::now();
            write_pod(&shared, ns, name, |p| pods::restart(p, MESH_SIDECAR, "OOMKilled", 137, true, &now_string()));
            let pod_part = format!("pod=\"{name}\"");
            let (mut watch_at, mut event_at, mut metric_at) = (None, None, None);
            while t0.elapsed() < Duration::from_secs(15)
                && (watch_at.is_none() || event_at.is_none() || metric_at.is_none())
            {
                if metric_at.is_none() {
                    if let Ok(r) = scrape(port).await {
                        e2e.scrape_ms.push(r.elapsed.as_secs_f64() * 1e3);
                        if r.body.lines().any(|l| l.contains("alertname=\"SidecarOOMKilled\"") && l.contains(&pod_part))
                        {
                            metric_at = Some(t0.elapsed().as_secs_f64());
                        }
                    }
                } else {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                while let Ok((pod, at)) = wrx.try_recv() {
                    if &pod == name && watch_at.is_none() {
                        watch_at = Some(at.duration_since(t0).as_secs_f64());
                    }
                }
                while let Ok((pod, reason, at)) = erx.try_recv() {
                    if &pod == name && reason == "SidecarOOMKilled" && event_at.is_none() {
                        event_at = Some(at.duration_since(t0).as_secs_f64());
                    }
                }
            }
            e2e.samples += 1;
            e2e.watch.extend(watch_at);
            e2e.event.extend(event_at);
            e2e.metrics.extend(metric_at);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        watch_task.abort();
        event_task.abort();
        say!(
            "N={n}: e2e over {} samples: watch p50 {} ms / p99 {} ms; metrics p50 {} / p99 {} ms; Event p50 {} / p99 {} ms (seen {}/{}/{})",
            e2e.samples,
            f(prom::sample_quantile(&e2e.watch, 0.5), 1e3, 2),
            f(prom::sample_quantile(&e2e.watch, 0.99), 1e3, 2),
            f(prom::sample_quantile(&e2e.metrics, 0.5), 1e3, 1),
            f(prom::sample_quantile(&e2e.metrics, 0.99), 1e3, 1),
            f(prom::sample_quantile(&e2e.event, 0.5), 1e3, 2),
            f(prom::sample_quantile(&e2e.event, 0.99), 1e3, 2),
            e2e.watch.len(),
            e2e.metrics.len(),
            e2e.event.len()
        );
        row.e2e = e2e;
    }

    // Churn.
    if args.churn_seconds > 0 {
        let (ops, secs) = {
            let shared = shared.clone();
            let factory = factory.clone();
            let live = flip_targets.clone();
            let (rate, secs) = (args.churn_rate, args.churn_seconds);
            tokio::task::spawn_blocking(move || run_churn(shared, factory, live, n + 1_000_000, rate, secs)).await?
        };
        row.churn_ops = ops;
        row.churn_s = secs;
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    row.rss_churn_kib = op.settled_rss().await;
    let text = scrape(port).await?.body;
    row.tracked_after = prom::sum(&text, "sidecar_watch_pods_tracked", &[]);
    row.store_after = shared.state().store.count(&pods_key());
    say!(
        "N={n}: churn {} ops in {:.0}s; RSS {} MiB; tracked {} vs {} in the store",
        row.churn_ops,
        row.churn_s,
        row.rss_churn_kib / 1024,
        row.tracked_after,
        row.store_after
    );

    // Idle CPU.
    let c0 = sys::cpu_ticks(op.pid).unwrap_or(0);
    let t = Instant::now();
    tokio::time::sleep(Duration::from_secs(args.idle_seconds)).await;
    let c1 = sys::cpu_ticks(op.pid).unwrap_or(0);
    row.idle_cpu_pct = (c1 - c0) as f64 / hz / t.elapsed().as_secs_f64() * 100.0;
    say!("N={n}: idle CPU {:.2}% of a core over {}s", row.idle_cpu_pct, args.idle_seconds);

    let end = scrape(port).await?.body;
    row.dropped_total = prom::sum(&end, "sidecar_watch_events_total", &["result=\"dropped\""])
        - prom::sum(&before_all, "sidecar_watch_events_total", &["result=\"dropped\""]);
    row.restarts_total = prom::sum(&end, "sidecar_watch_watch_restarts_total", &[])
        - prom::sum(&before_all, "sidecar_watch_watch_restarts_total", &[]);
    row.expired_total = shared.expired_watches() - expired0;
    op.stop().await;
    drop(sim);
    Ok(row)
}

fn table(rows: &[Row], args: &Args) -> String {
    let mut out = String::new();
    let head: Vec<String> = rows.iter().map(|r| format!("N = {}", r.n)).collect();
    out.push_str(&format!("| metric | {} |\n|---|{}\n", head.join(" | "), "---:|".repeat(rows.len())));
    let mut line = |name: &str, cells: Vec<String>| out.push_str(&format!("| {name} | {} |\n", cells.join(" | ")));
    let mib = |k: u64| format!("{:.1} MiB", k as f64 / 1024.0);
    let slope = |get: &dyn Fn(&Row) -> u64| -> Vec<String> {
        rows.iter()
            .enumerate()
            .map(|(i, r)| {
                if i == 0 {
                    "–".to_string()
                } else {
                    let p = &rows[i - 1];
                    let s = (get(r) as f64 - get(p) as f64) * 1024.0 / (r.n as f64 - p.n as f64);
                    format!("{s:.0} B")
                }
            })
            .collect()
    };
    line("Pod JSON size (avg)", rows.iter().map(|r| format!("{} B", r.avg_pod_bytes)).collect());
    line("operator: start → /readyz 200", rows.iter().map(|r| format!("{:.2} s", r.ready_s)).collect());
    line("operator: start → pods_tracked = N", rows.iter().map(|r| format!("{:.2} s", r.tracked_s)).collect());
    line(
        "simulator CPU, operator start → ready (per Pod)",
        rows.iter()
            .map(|r| format!("{:.2} s ({:.1} µs)", r.sim_cpu_ready_s, r.sim_cpu_ready_s * 1e6 / r.n.max(1) as f64))
            .collect(),
    );
    line(
        "operator: Events published by initial sync (+3 s)",
        rows.iter().map(|r| format!("{:.0}", r.startup_events)).collect(),
    );
    line("operator RSS peak during initial sync", rows.iter().map(|r| mib(r.rss_sync_peak_kib)).collect());
    line("operator RSS after initial sync (settled)", rows.iter().map(|r| mib(r.rss_ready_kib)).collect());
    line("operator RSS per Pod (slope vs previous N), sync", slope(&|r| r.rss_ready_kib));
    line("operator RSS after churn (settled)", rows.iter().map(|r| mib(r.rss_churn_kib)).collect());
    line("operator RSS per Pod (slope), after churn", slope(&|r| r.rss_churn_kib));
    line("baseline (reflector) time to synced", rows.iter().map(|r| format!("{:.2} s", r.base_sync_s)).collect());
    line("baseline RSS after sync", rows.iter().map(|r| mib(r.base_rss_kib)).collect());
    line("baseline RSS per Pod (slope)", slope(&|r| r.base_rss_kib));
    let ratio: Vec<String> = rows
        .iter()
        .enumerate()
        .map(|(i, r)| {
            if i == 0 {
                return format!("{:.1} (absolute)", r.base_rss_kib as f64 / r.rss_ready_kib.max(1) as f64);
            }
            let p = &rows[i - 1];
            let ours = r.rss_ready_kib as f64 - p.rss_ready_kib as f64;
            let base = r.base_rss_kib as f64 - p.base_rss_kib as f64;
            if ours > 0.0 {
                format!("{:.1}×", base / ours)
            } else {
                "–".into()
            }
        })
        .collect();
    line("baseline / operator per-Pod ratio", ratio);
    for (k, rate) in args.rates.iter().enumerate() {
        let get = |r: &Row| r.rates.get(k).cloned().unwrap_or_default();
        line(
            &format!("{rate}/s: updates written (achieved rate)"),
            rows.iter().map(|r| format!("{} ({:.0}/s)", get(r).writes, get(r).achieved)).collect(),
        );
        line(
            &format!("{rate}/s: detection latency p50 / p99"),
            rows.iter().map(|r| format!("{} / {} ms", f(get(r).p50, 1e3, 3), f(get(r).p99, 1e3, 3))).collect(),
        );
        line(
            &format!("{rate}/s: Pod inputs seen by operator / written"),
            rows.iter().map(|r| format!("{:.0} / {}", get(r).observed, get(r).writes + 1)).collect(),
        );
        line(
            &format!("{rate}/s: Events published during phase"),
            rows.iter().map(|r| format!("{:.0}", get(r).events_ok)).collect(),
        );
        line(
            &format!("{rate}/s: last update on /metrics after phase end"),
            rows.iter().map(|r| format!("{} s", f(get(r).catch_up, 1.0, 3))).collect(),
        );
        line(
            &format!("{rate}/s: dropped Events / watch restarts / 410s"),
            rows.iter().map(|r| format!("{} / {} / {}", get(r).dropped, get(r).restarts, get(r).expired)).collect(),
        );
        line(
            &format!("{rate}/s: pods_tracked, RSS at phase end"),
            rows.iter().map(|r| format!("{:.0}, {}", get(r).tracked, mib(get(r).rss_kib))).collect(),
        );
    }
    let q = |v: &Vec<f64>, p: f64| f(prom::sample_quantile(v, p), 1e3, 1);
    line(
        "e2e OOMKilled → bare kube-rs watch p50 / p99",
        rows.iter().map(|r| format!("{} / {} ms", q(&r.e2e.watch, 0.5), q(&r.e2e.watch, 0.99))).collect(),
    );
    line(
        "e2e OOMKilled → Event at simulator p50 / p99",
        rows.iter().map(|r| format!("{} / {} ms", q(&r.e2e.event, 0.5), q(&r.e2e.event, 0.99))).collect(),
    );
    line(
        "e2e OOMKilled → alert on /metrics (polled) p50 / p99",
        rows.iter().map(|r| format!("{} / {} ms", q(&r.e2e.metrics, 0.5), q(&r.e2e.metrics, 0.99))).collect(),
    );
    line(
        "e2e samples (watch / Event / metrics seen)",
        rows.iter()
            .map(|r| format!("{} ({}/{}/{})", r.e2e.samples, r.e2e.watch.len(), r.e2e.event.len(), r.e2e.metrics.len()))
            .collect(),
    );
    line("/metrics scrape time (median of 5, idle)", rows.iter().map(|r| format!("{:.1} ms", r.metrics_ms)).collect());
    line(
        "/metrics scrape time during e2e polling p50 / p99",
        rows.iter()
            .map(|r| {
                format!(
                    "{} / {} ms",
                    q(&r.e2e.scrape_ms.iter().map(|x| x / 1e3).collect(), 0.5),
                    q(&r.e2e.scrape_ms.iter().map(|x| x / 1e3).collect(), 0.99)
                )
            })
            .collect(),
    );
    line(
        "/metrics size, series",
        rows.iter().map(|r| format!("{:.1} MiB, {}", r.metrics_bytes as f64 / 1048576.0, r.metrics_series)).collect(),
    );
    line(
        "churn ops (time)",
        rows.iter()
            .map(|r| format!("{} ({:.0} s, {:.0}/s)", r.churn_ops, r.churn_s, r.churn_ops as f64 / r.churn_s.max(1e-9)))
            .collect(),
    );
    line(
        "pods_tracked after churn / Pods in store",
        rows.iter().map(|r| format!("{:.0} / {}", r.tracked_after, r.store_after)).collect(),
    );
    line(
        &format!("idle CPU ({} s, % of one core)", args.idle_seconds),
        rows.iter().map(|r| format!("{:.2} %", r.idle_cpu_pct)).collect(),
    );
    line(
        "whole run: dropped Events / watch restarts / 410s",
        rows.iter().map(|r| format!("{} / {} / {}", r.dropped_total, r.restarts_total, r.expired_total)).collect(),
    );
    out
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    START.get_or_init(Instant::now);
    let args = parse_args()?;
    if !args.operator.exists() {
        bail!("operator binary {} not found (cargo build --release -p sidecar-watch)", args.operator.display());
    }
    std::fs::create_dir_all(&args.workdir)?;
    say!("args: {args:?}");
    let factory = PodFactory::new();
    let mut rows = Vec::new();
    for &n in &args.pods {
        let row = bench_n(&args, &factory, n).await?;
        rows.push(row);
        say!("partial table:\n{}", table(&rows, &args));
    }
    let text = table(&rows, &args);
    println!("{text}");
    if let Some(out) = &args.out {
        std::fs::write(out, &text)?;
    }
    Ok(())
}
