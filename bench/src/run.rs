//! One benchmark run at N Pods: every phase in order, against one simulator.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde_json::Value;
use sidecar_watch_harness::sim::{SimConfig, Simulator};

use super::api_cost::ApiCost;
use super::args::Args;
use super::operator::scrape_parsed;
use super::pods::{self, PodFactory};
use super::preload::{pods_key, preload};
use super::rates::delta;
use super::report::Row;
use super::shards::{self, Split};
use super::{churn, flood, hostile, idle, latency, policy_flood, rates, serving, soak, startup};

/// `uptime`'s load averages, or why not.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|e| format!("unknown ({e})"))
}

fn containers(pod: &Value) -> usize {
    let len = |k: &str| pod["spec"][k].as_array().map_or(0, Vec::len);
    len("containers") + len("initContainers")
}

/// Runs every phase at `n` Pods.
pub async fn bench_n(args: &Args, factory: &PodFactory, n: usize) -> Result<Row> {
    let mut row = Row { n, ..Default::default() };
    let dir = args.workdir().join(format!("n{n}"));
    std::fs::create_dir_all(&dir)?;
    let sim = Simulator::start(SimConfig { history_limit: 20_000, ..SimConfig::default() }).await?;
    let shared = sim.shared().clone();
    let kubeconfig = dir.join("kubeconfig");
    sim.write_kubeconfig(&kubeconfig)?;

    let t = Instant::now();
    let names = {
        let (shared, factory) = (shared.clone(), factory.clone());
        tokio::task::spawn_blocking(move || preload(&shared, &factory, n)).await??
    };
    row.preload_s = t.elapsed().as_secs_f64();
    row.avg_pod_bytes = (0..50).map(|i| pods::json_size(&factory.pod(i * 97 % n.max(1)))).sum::<usize>() / 50;
    say!("N={n}: preloaded {} Pods (~{} B JSON each) in {:.1}s", names.len(), row.avg_pod_bytes, row.preload_s);

    if args.shards > 1 {
        let namespaces: Vec<String> = (0..pods::NAMESPACES).map(pods::namespace).collect();
        for split in [Split::Single, Split::Uid(args.shards), Split::Namespaces(args.shards)] {
            let result = shards::measure(&split, &args.operator(), &kubeconfig, &dir, &shared, &namespaces, n).await?;
            row.shards.push(result);
        }
        row.load = load_average();
        return Ok(row);
    }

    // Baselines alone first (no other load).
    let base = args.baseline();
    if base.exists() {
        row.full = startup::baseline(&base, &[], &kubeconfig, &dir.join("baseline.log")).await?;
        row.careful = startup::baseline(&base, &["--careful"], &kubeconfig, &dir.join("careful.log")).await?;
    } else {
        say!("baseline binary {} missing; skipped", base.display());
    }

    let traffic = shared.traffic();
    let (t0, before) = (Instant::now(), traffic.snapshot());
    let limit = [(policy_flood::LIMIT_ENV, args.flood_policies.to_string())];
    let (op, s) = startup::operator(&args.operator(), &kubeconfig, &dir, n, &[], &limit).await?;
    row.startup = s;
    row.api_start = ApiCost::between(&before, &traffic.snapshot(), t0.elapsed().as_secs_f64());
    say!("N={n}: API cost of the start (until ready + 3 s + 5 scrapes): {}", row.api_start.describe());

    // Pods reserved for end-to-end samples, the hostile phase's crash loops, the catch-up
    // marker and the label updates: never touched by other phases.
    let healthy = |i: &usize| i % 100 >= 10;
    let flood_crash = if args.policy_flood { args.flood_edit_rates.len() * (args.flood_samples + 1) } else { 0 };
    let reserved: Vec<(String, String)> =
        (0..n).filter(healthy).take(2 * args.e2e_samples + 1 + flood_crash).map(|i| names[i].clone()).collect();
    let (flood_crash_pods, reserved_rest) = reserved.split_at(flood_crash.min(reserved.len()));
    let (e2e_pods, rest) = reserved_rest.split_at(args.e2e_samples.min(reserved_rest.len()));
    let (crash_pods, marker) = rest.split_at(rest.len().saturating_sub(1));
    let marker = marker.first().cloned().context("too few Pods for the reserved ones")?;
    let normal_i = (reserved.len()..n)
        .filter(healthy)
        .find(|i| containers(&factory.pod(*i)) == 3 && !reserved.contains(&names[*i]))
        .context("no 3-container Pod")?;
    let normal = names[normal_i].clone();
    // Status updates and churn touch only healthy Pods (the not-ready/restarted few % keep
    // their alerts), and never the reserved ones.
    let flip_targets: Vec<(String, String)> = names
        .iter()
        .enumerate()
        .filter(|(i, p)| healthy(i) && *i != normal_i && !reserved.contains(p))
        .map(|(_, p)| p.clone())
        .collect();
    let before_all = scrape_parsed(op.port).await?;
    let expired0 = shared.expired_watches();

    for &rate in &args.rates {
        let (t0, before) = (Instant::now(), traffic.snapshot());
        let mut phase = rates::phase(&shared, op.port, &flip_targets, &marker, rate, args.rate_seconds).await?;
        phase.rss_kib = op.proc.rss();
        say!(
            "N={n}: rate {rate}/s: {} writes ({:.0}/s), operator saw {} inputs, p50 {} ms, p99 {} ms, catch-up {} s, dropped {}, restarts {}, expired {}, RSS {} MiB",
            phase.writes,
            phase.achieved,
            phase.observed,
            super::fmt(phase.p50, 1e3, 3),
            super::fmt(phase.p99, 1e3, 3),
            super::fmt(phase.catch_up, 1.0, 3),
            phase.dropped,
            phase.restarts,
            phase.expired,
            phase.rss_kib / 1024
        );
        let cost = ApiCost::between(&before, &traffic.snapshot(), t0.elapsed().as_secs_f64());
        say!("N={n}: API cost at {rate}/s: {}", cost.describe());
        row.api_rates.push(cost);
        row.rates.push(phase);
        tokio::time::sleep(Duration::from_secs(3)).await;
    }

    row.e2e = latency::oom_e2e(&shared, &kubeconfig, op.port, e2e_pods).await?;

    if args.hostile {
        row.hostile = Some(hostile::phase(args, &shared, &op, crash_pods, &flip_targets, &normal).await?);
    }
    if args.policy_flood {
        policy_flood::setup(args, &shared, &op, factory).await?;
        for (i, &rate) in args.flood_edit_rates.iter().enumerate() {
            let crash = flood_crash_pods.chunks(args.flood_samples + 1).nth(i).unwrap_or_default();
            row.policy_flood.push(policy_flood::phase(args, &shared, &op, rate, crash).await?);
            tokio::time::sleep(Duration::from_secs(3)).await;
        }
    }
    if args.serving {
        row.serving = Some(serving::phase(&op, args.stuck_clients, args.hold_seconds).await?);
    }

    if args.churn_seconds > 0 {
        let (ops, secs) = {
            let (shared, factory, live) = (shared.clone(), factory.clone(), flip_targets.clone());
            let (rate, secs) = (args.churn_rate, args.churn_seconds);
            tokio::task::spawn_blocking(move || churn::run_churn(shared, factory, live, n + 1_000_000, rate, secs))
                .await?
        };
        row.churn_ops = ops;
        row.churn_s = secs;
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    row.rss_churn_kib = op.proc.settled_rss().await;
    let after = scrape_parsed(op.port).await?;
    row.tracked_after = after.sum("sidecar_watch_pods_tracked", &[]);
    if let Some(heap) = after.heap() {
        say!("N={n}: after churn, {heap}");
    }
    row.store_after = shared.state().store.count(&pods_key());
    say!(
        "N={n}: churn {} ops in {:.0}s; RSS {} MiB; tracked {} vs {} in the store",
        row.churn_ops,
        row.churn_s,
        row.rss_churn_kib / 1024,
        row.tracked_after,
        row.store_after
    );

    let (t0, before) = (Instant::now(), traffic.snapshot());
    row.idle_cpu_pct = idle::cpu_percent(op.proc.pid, args.idle_seconds).await;
    row.api_rest = ApiCost::between(&before, &traffic.snapshot(), t0.elapsed().as_secs_f64());
    say!(
        "N={n}: idle CPU {:.2}% of a core over {}s; API cost at rest {}",
        row.idle_cpu_pct,
        args.idle_seconds,
        row.api_rest.per_minute()
    );

    if !args.soak.is_zero() {
        let log = dir.join("operator.log");
        row.soak = Some(soak::phase(args, &shared, &op, &log, factory, n + 3_000_000).await?);
    }
    // The soak deletes and creates Pods: what the later operators must track.
    let pods_now = shared.state().store.count(&pods_key());

    let end = scrape_parsed(op.port).await?;
    row.dropped_total = delta(&before_all, &end, "sidecar_watch_events_total", &[("result", "dropped")]);
    row.restarts_total = delta(&before_all, &end, "sidecar_watch_watch_restarts_total", &[]);
    row.expired_total = shared.expired_watches() - expired0;
    op.proc.stop().await;

    if let Some(s) = row.serving.as_mut() {
        s.pods = pods_now;
        s.series_default = end.samples.len();
        s.series_denied = serving::denied_series(&args.operator(), &kubeconfig, &dir, &args.denylist, pods_now).await?;
        say!(
            "N={n}: series {} by default, {} with --metric-denylist {}",
            s.series_default,
            s.series_denied,
            args.denylist
        );
    }
    if args.flood {
        row.flood =
            Some(flood::phase(&args.operator(), &kubeconfig, &dir, &shared, pods_now, args.flood_seconds).await?);
    }
    row.load = load_average();
    drop(sim);
    Ok(row)
}
