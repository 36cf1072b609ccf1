//! Sharded replicas against one replica, at the same N (`--shards K`): K operators that each
//! list every Pod and keep those whose UID hashes to their shard (`--shard-count K
//! --shard-index i`), and K operators that each watch a disjoint set of namespaces
//! (`--namespace`, the alternative that lists every Pod once in total). Per replica: time
//! to ready, peak and settled RSS, `/metrics` time, Pods tracked; for the whole set: time
//! until every Pod is tracked and what the API server served (requests and bytes).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use sidecar_watch_harness::env::http_get_timed;
use sidecar_watch_harness::sim::Shared;

use super::api_cost::{bytes, ApiCost};
use super::operator::{scrape, scrape_parsed, Operator};
use super::prom::sample_quantile;

/// How the Pods are split between replicas.
#[derive(Debug, Clone)]
pub enum Split {
    /// One replica sees everything.
    Single,
    /// `--shard-count K --shard-index i`: by Pod UID.
    Uid(u32),
    /// `--namespace`: namespace `j` goes to replica `j % K`.
    Namespaces(u32),
}

impl Split {
    fn label(&self) -> String {
        match self {
            Split::Single => "1 replica".into(),
            Split::Uid(k) => format!("{k} shards by Pod UID"),
            Split::Namespaces(k) => format!("{k} replicas by namespace"),
        }
    }

    /// Each replica's extra `run` flags.
    fn flags(&self, namespaces: &[String]) -> Vec<Vec<String>> {
        match *self {
            Split::Single => vec![vec![]],
            Split::Uid(k) => (0..k)
                .map(|i| vec!["--shard-count".into(), k.to_string(), "--shard-index".into(), i.to_string()])
                .collect(),
            Split::Namespaces(k) => (0..k as usize)
                .map(|i| {
                    let mine: Vec<&str> = namespaces.iter().skip(i).step_by(k as usize).map(String::as_str).collect();
                    vec!["--namespace".into(), mine.join(",")]
                })
                .collect(),
        }
    }
}

/// One replica of a split.
#[derive(Debug, Default, Clone)]
pub struct Replica {
    pub ready_s: f64,
    pub rss_peak_kib: u64,
    pub rss_settled_kib: u64,
    pub metrics_ms: f64,
    pub tracked: f64,
    /// `sidecar_watch_events_total` by result, summed: Events published (or dropped).
    pub events: f64,
}

/// One split, measured.
#[derive(Debug, Clone)]
pub struct SplitResult {
    pub label: String,
    pub replicas: Vec<Replica>,
    /// Until the replicas' `pods_tracked` add up to N.
    pub all_tracked_s: f64,
    /// What the API server served them from the start until all were settled.
    pub api: ApiCost,
}

