//! Soak (`--soak 30m`, issue 22): the operator under a steady mix of Pod writes
//! (`--soak-rate`, 200/s: readiness flips, restarts and OOM kills, deletions, creations; see
//! [`soak_load`]), a policy edit every `--soak-edit-every` and a watch
//! disruption by the server every `--soak-disrupt-every`, for as long as asked. Measured:
//! - RSS, open file descriptors, OS threads and tokio tasks (the operator's
//!   `sidecar_watch_runtime_tasks`; and the live heap with a `heap-counts` build), sampled
//!   every `--soak-sample-every` (all in `soak-samples.csv` beside the operator's log), each
//!   with its least-squares slope per hour after `--soak-warmup`;
//! - every Event the writes must cause against the Events the operator wrote to the server
//!   (counted from the simulator's store, `series.count` included): none lost, none extra;
//! - the operator's watch restarts (its metric and its log) against the 410s the server sent.
//!
//! Before the writes, the cluster policies get `oomKilled.window` = `--soak-oom-window` (so
//! that OOM alerts resolve within the soak) and five namespaces a SidecarPolicy each that only
//! evaluates sidecar readiness; all of them are the policies the soak edits.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use serde::Deserialize;
use serde_json::json;
use sidecar_watch_harness::process;
use sidecar_watch_harness::sim::Shared;

use super::api_cost::ApiCost;
use super::args::Args;
use super::operator::{scrape, scrape_parsed, Operator};
use super::pods::{self, PodFactory};
use super::preload::{create, pods_key, CLUSTER_SIDECAR_POLICIES, SIDECAR_POLICIES};
use super::rates::delta;
use super::soak_load::{self, compare, occurrences, Edited, LoadConfig, Margins, Ops, PodKey};

/// The operator's gauge of live tokio tasks.
pub const TASKS: &str = "sidecar_watch_runtime_tasks";
/// What the operator logs when a watch fails and is restarted (`src/controller/initial_list.rs`).
const WATCH_RESTART_LOG: &str = "watch failed; retrying with backoff";
/// Namespaces that get a soak SidecarPolicy.
const POLICY_NAMESPACES: usize = 5;

/// One sample of the operator's resources, `t` seconds into the soak.
#[derive(Debug, Default, Clone, Copy)]
pub struct Sample {
    pub t: f64,
    pub rss_kib: u64,
    pub fds: u64,
    pub threads: u64,
    pub tasks: Option<u64>,
    /// Live heap in KiB, from a build that counts it (`--features heap-counts`).
    pub heap_kib: Option<u64>,
}

/// A least-squares line through samples: slope per hour, and what the samples spanned.
#[derive(Debug, Default, Clone, Copy)]
pub struct Trend {
    pub per_hour: f64,
    pub first: f64,
    pub last: f64,
    pub min: f64,
    pub max: f64,
    pub samples: usize,
}

impl Trend {
    /// The fit through `(seconds, value)` points; `None` under two points.
    pub fn fit(points: &[(f64, f64)]) -> Option<Trend> {
        if points.len() < 2 {
            return None;
        }
        let n = points.len() as f64;
        let (mx, my) = (points.iter().map(|p| p.0).sum::<f64>() / n, points.iter().map(|p| p.1).sum::<f64>() / n);
        let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
        let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
        let values = points.iter().map(|p| p.1);
        Some(Trend {
            per_hour: if sxx > 0.0 { sxy / sxx * 3600.0 } else { 0.0 },
            first: points[0].1,
            last: points[points.len() - 1].1,
            min: values.clone().fold(f64::INFINITY, f64::min),
            max: values.fold(f64::NEG_INFINITY, f64::max),
            samples: points.len(),
        })
    }

    /// `first → last (min–max), slope/h` with `scale` applied and `unit` after each value.
    pub fn describe(&self, scale: f64, unit: &str) -> String {
        format!(
            "{:.1} → {:.1}{unit} (min {:.1}, max {:.1}), slope {:+.2}{unit}/h over {} samples",
            self.first * scale,
            self.last * scale,
            self.min * scale,
            self.max * scale,
            self.per_hour * scale,
            self.samples
        )
    }
}

