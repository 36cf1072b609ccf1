//! One row of results per N and the Markdown table of all rows.

use super::api_cost::ApiCost;
use super::args::Args;
use super::flood::Flood;
use super::fmt as f;
use super::hostile::Hostile;
use super::latency::E2e;
use super::policy_flood::PolicyFlood;
use super::prom::sample_quantile;
use super::rates::RatePhase;
use super::serving::Serving;
use super::shards::{self, SplitResult};
use super::soak::Soak;
use super::startup::{Baseline, Startup};

/// Everything measured for one N.
#[derive(Debug, Default, Clone)]
pub struct Row {
    pub n: usize,
    pub avg_pod_bytes: usize,
    pub preload_s: f64,
    /// (a) a reflector of full Pods; (b) the careful user's reflector.
    pub full: Baseline,
    pub careful: Baseline,
    pub startup: Startup,
    pub rates: Vec<RatePhase>,
    /// The operator's API-server cost: start-up, each rate phase, at rest (the idle phase).
    pub api_start: ApiCost,
    pub api_rates: Vec<ApiCost>,
    pub api_rest: ApiCost,
    /// `--shards`: one replica, shards by UID, replicas by namespace (nothing else is run).
    pub shards: Vec<SplitResult>,
    pub e2e: E2e,
    pub hostile: Option<Hostile>,
    /// One per `--flood-edit-rates`.
    pub policy_flood: Vec<PolicyFlood>,
    pub serving: Option<Serving>,
    pub flood: Option<Flood>,
    pub soak: Option<Soak>,
    pub churn_ops: u64,
    pub churn_s: f64,
    pub rss_churn_kib: u64,
    pub tracked_after: f64,
    pub store_after: usize,
    pub idle_cpu_pct: f64,
    pub dropped_total: f64,
    pub restarts_total: f64,
    pub expired_total: u64,
    /// `uptime`'s load averages at the end of this N: other work on the machine.
    pub load: String,
}

fn mib(k: u64) -> String {
    format!("{:.1} MiB", k as f64 / 1024.0)
}

/// Bytes per Pod between consecutive rows of `get` (KiB), `–` for the first.
fn slope(rows: &[Row], get: impl Fn(&Row) -> u64) -> Vec<String> {
    rows.iter()
        .enumerate()
        .map(|(i, r)| match i.checked_sub(1).map(|p| &rows[p]) {
            None => "–".to_string(),
            Some(p) => format!("{:.0} B", (get(r) as f64 - get(p) as f64) * 1024.0 / (r.n as f64 - p.n as f64)),
        })
        .collect()
}

/// Ratio of a baseline's per-Pod slope to the operator's (absolute RSS ratio for the first).
fn ratio(rows: &[Row], base: impl Fn(&Row) -> u64) -> Vec<String> {
    let ours = |r: &Row| r.startup.rss_ready_kib;
    rows.iter()
        .enumerate()
        .map(|(i, r)| match i.checked_sub(1).map(|p| &rows[p]) {
            None => format!("{:.1} (absolute)", base(r) as f64 / ours(r).max(1) as f64),
            Some(p) => {
                let d = ours(r) as f64 - ours(p) as f64;
                if d > 0.0 {
                    format!("{:.1}×", (base(r) as f64 - base(p) as f64) / d)
                } else {
                    "–".into()
                }
            }
        })
        .collect()
}