/// Runs the split against the simulator holding `n` Pods in `namespaces`.
pub async fn measure(
    split: &Split,
    program: &Path,
    kubeconfig: &Path,
    dir: &Path,
    shared: &Shared,
    namespaces: &[String],
    n: usize,
) -> Result<SplitResult> {
    let traffic = shared.traffic();
    let (t0, before) = (Instant::now(), traffic.snapshot());
    let mut ops = Vec::new();
    for (i, flags) in split.flags(namespaces).iter().enumerate() {
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        let log = dir.join(format!("shard-{}-{i}.log", split.label().replace(' ', "-")));
        ops.push(Operator::spawn(program, kubeconfig, &log, &flags)?);
    }
    let mut replicas = vec![Replica::default(); ops.len()];
    let deadline = Duration::from_secs(900);
    // Ready times and peak RSS, sampled every 100 ms until every Pod is tracked.
    let all_tracked_s = loop {
        if t0.elapsed() > deadline {
            bail!("{}: not every Pod tracked after {deadline:?}", split.label());
        }
        let mut tracked = 0.0;
        for (i, (op, r)) in ops.iter().zip(replicas.iter_mut()).enumerate() {
            let rss = op.proc.rss();
            if rss == 0 {
                bail!("{}: replica {i} exited; see its log in {}", split.label(), dir.display());
            }
            r.rss_peak_kib = r.rss_peak_kib.max(rss);
            if r.ready_s == 0.0 && http_get_timed(op.port, "/readyz").await.is_ok_and(|h| h.code == 200) {
                r.ready_s = op.proc.started.elapsed().as_secs_f64();
            }
            if r.ready_s > 0.0 {
                tracked += scrape_parsed(op.port).await.map_or(0.0, |s| s.sum("sidecar_watch_pods_tracked", &[]));
            }
        }
        if tracked as usize >= n {
            break t0.elapsed().as_secs_f64();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    tokio::time::sleep(Duration::from_secs(3)).await;
    for (op, r) in ops.iter().zip(replicas.iter_mut()) {
        r.rss_settled_kib = op.proc.settled_rss().await;
        r.rss_peak_kib = r.rss_peak_kib.max(r.rss_settled_kib);
        let mut times = Vec::new();
        for _ in 0..3 {
            times.push(scrape(op.port).await?.elapsed.as_secs_f64());
        }
        r.metrics_ms = sample_quantile(&times, 0.5).unwrap_or(0.0) * 1e3;
        let end = scrape_parsed(op.port).await?;
        r.tracked = end.sum("sidecar_watch_pods_tracked", &[]);
        r.events = end.sum("sidecar_watch_events_total", &[]);
    }
    let api = ApiCost::between(&before, &traffic.snapshot(), t0.elapsed().as_secs_f64());
    for op in ops {
        op.proc.stop().await;
    }
    let result = SplitResult { label: split.label(), replicas, all_tracked_s, api };
    say!("N={n}: {}: {}", result.label, result.summary());
    Ok(result)
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

impl SplitResult {
    /// `min–max` of one figure over the replicas.
    fn range(&self, get: impl Fn(&Replica) -> f64, show: impl Fn(f64) -> String) -> String {
        let values: Vec<f64> = self.replicas.iter().map(get).collect();
        let min = values.iter().copied().fold(f64::INFINITY, f64::min);
        let max = values.iter().copied().fold(0.0, f64::max);
        if values.len() == 1 {
            show(max)
        } else {
            format!("{} – {}", show(min), show(max))
        }
    }

    fn summary(&self) -> String {
        format!(
            "all tracked {:.1} s; ready {}; RSS settled {}; /metrics {}; API {}",
            self.all_tracked_s,
            self.range(|r| r.ready_s, |v| format!("{v:.1} s")),
            self.range(|r| r.rss_settled_kib as f64, |v| mib(v as u64)),
            self.range(|r| r.metrics_ms, |v| format!("{v:.0} ms")),
            self.api.describe()
        )
    }
}

/// The Markdown table: one column per split.
pub fn table(n: usize, results: &[SplitResult]) -> String {
    let mut out = format!(
        "| N = {n} | {} |\n|---|{}\n",
        results.iter().map(|r| r.label.as_str()).collect::<Vec<_>>().join(" | "),
        "---:|".repeat(results.len())
    );
    let mut line = |name: &str, get: &dyn Fn(&SplitResult) -> String| {
        let cells: Vec<String> = results.iter().map(get).collect();
        out.push_str(&format!("| {name} | {} |\n", cells.join(" | ")));
    };
    line("Pods tracked per replica (min – max)", &|r| r.range(|x| x.tracked, |v| format!("{v:.0}")));
    // Splits run one after another against the same simulator, and a replica that becomes
    // leader does not announce again what Events already in the cluster say: only the first
    // split publishes the initial sync's Events.
    line("Events handled (published or dropped), all replicas", &|r| {
        format!("{:.0}", r.replicas.iter().map(|x| x.events).fold(0.0, |a, b| a + b))
    });
    line("start → /readyz 200 per replica", &|r| r.range(|x| x.ready_s, |v| format!("{v:.1} s")));
    line("start → every Pod tracked (all replicas)", &|r| format!("{:.1} s", r.all_tracked_s));
    line("RSS peak during sync per replica", &|r| r.range(|x| x.rss_peak_kib as f64, |v| mib(v as u64)));
    line("RSS settled per replica", &|r| r.range(|x| x.rss_settled_kib as f64, |v| mib(v as u64)));
    line("RSS settled, all replicas", &|r| mib(r.replicas.iter().map(|x| x.rss_settled_kib).sum()));
    line("/metrics time per replica (median of 3)", &|r| r.range(|x| x.metrics_ms, |v| format!("{v:.0} ms")));
    line("API: list requests / bytes", &|r| format!("{} / {}", r.api.list.requests, bytes(r.api.list.bytes)));
    line("API: watch requests / bytes", &|r| format!("{} / {}", r.api.watch.requests, bytes(r.api.watch.bytes)));
    line("API: writes (Events, status) requests / bytes", &|r| {
        format!("{} / {}", r.api.write.requests, bytes(r.api.write.bytes))
    });
    line("API: all requests / bytes", &|r| {
        let t = r.api.total();
        format!("{} / {}", t.requests, bytes(t.bytes))
    });
    out
}
