//! The index on its own: Pods, policies and namespace labels in, alerts going pending,
//! firing and resolving, transitions, wake-ups and counts out. What the operator makes of
//! them (`/metrics`, Events, policy status) is tested in its `tests/integration/index.rs`.

use std::collections::{BTreeMap, HashSet};

use sidecar_watch_api::ClusterPolicySpec;
use sidecar_watch_engine::{AlertName, AlertState, CompiledPolicy, NamespaceMeta, PodUid, PodUidBuf, PolicyRef};
use sidecar_watch_index::{Index, IndexResource, Pods, PolicyEntry, TransitionKind};

use sidecar_watch_index::Writes;
use sidecar_watch_testkit::index::{alert_names, mesh_policy, ts, web_pod};

#[test]
fn not_ready_sidecar_goes_pending_then_firing_then_resolves() {
    let index = Index::new();
    let (policy, e) = mesh_policy(serde_json::json!({"matchLabels": {"app": "web"}}));
    index.apply_policy(policy, e, ts("2026-11-22T10:00:00Z"));

    // One minute in: pending, with a wake-up exactly when the 2m rule fires.
    let outcome = index.apply_pod(web_pod("web-1", "u1", &[("app", "web")], false), ts("2026-11-22T10:01:00Z"));
    assert!(outcome.transitions.is_empty());
    assert_eq!(outcome.wakeups, vec![(PodUidBuf::parse("u1"), Some(ts("2026-11-22T10:02:00Z")))]);
    assert_eq!(
        alert_names(&index, AlertState::Pending),
        ["web-1/istio-proxy:MainContainerReadyButSidecarNot", "web-1/istio-proxy:SidecarContainerNotReady"]
    );

    // At the wake-up, MainContainerReadyButSidecarNot fires: one Fired transition.
    let outcome = index.reevaluate(PodUid::parse("u1"), ts("2026-11-22T10:02:00Z"));
    let fired: Vec<_> = outcome.transitions.iter().map(|t| (t.kind, t.alert.name)).collect();
    assert_eq!(fired, [(TransitionKind::Fired, AlertName::MainContainerReadyButSidecarNot)]);
    assert_eq!(outcome.wakeups, vec![(PodUidBuf::parse("u1"), Some(ts("2026-11-22T10:05:00Z")))]);

    // Evaluating again without change announces nothing new.
    assert!(index.reevaluate(PodUid::parse("u1"), ts("2026-11-22T10:03:00Z")).transitions.is_empty());

    // The sidecar becomes ready: the firing alert resolves, the pending one just goes.
    let outcome = index.apply_pod(web_pod("web-1", "u1", &[("app", "web")], true), ts("2026-11-22T10:04:00Z"));
    let resolved: Vec<_> = outcome.transitions.iter().map(|t| (t.kind, t.alert.name)).collect();
    assert_eq!(resolved, [(TransitionKind::Resolved, AlertName::MainContainerReadyButSidecarNot)]);
    assert!(alert_names(&index, AlertState::Pending).is_empty());
    assert!(alert_names(&index, AlertState::Firing).is_empty());
    // Nothing is pending any more: the 10:05 timer is dropped rather than left to fire.
    assert_eq!(outcome.wakeups, vec![(PodUidBuf::parse("u1"), None)]);
}

#[test]
fn status_only_policy_updates_do_not_reevaluate() {
    let index = Index::new();
    let now = ts("2026-11-22T10:10:00Z");
    let (policy, e) = mesh_policy(serde_json::json!({}));
    index.apply_policy(policy.clone(), e.clone(), now);
    index.apply_pod(web_pod("web-1", "u1", &[], false), now);
    // The same spec again (our own status write coming back through the watch).
    let outcome = index.apply_policy(policy, e, ts("2026-11-22T10:20:00Z"));
    assert!(outcome.wakeups.is_empty() && outcome.transitions.is_empty());
}

#[test]
fn cluster_policy_follows_namespace_labels() {
    let index = Index::new();
    let now = ts("2026-11-22T10:10:00Z");
    let spec: ClusterPolicySpec =
        serde_json::from_value(serde_json::json!({"namespaceSelector": {"matchLabels": {"mesh": "on"}}}))
            .expect("spec");
    let compiled = CompiledPolicy::compile_cluster("platform", &spec);
    let policy = PolicyRef::cluster("platform");
    index.apply_policy(policy.clone(), PolicyEntry::new(compiled), now);
    index.apply_namespace("shop", NamespaceMeta::default(), now);
    index.apply_pod(web_pod("web-1", "u1", &[], false), now);
    assert_eq!(index.policy_stats()[&policy].matched_pods, 0);

    let labels = BTreeMap::from([("mesh".to_string(), "on".to_string())]);
    let outcome = index.apply_namespace("shop", NamespaceMeta::new(labels, &BTreeMap::new()), now);
    assert_eq!(index.policy_stats()[&policy].matched_pods, 1);
    assert!(!outcome.transitions.is_empty(), "newly selected firing alerts are announced");
}

#[test]
fn relist_forgets_pods_that_vanished() {
    let index = Index::new();
    let now = ts("2026-11-22T10:10:00Z");
    index.apply_pod(web_pod("a", "u1", &[], true), now);
    index.apply_pod(web_pod("b", "u2", &[], true), now);
    let outcome = IndexResource::<Pods>::relisted(&index, &None, &HashSet::from([PodUidBuf::parse("u2")]), now);
    assert_eq!(outcome.wakeups, [(PodUidBuf::parse("u1"), None)]);
    assert_eq!(index.pod_uids(), HashSet::from([PodUidBuf::parse("u2")]));
}

/// Sidecar names per namespace are reported gone once the last Pod running them is deleted
/// or dropped by a relist, and not while another Pod still runs them.
#[test]
fn sidecar_names_go_with_their_last_pod() {
    let index = Index::new();
    let now = ts("2026-11-22T10:10:00Z");
    let (policy, e) = mesh_policy(serde_json::json!({}));
    index.apply_policy(policy, e, now);
    for i in 0..3 {
        index.apply_pod(web_pod(&format!("web-{i}"), &format!("u{i}"), &[], true), now);
    }
    assert!(index.take_gone_sidecar_names().is_empty());
    index.delete_pod(PodUid::parse("u0"), now);
    IndexResource::<Pods>::relisted(&index, &None, &HashSet::from([PodUidBuf::parse("u2")]), now);
    assert!(index.take_gone_sidecar_names().is_empty(), "u2 still runs istio-proxy");
    index.delete_pod(PodUid::parse("u2"), now);
    let gone: Vec<(String, String)> =
        index.take_gone_sidecar_names().into_iter().map(|(ns, c)| (ns.to_string(), c.to_string())).collect();
    assert_eq!(gone, [("shop".to_string(), "istio-proxy".to_string())]);
    assert!(index.take_gone_sidecar_names().is_empty(), "reported once");
}
