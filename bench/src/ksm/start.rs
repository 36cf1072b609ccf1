//! `sidecar-watch-bench --against ksm --start-only paginated,streaming/json`: only
//! sidecar-watch's start, alone on the real API server, once per `--initial-list` given (with
//! `/json` or `/protobuf`, the `--pod-encoding` too), at each of
//! `--ksm-pods`: its time to every Pod tracked, its CPU and RSS peak, how each watcher got
//! its initial state (`sidecar_watch_initial_list`), and what the start cost kube-apiserver
//! and etcd ([`server`](super::server)). No kube-state-metrics, no Prometheus, no other phase.
//!
//! Before the measured starts, one unmeasured start (the default `--initial-list`) publishes
//! the Warning Events of the Pods that alert, so that no measured start pays for them and the
//! strategies are compared on their lists alone.

use std::time::Duration;

use anyhow::{Context, Result};
use sidecar_watch_harness::process;

use super::cluster::Cluster;
use super::cost::{PeakRss, REST};
use super::server::{ServerCost, Snapshot};
use crate::args::Args;
use crate::operator::{scrape_parsed, Operator};
use crate::pods::PodFactory;

const SYNC_DEADLINE: Duration = Duration::from_secs(600);

/// One measured start.
struct Start {
    initial_list: String,
    /// `sidecar_watch_initial_list` as scraped after the sync: `resource=strategy` per watcher.
    strategies: String,
    ready_s: f64,
    tracked_s: f64,
    cpu_s: f64,
    rss_peak_kib: u64,
    /// RSS [`REST`] after the start's readings, KiB.
    rss_rest_kib: u64,
    /// Its anonymous part then (`RssAnon`), KiB.
    anon_rest_kib: u64,
    /// The live heap then (`--features heap-counts` builds only): asked bytes, bytes in the
    /// allocator's size classes, allocations.
    heap_rest: Option<(f64, f64, f64)>,
    server: ServerCost,
}

/// Starts the operator with `extra` flags, waits until every Pod is tracked, reads what the
/// start cost (until then and 5 s more), then its memory at rest [`REST`] later, and stops it.
async fn start(
    cluster: &Cluster,
    args: &Args,
    log: &std::path::Path,
    initial_list: &str,
    extra: &[&str],
) -> Result<Start> {
    let kubeconfig = cluster.operator_kubeconfig().await?;
    let before = Snapshot::take(cluster.client(), cluster.apiserver_pid, cluster.etcd_pid).await?;
    let op = Operator::spawn(&args.operator(), &kubeconfig, log, extra)?;
    let peak = PeakRss::start(op.proc.pid);
    let ready_s = op.wait_ready(SYNC_DEADLINE).await?;
    let tracked_s = op.wait_tracked(cluster.pods, SYNC_DEADLINE).await?;
    let cpu_s = process::cpu_ticks(op.proc.pid).unwrap_or(0) as f64 / process::clock_ticks_per_sec() as f64;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let server = Snapshot::take(cluster.client(), cluster.apiserver_pid, cluster.etcd_pid).await?.since(&before);
    let scrape = scrape_parsed(op.port).await?;
    let mut strategies: Vec<String> = scrape
        .find("sidecar_watch_initial_list", &[])
        .into_iter()
        .filter(|s| s.value > 0.0)
        .map(|s| {
            let label = |k: &str| s.labels.get(k).cloned().unwrap_or_default();
            format!("{}={} ({})", label("resource"), label("strategy"), s.value)
        })
        .collect();
    strategies.sort();
    let rss_peak_kib = peak.stop();
    tokio::time::sleep(REST).await;
    let rss_rest_kib = op.proc.settled_rss().await;
    let anon_rest_kib = process::anon_rss_kib(op.proc.pid).unwrap_or(0);
    let heap_rest = scrape_parsed(op.port).await?.heap_counts();
    op.proc.stop().await;
    Ok(Start {
        initial_list: initial_list.to_string(),
        strategies: strategies.join(", "),
        ready_s,
        tracked_s,
        cpu_s,
        rss_peak_kib,
        rss_rest_kib,
        anon_rest_kib,
        heap_rest,
        server,
    })
}

