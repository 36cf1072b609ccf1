//! The operator suite's own glue, over the harness: the operator binary of this package as a
//! child process (`operator`: it runs `CARGO_BIN_EXE_sidecar-watch`, which only this
//! package's test targets have) and what the operator is expected to publish, in its own
//! types (`alerts`: `sidecar_alerts` series and alert Events), and what the repository ships
//! for the real Prometheus and Alertmanager (`shipped`: the rules, the example routes).
//!
//! Everything else is the harness crate's and is re-exported here, so tests
//! `use crate::support::*` (or name an item): the cluster with the CRDs, a namespace of its
//! own and the shipped RBAC (`sidecar_watch_harness::cluster`), Events
//! (`sidecar_watch_harness::events`), policy JSON and status checks
//! (`sidecar_watch_harness::policy`), Pod shorthands (`sidecar_watch_harness::kubelet`), the
//! server's release and kubectl runs (`sidecar_watch_harness::env`) and the scrape parser
//! (`sidecar_watch_testkit::prom`).

mod alerts;
mod operator;
mod shipped;

pub use alerts::*;
pub use operator::*;
pub use shipped::*;
pub use sidecar_watch_harness::cluster::{Cluster, WAIT};
pub use sidecar_watch_harness::env::{run_kubectl, server_minor, streams_by_default, Kubectl};
pub use sidecar_watch_harness::events::{count_events, describe_events, the_event};
pub use sidecar_watch_harness::kubelet::{drive, native_pod, set_ready};
pub use sidecar_watch_harness::policy::{condition, policy_resource, rules, status_counts, status_ready};

/// A scratch directory of this test process for `name` (the caller removes it when it passes,
/// so a failure leaves its files to read).
pub fn scratch_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("sidecar-watch-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}
