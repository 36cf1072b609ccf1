//! The engine's tests beyond its unit tests, in one test binary (each test binary links the
//! crate and its dependencies again: the operator's `tests/integration/main.rs` measured
//! what one binary instead of many saves). `cargo test -p sidecar-watch-engine rules::` runs
//! a part.
//!
//! All of them pure, no cluster and no process: every rule and its boundaries on Pod views
//! built in code (`rules`), the seed scenarios (`scenarios`), Pods as Kubernetes 1.33-1.37
//! runs them (`kubelet`), what the engine reads from a Pod's spec (`spec`), the sidecars' own signals switched off (`signals`), and properties of
//! `evaluate` over arbitrary views, histories and policies (`properties`).
//!
//! Support: the test kit, `sidecar_watch_testkit` (its `scenario` module: the seed scenarios;
//! its `engine` module, feature `engine`: views, times and policies, which the operator's
//! `tests/integration/` uses too).

mod cronjob;
mod kubelet;
mod properties;
mod rules;
mod scenarios;
mod signals;
mod spec;
