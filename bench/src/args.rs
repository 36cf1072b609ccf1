//! Command line of `sidecar-watch-bench` (clap derive); `--quick` shrinks every phase so
//! that CI runs the whole harness in a few minutes.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Parser, ValueEnum};

/// What the operator is measured against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Against {
    /// The in-process API-server simulator preloaded with N Pods, beside two kube-rs
    /// reflector baselines.
    Simulator,
    /// kube-state-metrics + Prometheus + the seed's PrometheusRule (and the same rules fixed
    /// for native sidecars), beside the operator, on a real kube-apiserver and etcd.
    Ksm,
}

/// Runs the real operator (`sidecar-watch run`) against the in-process API-server simulator
/// preloaded with N realistic Pods, for each N, and prints one Markdown table.
#[derive(Debug, Clone, Parser)]
#[command(name = "sidecar-watch-bench", version)]
pub struct Args {
    /// Numbers of Pods on the simulator, one run each (comma-separated). The default is
    /// what the simulator is kept for: status updates at 1,000 and 5,000/s, five to twenty
    /// times what the real control plane takes on this machine, over the most Pods it holds
    /// (docs/benchmarks.md, "How far does the real control plane go here?"); `--against ksm`
    /// measures up to that many Pods on the real control plane, and larger N (`--pods
    /// 400000`) are the simulator's alone.
    #[arg(long, value_delimiter = ',', default_values_t = [100_000usize])]
    pub pods: Vec<usize>,
    /// Length of the churn phase (0 skips it).
    #[arg(long, default_value_t = 300)]
    pub churn_seconds: u64,
    /// Churn operations per second.
    #[arg(long, default_value_t = 200)]
    pub churn_rate: u64,
    /// Sustained status-update rates, one phase each (comma-separated, per second).
    #[arg(long, value_delimiter = ',', default_values_t = [1000u64, 5000])]
    pub rates: Vec<u64>,
    /// Length of each rate phase.
    #[arg(long, default_value_t = 30)]
    pub rate_seconds: u64,
    /// Length of the idle-CPU measurement.
    #[arg(long, default_value_t = 30)]
    pub idle_seconds: u64,
    /// OOM kills timed end to end (and crash-looping sidecars in the hostile phase).
    #[arg(long, default_value_t = 50)]
    pub e2e_samples: usize,
    /// The operator binary (default: `target/release/sidecar-watch` of this repository).
    #[arg(long)]
    pub operator: Option<PathBuf>,
    /// The reflector baseline (default: `reflector-baseline` beside this binary).
    #[arg(long)]
    pub baseline: Option<PathBuf>,
    /// Also write the table to this file.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Kubeconfigs and child logs (default: a fresh directory under the temp dir).
    #[arg(long)]
    pub workdir: Option<PathBuf>,
    /// The hostile-tenant phase (`--hostile=false` skips it).
    #[arg(long, default_value_t = true, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub hostile: bool,
    /// Containers of the hostile tenant's Pod.
    #[arg(long, default_value_t = 5000)]
    pub flood_containers: usize,
    /// Label-only updates timed (flood Pod vs normal Pod) in the hostile phase.
    #[arg(long, default_value_t = 50)]
    pub label_updates: usize,
    /// Background status-update rate in the other namespaces during the hostile phase.
    #[arg(long, default_value_t = 1000)]
    pub hostile_rate: u64,
    /// The policy-flood phase (`--policy-flood=false` skips it).
    #[arg(long, default_value_t = true, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub policy_flood: bool,
    /// SidecarPolicies of the policy-flood tenant, each selecting all of its Pods.
    #[arg(long, default_value_t = 300)]
    pub flood_policies: usize,
    /// Pods of the policy-flood tenant.
    #[arg(long, default_value_t = 1000)]
    pub flood_pods: usize,
    /// Policy edit rates of the policy-flood tenant, one phase each (per second).
    #[arg(long, value_delimiter = ',', default_values_t = [20u64, 200])]
    pub flood_edit_rates: Vec<u64>,
    /// OOM kills in other namespaces timed per edit rate.
    #[arg(long, default_value_t = 30)]
    pub flood_samples: usize,
    /// The `/metrics` serving phase (`--serving=false` skips it).
    #[arg(long, default_value_t = true, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub serving: bool,
    /// Clients that send `GET /metrics` and never read, in the serving phase.
    #[arg(long, default_value_t = 60)]
    pub stuck_clients: usize,
    /// How long the stuck clients are held.
    #[arg(long, default_value_t = 15)]
    pub hold_seconds: u64,
    /// The made-up-token flood against a secure operator (`--flood=false` skips it).
    #[arg(long, default_value_t = true, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub flood: bool,
    /// How long the token flood lasts.
    #[arg(long, default_value_t = 10)]
    pub flood_seconds: u64,
    /// `--metric-denylist` of the second operator whose series per Pod are compared.
    #[arg(long, default_value = "sidecar_container_.*")]
    pub denylist: String,
    /// Instead of the single-operator phases, compare at each N one replica, this many
    /// shards by Pod UID and this many replicas by namespace (0 or 1: off).
    #[arg(long, default_value_t = 0)]
    pub shards: u32,
    /// What to measure against (`ksm`: see the `--ksm-*` options).
    #[arg(long, value_enum, default_value = "simulator")]
    pub against: Against,
    /// `--against ksm`: Pods created in the real API server, one cost measurement at each
    /// count (comma-separated, ascending); the alert scenarios run at the first.
    #[arg(long, value_delimiter = ',', default_values_t = [10_000usize])]
    pub ksm_pods: Vec<usize>,
    /// `--against ksm`: each system is measured alone this many times at each N, taking turns
    /// (after one unmeasured start of sidecar-watch that publishes its Events, and each start
    /// once kube-apiserver is quiet); the cost table shows each figure's median, and the range
    /// of the RSS at rest.
    #[arg(long, default_value_t = 1)]
    pub ksm_repeats: usize,
    /// `--against ksm`: only each system alone at each N (the cost table); no side-by-side
    /// phase with Prometheus and the scenarios.
    #[arg(long)]
    pub ksm_cost_only: bool,
    /// `--against ksm`: the kube-state-metrics binary (default: `harness/ksm/build.sh` builds it).
    #[arg(long)]
    pub ksm: Option<PathBuf>,
    /// `--against ksm`: Prometheus' scrape and rule-evaluation interval, seconds (the seed's
    /// rule group says 30s).
    #[arg(long, default_value_t = 30)]
    pub scrape_interval: u64,
    /// `--against ksm`: status updates per second while CPU (and sidecar-watch's detection
    /// latency) is measured; the real control plane takes ~200/s on 2 cores.
    #[arg(long, default_value_t = 100)]
    pub update_rate: u64,
    /// `--against ksm`: how long CPU is measured under `--update-rate`.
    #[arg(long, default_value_t = 60)]
    pub update_seconds: u64,
    /// `--against ksm`: seconds after its status write a scenario waits for an alert before
    /// it reports "never".
    #[arg(long, default_value_t = 480)]
    pub never_after: u64,
    /// `--against ksm`: divides every duration of the alert scenarios by this (the rules'
    /// `for` and windows, Prometheus' intervals, back-offs, the wait); 1 is the real thing.
    #[arg(long, default_value_t = 1)]
    pub time_scale: u32,
    /// `--against ksm`: only sidecar-watch's start, alone, once per `--initial-list` given
    /// (comma-separated, e.g. `paginated,streaming`; `streaming/json` adds `--pod-encoding
    /// json`) at each of `--ksm-pods`, after one
    /// unmeasured start that publishes the Events: its time to every Pod tracked, CPU, RSS
    /// peak, and what the start costs kube-apiserver and etcd. Skips every other phase
    /// (no kube-state-metrics, no Prometheus).
    #[arg(long, value_delimiter = ',')]
    pub start_only: Vec<String>,
    /// `--against ksm`: only what the alerts on workloads cost ([`crate::ksm::workload_alerts`]): the
    /// `reason=FailedCreate` Events watch at the first `--ksm-pods`, beside an unfiltered one,
    /// and `--e2e-samples` `FailedCreate` Events timed to their alert. Skips every other phase.
    #[arg(long)]
    pub workload_alerts: bool,
    /// `--workload-alerts`: ordinary (Normal) Events written before the operator starts.
    #[arg(long, default_value_t = 10_000)]
    pub wl_events: usize,
    /// `--workload-alerts`: `FailedCreate` Events of causes that are no sidecar's written then.
    #[arg(long, default_value_t = 300)]
    pub wl_unrelated: usize,
    /// `--workload-alerts`: how long the steady state is measured.
    #[arg(long, default_value_t = 180)]
    pub wl_steady_seconds: u64,
    /// `--workload-alerts`: ordinary Events written per second during the steady state.
    #[arg(long, default_value_t = 10)]
    pub wl_event_rate: u64,
    /// `--against ksm`: Pods created concurrently through the API server.
    #[arg(long, default_value_t = 48)]
    pub create_concurrency: usize,
    /// The soak phase's length, e.g. `30m` (0: skipped): Pod writes with churn and policy
    /// edits against the first operator, after the idle phase.
    #[arg(long, value_parser = parse_duration, default_value = "0s")]
    pub soak: Duration,
    /// Pod writes per second during the soak.
    #[arg(long, default_value_t = 200)]
    pub soak_rate: u64,
    /// `oomKilled.window` of the cluster policies during the soak (OOM alerts resolve after it).
    #[arg(long, value_parser = parse_duration, default_value = "60s")]
    pub soak_oom_window: Duration,
    /// One policy edit this often during the soak.
    #[arg(long, value_parser = parse_duration, default_value = "2s")]
    pub soak_edit_every: Duration,
    /// One watch disruption by the server (every watch gets 410 Gone: the operator relists)
    /// this often
    /// during the soak (0: none).
    #[arg(long, value_parser = parse_duration, default_value = "10m")]
    pub soak_disrupt_every: Duration,
    /// One sample of RSS, fds, threads and tasks this often during the soak.
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    pub soak_sample_every: Duration,
    /// Samples before this (at most half the soak) are left out of the slopes. The default
    /// covers the soak's longest memory: a Pod is restarted at most once per 11 min, and the
    /// Pods turn over in ~6 min at 30 deletions/s of 10,000 (the first 30-min soak rose
    /// 36 → 50 MiB for 15 min, then stayed at 46-51 MiB).
    #[arg(long, value_parser = parse_duration, default_value = "15m")]
    pub soak_warmup: Duration,
    /// Small N and short phases (every phase still runs): exercises the harness in CI in
    /// a few minutes (about 3, `--against ksm` 3 to 4). Overrides the sizes and durations above; with `--against ksm`, 300
    /// Pods and every scenario duration divided by 10.
    #[arg(long)]
    pub quick: bool,
}

