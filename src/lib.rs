//! sidecar-watch: a Kubernetes operator that watches sidecar containers.
//!
//! Layers, each importing only those below it (`docs/architecture.md` draws them):
//! [`controller`] wires the kube watches, the reconciler, status, leadership and the tasks
//! below; [`metrics`], [`events`] and [`server`] read the [`index`], the operator's state,
//! which evaluates Pods with the [`engine`], pure rule evaluation on the [`api`] types.
//! [`audit`] runs the engine offline; [`admission`] writes its static checks as a
//! ValidatingAdmissionPolicy for the API server to run. [`leadership`] is the one signal of
//! leadership and sync; [`paging`] the one paginated LIST, beside [`kubeconfig`].
//!
//! Items are `pub(crate)` unless the binary (`src/main.rs`), the tests, the benchmarks or the
//! fuzz targets use them: `unreachable_pub` flags a `pub` that nothing outside can reach.
#![warn(unreachable_pub)]

pub mod admission;
pub mod audit;
pub mod controller;
pub mod events;
pub(crate) mod fair_cache;
pub mod fair_queue;
pub(crate) mod fair_reader;
pub(crate) mod injection_failure;
pub mod kubeconfig;
pub mod leadership;
pub mod logging;
pub mod memory;
pub mod metrics;
pub(crate) mod paging;
pub mod rbac;
pub(crate) mod rollout_controller;
pub mod server;
#[cfg(test)]
mod test_api;

// The pure layers are crates of their own, so that the compiler keeps their imports one way
// (api <- engine <- index <- this crate) and `unsafe` out of them; re-exported under the
// names the rest of this crate and the tests use.
pub use sidecar_watch_api as api;
pub use sidecar_watch_engine as engine;
pub use sidecar_watch_index as index;
