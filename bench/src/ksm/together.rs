//! Both systems side by side with Prometheus (scraping both, evaluating the seed's rules and
//! the careful rules every interval): the memory of every process on the machine, and, at
//! the first N, the time to alert of each seed scenario along the three paths.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use k8s_openapi::api::batch::v1::Job;
use kube::api::Api;
use sidecar_watch_harness::ksm::rules::{self, RuleSet};
use sidecar_watch_harness::process;
use sidecar_watch_harness::prometheus::{Prometheus, PROMETHEUS_BIN};

use super::cluster::Cluster;
use super::cost;
use super::observe::{target_health, Seen, Sightings, Watchers};
use super::scenarios::{self, Scenario, Sidecar, NAMESPACE};
use crate::args::Args;

/// One sidecar-watch alert of one scenario and when each path saw something, in seconds
/// after the causing write (`None`: never within the wait).
#[derive(Debug, Clone)]
pub struct AlertRow {
    pub scenario: Scenario,
    pub sidecar: Sidecar,
    pub alert: &'static str,
    /// When it is due (the rule's `for`, scaled).
    pub due_s: f64,
    pub event_s: Option<f64>,
    pub series_s: Option<f64>,
    /// The rule set's alert for the same condition, or else its first alert on the Pod.
    pub seed: Option<(String, f64)>,
    pub careful: Option<(String, f64)>,
}

/// The side-by-side phase.
#[derive(Debug, Default, Clone)]
pub struct Together {
    /// RSS (KiB) of etcd, kube-apiserver, kube-state-metrics, sidecar-watch and Prometheus.
    pub rss: Vec<(&'static str, u64)>,
    pub rows: Vec<AlertRow>,
    /// Prometheus' scrape and evaluation interval, the scenarios' wait, in seconds.
    pub interval_s: f64,
    pub wait_s: f64,
}

/// The seed rules' alert for what sidecar-watch's `alert` reports, if they have one.
fn analog(alert: &str) -> Option<&'static str> {
    match alert {
        "SidecarContainerNotReady" => Some("SidecarContainerNotReady"),
        "MainContainerReadyButSidecarNot" => Some("MainContainerReadyButSidecarNot"),
        "SidecarRestartingFrequently" | "SidecarCrashLooping" => Some("PodRestartingFrequently"),
        _ => None,
    }
}

/// Sleeps until the wall clock reads `at`.
async fn sleep_until_wall(at: SystemTime) {
    if let Ok(left) = at.duration_since(SystemTime::now()) {
        tokio::time::sleep(left).await;
    }
}

/// The next whole second of the wall clock at least `after` from now.
fn whole_second_after(after: Duration) -> SystemTime {
    let t = SystemTime::now() + after;
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()) + 1;
    UNIX_EPOCH + Duration::from_secs(secs)
}

/// Runs one scenario's timeline; returns the instant its causing write was committed.
async fn play(
    client: kube::Client,
    scenario: Scenario,
    sidecar: Sidecar,
    driver: sidecar_watch_harness::kubelet::PodDriver,
    t0_wall: SystemTime,
    scale: f64,
    until: f64,
) -> Result<Instant> {
    let mut t0 = None;
    for (offset, step) in scenario.timeline(until) {
        let at = if offset >= 0.0 {
            t0_wall + Duration::from_secs_f64(offset / scale)
        } else {
            t0_wall - Duration::from_secs_f64(-offset / scale)
        };
        sleep_until_wall(at).await;
        scenarios::apply(&client, &driver, scenario, sidecar, step).await?;
        if offset == 0.0 {
            t0 = Some(Instant::now());
        }
    }
    t0.with_context(|| format!("{scenario:?}: no causing write"))
}