impl Args {
    /// Parses the command line and applies `--quick`.
    pub fn from_env() -> anyhow::Result<Self> {
        let mut a = Args::parse();
        if a.quick {
            a.pods = vec![500, 1000];
            a.rates = vec![500];
            a.rate_seconds = 3;
            a.churn_seconds = 5;
            a.churn_rate = 100;
            a.idle_seconds = 2;
            a.e2e_samples = 5;
            a.label_updates = 10;
            a.hostile_rate = 200;
            a.hold_seconds = 3;
            a.ksm_pods = vec![300];
            a.update_seconds = 5;
            a.time_scale = 10;
            a.flood_policies = 30;
            a.flood_pods = 100;
            a.flood_samples = 5;
            a.flood_seconds = 3;
            a.soak = Duration::from_secs(12);
            a.soak_oom_window = Duration::from_secs(5);
            a.soak_edit_every = Duration::from_secs(1);
            a.soak_disrupt_every = Duration::from_secs(6);
            a.soak_sample_every = Duration::from_secs(1);
            a.soak_warmup = Duration::from_secs(3);
        }
        if a.pods.is_empty() || a.ksm_pods.is_empty() {
            anyhow::bail!("--pods and --ksm-pods need at least one count");
        }
        if a.ksm_repeats == 0 {
            anyhow::bail!("--ksm-repeats must be at least 1");
        }
        if a.time_scale == 0 {
            anyhow::bail!("--time-scale must be at least 1");
        }
        Ok(a)
    }

    /// `--operator` or `target/release/sidecar-watch` of this repository.
    pub fn operator(&self) -> PathBuf {
        self.operator.clone().unwrap_or_else(|| repo_root().join("target/release/sidecar-watch"))
    }

    /// `--baseline` or `reflector-baseline` beside this executable.
    pub fn baseline(&self) -> PathBuf {
        self.baseline
            .clone()
            .unwrap_or_else(|| std::env::current_exe().unwrap_or_default().with_file_name("reflector-baseline"))
    }

    /// `--workdir` or a directory named after this process under the temp dir.
    pub fn workdir(&self) -> PathBuf {
        self.workdir
            .clone()
            .unwrap_or_else(|| std::env::temp_dir().join(format!("sidecar-watch-bench-{}", std::process::id())))
    }
}

/// A duration as `30m`, `90s`, `1h 30m` or ISO 8601 (`PT30M`).
fn parse_duration(text: &str) -> Result<Duration, String> {
    let signed: jiff::SignedDuration = text.parse().map_err(|e| format!("{text:?}: {e}"))?;
    Duration::try_from(signed).map_err(|e| format!("{text:?}: {e}"))
}

/// The repository (parent of this crate).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap_or(Path::new(".")).to_path_buf()
}
