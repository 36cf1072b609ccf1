//! Start-up: the reflector baselines alone (full Pods, and the careful user's stripped Pods),
//! then the operator: time to ready and to every Pod tracked, RSS at the peak and at rest,
//! `/metrics` size and time.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use sidecar_watch_harness::process::{self, spawn};
use tokio::io::AsyncBufReadExt;

use super::operator::{scrape, Operator};
use super::prom::{sample_quantile, Scrape};

/// A baseline's time to synced and RSS 2 s later; zero when it did not sync.
#[derive(Debug, Default, Clone, Copy)]
pub struct Baseline {
    pub sync_s: f64,
    pub rss_kib: u64,
}

/// Runs `program flags` until it prints `synced ...`, alone (no other load).
pub async fn baseline(program: &Path, flags: &[&str], kubeconfig: &Path, log: &Path) -> Result<Baseline> {
    let mut base = spawn(program, flags, kubeconfig, log, Stdio::piped())?;
    let stdout = base.child.stdout.take().context("baseline stdout")?;
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(600), lines.next_line()).await;
    let mut out = Baseline::default();
    match line {
        Ok(Ok(Some(l))) if l.starts_with("synced") => {
            out.sync_s = base.started.elapsed().as_secs_f64();
            tokio::time::sleep(Duration::from_secs(2)).await;
            out.rss_kib = base.rss();
            say!("baseline {flags:?}: {l}; RSS {} MiB", out.rss_kib / 1024);
        }
        other => say!("baseline {flags:?} did not sync: {other:?}; see {}", log.display()),
    }
    base.stop().await;
    Ok(out)
}

/// The operator's start-up.
#[derive(Debug, Default, Clone)]
pub struct Startup {
    pub ready_s: f64,
    /// CPU seconds of this process (the simulator, serving the initial list) until ready.
    pub sim_cpu_ready_s: f64,
    pub tracked_s: f64,
    /// CPU seconds of the operator itself until every Pod is tracked: steadier than wall
    /// time when other work shares the machine.
    pub op_cpu_tracked_s: f64,
    /// RSS at rest after the initial sync (see [`sidecar_watch_harness::process::Proc::settled_rss`]).
    pub rss_ready_kib: u64,
    /// The highest RSS seen from ready until then: what the initial list costs at its peak.
    pub rss_sync_peak_kib: u64,
    /// Median of 5 scrapes, each body dropped a frame at a time as it comes.
    pub metrics_ms: f64,
    pub metrics_bytes: usize,
    pub metrics_series: usize,
    /// Events published by the initial sync (+3 s).
    pub startup_events: f64,
}

/// Starts the operator (with `extra` flags and environment variables `vars`) and measures
/// its start-up against `n` Pods.
pub async fn operator(
    program: &Path,
    kubeconfig: &Path,
    dir: &Path,
    n: usize,
    extra: &[&str],
    vars: &[(&str, String)],
) -> Result<(Operator, Startup)> {
    let hz = process::clock_ticks_per_sec() as f64;
    let sim_cpu = || process::cpu_ticks(std::process::id()).unwrap_or(0);
    let sim_cpu0 = sim_cpu();
    let op = Operator::spawn_with_env(program, kubeconfig, &dir.join("operator.log"), extra, vars)?;
    let deadline = Duration::from_secs(600);
    let mut s = Startup { ready_s: op.wait_ready(deadline).await?, ..Startup::default() };
    s.sim_cpu_ready_s = sim_cpu().saturating_sub(sim_cpu0) as f64 / hz;
    s.rss_sync_peak_kib = op.proc.rss();
    say!(
        "N={n}: operator ready in {:.2}s, RSS {} MiB; simulator CPU meanwhile {:.2}s ({:.1} µs per Pod)",
        s.ready_s,
        s.rss_sync_peak_kib / 1024,
        s.sim_cpu_ready_s,
        s.sim_cpu_ready_s * 1e6 / n.max(1) as f64
    );
    s.tracked_s = op.wait_tracked(n, deadline).await?;
    s.op_cpu_tracked_s = process::cpu_ticks(op.proc.pid).unwrap_or(0) as f64 / hz;
    say!("N={n}: all tracked in {:.2}s, operator CPU until then {:.2}s", s.tracked_s, s.op_cpu_tracked_s);
    s.rss_sync_peak_kib = s.rss_sync_peak_kib.max(op.proc.rss());
    tokio::time::sleep(Duration::from_secs(3)).await;
    s.rss_ready_kib = op.proc.settled_rss().await;
    s.rss_sync_peak_kib = s.rss_sync_peak_kib.max(s.rss_ready_kib);
    // Timed with the body dropped a frame at a time: a client that holds and concatenates
    // it spends more than the server does sending it, and that grows with the text
    // (docs/benchmarks.md, "A first pass that reads ahead"). One more scrape gives the text.
    let mut times = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        sidecar_watch_harness::http::body_length(op.port, "/metrics").await?;
        times.push(started.elapsed().as_secs_f64());
    }
    let last = scrape(op.port).await?.body;
    let scrape = Scrape::parse(&last)?;
    s.metrics_bytes = last.len();
    s.metrics_series = scrape.samples.len();
    s.metrics_ms = sample_quantile(&times, 0.5).unwrap_or(0.0) * 1000.0;
    s.startup_events = scrape.sum("sidecar_watch_events_total", &[]);
    if let Some(heap) = scrape.heap() {
        say!("N={n}: after the initial sync, {heap}");
    }
    say!(
        "N={n}: /metrics {:.1} ms (median of 5), {} KiB, {} series; RSS {} MiB",
        s.metrics_ms,
        s.metrics_bytes / 1024,
        s.metrics_series,
        s.rss_ready_kib / 1024
    );
    Ok((op, s))
}
