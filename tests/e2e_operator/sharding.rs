//! Sharding: three shards together produce exactly the alerts, series, Events and status of
//! one unsharded replica on the same scenario, a shard that dies and comes back loses
//! nothing, and one shard judges a workload's rollout from all its Pods.

use std::time::Duration;

use serde_json::json;
use sidecar_watch::index::shard::shard_of;
use sidecar_watch_harness::env::wait_until;

use crate::support::*;
use crate::workload_events::{
    deployment_with_replica_set, replica_pod, replica_set, revision_pod, workload_events, NEW_HASH,
};

const PODS: usize = 9;

/// Nine Pods, every other one with a sidecar that is not ready.
async fn scenario(c: &Cluster) -> Vec<(String, sidecar_watch_harness::kubelet::PodDriver)> {
    c.apply_app_policy("mesh", "web", json!({"sidecarNotReady": {"for": "1s", "severity": "warning"}})).await;
    let mut pods = Vec::new();
    for i in 0..PODS {
        let name = format!("web-{i}");
        let pod = c.create_pod(native_pod(&name, "web", "app", "istio-proxy")).await;
        drive(&pod, &[("app", true), ("istio-proxy", i % 2 == 1)]).await;
        pods.push((name, pod));
    }
    pods
}

/// Alert and container series with the test namespace taken out, so that two clusters
/// compare equal.
fn normalized(scrapes: &[Scrape], ns: &str) -> Vec<String> {
    let mut out: Vec<String> = scrapes
        .iter()
        .flat_map(|s| s.pod_series())
        .filter(|line| !line.starts_with("sidecar_policy_pods"))
        .map(|line| line.replace(ns, "NS"))
        .collect();
    out.sort();
    out
}

