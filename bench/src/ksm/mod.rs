//! `sidecar-watch-bench --against ksm`: the user's real alternative beside the operator, on
//! the same Pods of the same real API server, in one run. kube-state-metrics (built from its
//! pinned Go module and run as a careful user runs it, [`exporter`]) feeds a real Prometheus
//! evaluating the seed's PrometheusRule as written and the same rules fixed for native
//! sidecars ([`rules`](sidecar_watch_harness::ksm::rules)); sidecar-watch runs with the
//! benchmark's policies. Per N ([`cluster`] creates the Pods): the status writes alone, each
//! system alone ([`cost`]: start, memory, `/metrics`, CPU under status updates, and what it
//! costs kube-apiserver and etcd, [`server`]), then both with Prometheus ([`together`]), at
//! the first N with the seed's scenarios played by a kubelet ([`scenarios`]) and watched
//! along every path ([`observe`]). [`report`] prints the tables.
//! `--workload-alerts` runs [`workload_alerts`] instead: what the alerts on workloads cost the
//! API server and how fast one fires ([`workload_events`] writes and times the Events).

pub mod cluster;
pub mod cost;
pub mod load;
pub mod observe;
pub mod report;
pub mod scenarios;
pub mod server;
pub mod start;
pub mod together;
pub mod workload_alerts;
pub mod workload_events;

use anyhow::{bail, Result};
use sidecar_watch_harness::ksm::exporter;

use self::cluster::Cluster;
use self::cost::System;
use self::report::{Setup, Step};
use super::args::Args;
use super::pods::PodFactory;
use super::run::load_average;

fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| m.lines().next().and_then(|l| l.split_whitespace().nth(1)).and_then(|k| k.parse::<u64>().ok()))
        .map_or("?".into(), |k| format!("{:.0} GiB", k as f64 / 1048576.0));
    format!("{cores} cores, {mem}")
}

fn prometheus_version() -> String {
    std::process::Command::new(sidecar_watch_harness::prometheus::PROMETHEUS_BIN)
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).lines().next().unwrap_or_default().to_string())
        .unwrap_or_else(|e| format!("prometheus: {e}"))
}

/// Runs every phase at each of `--ksm-pods`; returns the report.
pub async fn run(args: &Args) -> Result<String> {
    if !args.operator().exists() {
        bail!("operator binary {} not found (cargo build --release -p sidecar-watch)", args.operator().display());
    }
    if !args.start_only.is_empty() {
        return start::run(args).await;
    }
    if args.workload_alerts {
        return workload_alerts::run(args).await;
    }
    let ksm_bin = exporter::binary(args.ksm.as_deref())?;
    let dir = args.workdir().join("ksm");
    std::fs::create_dir_all(&dir)?;
    let mut cluster = Cluster::start(&dir).await?;
    let versions = cluster.env.control_plane().map(|c| c.info().versions.clone());
    let setup = Setup {
        apiserver: versions.as_ref().map_or_else(String::new, |v| v.kube_api_server.clone()),
        etcd: versions.as_ref().map_or_else(String::new, |v| v.etcd.clone()),
        ksm: exporter::version(&ksm_bin),
        prometheus: prometheus_version(),
        operator: args.operator().display().to_string(),
        machine: machine(),
        time_scale: args.time_scale,
        update_rate: args.update_rate,
        update_seconds: args.update_seconds,
    };
    say!("{setup:?}");
    let factory = PodFactory::new();
    let mut steps: Vec<Step> = Vec::new();
    for (i, &n) in args.ksm_pods.iter().enumerate() {
        let step_dir = dir.join(format!("n{n}"));
        std::fs::create_dir_all(&step_dir)?;
        let creation = cluster.grow_to(&factory, n, args.create_concurrency).await?;
        let snap = server::Snapshot::take(cluster.client(), cluster.apiserver_pid, cluster.etcd_pid).await?;
        say!(
            "N={n}: {} Pods created in {:.0} s ({:.0}/s); etcd {} MiB, kube-apiserver {} MiB",
            creation.pods,
            creation.secs,
            creation.pods as f64 / creation.secs.max(1e-9),
            snap.etcd_rss_kib / 1024,
            snap.apiserver_rss_kib / 1024
        );
        let mut step = Step {
            n: cluster.pods,
            creation,
            etcd_rss_kib: snap.etcd_rss_kib,
            apiserver_rss_kib: snap.apiserver_rss_kib,
            ..Step::default()
        };
        step.writes_alone = cost::writes_alone(&cluster, &factory, args).await?;
        say!("N={n}: the status writes alone: {}", step.writes_alone.1.describe());
        // One unmeasured start of sidecar-watch publishes the Warning Events of the Pods that
        // alert (once in a cluster's life), so that each measured start pays for its reads
        // alone, as kube-state-metrics' (which writes nothing) does. Then the two take turns,
        // so that whatever drifts on the server meanwhile falls on both.
        let warm = cost::alone(System::SidecarWatch, &cluster, &factory, args, &ksm_bin, &step_dir).await?;
        say!("N={n}: the warm-up start of sidecar-watch (its Events; not counted): {}", warm.start.describe());
        let (mut ksm_runs, mut operator_runs) = (Vec::new(), Vec::new());
        for _ in 0..args.ksm_repeats {
            ksm_runs.push(cost::alone(System::Ksm, &cluster, &factory, args, &ksm_bin, &step_dir).await?);
            operator_runs.push(cost::alone(System::SidecarWatch, &cluster, &factory, args, &ksm_bin, &step_dir).await?);
        }
        step.ksm = cost::median(ksm_runs);
        step.operator = cost::median(operator_runs);
        if !args.ksm_cost_only {
            step.together = together::run(&cluster, args, &ksm_bin, &step_dir, i == 0).await?;
        }
        step.load = load_average();
        steps.push(step);
        say!("partial report:\n{}", report::all(&steps, &setup));
    }
    Ok(report::all(&steps, &setup))
}