/// Runs the starts at each N; returns the report.
pub async fn run(args: &Args) -> Result<String> {
    let dir = args.workdir().join("start");
    std::fs::create_dir_all(&dir)?;
    let mut cluster = Cluster::start(&dir).await?;
    let apiserver = cluster.env.control_plane().map(|c| c.info().versions.kube_api_server.clone()).unwrap_or_default();
    let factory = PodFactory::new();
    let mut out = String::new();
    for &n in &args.ksm_pods {
        let creation = cluster.grow_to(&factory, n, args.create_concurrency).await?;
        say!("N={n}: {} Pods created in {:.0} s", creation.pods, creation.secs);
        let log = dir.join(format!("operator-n{n}-warm-up.log"));
        let warm = start(&cluster, args, &log, "(default)", &[]).await.context("the warm-up start")?;
        say!("N={n}: warm-up start (default --initial-list; publishes the Events): {}", warm.server.describe());
        let mut rows = Vec::new();
        for variant in &args.start_only {
            // `streaming` or `streaming/json`: the initial list, and the Pods' encoding.
            let (initial_list, encoding) = match variant.split_once('/') {
                Some((list, encoding)) => (list, Some(encoding)),
                None => (variant.as_str(), None),
            };
            let mut flags = vec!["--initial-list", initial_list];
            flags.extend(encoding.iter().flat_map(|e| ["--pod-encoding", *e]));
            let log = dir.join(format!("operator-n{n}-{}.log", variant.replace('/', "-")));
            let s = start(&cluster, args, &log, variant, &flags)
                .await
                .with_context(|| format!("the start with {}", flags.join(" ")))?;
            say!(
                "N={n} {variant}: ready {:.2} s, every Pod tracked {:.2} s ({:.2} s CPU), RSS peak {} MiB, at rest {} KiB ({} KiB anonymous), heap at rest {:?}; watchers: {}; API server: {}",
                s.ready_s,
                s.tracked_s,
                s.cpu_s,
                s.rss_peak_kib / 1024,
                s.rss_rest_kib,
                s.anon_rest_kib,
                s.heap_rest,
                s.strategies,
                s.server.describe()
            );
            rows.push(s);
        }
        out.push_str(&table(n, &apiserver, &rows));
    }
    Ok(out)
}

fn table(n: usize, apiserver: &str, rows: &[Start]) -> String {
    let mut t = format!("\n### sidecar-watch's start alone, N = {n} Pods (kube-apiserver {apiserver})\n\n| |");
    for r in rows {
        t.push_str(&format!(" `{}` |", r.initial_list));
    }
    t.push_str("\n|---|");
    t.push_str(&"---:|".repeat(rows.len()));
    t.push('\n');
    let mib = |b: f64| format!("{:.1} MiB", b / 1048576.0);
    let line = |t: &mut String, what: &str, f: &dyn Fn(&Start) -> String| {
        t.push_str(&format!("| {what} |"));
        for r in rows {
            t.push_str(&format!(" {} |", f(r)));
        }
        t.push('\n');
    };
    line(&mut t, "watchers (`sidecar_watch_initial_list`)", &|r| r.strategies.clone());
    line(&mut t, "start → /readyz 200, every Pod tracked", &|r| format!("{:.2} s, {:.2} s", r.ready_s, r.tracked_s));
    line(&mut t, "operator CPU until every Pod is tracked", &|r| format!("{:.2} s", r.cpu_s));
    line(&mut t, "operator RSS peak", &|r| format!("{:.1} MiB", r.rss_peak_kib as f64 / 1024.0));
    line(&mut t, "operator RSS at rest (30 s later)", &|r| format!("{:.1} MiB", r.rss_rest_kib as f64 / 1024.0));
    line(&mut t, "its anonymous part (`RssAnon`: without the binary's text)", &|r| {
        format!("{:.1} MiB", r.anon_rest_kib as f64 / 1024.0)
    });
    line(&mut t, "live heap at rest: asked, size classes, allocations (`heap-counts` builds)", &|r| {
        r.heap_rest.map_or("–".to_string(), |(a, u, n)| format!("{} / {} / {n:.0}", mib(a), mib(u)))
    });
    line(&mut t, "**kube-apiserver CPU** (start until tracked + 5 s)", &|r| {
        format!("**{:.2} s**", r.server.apiserver_cpu_s)
    });
    line(&mut t, "etcd CPU", &|r| format!("{:.2} s", r.server.etcd_cpu_s));
    line(&mut t, "LIST requests (bytes)", &|r| format!("{:.0} ({})", r.server.lists, mib(r.server.list_bytes)));
    line(&mut t, "Pod watch events (bytes)", &|r| {
        format!("{:.0} ({})", r.server.watch_events, mib(r.server.watch_bytes))
    });
    line(&mut t, "writes", &|r| format!("{:.0}", r.server.write_count()));
    line(&mut t, "phase length", &|r| format!("{:.1} s", r.server.secs));
    t
}
