//! Memory per tracked Pod of the operator's index, in-process: RSS growth while N realistic
//! Pods (main + native sidecar + legacy sidecar, full status) are applied, for several N.
//! The slope between the N values is the cost per Pod without fixed overhead.
//!
//! Then, on the 100k-Pod index, the time of what the status writer and a scrape pay:
//! `Index::policy_stats`, a full `/metrics` render (drained into a sink), and `GET /metrics`
//! from the operator's HTTP server over loopback (the body read into a sink), plain and as
//! Prometheus asks for it (gzip), with how much the scrapes raised the process's peak RSS (a
//! scrape that held its body whole would show).
//!
//! Beside RSS, a counting wrapper around the allocator gives the bytes the index asked for
//! per Pod, what mimalloc set aside for them (its size classes) and the allocations per Pod,
//! then a walk over the index splits the asked bytes by part: the gap from asked bytes to RSS
//! is the allocator's, the gap from the parts to asked bytes is what the Pods share
//! (interned names, label sets) and the interner's pools.
//!
//! `cargo bench --bench index_memory` (the three-container fixture with four alerts each), or
//! `cargo bench --bench index_memory -- mix` (the full benchmark's Pods and policies:
//! `sidecar_watch_testkit::factory`, mostly healthy). `-- memory` stops after the memory
//! figures. `-- gzip` instead times a render plain and gzip-compressed at levels 1 to 6 at
//! 20k, 60k and 100k Pods of the full benchmark's mix (how `/metrics`' gzip level was
//! chosen: src/server/scrape.rs). `-- labels` times the plain render at 100k Pods of the
//! mix without and with `--namespace-labels team,tier` (each namespace holding 40 labels),
//! alternating, median of 15 each (issue 56: within 5 % of the render without).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use sidecar_watch::api::{ClusterPolicySpec, PolicySpec, SlimPod};
use sidecar_watch::engine::Termination;
use sidecar_watch::engine::{CompiledPolicy, ContainerHistory, ContainerView, PodUid, PodView, PolicyRef};
use sidecar_watch::index::Writes;
use sidecar_watch::index::{Index, PolicyEntry, PolicyResult, StoredAlert, TrackedPod};
use sidecar_watch::memory::{heap_counts, live_by_size, CountingMimalloc};
use sidecar_watch::metrics::Metrics;
use sidecar_watch_harness::http::Request;
use sidecar_watch_testkit::scenario::Scenario;

/// The allocation sizes that grew by at least 0.05 per Pod from `before` (at `n0` Pods) to
/// `after` (at `n1`), with mimalloc's size class for each.
fn print_sizes(before: &[usize], after: &[usize], n0: usize, n1: usize) {
    println!("allocations per Pod by size asked (-> mimalloc size class):");
    for (size, (b, a)) in before.iter().zip(after).enumerate() {
        let per_pod = (*a as f64 - *b as f64) / (n1 - n0) as f64;
        if per_pod.abs() < 0.05 {
            continue;
        }
        // SAFETY: a pure function of its argument.
        let class = unsafe { libmimalloc_sys::mi_good_size(size) };
        let size = if size == after.len() - 1 { "larger".to_string() } else { format!("{size} B") };
        println!("  {size:>8} -> {class:>5} B  {per_pod:>5.2}");
    }
}

/// The allocator the binary uses (src/main.rs), counting what is live: bytes asked for,
/// bytes mimalloc's size classes gave, allocations.
#[global_allocator]
static GLOBAL: CountingMimalloc = CountingMimalloc;

/// Live memory at one moment: RSS and the allocator's counts.
#[derive(Clone, Copy, Default)]
struct Sample {
    rss: u64,
    asked: u64,
    usable: u64,
    allocations: u64,
}

impl Sample {
    fn now() -> Sample {
        let heap = heap_counts().unwrap_or_default();
        Sample {
            rss: rss_bytes(),
            asked: heap.asked as u64,
            usable: heap.usable as u64,
            allocations: heap.allocations as u64,
        }
    }

    /// Per Pod from `self` (at `n0` Pods) to `later` (at `n1`).
    fn slope(self, n0: usize, later: Sample, n1: usize) -> [f64; 4] {
        let per = |a: u64, b: u64| (b as f64 - a as f64) / (n1 - n0) as f64;
        [
            per(self.rss, later.rss),
            per(self.asked, later.asked),
            per(self.usable, later.usable),
            per(self.allocations, later.allocations),
        ]
    }
}

