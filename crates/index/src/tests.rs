//! The index on Pods built with the test kit.
use super::*;
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
    index.apply_policy(PolicyRef::cluster("all"), PolicyEntry::new(compiled, serde_json::Value::Null), now);
    for uid in 0..100 {
        index.apply_pod(pod(uid), now);
    }
    assert_eq!(index.policy_stats()[&PolicyRef::cluster("all")].matched_pods, 100);
    for uid in 0..50 {
        index.delete_pod(&format!("u{uid}"));
    }
    index.retain_pods(Some("shop"), &HashSet::new());
    assert!(index.segments.iter().all(|s| lock(s).tallies.is_empty()));
    index.apply_pod(pod(1), now);
    index.delete_policy(&PolicyRef::cluster("all"), now);
    assert!(index.segments.iter().all(|s| lock(s).tallies.is_empty()));
    assert!(index.policy_stats().is_empty());
}
