//! The benchmark of sidecar-watch, `sidecar-watch-bench`: what the operator costs and how
//! fast it alerts, at 100k Pods and beside kube-state-metrics.
//!
//! One module per phase: arguments ([`args`]), the simulator's preloaded Pods and in-process
//! writes ([`preload`]), the operator under test ([`operator`]), baselines and operator
//! start-up ([`startup`]), sustained update rates ([`rates`]), end-to-end alert latency
//! ([`latency`]), a hostile tenant ([`hostile`]), a tenant editing its policies fast
//! ([`policy_flood`]), `/metrics` serving ([`serving`]), a flood of made-up tokens
//! ([`flood`]), churn ([`churn`]), idle CPU ([`idle`]), a soak with its writes ([`soak`],
//! [`soak_load`]), the operator's cost to the API server per phase ([`api_cost`]), sharded
//! replicas ([`shards`]) and the table ([`report`]); [`run`] strings them together for one N.
//! [`ksm`] is the `--against ksm` mode: kube-state-metrics, Prometheus and the seed's rules
//! beside the operator on a real API server.
//!
//! What it runs against is the test harness crate's (`sidecar_watch_harness`, `harness/`): the
//! simulator, the real control plane, the kubelet driver, Prometheus, kube-state-metrics and
//! its rules, child processes and their `/proc` probes. The realistic Pods ([`pods`]) and the
//! Prometheus text parser ([`prom`]) are the test kit's (`testkit/`), which the tests share.

/// Progress line on stderr, stamped with the seconds since the benchmark started.
macro_rules! say {
    ($($t:tt)*) => { $crate::log(format!($($t)*)) };
}

pub mod api_cost;
pub mod args;
pub mod churn;
pub mod flood;
pub mod hostile;
pub mod idle;
pub mod ksm;
pub mod latency;
pub mod operator;
pub mod policy_flood;
pub mod preload;
pub mod rates;
pub mod report;
pub mod run;
pub mod serving;
pub mod shards;
pub mod soak;
pub mod soak_load;
pub mod startup;

/// The test kit's Pod factory and Prometheus parser, under the names the phases use.
pub use sidecar_watch_testkit::{factory as pods, prom};

use std::sync::OnceLock;
use std::time::Instant;

static START: OnceLock<Instant> = OnceLock::new();

/// Prints `line` to stderr with the time since the first call (the benchmark's start).
pub fn log(line: String) {
    eprintln!("[bench {:>7.1}s] {line}", START.get_or_init(Instant::now).elapsed().as_secs_f64());
}

/// `v * scale` with `digits` decimals, or `–` when there is no value.
pub fn fmt(v: Option<f64>, scale: f64, digits: usize) -> String {
    v.map_or("–".into(), |x| format!("{:.*}", digits, x * scale))
}