/// Bytes the Pods' own parts ask for (their lists are boxed slices: no spare capacity), split
/// by part (the Pods' share of the interned names and label sets is not in them).
fn parts(index: &Index) -> Vec<(&'static str, usize)> {
    use std::mem::{size_of, size_of_val};
    let mut sums = [0usize; 8];
    index.for_each_pod(|pod: &TrackedPod| {
        let view = pod.view();
        sums[0] += size_of::<TrackedPod>();
        let uid_len = match view.uid() {
            PodUid::Uuid(uuid) => uuid.as_bytes().len(),
            PodUid::Text(text) => text.len(),
        };
        sums[1] += uid_len + view.name().len();
        sums[2] += size_of_val(&*view.containers);
        for c in &view.containers {
            let Some(status) = c.status() else { continue };
            for t in status.last_termination.as_deref().into_iter().chain(status.terminated()) {
                sums[3] += size_of::<Termination>() + t.message.as_ref().map_or(0, |m| m.len());
            }
        }
        let history = pod.history();
        sums[4] += size_of_val(&*history.containers);
        sums[4] += history.containers.iter().map(|c| size_of_val(&*c.restarts)).sum::<usize>();
        if let Some(clocks) = &history.clocks {
            sums[5] += size_of_val(&**clocks) + clocks.capacity() * size_of::<(&str, String, jiff::Timestamp)>();
            sums[5] += clocks.iter().map(|(_, c, _)| c.capacity()).sum::<usize>();
        }
        sums[6] += size_of_val(&*pod.results);
        sums[7] += pod.results.iter().map(|r| size_of_val(&*r.alerts)).sum::<usize>();
    });
    let names = [
        "TrackedPod (boxed)",
        "uid + name (one string)",
        "containers",
        "terminations",
        "history containers + restarts",
        "history clocks",
        "results",
        "alerts",
    ];
    names.into_iter().zip(sums).collect()
}

/// The full benchmark's policies (`sidecar_watch_testkit::factory::policies`).
fn mix_policies() -> Vec<(PolicyRef, CompiledPolicy)> {
    sidecar_watch_testkit::factory::policies()
        .into_iter()
        .map(|object| {
            let name = object["metadata"]["name"].as_str().expect("a name").to_string();
            let spec: ClusterPolicySpec = serde_json::from_value(object["spec"].clone()).expect("a spec");
            let compiled = CompiledPolicy::compile_cluster(&name, &spec).expect("valid policy");
            (PolicyRef::cluster(&name), compiled)
        })
        .collect()
}

/// `VmHWM`: the process's peak RSS so far.
fn peak_rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib = status.lines().find_map(|l| l.strip_prefix("VmHWM:")).and_then(|v| v.trim().strip_suffix("kB"));
    kib.and_then(|k| k.trim().parse::<u64>().ok()).unwrap_or(0) * 1024
}

/// `GET /metrics` uncompressed, each frame of the body dropped as it comes (so that the
/// client holds no copy: collecting the ~170 MiB of 100k Pods and copying it twice, as the
/// harness's `get` does, cost the client more than the server); returns the body's length.
async fn get_metrics(port: u16) -> std::io::Result<usize> {
    sidecar_watch_harness::http::body_length(port, "/metrics").await
}

/// `GET /metrics` as Prometheus asks for it (`Accept-Encoding: gzip`); returns the compressed
/// body's length (the body is small enough to collect).
async fn get_metrics_gzip(port: u16) -> std::io::Result<usize> {
    let request = Request { headers: vec![("accept-encoding", "gzip".to_string())], ..Request::default() };
    Ok(sidecar_watch_harness::http::get(port, "/metrics", &request).await?.body.len())
}

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm.split_whitespace().nth(1).and_then(|p| p.parse().ok()).unwrap_or(0);
    pages * 4096
}

