//! Table-driven tests of every rule and its boundaries: `for` (pending until exactly
//! since+for), restart thresholds and the (now-window, now] window, OOM windows, the exact
//! `next_change`, disabled rules, severity overrides, and history-driven cases where
//! [`PodHistory::observe`] watches a sequence of Pod states.
//!
//! One module per rule family; the helpers they share are here.

use jiff::Timestamp;
use sidecar_watch_engine::{AlertName, AlertState, Evaluation, PodView};
use sidecar_watch_engine::{ContainerStatusView, SpecFlags};
use sidecar_watch_testkit::engine::*;

/// The (name, container, state, since) of every alert.
fn brief(evaluation: &Evaluation) -> Vec<(AlertName, String, AlertState, Option<Timestamp>)> {
    evaluation.alerts.iter().map(|a| (a.name, a.container.clone(), a.state, a.since)).collect()
}

/// A Pod with a ready main container `app` (running since 10:00:01) and the sidecar `sidecar`.
fn with_main(sidecar: sidecar_watch_engine::ContainerView) -> PodView {
    pod(vec![sidecar, regular("app", running(at("10:00:01"), true))])
}

/// A native sidecar with a readiness probe and nothing that makes the kubelet wait for it (no
/// `startupProbe`, no `postStart` hook): the main containers start as soon as it runs.
fn unordered_native(name: &str, status: ContainerStatusView) -> sidecar_watch_engine::ContainerView {
    let mut sidecar = native(name, status);
    sidecar.spec_mut().flags.remove(SpecFlags::STARTUP_PROBE);
    sidecar
}

mod history;
mod instant;
mod overrides;
mod startup_order;
mod timing;
