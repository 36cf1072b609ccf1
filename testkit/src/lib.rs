//! What the tests, the end-to-end suite and the benchmark share, in one place:
//!
//! - [`pod`]: Pods built in code with a typed builder ([`pod::PodBuilder`]), for tests that
//!   need a Pod the seed scenarios do not have;
//! - [`scenario`]: the seed scenarios (`tests/fixtures/*.yaml`), one named constant each;
//! - [`factory`]: the benchmark's realistic Pods, by the hundred thousand, and the kubelet-like
//!   status changes it makes to them;
//! - [`prom`]: the Prometheus text-format parser (samples, label matches, histograms);
//! - [`audit`]: `sidecar-watch audit` run as a user runs it;
//! - `engine` (feature `engine`): engine-typed fixtures — compact views, times on the
//!   fixtures' day, policies from YAML, alert rows — for the engine's test binary and the
//!   operator's integration tests;
//! - `index` (feature `index`): Pods, policies and alert names on an index, for the index's
//!   test binary and the operator's tests of what it makes of the index.
//!
//! Process-level helpers (the control plane, the node, the simulator, kubectl, `wait_until`)
//! are the harness crate's (`sidecar_watch_harness`), which builds on this one.
//!
//! Without features it depends on no crate of the workspace and speaks JSON
//! ([`serde_json::Value`]) and the API's own wire format, which each user decodes into its types
//! (`SlimPod`, `Pod`). With them it depends on the api, engine and index crates, never on the
//! operator (`sidecar-watch`): so the operator's unit tests can use it as well as the
//! integration tests, the harness crate and the benchmark, and imports run one way (operator
//! tests → harness → testkit → index → engine → api).

pub mod audit;
#[cfg(feature = "engine")]
pub mod engine;
pub mod factory;
#[cfg(feature = "index")]
pub mod index;
pub mod pod;
pub mod prom;
pub mod scenario;

/// The workspace's root directory (where `tests/fixtures/` and `examples/` are).
pub fn workspace_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(std::path::Path::to_path_buf).unwrap_or_default()
}