fn pod(i: usize) -> SlimPod {
    let mut pod: SlimPod = Scenario::TwoSidecars.decode();
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

/// A render drained into `sink` (each chunk, as the server's body hands it on).
fn render_into(metrics: &Metrics, index: &Index, mut sink: impl FnMut(&[u8])) {
    metrics.render(index, true, |chunk| {
        sink(chunk.as_bytes());
        true
    });
}

/// Render time plain and with gzip at levels 1..=6 (median of 5), and the compressed sizes,
/// at 20k, 60k and 100k Pods of the full benchmark's mix.
fn gzip_table() {
    use std::io::Write;
    let now = Timestamp::now();
    let index = Index::new();
    for (policy, compiled) in mix_policies() {
        index.apply_policy(policy, PolicyEntry::new(Ok(compiled)), now);
    }
    let factory = sidecar_watch_testkit::factory::PodFactory::new();
    let metrics = Metrics::new();
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!("| Pods | plain | level | gzip time | × plain | size | × level 6 size |");
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    let mut applied = 0;
    for n in [20_000usize, 60_000, 100_000] {
        while applied < n {
            let pod: SlimPod = serde_json::from_value(factory.pod(applied)).expect("a Pod");
            index.apply_pod(index.view_of(&pod), now);
            applied += 1;
        }
        let mut plain_bytes = 0;
        let plain = median(
            (0..5)
                .map(|_| {
                    let started = Instant::now();
                    plain_bytes = 0;
                    render_into(&metrics, &index, |b| plain_bytes += std::hint::black_box(b).len());
                    started.elapsed().as_secs_f64() * 1e3
                })
                .collect(),
        );
        let mut rows = Vec::new();
        for level in 1..=6 {
            let mut size = 0;
            let ms = median(
                (0..5)
                    .map(|_| {
                        let started = Instant::now();
                        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(level));
                        size = 0;
                        render_into(&metrics, &index, |b| {
                            encoder.write_all(b).expect("into a Vec");
                            size += encoder.get_ref().len();
                            encoder.get_mut().clear();
                        });
                        size += encoder.finish().expect("into a Vec").len();
                        started.elapsed().as_secs_f64() * 1e3
                    })
                    .collect(),
            );
            rows.push((level, ms, size));
        }
        let default_size = rows[5].2 as f64;
        for (level, ms, size) in rows {
            println!(
                "| {n} | {plain:.0} ms, {:.1} MiB | {level} | {ms:.0} ms | {:.2} | {:.2} MiB | {:.2} |",
                plain_bytes as f64 / 1048576.0,
                ms / plain,
                size as f64 / 1048576.0,
                size as f64 / default_size
            );
        }
    }
}

/// The plain render at 100k Pods of the mix, without and with `--namespace-labels`
/// (alternating runs, so that the machine's load falls on both alike).
fn labels_table() {
    use sidecar_watch::engine::NamespaceMeta;
    use sidecar_watch::metrics::NamespaceLabels;
    use std::collections::BTreeMap;
    let now = Timestamp::now();
    let index = Index::new();
    for (policy, compiled) in mix_policies() {
        index.apply_policy(policy, PolicyEntry::new(Ok(compiled)), now);
    }
    let allow = NamespaceLabels::new(&["team".to_string(), "tier".to_string()]).expect("valid keys");
    for i in 0..sidecar_watch_testkit::factory::NAMESPACES {
        let name = sidecar_watch_testkit::factory::namespace(i);
        let mut labels: BTreeMap<String, String> = (0..38).map(|k| (format!("k{k}"), format!("v{k}"))).collect();
        labels.insert("team".into(), format!("team-{}", i % 7));
        labels.insert("tier".into(), "production".into());
        let (values, _) = allow.values(&labels);
        index.apply_namespace(&name, NamespaceMeta::new(labels, &BTreeMap::new()).with_exported(values), now);
    }
    let factory = sidecar_watch_testkit::factory::PodFactory::new();
    for i in 0..100_000 {
        let pod: SlimPod = serde_json::from_value(factory.pod(i)).expect("a Pod");
        index.apply_pod(index.view_of(&pod), now);
    }
    let without = Metrics::new();
    let with = Metrics::new().with_namespace_labels(allow);
    let (mut times, mut sizes) = ([Vec::new(), Vec::new()], [0, 0]);
    for _ in 0..15 {
        for (i, metrics) in [&without, &with].into_iter().enumerate() {
            let started = Instant::now();
            sizes[i] = 0;
            render_into(metrics, &index, |b| sizes[i] += std::hint::black_box(b).len());
            times[i].push(started.elapsed().as_secs_f64() * 1e3);
        }
    }
    for (i, what) in ["without --namespace-labels", "with --namespace-labels team,tier"].into_iter().enumerate() {
        times[i].sort_by(f64::total_cmp);
        println!(
            "100000 Pods, {what}: median {:.1} ms, min {:.1} ms, {:.1} MiB",
            times[i][7],
            times[i][0],
            sizes[i] as f64 / 1048576.0
        );
    }
}

