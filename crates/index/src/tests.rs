//! The index on Pods built with the test kit.
use super::*;
use crate::Writes;
use sidecar_watch_api::{ClusterPolicySpec, SlimPod};
use sidecar_watch_testkit::pod::{Container, PodBuilder};

fn pod(uid: usize) -> PodView {
    let pod = PodBuilder::new("shop", &format!("pod-{uid}"))
        .uid(format!("u{uid}"))
        .label("app", "web")
        .container(Container::new("app", "shop/web:1.0"))
        .container(Container::new("log-sidecar", "fluent/fluent-bit:3.0").ready(false));
    PodView::from_pod(&pod.decode::<SlimPod>())
}

/// Deleted Pods and policies leave no counts behind in the segments.
#[test]
fn counts_go_with_their_pods() {
    let index = Index::new();
    let now: Timestamp = sidecar_watch_testkit::pod::CREATED.parse().expect("time");
    let spec: ClusterPolicySpec = serde_json::from_value(serde_json::json!({})).expect("spec");
    let compiled = CompiledPolicy::compile_cluster("all", &spec);
    index.apply_policy(PolicyRef::cluster("all"), PolicyEntry::new(compiled), now);
    for uid in 0..100 {
        index.apply_pod(pod(uid), now);
    }
    assert_eq!(index.policy_stats()[&PolicyRef::cluster("all")].matched_pods, 100);
    for uid in 0..50 {
        index.delete_pod(PodUid::parse(&format!("u{uid}")), now);
    }
    IndexResource::<Pods>::relisted(&index, &Some("shop".into()), &HashSet::new(), now);
    assert!(index.segments.iter().all(|s| s.lock().tallies.is_empty()));
    index.apply_pod(pod(1), now);
    index.delete_policy(&PolicyRef::cluster("all"), now);
    assert!(index.segments.iter().all(|s| s.lock().tallies.is_empty()));
    assert!(index.policy_stats().is_empty());
}

/// `shop/NAME` of StatefulSet `db`, created at `created`, with a ready native
/// `istio-proxy` of `proxyv2:TAG`.
fn db_pod(name: &str, tag: &str, created: &str) -> PodView {
    let pod = PodBuilder::new("shop", name)
        .uid(format!("u-{name}"))
        .created(created)
        .owner("StatefulSet", "db")
        .native_sidecar(Container::new("istio-proxy", &format!("docker.io/istio/proxyv2:{tag}")))
        .container(Container::new("db", "postgres:17"));
    PodView::from_pod(&pod.decode::<SlimPod>())
}

fn drift_transitions(outcome: &Outcome) -> Vec<(TransitionKind, String)> {
    let drift =
        outcome.transitions.iter().filter(|t| t.alert.name == sidecar_watch_engine::AlertName::SidecarVersionDrift);
    drift.map(|t| (t.kind, t.pod.clone())).collect()
}

/// A Pod on a new version makes the workload's other Pods behind; they fire when `for` has
/// passed since, and resolve when the new version's last Pod goes. Each change evaluates the
/// other Pods once, in the same call.
#[test]
fn pods_behind_their_workloads_newest_sidecar_fire_and_resolve_with_it() {
    let index = Index::new();
    let at = |t: &str| -> Timestamp { t.parse().expect("time") };
    let spec: ClusterPolicySpec = serde_json::from_value(serde_json::json!({})).expect("spec");
    let all = PolicyEntry::new(CompiledPolicy::compile_cluster("all", &spec));
    index.apply_policy(PolicyRef::cluster("all"), all, at("2025-06-03T10:00:00Z"));
    for name in ["db-0", "db-1"] {
        let outcome = index.apply_pod(db_pod(name, "1.24.2", "2025-06-03T10:00:00Z"), at("2025-06-03T10:05:00Z"));
        assert_eq!(drift_transitions(&outcome), []);
    }
    let before = index.evaluations();
    let outcome = index.apply_pod(db_pod("db-2", "1.25.0", "2025-06-03T10:20:00Z"), at("2025-06-03T11:30:00Z"));
    let fired = [(TransitionKind::Fired, "db-0".to_string()), (TransitionKind::Fired, "db-1".to_string())];
    let mut got = drift_transitions(&outcome);
    got.sort_by(|a, b| a.1.cmp(&b.1));
    assert_eq!(got, fired, "1h after the first Pod on 1.25.0, the Pods on 1.24.2 are behind");
    assert_eq!(index.evaluations() - before, 4, "db-2 once, then the three Pods of db again");
    // Another Pod on the new version changes nothing the others are compared with.
    let before = index.evaluations();
    index.apply_pod(db_pod("db-3", "1.25.0", "2025-06-03T11:31:00Z"), at("2025-06-03T11:31:00Z"));
    assert_eq!(index.evaluations() - before, 1);
    // The new version's Pods go (a rollback): one version again, nothing behind.
    index.delete_pod(PodUid::parse("u-db-3"), at("2025-06-03T11:32:00Z"));
    let outcome = index.delete_pod(PodUid::parse("u-db-2"), at("2025-06-03T11:33:00Z"));
    let mut got = drift_transitions(&outcome);
    got.sort_by(|a, b| a.1.cmp(&b.1));
    assert_eq!(got, [(TransitionKind::Resolved, "db-0".to_string()), (TransitionKind::Resolved, "db-1".to_string())]);
    let outcome = IndexResource::<Pods>::relisted(&index, &None, &HashSet::new(), at("2025-06-03T11:34:00Z"));
    assert_eq!(drift_transitions(&outcome), []);
    assert!(index.versions.lock().is_empty(), "no counts outlive their Pods");
}