/// Starts both systems and Prometheus; with `scenarios`, plays every seed scenario and
/// reports when each path alerted.
pub async fn run(cluster: &Cluster, args: &Args, ksm_bin: &Path, dir: &Path, scenarios: bool) -> Result<Together> {
    let scale = f64::from(args.time_scale);
    let (ksm, op) = cost::start_both(cluster, args, ksm_bin, dir).await?;
    let interval_ms = args.scrape_interval * 1000 / u64::from(args.time_scale);
    let rule_files = rules::write_rule_files(dir, args.time_scale)?;
    let config = rules::prometheus_config(
        interval_ms,
        &rule_files,
        &[
            ("kube-state-metrics", format!("127.0.0.1:{}", ksm.port)),
            ("sidecar-watch", format!("127.0.0.1:{}", op.port)),
        ],
    );
    let prom = Arc::new(Prometheus::start_with_config(Path::new(PROMETHEUS_BIN), &config).await?);
    let mut out = Together {
        interval_s: interval_ms as f64 / 1000.0,
        wait_s: args.never_after as f64 / scale,
        ..Default::default()
    };

    if scenarios {
        let env = &cluster.env;
        env.create_namespace(NAMESPACE).await?;
        let docs = [scenarios::policy(args.time_scale), scenarios::job()];
        let text =
            docs.iter().map(|d| serde_norway::to_string(d).unwrap_or_default()).collect::<Vec<_>>().join("---\n");
        env.kubectl_apply(&text).await.context("the scenarios' policy and Job")?;
        let job = Api::<Job>::namespaced(cluster.client().clone(), NAMESPACE).get("report").await?;
        let job_uid = job.metadata.uid.unwrap_or_default();
        let watchers = Watchers::start(prom.clone(), op.port, cluster.client().clone());

        let mut plays = Vec::new();
        for scenario in Scenario::ALL {
            for &sidecar in scenario.sidecars() {
                let driver = scenarios::set_up(cluster.client(), scenario, sidecar, &job_uid).await?;
                plays.push((scenario, sidecar, driver));
            }
        }
        // Every Pod's series are in Prometheus (two scrapes) before any timeline starts.
        let lead = Duration::from_secs_f64(
            (60.0 / scale).max(2.0 * out.interval_s)
                + Scenario::ALL.iter().map(|s| scenarios::lead(*s).as_secs_f64()).fold(0.0, f64::max) / scale,
        );
        let start = whole_second_after(lead);
        say!(
            "scenarios: {} Pods set up; causing writes from {:.0} s on, one a second",
            plays.len(),
            lead.as_secs_f64()
        );
        let mut tasks = tokio::task::JoinSet::new();
        for (slot, (scenario, sidecar, driver)) in plays.into_iter().enumerate() {
            // Each causing write right after a whole second, so that the API's timestamps
            // (whole seconds) are within milliseconds of it.
            let t0_wall = start + Duration::from_secs(slot as u64) + Duration::from_millis(20);
            let client = cluster.client().clone();
            let until = args.never_after as f64;
            tasks.spawn(async move {
                let t0 = play(client, scenario, sidecar, driver, t0_wall, scale, until).await;
                (scenario, sidecar, t0)
            });
        }
        let mut t0s = Vec::new();
        while let Some(done) = tasks.join_next().await {
            let (scenario, sidecar, t0) = done?;
            t0s.push((scenario, sidecar, t0?));
        }
        let last = t0s.iter().map(|(_, _, t)| *t).max().unwrap_or_else(Instant::now);
        tokio::time::sleep((last + Duration::from_secs_f64(out.wait_s)).saturating_duration_since(Instant::now()))
            .await;
        say!("scenarios: Prometheus targets {:?}", target_health(&prom).await);
        t0s.sort_by_key(|(s, k, _)| (*s, *k));
        out.rows = rows(&watchers.seen, &t0s, scale, out.wait_s);
    } else {
        tokio::time::sleep(Duration::from_secs_f64(2.0 * out.interval_s + 5.0)).await;
    }

    out.rss = vec![
        ("etcd", process::rss_kib(cluster.etcd_pid).unwrap_or(0)),
        ("kube-apiserver", process::rss_kib(cluster.apiserver_pid).unwrap_or(0)),
        ("kube-state-metrics", ksm.proc.settled_rss().await),
        ("sidecar-watch", op.proc.settled_rss().await),
        ("Prometheus", prom.pid().and_then(process::rss_kib).unwrap_or(0)),
    ];
    ksm.proc.stop().await;
    op.proc.stop().await;
    Ok(out)
}

/// The table rows from what was seen, relative to each causing write.
fn rows(seen: &Sightings, t0s: &[(Scenario, Sidecar, Instant)], scale: f64, wait_s: f64) -> Vec<AlertRow> {
    let mut out = Vec::new();
    for &(scenario, sidecar, t0) in t0s {
        let pod = scenario.pod_name(sidecar);
        let rel = |t: Instant| {
            let s = t.saturating_duration_since(t0).as_secs_f64() - t0.saturating_duration_since(t).as_secs_f64();
            (s <= wait_s).then_some(s)
        };
        for &(alert, due) in scenario.due() {
            let path = |set: RuleSet| {
                let fired = seen.rule_alerts(set, &pod);
                let same = analog(alert).and_then(|a| fired.iter().find(|(n, _)| n == a));
                same.or(fired.first()).and_then(|(name, t)| rel(*t).map(|s| (name.clone(), s)))
            };
            let key = |f: fn(String, String) -> Seen| seen.first(&f(pod.clone(), alert.to_string())).and_then(rel);
            out.push(AlertRow {
                scenario,
                sidecar,
                alert,
                due_s: due as f64 / scale,
                event_s: key(|pod, alert| Seen::Event { pod, alert }),
                series_s: key(|pod, alert| Seen::Series { pod, alert }),
                seed: path(RuleSet::Seed),
                careful: path(RuleSet::Careful),
            });
        }
    }
    out
}