fn main() {
    // As the operator does (src/memory/mod.rs), so that the figure is the binary's.
    sidecar_watch::memory::disable_transparent_huge_pages().expect("prctl");
    if std::env::args().any(|a| a == "gzip") {
        gzip_table();
        return;
    }
    if std::env::args().any(|a| a == "labels") {
        labels_table();
        return;
    }
    let mix = std::env::args().any(|a| a == "mix");
    let now = Timestamp::now();
    let index = Arc::new(Index::new());
    let factory = sidecar_watch_testkit::factory::PodFactory::new();
    let policies = if mix {
        mix_policies()
    } else {
        let policy = PolicyRef::cluster("default");
        vec![(policy.clone(), CompiledPolicy::compile(policy, &PolicySpec::default()).expect("default policy"))]
    };
    for (policy, compiled) in policies {
        index.apply_policy(policy, PolicyEntry::new(Ok(compiled)), now);
    }
    let make = |i: usize| -> PodView {
        let pod = if mix { serde_json::from_value(factory.pod(i)).expect("a Pod") } else { pod(i) };
        index.view_of(&pod)
    };
    println!("workload: {}", if mix { "the full benchmark's Pods (mix)" } else { "the two-sidecars fixture" });
    let base = Sample::now();
    let mut applied = 0usize;
    let mut points = Vec::new();
    let mut sizes = Vec::new();
    for target in [10_000usize, 50_000, 100_000] {
        while applied < target {
            index.apply_pod(make(applied), now);
            applied += 1;
        }
        points.push((target, Sample::now()));
        sizes.push(live_by_size());
    }
    println!("{:>8}  {:>12}  {:>10}", "pods", "RSS growth", "per pod");
    for (n, sample) in &points {
        let bytes = sample.rss - base.rss;
        println!("{n:>8}  {:>9.1} MiB  {:>7} B", bytes as f64 / 1048576.0, bytes / *n as u64);
    }
    let (n0, s0) = points[0];
    let (n1, s1) = points[points.len() - 1];
    let [rss, asked, usable, allocations] = s0.slope(n0, s1, n1);
    println!("slope {n0}..{n1} pods, per tracked Pod:");
    println!(
        "  RSS {rss:.0} B; asked {asked:.0} B in {allocations:.1} allocations; mimalloc size classes {usable:.0} B"
    );
    println!(
        "  size-class rounding {:.0} B, pages and fragmentation (RSS - size classes) {:.0} B",
        usable - asked,
        rss - usable
    );
    print_sizes(&sizes[0], &sizes[sizes.len() - 1], n0, n1);
    let pods = index.pod_count();
    println!("parts (capacity x size, averaged over {pods} Pods):");
    let mut total = 0.0;
    for (part, bytes) in parts(&index) {
        let per_pod = bytes as f64 / pods as f64;
        total += per_pod;
        println!("  {part:<32} {per_pod:>7.1} B");
    }
    let slots = index.table_buckets() as f64 * (std::mem::size_of::<usize>() + 1) as f64 / pods as f64;
    total += slots;
    println!("  {:<32} {slots:>7.1} B (load {:.2})", "hash-table buckets", pods as f64 / index.table_buckets() as f64);
    println!("  {:<32} {total:>7.1} B; the rest of asked, shared or pooled: {:.0} B", "sum", asked - total);
    println!(
        "sizes: PodView {} B, ContainerView {} B, ContainerHistory {} B, PolicyResult {} B, StoredAlert {} B",
        std::mem::size_of::<PodView>(),
        std::mem::size_of::<ContainerView>(),
        std::mem::size_of::<ContainerHistory>(),
        std::mem::size_of::<PolicyResult>(),
        std::mem::size_of::<StoredAlert>()
    );

    if std::env::args().any(|a| a == "memory") {
        return;
    }
    let metrics = Metrics::new();
    let (role_tx, role) = sidecar_watch::leadership::channel();
    sidecar_watch::leadership::set_leader(&role_tx, true);

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
    time("GET /metrics gzip", 10, || runtime.block_on(get_metrics_gzip(port)).expect("gzip scrape"));
    let growth = peak_rss_bytes().saturating_sub(peak);
    println!("peak RSS growth over these scrapes: {:.1} MiB", growth as f64 / 1048576.0);
    let index_rss = s1.rss;
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
