//! The operator's tests beyond its unit tests, in one test binary: each module was a binary of
//! its own, and each of those 19 linked the whole operator. Measured (docs/benchmarks.md,
//! "How long do the tests take"): after `touch src/lib.rs`, `cargo test --workspace --no-run`
//! took 54-144 s with them and takes 17-29 s now; their tests ran 41.5 s one binary after
//! another and run 23.5 s here. `cargo test --test integration audit_` runs a part.
//!
//! The pure tests of the engine and the index (rules on Pod views and seed scenarios, their
//! properties, the index's transitions and counts) are their crates' own, beside their code:
//! `crates/engine/tests/engine/` and `crates/index/tests/index/`, one binary each, which links
//! neither the operator nor this suite (`cargo test -p sidecar-watch-engine -p
//! sidecar-watch-index`). What stays here needs the operator: its binary, or its library
//! beyond the engine and the index (`/metrics`, Events, policy status, the audit); only
//! `catalog.rs` reads the engine alone, and could go to its crate too.
//!
//! Two tests keep binaries of their own: `tests/heap_counts.rs` installs a counting global
//! allocator, and `tests/audit_memory.rs` reads the peak RSS of its children, which another
//! test's children would raise.
//!
//! No test here needs a cluster, kube-apiserver or the control-plane binary
//! (`E2E_CONTROL_PLANE_BIN`): a test against kube-apiserver is a module of
//! `tests/e2e_operator/` (the live `audit` and the Event recorder are, `audit_live.rs` and
//! `event_recorder.rs`).
//!
//! Support: the test kit (`sidecar_watch_testkit`: Pods, seed scenarios, the audit runner, and
//! with its features `engine` and `index` the views, times, policies and index fixtures the
//! engine's and the index's test binaries use too) and [`SIDECAR_WATCH`].

mod audit_cli;
mod audit_cronjobs;
mod audit_inventory;
mod audit_manifests;
mod audit_workloads;
mod catalog;
mod crd;
mod docs_drift;
mod event_limits;
mod fuzz_regressions;
mod index;
mod metrics_text;
mod namespace_labels;
mod policy_limits;
mod rbac;
mod readme_example;
mod resource_tax;
mod run_cli;
mod server;

/// The operator's binary, as the audit tests run it.
const SIDECAR_WATCH: sidecar_watch_testkit::audit::Audit =
    sidecar_watch_testkit::audit::Audit::new(env!("CARGO_BIN_EXE_sidecar-watch"));
