//! End-to-end tests of `sidecar-watch run` against the simulator (or `E2E_KUBECONFIG`).
//!
//! Every test starts its own simulator (or uses a namespace of its own on the real cluster)
//! and its own operator process(es), so the tests run in parallel. Fault-injection tests
//! need the simulator and say "skipped: needs simulator" on a real cluster.
//!
//! Set `E2E_SHOW_LOGS=1` to print every operator's log, `E2E_OPERATOR_LOG` to change its
//! `RUST_LOG` (default `info`). Logs are always printed when a test fails.

mod faults;
mod initial_list;
mod leader;
mod lifecycle;
mod limits;
mod metrics_available;
mod metrics_secure;
mod policies;
mod prometheus;
mod rbac;
mod renew_deadline;
mod restart;
mod scenarios;
mod sharding;
mod support;
