//! Memory per tracked Pod of the operator's index, in-process: RSS growth while N realistic
//! Pods (main + native sidecar + legacy sidecar, full status) are applied, for several N.
//! The slope between the N values is the cost per Pod without fixed overhead.
//!
//! Then, on the 100k-Pod index, the time of what the status writer and a scrape pay:
//! `Index::policy_stats` and a full `/metrics` render (drained into a sink).
//!
//! `cargo bench --bench index_memory`

use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use sidecar_watch::api::{PolicySpec, SlimPod};
use sidecar_watch::controller::index::{Index, PolicyEntry};
use sidecar_watch::engine::{CompiledPolicy, PodView, PolicyRef};
use sidecar_watch::metrics::Metrics;

// The allocator the binary uses (src/main.rs), so that the figure is the binary's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm.split_whitespace().nth(1).and_then(|p| p.parse().ok()).unwrap_or(0);
    pages * 4096
}

fn pod(i: usize) -> SlimPod {
    let text = include_str!("../tests/fixtures/two-sidecars.yaml");
    let mut pod: SlimPod = serde_yaml::from_str(text).expect("fixture parses");
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
    let now = Timestamp::now();
    let index = Index::new();
    let spec = PolicySpec::default();
    let policy = PolicyRef::cluster("default");
    let compiled = CompiledPolicy::compile(policy.clone(), &spec).expect("default policy");
    index.apply_policy(
        policy,
        PolicyEntry {
            generation: Some(1),
            uid: None,
            compiled: Ok(Arc::new(compiled)),
            spec: serde_json::Value::Null,
            ready_condition: None,
            shard_statuses: Default::default(),
        },
        now,
    );
    let base = rss_bytes();
    let mut applied = 0usize;
    let mut points = Vec::new();
    for target in [10_000usize, 50_000, 100_000] {
        while applied < target {
            index.apply_pod(PodView::from_pod(&pod(applied)), now);
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

    index.set_leader(true);
    let metrics = Metrics::new();
    time("policy_stats", 50, || index.policy_stats().len());
    time("/metrics", 10, || metrics.render(&index).len());
}
