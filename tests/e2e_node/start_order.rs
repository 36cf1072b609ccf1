//! The findings table of the seed article "Start Sidecar First", on the real kubelet: how a
//! native sidecar is declared decides whether the kubelet makes the main container wait.
//!
//! | the sidecar has              | the kubelet                          | reported                         |
//! | ---------------------------- | ------------------------------------ | -------------------------------- |
//! | only a `readinessProbe`      | starts main at once, sidecar unready | `MainStartedBeforeSidecarReady`  |
//! | only a `livenessProbe`       | counts it ready as soon as it runs   | nothing about order              |
//! | a `startupProbe`             | waits for it before starting main    | nothing                          |
//! | a blocking `postStart` hook  | waits for the hook                   | nothing                          |
//!
//! Each row is played by two Pods, in every run: an order the kubelet did not record is never
//! reported (the defect a first real-kubelet run found: a `startupProbe`-gated sidecar
//! reported "became ready 0s later" in one run of two).

use std::time::Duration;

use serde_json::json;

use crate::support::{container, native, pod, probe, Scenario};

/// The sidecar becomes ready 10 s after it starts (a file its probes look for). The order is
/// only on record if the kubelet writes one status between the main container's start and the
/// sidecar's first successful probe: with 3 s, the 1.34.12 kubelet wrote none for one Pod of
/// eight in the official CI (two node tests at once on 2 cores).
const SLOW_START: &str = "sleep 10; touch /tmp/ready; exec sleep 3600";
const READY: &str = "test -e /tmp/ready";

#[tokio::test(flavor = "multi_thread")]
async fn start_order_follows_the_seed_articles_table() {
    let s = Scenario::start("node-start-order").await;
    // Patient enough for the 10 s start (the default 3 failures would restart it).
    let mut startup_probe = probe(READY);
    startup_probe["failureThreshold"] = json!(30);
    let rows = [
        ("readiness", json!({"readinessProbe": probe(READY)})),
        ("liveness", json!({"livenessProbe": probe("true")})),
        ("startup", json!({"startupProbe": startup_probe, "readinessProbe": probe(READY)})),
        (
            "poststart",
            json!({"lifecycle": {"postStart": {"exec": {"command": ["sh", "-c", "sleep 3; touch /tmp/ready"]}}},
                   "readinessProbe": probe(READY)}),
        ),
    ];
    for (row, extra) in &rows {
        for run in 1..=2 {
            let script = if *row == "poststart" { "exec sleep 3600" } else { SLOW_START };
            s.apply(pod(
                &format!("{row}-{run}"),
                vec![native("proxy", script, extra.clone())],
                vec![container("app", "exec sleep 3600", json!({}))],
            ))
            .await;
        }
    }
    let proxy = "spec.initContainers{proxy}";
    s.expect_warnings(
        Duration::from_secs(120),
        Duration::from_secs(15),
        &[
            ("MainStartedBeforeSidecarReady", "readiness-1", proxy),
            ("MainStartedBeforeSidecarReady", "readiness-2", proxy),
        ],
    )
    .await;
}