/// Results of the soak.
#[derive(Debug, Default, Clone)]
pub struct Soak {
    pub ops: Ops,
    /// Pods in the store at the start and at the end.
    pub pods_start: usize,
    pub pods_end: usize,
    pub tracked_end: f64,
    pub samples: Vec<Sample>,
    pub warmup_s: f64,
    pub rss: Option<Trend>,
    pub fds: Option<Trend>,
    pub threads: Option<Trend>,
    pub tasks: Option<Trend>,
    pub heap: Option<Trend>,
    /// Event occurrences owed and seen at the server, and the differences.
    pub events_expected: u64,
    pub events_seen: u64,
    pub events_lost: u64,
    pub events_extra: u64,
    /// The first few (namespace/Pod reason: expected, seen) that differ.
    pub mismatches: Vec<String>,
    /// Seconds from the last write until the Events matched (or the wait gave up).
    pub drain_s: f64,
    /// Watch restarts: the operator's metric, its log lines, the 410s the server sent.
    pub restarts: f64,
    pub restart_logs: usize,
    pub expired: u64,
    pub dropped: f64,
    pub publish_errors: f64,
    pub api: ApiCost,
}

impl Soak {
    /// What went wrong, if anything: lost or extra Events, a watch restart the server did not
    /// cause, a Pod count that differs from the store's.
    pub fn failures(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.events_lost > 0 || self.events_extra > 0 {
            out.push(format!(
                "{} Events lost, {} extra of {} owed (first differences: {})",
                self.events_lost,
                self.events_extra,
                self.events_expected,
                self.mismatches.join("; ")
            ));
        }
        if self.restarts != self.expired as f64 {
            out.push(format!("{} watch restarts, but the server sent {} 410s", self.restarts, self.expired));
        }
        if self.tracked_end != self.pods_end as f64 {
            out.push(format!("{} Pods tracked, {} in the store", self.tracked_end, self.pods_end));
        }
        out
    }
}

