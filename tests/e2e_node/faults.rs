//! Faults of the node and of the operator in the middle of the scenarios: the kubelet and
//! containerd restarted (the containers keep running; the kubelet reports their status
//! again), the leading operator Pod deleted (the other replica takes the Lease), and the Node
//! going NotReady. No false alert, no lost alert, no duplicate Event.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node as NodeObject, Pod};
use kube::api::Api;
use serde_json::json;
use sidecar_watch_harness::env::wait_until;

use crate::support::{container, healthy, native, node, pod, probe, Scenario, RELEASE_NAMESPACE};

const MINUTE: Duration = Duration::from_secs(60);

fn never_ready(name: &str) -> serde_json::Value {
    pod(
        name,
        vec![native("proxy", "exec sleep 3600", json!({"readinessProbe": probe("false")}))],
        vec![container("app", "exec sleep 3600", json!({}))],
    )
}

const NEVER_READY: [&str; 3] =
    ["SidecarContainerNotReady", "MainContainerReadyButSidecarNot", "MainStartedBeforeSidecarReady"];

fn expected(pods: &[&str]) -> Vec<(&'static str, String, &'static str)> {
    pods.iter()
        .flat_map(|p| NEVER_READY.iter().map(move |r| (*r, p.to_string(), "spec.initContainers{proxy}")))
        .collect()
}

async fn expect(s: &Scenario, pods: &[&str], settle: Duration) {
    let want = expected(pods);
    let want: Vec<(&str, &str, &str)> = want.iter().map(|(r, p, c)| (*r, p.as_str(), *c)).collect();
    s.expect_warnings(2 * MINUTE, settle, &want).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn kubelet_containerd_and_operator_restarts_lose_and_repeat_nothing() {
    let s = Scenario::exclusive("node-faults").await;
    let node = node();
    s.apply(never_ready("broken")).await;
    s.apply(healthy("fine")).await;
    expect(&s, &["broken"], Duration::from_secs(5)).await;
    let before = s.event_counts().await;
    assert!(before.values().all(|&n| n == 1), "one Event per transition: {before:?}");

    for component in ["kubelet", "containerd"] {
        node.restart(component).await.unwrap_or_else(|e| panic!("restart {component}: {e}"));
        // The kubelet re-reports every status after its restart (and after containerd's).
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert_eq!(s.event_counts().await, before, "after restarting {component}: no Event lost, repeated or resolved");
    }

    // The leader's Pod deleted: the other replica takes the Lease and goes on.
    let leases: Api<Lease> = Api::namespaced(s.env.client.clone(), RELEASE_NAMESPACE);
    let holder = |lease: Lease| lease.spec.and_then(|sp| sp.holder_identity).unwrap_or_default();
    let leader = holder(leases.get("sidecar-watch").await.expect("lease"));
    let operators: Api<Pod> = Api::namespaced(s.env.client.clone(), RELEASE_NAMESPACE);
    operators.delete(&leader, &Default::default()).await.expect("leader deleted");
    wait_until(MINUTE, "another replica holds the Lease", || async {
        let now = holder(leases.get("sidecar-watch").await.map_err(|e| e.to_string())?);
        if !now.is_empty() && now != leader {
            Ok(())
        } else {
            Err(format!("holder {now}"))
        }
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs(20)).await;
    assert_eq!(s.event_counts().await, before, "after the leader's Pod was deleted");

    // Nothing lost: a new failure is still reported, once.
    s.apply(never_ready("broken-later")).await;
    expect(&s, &["broken", "broken-later"], Duration::from_secs(10)).await;
    assert!(s.event_counts().await.values().all(|&n| n == 1), "one Event per transition");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_gone_not_ready_is_not_every_sidecar_failing() {
    let s = Scenario::exclusive("node-not-ready").await;
    let node = node();
    s.apply(healthy("fine")).await;
    s.expect_warnings(MINUTE, Duration::from_secs(10), &[]).await;
    let nodes: Api<NodeObject> = Api::all(s.env.client.clone());
    let ready = |n: NodeObject| {
        n.status
            .and_then(|st| st.conditions)
            .and_then(|cs| cs.into_iter().find(|c| c.type_ == "Ready"))
            .map(|c| c.status)
            .unwrap_or_default()
    };
    node.stop("kubelet").await.expect("kubelet stopped");
    let name = node.info().node.clone();
    let outage = wait_until(2 * MINUTE, "the Node NotReady", || async {
        let status = ready(nodes.get(&name).await.map_err(|e| e.to_string())?);
        if status != "True" {
            Ok(())
        } else {
            Err(status)
        }
    })
    .await;
    // Longer than the policy's 30 s `for`, then the kubelet is back.
    tokio::time::sleep(Duration::from_secs(45)).await;
    node.start_component("kubelet").await.expect("kubelet started");
    outage.unwrap();
    wait_until(2 * MINUTE, "the Node Ready again", || async {
        let status = ready(nodes.get(&name).await.map_err(|e| e.to_string())?);
        if status == "True" {
            Ok(())
        } else {
            Err(status)
        }
    })
    .await
    .unwrap();
    s.expect_warnings(Duration::from_secs(5), Duration::from_secs(20), &[]).await;
}