/// The Markdown table: one column per N (with `--shards`, one table per N, one column per
/// way of splitting the Pods).
pub fn table(rows: &[Row], args: &Args) -> String {
    if args.shards > 1 {
        let tables: Vec<String> = rows.iter().map(|r| shards::table(r.n, &r.shards)).collect();
        let loads: Vec<String> = rows.iter().map(|r| format!("N = {}: {}", r.n, r.load)).collect();
        return format!(
            "{}
Load average at the end: {}
",
            tables.join("\n"),
            loads.join("; ")
        );
    }
    let mut out = String::new();
    let head: Vec<String> = rows.iter().map(|r| format!("N = {}", r.n)).collect();
    out.push_str(&format!("| metric | {} |\n|---|{}\n", head.join(" | "), "---:|".repeat(rows.len())));
    let mut line = |name: &str, cells: Vec<String>| out.push_str(&format!("| {name} | {} |\n", cells.join(" | ")));
    let each = |g: &dyn Fn(&Row) -> String| rows.iter().map(g).collect::<Vec<_>>();
    let q = |v: &[f64], p: f64| f(sample_quantile(v, p), 1e3, 1);
    line("Pod JSON size (avg)", each(&|r| format!("{} B", r.avg_pod_bytes)));
    line("operator: start → /readyz 200", each(&|r| format!("{:.2} s", r.startup.ready_s)));
    line("operator: start → pods_tracked = N", each(&|r| format!("{:.2} s", r.startup.tracked_s)));
    line("operator CPU, start → pods_tracked = N", each(&|r| format!("{:.2} s", r.startup.op_cpu_tracked_s)));
    line(
        "simulator CPU, operator start → ready (per Pod)",
        each(&|r| {
            let s = r.startup.sim_cpu_ready_s;
            format!("{s:.2} s ({:.1} µs)", s * 1e6 / r.n.max(1) as f64)
        }),
    );
    line("operator: Events published by initial sync (+3 s)", each(&|r| format!("{:.0}", r.startup.startup_events)));
    line("operator RSS peak during initial sync", each(&|r| mib(r.startup.rss_sync_peak_kib)));
    line("operator RSS after initial sync (settled)", each(&|r| mib(r.startup.rss_ready_kib)));
    line("operator RSS per Pod (slope vs previous N), sync", slope(rows, |r| r.startup.rss_ready_kib));
    line("operator RSS after churn (settled)", each(&|r| mib(r.rss_churn_kib)));
    line("operator RSS per Pod (slope), after churn", slope(rows, |r| r.rss_churn_kib));
    for (label, get) in [
        ("(a) full reflector", (|r: &Row| r.full) as fn(&Row) -> Baseline),
        ("(b) careful reflector", |r: &Row| r.careful),
    ] {
        line(&format!("{label}: time to synced"), each(&|r| format!("{:.2} s", get(r).sync_s)));
        line(&format!("{label}: RSS after sync"), each(&|r| mib(get(r).rss_kib)));
        line(&format!("{label}: RSS per Pod (slope)"), slope(rows, |r| get(r).rss_kib));
        line(&format!("{label} / operator per-Pod ratio"), ratio(rows, |r| get(r).rss_kib));
    }
    for (k, rate) in args.rates.iter().enumerate() {
        let get = |r: &Row| r.rates.get(k).cloned().unwrap_or_default();
        line(
            &format!("{rate}/s: updates written (achieved rate)"),
            each(&|r| format!("{} ({:.0}/s)", get(r).writes, get(r).achieved)),
        );
        line(
            &format!("{rate}/s: detection latency p50 / p99"),
            each(&|r| format!("{} / {} ms", f(get(r).p50, 1e3, 3), f(get(r).p99, 1e3, 3))),
        );
        line(
            &format!("{rate}/s: Pod inputs seen by operator / written"),
            each(&|r| format!("{:.0} / {}", get(r).observed, get(r).writes + 1)),
        );
        line(&format!("{rate}/s: Events published during phase"), each(&|r| format!("{:.0}", get(r).events_ok)));
        line(
            &format!("{rate}/s: last update on /metrics after phase end"),
            each(&|r| format!("{} s", f(get(r).catch_up, 1.0, 3))),
        );
        line(
            &format!("{rate}/s: dropped Events / watch restarts / 410s"),
            each(&|r| format!("{} / {} / {}", get(r).dropped, get(r).restarts, get(r).expired)),
        );
        line(
            &format!("{rate}/s: pods_tracked, RSS at phase end"),
            each(&|r| format!("{:.0}, {}", get(r).tracked, mib(get(r).rss_kib))),
        );
    }
    line("API cost of the start (requests / response bytes)", each(&|r| r.api_start.describe()));
    for (k, rate) in args.rates.iter().enumerate() {
        line(
            &format!("API cost during {rate}/s (requests / response bytes)"),
            each(&|r| r.api_rates.get(k).map_or("–".into(), ApiCost::describe)),
        );
    }
    line("API cost at rest (idle phase)", each(&|r| format!("{}; {}", r.api_rest.per_minute(), r.api_rest.describe())));
    line(
        "e2e OOMKilled → bare kube-rs watch p50 / p99",
        each(&|r| format!("{} / {} ms", q(&r.e2e.watch, 0.5), q(&r.e2e.watch, 0.99))),
    );
    line(
        "e2e OOMKilled → Event at simulator p50 / p99",
        each(&|r| format!("{} / {} ms", q(&r.e2e.event, 0.5), q(&r.e2e.event, 0.99))),
    );
    line(
        "e2e OOMKilled → alert on /metrics (polled) p50 / p99",
        each(&|r| format!("{} / {} ms", q(&r.e2e.metrics, 0.5), q(&r.e2e.metrics, 0.99))),
    );
    line(
        "e2e samples (watch / Event / metrics seen)",
        each(&|r| format!("{} ({}/{}/{})", r.e2e.samples, r.e2e.watch.len(), r.e2e.event.len(), r.e2e.metrics.len())),
    );
    line("/metrics scrape time (median of 5, idle)", each(&|r| format!("{:.1} ms", r.startup.metrics_ms)));
    line(
        "/metrics scrape time during e2e polling p50 / p99",
        each(&|r| {
            let secs: Vec<f64> = r.e2e.scrape_ms.iter().map(|x| x / 1e3).collect();
            format!("{} / {} ms", q(&secs, 0.5), q(&secs, 0.99))
        }),
    );
    line(
        "/metrics size, series",
        each(&|r| format!("{:.1} MiB, {}", r.startup.metrics_bytes as f64 / 1048576.0, r.startup.metrics_series)),
    );
    if rows.iter().any(|r| r.hostile.is_some()) {
        let h = |r: &Row| r.hostile.clone().unwrap_or_default();
        line("hostile: flood Pod containers", each(&|r| h(r).containers.to_string()));
        line(
            "hostile: Event latency elsewhere (OOM kill → Event in store) p50 / p99",
            each(&|r| format!("{} / {} ms", q(&h(r).event, 0.5), q(&h(r).event, 0.99))),
        );
        line(
            "hostile: samples seen / written; background writes (rate)",
            each(&|r| {
                let h = h(r);
                format!("{} / {}; {} ({:.0}/s)", h.event.len(), h.samples, h.bg_writes, h.bg_achieved)
            }),
        );
        line(
            "hostile: operator RSS without → with flood Pod (growth)",
            each(&|r| {
                let h = h(r);
                let growth = h.rss_after_kib as i64 - h.rss_before_kib as i64;
                format!("{} → {} ({:+.1} MiB)", mib(h.rss_before_kib), mib(h.rss_after_kib), growth as f64 / 1024.0)
            }),
        );
        line(
            "hostile: series with namespace=\"flood\" (first seen after)",
            each(&|r| format!("{} ({} s)", h(r).flood_series, f(h(r).flood_seen_s, 1.0, 2))),
        );
        line(
            "hostile: label-only update reconcile mean, flood Pod vs 3-container Pod",
            each(&|r| {
                let h = h(r);
                format!(
                    "{} vs {} ms ({:.0}/{:.0} obs)",
                    f(h.reconcile_flood.mean(), 1e3, 3),
                    f(h.reconcile_normal.mean(), 1e3, 3),
                    h.reconcile_flood.count,
                    h.reconcile_normal.count
                )
            }),
        );
    }
    for (i, rate) in args.flood_edit_rates.iter().enumerate() {
        if rows.iter().all(|r| r.policy_flood.len() <= i) {
            continue;
        }
        let p = |r: &Row| r.policy_flood.get(i).cloned().unwrap_or_default();
        line(
            &format!("policy flood at {rate} edits/s: Event latency elsewhere p50 / p99 (seen / written)"),
            each(&|r| {
                let p = p(r);
                format!("{} / {} ms ({} / {})", q(&p.event, 0.5), q(&p.event, 0.99), p.event.len(), p.samples)
            }),
        );
        line(
            &format!("policy flood at {rate} edits/s: policies × Pods, edits (rate), operator CPU, drain"),
            each(&|r| {
                let p = p(r);
                format!(
                    "{} × {}, {} ({:.0}/s), {:.2} cores, {} s",
                    p.policies,
                    p.pods,
                    p.edits,
                    p.achieved,
                    p.cpu_cores,
                    f(p.drain_s, 1.0, 2)
                )
            }),
        );
        line(
            &format!("policy flood at {rate} edits/s: operator input received → applied p99, work p99"),
            each(&|r| {
                let p = p(r);
                format!("{} ms, {} ms", f(p.detection.quantile(0.99), 1e3, 2), f(p.reconcile.quantile(0.99), 1e3, 2))
            }),
        );
        line(
            &format!("policy flood at {rate} edits/s: operator RSS before → at the end (growth)"),
            each(&|r| {
                let p = p(r);
                let growth = p.rss_after_kib as i64 - p.rss_before_kib as i64;
                format!("{} → {} ({:+.1} MiB)", mib(p.rss_before_kib), mib(p.rss_after_kib), growth as f64 / 1024.0)
            }),
        );
    }
    if rows.iter().any(|r| r.serving.is_some()) {
        let s = |r: &Row| r.serving.clone().unwrap_or_default();
        line(
            "serving: /metrics body, time plain (median of 5)",
            each(&|r| format!("{:.2} MiB, {:.1} ms", s(r).plain_bytes as f64 / 1048576.0, s(r).plain_ms)),
        );
        line(
            "serving: /metrics body, time gzip (median of 5)",
            each(&|r| format!("{:.2} MiB, {:.1} ms", s(r).gzip_bytes as f64 / 1048576.0, s(r).gzip_ms)),
        );
        line(
            "serving: RSS before → peak with clients that never read",
            each(&|r| {
                let s = s(r);
                format!(
                    "{} → {} ({} clients, {} s)",
                    mib(s.rss_before_kib),
                    mib(s.rss_stuck_peak_kib),
                    s.stuck_clients,
                    s.hold_s
                )
            }),
        );
        line("serving: normal gzip scrapes meanwhile (every 250 ms)", each(&|r| s(r).describe_during()));
        line(
            &format!("serving: series per Pod, default vs --metric-denylist '{}'", args.denylist),
            each(&|r| {
                let s = s(r);
                let per = |x: usize| x as f64 / s.pods.max(1) as f64;
                format!("{:.2} vs {:.2}", per(s.series_default), per(s.series_denied))
            }),
        );
    }
    if rows.iter().any(|r| r.flood.is_some()) {
        let f = |r: &Row| r.flood.clone().unwrap_or_default();
        line(
            "flood: made-up tokens from 20 addresses (401 / 429 / other)",
            each(&|r| {
                let f = f(r);
                format!("{} in {:.1} s ({} / {} / {})", f.sent, f.seconds, f.unauthorized, f.throttled, f.other)
            }),
        );
        line("flood: TokenReviews at the API server", each(&|r| f(r).describe_reviews()));
        line("flood: authorised gzip scrapes meanwhile (every 500 ms)", each(&|r| f(r).describe_scrapes()));
        line(
            "flood: RSS of the secure operator before → peak",
            each(&|r| format!("{} → {}", mib(f(r).rss_before_kib), mib(f(r).rss_peak_kib))),
        );
    }
    line(
        "churn ops (time)",
        each(&|r| format!("{} ({:.0} s, {:.0}/s)", r.churn_ops, r.churn_s, r.churn_ops as f64 / r.churn_s.max(1e-9))),
    );
    line("pods_tracked after churn / Pods in store", each(&|r| format!("{:.0} / {}", r.tracked_after, r.store_after)));
    line(&format!("idle CPU ({} s, % of one core)", args.idle_seconds), each(&|r| format!("{:.2} %", r.idle_cpu_pct)));
    if rows.iter().any(|r| r.soak.is_some()) {
        let s = |r: &Row| r.soak.clone().unwrap_or_default();
        line(
            "soak: Pod writes (rate); Pods at start → end",
            each(&|r| {
                let s = s(r);
                let o = &s.ops;
                format!(
                    "{} in {:.0} s ({:.0}/s: {} flips + {} undone, {} OOM kills, {} other restarts, {} deletions, {} creations); {} → {}",
                    o.pod_writes(),
                    o.seconds,
                    o.pod_writes() as f64 / o.seconds.max(1e-9),
                    o.flips,
                    o.undos,
                    o.oom_kills,
                    o.error_restarts,
                    o.deletions,
                    o.creations,
                    s.pods_start,
                    s.pods_end
                )
            }),
        );
        line(
            "soak: policy edits, watch disruptions by the server",
            each(&|r| format!("{}, {}", s(r).ops.edits, s(r).ops.disruptions)),
        );
        let trend =
            |t: Option<super::soak::Trend>, scale: f64, unit: &str| t.map_or("–".into(), |t| t.describe(scale, unit));
        line("soak: RSS after warm-up", each(&|r| trend(s(r).rss, 1.0 / 1024.0, " MiB")));
        line("soak: open fds after warm-up", each(&|r| trend(s(r).fds, 1.0, "")));
        line("soak: tokio tasks after warm-up", each(&|r| trend(s(r).tasks, 1.0, "")));
        line("soak: OS threads after warm-up", each(&|r| trend(s(r).threads, 1.0, "")));
        if rows.iter().any(|r| s(r).heap.is_some()) {
            line(
                "soak: live heap after warm-up (heap-counts build)",
                each(&|r| trend(s(r).heap, 1.0 / 1024.0, " MiB")),
            );
        }
        line("soak: Events owed vs at the server", each(&|r| s(r).describe_events()));
        line("soak: watch restarts vs 410s", each(&|r| s(r).describe_restarts()));
        line("soak: API cost", each(&|r| format!("{}; {}", s(r).api.per_minute(), s(r).api.describe())));
    }
    line(
        "whole run: dropped Events / watch restarts / 410s",
        each(&|r| format!("{} / {} / {}", r.dropped_total, r.restarts_total, r.expired_total)),
    );
    line("load average at the end (1/5/15 min)", each(&|r| r.load.clone()));
    out
}