/// Just enough of a Pod to tell whether it is healthy and was never restarted.
#[derive(Deserialize)]
struct PodHealth {
    #[serde(default)]
    status: HealthStatus,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct HealthStatus {
    #[serde(default)]
    container_statuses: Vec<ContainerHealth>,
    #[serde(default)]
    init_container_statuses: Vec<ContainerHealth>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ContainerHealth {
    #[serde(default)]
    ready: bool,
    #[serde(default)]
    restart_count: u64,
    #[serde(default)]
    state: ContainerState,
}

#[derive(Deserialize, Default)]
struct ContainerState {
    /// An init container that completed is not ready, and healthy.
    terminated: Option<serde::de::IgnoredAny>,
}

/// The benchmark namespaces' Pods that are healthy and were never restarted (what earlier
/// phases touched is left alone: its restarts would count towards the soak's alerts).
fn pool(shared: &Shared) -> Vec<PodKey> {
    let st = shared.state();
    st.store
        .range_after(&pods_key(), None, None)
        .filter(|((ns, _), _)| ns.starts_with("bench-"))
        .filter(|(_, obj)| {
            serde_json::from_slice::<PodHealth>(obj.json()).is_ok_and(|p| {
                let all = p.status.container_statuses.iter().chain(&p.status.init_container_statuses);
                !p.status.container_statuses.is_empty()
                    && all.clone().all(|c| (c.ready || c.state.terminated.is_some()) && c.restart_count == 0)
            })
        })
        .map(|(k, _)| k.clone())
        .collect()
}

/// The policies the soak edits, at their first version: the cluster policies with the soak's
/// OOM window, and one readiness-only SidecarPolicy in each of the first namespaces.
fn edited_policies(oom_window: Duration) -> Vec<Edited> {
    let mut out: Vec<Edited> = pods::policies()
        .into_iter()
        .map(|p| {
            let mut spec = p["spec"].clone();
            spec["rules"]["oomKilled"]["window"] = json!(format!("{}s", oom_window.as_secs().max(1)));
            Edited {
                resource: CLUSTER_SIDECAR_POLICIES,
                namespace: None,
                name: p["metadata"]["name"].as_str().unwrap_or_default().to_string(),
                spec,
                // No Pod of the benchmark belongs to a Job.
                rule: "jobBlocked",
            }
        })
        .collect();
    let off = json!({"enabled": false});
    for i in 0..POLICY_NAMESPACES {
        out.push(Edited {
            resource: SIDECAR_POLICIES,
            namespace: Some(pods::namespace(i)),
            name: "soak".into(),
            spec: json!({"selector": {}, "rules": {
                "mainReadySidecarNotReady": off, "restarts": off, "crashLoop": off, "oomKilled": off,
                "startupOrder": off, "jobBlocked": off, "shutdownOrder": off, "misconfiguration": off}}),
            rule: "sidecarNotReady",
        });
    }
    out
}

/// Writes the first version of every edited policy (creating the SidecarPolicies).
fn set_up(shared: &Shared, edited: &[Edited]) -> Result<()> {
    for policy in edited {
        if policy.resource == SIDECAR_POLICIES {
            let (group, version, plural) = SIDECAR_POLICIES;
            let mut body = json!({
                "apiVersion": format!("{group}/{version}"), "kind": "SidecarPolicy",
                "metadata": {"name": policy.name, "namespace": policy.namespace}, "spec": policy.spec,
            });
            body["spec"]["rules"][policy.rule]["for"] = json!("300s");
            create(shared, group, version, plural, policy.namespace.as_deref(), body)?;
        } else {
            policy.apply(shared, 0)?;
        }
    }
    Ok(())
}

/// Waits until the operator's Events in the store stop changing for `quiet` (at most 300 s).
async fn settle(shared: &Shared, quiet: Duration) {
    let t0 = Instant::now();
    let total = || occurrences(shared).values().sum::<u64>();
    let (mut last, mut since) = (total(), Instant::now());
    while since.elapsed() < quiet && t0.elapsed() < Duration::from_secs(300) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = total();
        if now != last {
            (last, since) = (now, Instant::now());
        }
    }
}

/// The sample `series` (name and labels as written) of a scrape, read without parsing the
/// whole text.
fn gauge(body: &str, series: &str) -> Option<u64> {
    body.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse::<f64>().ok()).map(|v| v as u64)
}

async fn sample(op: &Operator, t: f64) -> Sample {
    let pid = op.proc.pid;
    let body = scrape(op.port).await.map(|r| r.body).unwrap_or_default();
    Sample {
        t,
        rss_kib: process::rss_kib(pid).unwrap_or(0),
        fds: process::open_fds(pid).unwrap_or(0),
        threads: process::threads(pid).unwrap_or(0),
        tasks: gauge(&body, TASKS),
        heap_kib: gauge(&body, "sidecar_watch_heap_bytes{kind=\"usable\"}").map(|b| b / 1024),
    }
}

/// The samples as CSV (seconds, KiB, counts; empty where not measured).
fn samples_csv(samples: &[Sample]) -> String {
    let opt = |v: Option<u64>| v.map_or(String::new(), |v| v.to_string());
    let mut out = String::from("seconds,rss_kib,fds,threads,tasks,heap_kib\n");
    for s in samples {
        out.push_str(&format!(
            "{:.1},{},{},{},{},{}\n",
            s.t,
            s.rss_kib,
            s.fds,
            s.threads,
            opt(s.tasks),
            opt(s.heap_kib)
        ));
    }
    out
}

/// Lines of `log` after its first `from` bytes that contain `needle`.
fn count_lines(log: &Path, from: u64, needle: &str) -> usize {
    let text = std::fs::read(log).unwrap_or_default();
    let tail = text.get(from as usize..).unwrap_or_default();
    String::from_utf8_lossy(tail).lines().filter(|l| l.contains(needle)).count()
}