fn not_ready_alerts(ns: &str, pods: impl Iterator<Item = usize>) -> Vec<Labels> {
    sorted(
        pods.filter(|i| i % 2 == 0)
            .map(|i| AlertSeries { namespace: ns, pod: &format!("web-{i}"), ..MESH_NOT_READY }.labels())
            .collect(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_shards_equal_one_replica_and_survive_a_shard_restart() {
    // The reference: one unsharded replica on its own cluster.
    let single = Cluster::start("unsharded").await;
    let _single_pods = scenario(&single).await;
    let reference = Operator::start(&single, "single", &["--leader-elect=false"]).await;
    let expected_alerts = not_ready_alerts(&single.ns, 0..PODS);
    let reference_scrape = reference.wait_alerts("the unsharded replica's alerts", expected_alerts).await;
    let reference_series = normalized(&[reference_scrape], &single.ns);
    single
        .wait_status("mesh", "unsharded counts", |s| {
            status_counts(s, PODS as u64, 5, json!({"SidecarContainerNotReady": 5}), 0)
        })
        .await;

    // Three shards, each with its own lease, on a second cluster with the same scenario.
    let c = Cluster::start("sharded").await;
    let ns = c.ns.clone();
    let pods = scenario(&c).await;
    let mut shards = three_shards(&c).await;
    // A Pod without owner is its own workload (`Pod/<name>`).
    let owner = |i: usize| shard_of(&ns, "Pod", &format!("web-{i}"), 3) as usize;

    let scrapes = wait_until(WAIT, "the shards together export the reference series", || async {
        let mut scrapes = Vec::new();
        for (index, op) in shards.iter().enumerate() {
            let s = op.scrape().await?;
            // Each shard exports only its own Pods.
            for a in s.alerts() {
                let pod: usize = a["pod"].trim_start_matches("web-").parse().map_err(|e| format!("{e}"))?;
                if owner(pod) != index {
                    return Err(format!("shard {index} exports Pod {pod} of shard {}", owner(pod)));
                }
            }
            scrapes.push(s);
        }
        let got = normalized(&scrapes, &ns);
        if got == reference_series {
            Ok(scrapes)
        } else {
            Err(format!("got {got:#?}\nwant {reference_series:#?}"))
        }
    })
    .await
    .unwrap();
    drop(scrapes);

    // One Warning per firing alert, as from the single replica; status sums all shards.
    for i in (0..PODS).filter(|i| i % 2 == 0) {
        c.wait_events(&format!("web-{i}"), "Warning", "SidecarContainerNotReady", 1).await;
    }
    // Every shard writes its entry, also one that owns no Pod; the sums cover all three.
    c.wait_status("mesh", "one entry per shard, summed", |s| {
        status_counts(s, PODS as u64, 5, json!({"SidecarContainerNotReady": 5}), 0)?;
        for index in 0..3 {
            let owned = (0..PODS).filter(|i| owner(*i) == index).count() as u64;
            let entry = &s["shards"][index.to_string()];
            if entry["matchedPods"].as_u64() != Some(owned) || entry["shardCount"] != 3 {
                return Err(format!("shard {index} owns {owned} Pods but its entry is {entry}"));
            }
        }
        Ok(())
    })
    .await;
    let table = c.env.kubectl(["get", "scp", "-n", &ns, "mesh", "--no-headers"]).await.expect("kubectl get scp");
    let columns: Vec<&str> = table.split_whitespace().collect();
    assert_eq!(&columns[..4], ["mesh", "9", "5", "True"], "{table}");

    // Kill the shard that owns web-0; while it is down web-0's sidecar recovers.
    let victim = owner(0);
    shards[victim].kill9().await;
    set_ready(&pods[0].1, "istio-proxy", true).await;
    let args =
        ["--leader-elect=true", "--lease-duration", "3s", "--shard-count", "3", "--shard-index", &victim.to_string()];
    shards[victim] = Operator::start(&c, &format!("shard-{victim}-again"), &args).await;

    // Back: the alert is gone, announced as resolved exactly once, and counts follow.
    let expected = not_ready_alerts(&ns, (0..PODS).filter(|i| *i != 0 && owner(*i) == victim));
    shards[victim].wait_alerts("the restarted shard's alerts", expected).await;
    c.wait_events("web-0", "Normal", "SidecarContainerNotReadyResolved", 1).await;
    c.wait_status("mesh", "counts after the shard came back", |s| {
        status_counts(s, PODS as u64, 4, json!({"SidecarContainerNotReady": 4}), 0)
    })
    .await;
    for i in (0..PODS).filter(|i| i % 2 == 0) {
        assert_eq!(c.event_count(&format!("web-{i}"), "Warning", "SidecarContainerNotReady").await, 1, "web-{i}");
    }
}

/// Three shards, one `--shard-index` each.
async fn three_shards(c: &Cluster) -> Vec<Operator> {
    let mut shards = Vec::new();
    for index in 0..3 {
        let index = index.to_string();
        let args = ["--leader-elect=true", "--lease-duration", "3s", "--shard-count", "3", "--shard-index", &index];
        shards.push(Operator::start(c, &format!("shard-{index}"), &args).await);
    }
    shards
}

/// A Deployment's rollout over three shards: its Pods, old and new, are all on the shard its
/// workload hashes to, whatever their UIDs, and that shard alone judges the rollout from all
/// of them: one `RolloutBlockedBySidecar` series, one Warning, then one Resolved once the
/// new Pods' sidecars are ready. (By Pod UID, the three new Pods would spread over the
/// shards and each shard holding one would report the rollout, as blocked by the Pods it sees.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_shard_judges_a_deployments_rollout_from_all_its_pods() {
    let c = Cluster::start("sharded-rollout").await;
    let fast = json!({"for": "1s"});
    c.apply_policy("mesh", json!({"rules": rules(json!({"sidecarNotReady": fast, "rolloutBlocked": fast}))})).await;
    let (api_uid, old_owner) = deployment_with_replica_set(&c, "api").await;
    for i in 0..3 {
        let pod = c.create_pod(replica_pod(&format!("api-old-{i}"), "api", &old_owner)).await;
        drive(&pod, &[("app", true), ("istio-proxy", true)]).await;
    }
    // The newest revision is the one whose first Pod was created last (whole seconds; the
    // Deployment here has no controller to number its ReplicaSets).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let new_owner = replica_set(&c, "api", &api_uid, NEW_HASH).await;
    let mut new_pods = Vec::new();
    for i in 0..3 {
        let pod = c.create_pod(revision_pod(&format!("api-new-{i}"), "api", &new_owner, NEW_HASH)).await;
        drive(&pod, &[("app", true), ("istio-proxy", false)]).await;
        new_pods.push(pod);
    }
    let shards = three_shards(&c).await;
    let owner = shard_of(&c.ns, "Deployment", "api", 3) as usize;

    let blocked = |labels: &Labels| labels.get("alertname").map(String::as_str) == Some("RolloutBlockedBySidecar");
    wait_until(WAIT, "the owning shard alone reports the rollout and all six Pods", || async {
        for (index, op) in shards.iter().enumerate() {
            let alerts = op.scrape().await?.alerts();
            let (rollouts, pods) = (alerts.iter().filter(|a| blocked(a)).count(), alerts.len());
            match (index == owner, rollouts, pods) {
                // Three `SidecarContainerNotReady`, one per new Pod, and the rollout.
                (true, 1, 4) | (false, 0, 0) => {}
                _ => return Err(format!("shard {index} (owner {owner}) exports {alerts:#?}")),
            }
        }
        Ok(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", shards[owner].log()));
    c.wait_events("api", "Warning", "RolloutBlockedBySidecar", 1).await;

    for pod in &new_pods {
        set_ready(pod, "istio-proxy", true).await;
    }
    c.wait_events("api", "Normal", "RolloutBlockedBySidecarResolved", 1).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        workload_events(&c, "api", &api_uid, "RolloutBlockedBySidecar").await,
        (1, 1),
        "one Warning, one Resolved"
    );
    for op in &shards {
        assert!(op.scrape().await.expect("a scrape").alerts().is_empty(), "{}", op.log());
    }
}
