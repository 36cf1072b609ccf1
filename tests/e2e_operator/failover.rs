//! Failover without loss, on kube-apiserver: two replicas on real Leases, a stream of alert
//! transitions on three Pods, and the leader killed (SIGKILL: no release, no flush) three
//! times during it, a new replica started each time. Counted from the server's Events: every
//! transition is announced by exactly one Event, no Warning twice, no Resolved missing.

use std::time::{Duration, Instant};

use serde_json::json;
use sidecar_watch_harness::kubelet::PodDriver;

use crate::support::*;

/// Each Pod's sidecar is not ready for `HOLD`, then ready for `HOLD`, `CYCLES` times. `HOLD`
/// is longer than a takeover (a 3 s Lease: the standby leads within ~4 s), so every state
/// lasts until a leader sees it: a state that begins and ends while nobody leads cannot be
/// announced by anyone, and is not what this test is about.
const HOLD: Duration = Duration::from_secs(7);
const CYCLES: u32 = 3;
const PODS: [&str; 3] = ["p0", "p1", "p2"];

async fn leads(op: &Operator) -> bool {
    op.scrape().await.ok().and_then(|s| s.value("sidecar_watch_leader", &[])) == Some(1.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_transition_is_announced_once_across_three_leader_kills() {
    let c = Cluster::start("failover").await;
    c.apply_app_policy("mesh", "web", json!({"sidecarNotReady": {"for": "1s", "severity": "warning"}})).await;
    let args = ["--leader-elect=true", "--lease-duration", "3s"];
    let mut replicas = vec![Operator::start(&c, "op-0", &args).await, Operator::start(&c, "op-1", &args).await];
    let mut next_identity = 2;
    let mut drivers = Vec::new();
    for name in PODS {
        let pod = c.create_pod(native_pod(name, "web", "app", "istio-proxy")).await;
        drive(&pod, &[("app", true), ("istio-proxy", true)]).await;
        drivers.push(pod);
    }

    // The Pods' cycles, staggered by a third of HOLD so that transitions keep coming.
    let stream = {
        let drivers: Vec<PodDriver> = drivers.clone();
        tokio::spawn(async move {
            let start = Instant::now();
            let step = HOLD / 3;
            for cycle in 0..CYCLES {
                for ready in [false, true] {
                    for (i, pod) in drivers.iter().enumerate() {
                        let at = HOLD * (2 * cycle + u32::from(ready)) + step * i as u32;
                        tokio::time::sleep_until((start + at).into()).await;
                        set_ready(pod, "istio-proxy", ready).await;
                    }
                }
            }
        })
    };

    // Kill whoever leads three times during the stream, each time starting a new replica.
    for kill in 0..3 {
        tokio::time::sleep(HOLD * 2 - Duration::from_secs(1)).await;
        let mut leader = None;
        for (i, op) in replicas.iter().enumerate() {
            if leads(op).await {
                leader = Some(i);
            }
        }
        let leader = leader.unwrap_or_else(|| panic!("kill {kill}: no replica leads"));
        replicas[leader].kill9().await;
        replicas.remove(leader);
        replicas.push(Operator::start(&c, &format!("op-{next_identity}"), &args).await);
        next_identity += 1;
    }
    stream.await.expect("the transitions were all written");

    // Settled: everything resolved, each Pod announced CYCLES times each way.
    for name in PODS {
        c.wait_events(name, "Normal", "SidecarContainerNotReadyResolved", CYCLES).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let events = c.events().await;
    for name in PODS {
        assert_eq!(
            count_events(&events, name, "Warning", "SidecarContainerNotReady"),
            CYCLES,
            "{name}: one Warning per time its sidecar stopped being ready: {}",
            describe_events(&events)
        );
        assert_eq!(
            count_events(&events, name, "Normal", "SidecarContainerNotReadyResolved"),
            CYCLES,
            "{name}: one Resolved per recovery: {}",
            describe_events(&events)
        );
    }
}