/// The soak against the running operator `op` (whose log is `log`); created Pods start at
/// factory index `first_new_pod`.
pub async fn phase(
    args: &Args,
    shared: &Arc<Shared>,
    op: &Operator,
    log: &Path,
    factory: &PodFactory,
    first_new_pod: usize,
) -> Result<Soak> {
    let window = args.soak_oom_window;
    let edited = edited_policies(window);
    set_up(shared, &edited)?;
    // OOM alerts of earlier phases end with the new window: their Resolved Events are not
    // the soak's.
    tokio::time::sleep(window + Duration::from_secs(2)).await;
    settle(shared, Duration::from_secs(3)).await;
    let pool = pool(shared);
    let mut soak = Soak { pods_start: shared.state().store.count(&pods_key()), ..Soak::default() };
    say!(
        "soak: {} s at {}/s over {} Pods ({} healthy, never restarted), {} policies edited every {:?}, OOM window {:?}",
        args.soak.as_secs(),
        args.soak_rate,
        soak.pods_start,
        pool.len(),
        edited.len(),
        args.soak_edit_every,
        window
    );
    let before = scrape_parsed(op.port).await?;
    let events_before = occurrences(shared);
    let expired0 = shared.expired_watches();
    let log_from = std::fs::metadata(log).map(|m| m.len()).unwrap_or(0);
    let (traffic0, t0) = (shared.traffic().snapshot(), Instant::now());
    let config = LoadConfig {
        rate: args.soak_rate,
        duration: args.soak,
        oom_window: window,
        edit_every: args.soak_edit_every,
        disrupt_every: args.soak_disrupt_every,
        first_new_pod,
    };
    let writer = {
        let (shared, factory) = (shared.clone(), factory.clone());
        tokio::task::spawn_blocking(move || soak_load::run(shared, factory, pool, edited, config))
    };
    let mut next_log = Duration::from_secs(60);
    while !writer.is_finished() {
        let s = sample(op, t0.elapsed().as_secs_f64()).await;
        soak.samples.push(s);
        if t0.elapsed() >= next_log {
            next_log += Duration::from_secs(60);
            say!(
                "soak {:.0} s: RSS {:.1} MiB, {} fds, {} threads, {} tasks",
                s.t,
                s.rss_kib as f64 / 1024.0,
                s.fds,
                s.threads,
                s.tasks.map_or("–".into(), |t| t.to_string())
            );
        }
        let next = t0 + Duration::from_secs_f64(s.t) + args.soak_sample_every;
        while !writer.is_finished() && Instant::now() < next {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let (ops, ledger) = writer.await?;
    soak.ops = ops;
    soak.api = ApiCost::between(&traffic0, &shared.traffic().snapshot(), t0.elapsed().as_secs_f64());

    // Drain: until every owed Event is at the server (the last OOM alerts resolve a window
    // after the last write), then a little longer for late extras.
    let written = Instant::now();
    let deadline = window + Margins::of(window).after + Duration::from_secs(60);
    loop {
        let (_, _, lost, extra, _) = compare(&ledger, &events_before, &occurrences(shared));
        if (lost == 0 && extra == 0) || written.elapsed() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    soak.drain_s = written.elapsed().as_secs_f64();
    tokio::time::sleep(if args.quick { Duration::from_secs(2) } else { Duration::from_secs(5) }).await;
    (soak.events_expected, soak.events_seen, soak.events_lost, soak.events_extra, soak.mismatches) =
        compare(&ledger, &events_before, &occurrences(shared));

    let after = scrape_parsed(op.port).await?;
    soak.restarts = delta(&before, &after, "sidecar_watch_watch_restarts_total", &[]);
    soak.restart_logs = count_lines(log, log_from, WATCH_RESTART_LOG);
    soak.expired = shared.expired_watches() - expired0;
    soak.dropped = delta(&before, &after, "sidecar_watch_events_total", &[("result", "dropped")]);
    soak.publish_errors = delta(&before, &after, "sidecar_watch_events_total", &[("result", "error")]);
    soak.pods_end = shared.state().store.count(&pods_key());
    soak.tracked_end = after.sum("sidecar_watch_pods_tracked", &[]);

    soak.warmup_s = args.soak_warmup.min(args.soak / 2).as_secs_f64();
    let after_warmup: Vec<&Sample> = soak.samples.iter().filter(|s| s.t >= soak.warmup_s).collect();
    let fit = |get: &dyn Fn(&Sample) -> Option<f64>| {
        Trend::fit(&after_warmup.iter().filter_map(|s| Some((s.t, get(s)?))).collect::<Vec<_>>())
    };
    soak.rss = fit(&|s| Some(s.rss_kib as f64));
    soak.fds = fit(&|s| Some(s.fds as f64));
    soak.threads = fit(&|s| Some(s.threads as f64));
    soak.tasks = fit(&|s| s.tasks.map(|t| t as f64));
    soak.heap = fit(&|s| s.heap_kib.map(|h| h as f64));
    let csv = log.with_file_name("soak-samples.csv");
    std::fs::write(&csv, samples_csv(&soak.samples))?;
    say!("soak: samples in {}", csv.display());
    say!(
        "soak: {} Pod writes in {:.0} s ({:.0}/s: {} flips + {} undone, {} OOM kills, {} other restarts, {} deletions, {} creations, {} substituted), {} policy edits, {} watch disruptions",
        soak.ops.pod_writes(),
        soak.ops.seconds,
        soak.ops.pod_writes() as f64 / soak.ops.seconds.max(1e-9),
        soak.ops.flips,
        soak.ops.undos,
        soak.ops.oom_kills,
        soak.ops.error_restarts,
        soak.ops.deletions,
        soak.ops.creations,
        soak.ops.substituted,
        soak.ops.edits,
        soak.ops.disruptions
    );
    say!("soak: {}", soak.describe_resources());
    say!("soak: {}; {}", soak.describe_events(), soak.describe_restarts());
    Ok(soak)
}

impl Soak {
    /// RSS, fds, threads and tasks after the warm-up.
    pub fn describe_resources(&self) -> String {
        let one = |t: &Option<Trend>, scale: f64, unit: &str| t.map_or("–".into(), |t| t.describe(scale, unit));
        format!(
            "after {:.0} s of warm-up: RSS {}; fds {}; threads {}; tokio tasks {}; live heap {}",
            self.warmup_s,
            one(&self.rss, 1.0 / 1024.0, " MiB"),
            one(&self.fds, 1.0, ""),
            one(&self.threads, 1.0, ""),
            one(&self.tasks, 1.0, ""),
            one(&self.heap, 1.0 / 1024.0, " MiB")
        )
    }

    /// Events owed and seen.
    pub fn describe_events(&self) -> String {
        format!(
            "Events owed {}, seen {} ({} lost, {} extra; matched {:.1} s after the last write; {} dropped, {} publish errors)",
            self.events_expected,
            self.events_seen,
            self.events_lost,
            self.events_extra,
            self.drain_s,
            self.dropped,
            self.publish_errors
        )
    }

    /// Watch restarts against the server's 410s.
    pub fn describe_restarts(&self) -> String {
        format!(
            "watch restarts {} (metric), {} (log) vs {} 410s from the server after {} disruptions",
            self.restarts, self.restart_logs, self.expired, self.ops.disruptions
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trend_is_the_least_squares_slope_per_hour() {
        // 10 MiB an hour with ±1 of noise on alternate samples, sampled every 10 s.
        let points: Vec<(f64, f64)> = (0..360)
            .map(|i| (i as f64 * 10.0, 100.0 + i as f64 * 10.0 / 360.0 + if i % 2 == 0 { 1.0 } else { -1.0 }))
            .collect();
        let t = Trend::fit(&points).expect("enough points");
        assert!((t.per_hour - 10.0).abs() < 0.05, "{t:?}");
        assert_eq!((t.first, t.samples), (101.0, 360));
        assert!(Trend::fit(&points[..1]).is_none());
        // A flat line has no slope, whatever its level.
        assert_eq!(Trend::fit(&[(0.0, 5.0), (10.0, 5.0), (20.0, 5.0)]).map(|t| t.per_hour), Some(0.0));
    }
}
