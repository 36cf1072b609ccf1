//! Memory per tracked Pod of the operator's index, in-process: RSS growth while N realistic
//! Pods (main + native sidecar + legacy sidecar, full status) are applied, for several N.
//! The slope between the N values is the cost per Pod without fixed overhead.
//!
//! Then, on the 100k-Pod index, the time of what the status writer and a scrape pay:
//! `Index::policy_stats`, a full `/metrics` render (drained into a sink), and `GET /metrics`
//! from the operator's HTTP server over loopback (the body read into a sink), with how much
//! the scrapes raised the process's peak RSS (a scrape that held its body whole would show).
//!
//! `cargo bench --bench index_memory`

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use sidecar_watch::api::{PolicySpec, SlimPod};
use sidecar_watch::engine::{CompiledPolicy, PolicyRef};
use sidecar_watch::index::{Index, PolicyEntry};
use sidecar_watch::metrics::Metrics;

// The allocator the binary uses (src/main.rs), so that the figure is the binary's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `VmHWM`: the process's peak RSS so far.
fn peak_rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib = status.lines().find_map(|l| l.strip_prefix("VmHWM:")).and_then(|v| v.trim().strip_suffix("kB"));
    kib.and_then(|k| k.trim().parse::<u64>().ok()).unwrap_or(0) * 1024
}

/// `GET /metrics` with `Connection: close`, the response read into a small buffer over and
/// over (so that the client holds no copy); returns the bytes received, framing included.
async fn get_metrics(port: u16) -> std::io::Result<usize> {
    let response = sidecar_watch_e2e::http::get(port, "/metrics", &Default::default()).await?;
    Ok(response.body.len())
}

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm.split_whitespace().nth(1).and_then(|p| p.parse().ok()).unwrap_or(0);
    pages * 4096
}

fn pod(i: usize) -> SlimPod {
    let text = include_str!("../tests/fixtures/two-sidecars.yaml");
    let mut pod: SlimPod = serde_norway::from_str(text).expect("fixture parses");
    pod.metadata.name = Some(format!("checkout-84d6c7f9b-{i:06}"));
    pod.metadata.namespace = Some(format!("team-{}", i % 50));
    pod.metadata.uid = Some(format!("6f1c2d3e-{:04x}-4b5a-9c8d-{:012x}", i % 65536, i));
    pod
}

/// Runs `work` `runs` times and prints the fastest and the median run, with what the last
/// run reported (a size, so that the work is not optimized away).
fn time(what: &str, runs: usize, mut work: impl FnMut() -> usize) {
    let mut times: Vec<Duration> = Vec::with_capacity(runs);
    let mut size = 0;
    for _ in 0..runs {
        let started = Instant::now();
        size = std::hint::black_box(work());
        times.push(started.elapsed());
    }
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!("{what:<14} min {:>9.3} ms  median {:>9.3} ms  ({size})", ms(times[0]), ms(times[runs / 2]));
}

fn main() {
    // As the operator does (src/memory.rs), so that the figure is the binary's.
    sidecar_watch::memory::disable_transparent_huge_pages().expect("prctl");
    let now = Timestamp::now();
    let index = Arc::new(Index::new());
    let spec = PolicySpec::default();
    let policy = PolicyRef::cluster("default");
    let compiled = CompiledPolicy::compile(policy.clone(), &spec).expect("default policy");
    index.apply_policy(policy, PolicyEntry::new(Ok(compiled), serde_json::Value::Null), now);
    let base = rss_bytes();
    let mut applied = 0usize;
    let mut points = Vec::new();
    for target in [10_000usize, 50_000, 100_000] {
        while applied < target {
            index.apply_pod(index.view_of(&pod(applied)), now);
            applied += 1;
        }
        points.push((target, rss_bytes() - base));
    }
    println!("{:>8}  {:>12}  {:>10}", "pods", "RSS growth", "per pod");
    for (n, bytes) in &points {
        println!("{n:>8}  {:>9.1} MiB  {:>7} B", *bytes as f64 / 1048576.0, bytes / *n as u64);
    }
    let (n0, b0) = points[0];
    let (n1, b1) = points[points.len() - 1];
    println!("slope {}..{} pods: {} B per tracked Pod", n0, n1, (b1 - b0) / (n1 - n0) as u64);

    let metrics = Metrics::new();
    let (role_tx, role) = sidecar_watch::role::channel();
    sidecar_watch::role::set_leader(&role_tx, true);

    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port();
    let server = sidecar_watch::server::serve(
        SocketAddr::from(([127, 0, 0, 1], port)),
        sidecar_watch::server::Security::Plain,
        Arc::clone(&index),
        metrics.clone(),
        role,
        std::future::pending(),
    );
    runtime.spawn(server);
    let peak = peak_rss_bytes();
    while runtime.block_on(get_metrics(port)).is_err() {
        std::thread::sleep(Duration::from_millis(10));
    }
    time("GET /metrics", 10, || runtime.block_on(get_metrics(port)).expect("scrape"));
    let growth = peak_rss_bytes().saturating_sub(peak);
    println!("peak RSS growth over these scrapes: {:.1} MiB", growth as f64 / 1048576.0);
    let index_rss = base + points[points.len() - 1].1;
    let above_index = || (rss_bytes() as f64 - index_rss as f64) / 1048576.0;
    std::thread::sleep(Duration::from_millis(500));
    println!("RSS after these scrapes: {:.1} MiB above the index", above_index());
    let started = Instant::now();
    sidecar_watch::memory::release_freed_memory();
    println!(
        "release_freed_memory: {:.1} ms; RSS then {:.1} MiB above the index",
        started.elapsed().as_secs_f64() * 1000.0,
        above_index()
    );

    time("policy_stats", 50, || index.policy_stats().len());
    time("/metrics", 10, || {
        // Drained into a sink, as the server's stream is: only the byte count stays.
        let mut bytes = 0;
        metrics.render(&index, true, |chunk| {
            bytes += chunk.len();
            true
        });
        bytes
    });
    let (mut chunks, mut largest) = (0, 0);
    metrics.render(&index, true, |chunk| {
        chunks += 1;
        largest = largest.max(chunk.len());
        true
    });
    println!("/metrics in {chunks} chunks, the largest {largest} bytes");
}
