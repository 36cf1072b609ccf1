//! The index's tests beyond its unit tests, in one test binary (each test binary links the
//! crate and its dependencies again: the operator's `tests/integration/main.rs` measured
//! what one binary instead of many saves). `cargo test -p sidecar-watch-index policies::`
//! runs a part.
//!
//! All of them pure, no cluster and no process: alerts going pending, firing and resolving as
//! Pods, policies and namespaces change (`lifecycle`), what one policy's change costs
//! (`policies`), and the incremental per-policy counts against a walk over every Pod after
//! any sequence of changes (`properties`). What the operator makes of the index (`/metrics`,
//! Events, policy status, the per-namespace policy limit) is tested in its
//! `tests/integration/index.rs` and `policy_limits.rs`.
//!
//! Support: the test kit, `sidecar_watch_testkit` (its Pod builder, and its `index` module,
//! feature `index`: Pods, policies and alert names, shared with the operator's tests of the
//! index).

mod lifecycle;
mod policies;
mod properties;
