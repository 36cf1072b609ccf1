//! What one policy's change costs the index: an edit re-evaluates the Pods that policy
//! selects (or selected) under that policy only, with the same result as evaluating
//! everything again. (`--max-policies-per-namespace`, the oldest policies of a namespace
//! evaluated and the rest held back, is tested with the held-back policy's status in the
//! operator's `tests/integration/policy_limits.rs`.)

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde_json::json;
use sidecar_watch_engine::{AlertName, AlertState, PodUid, PodUidBuf, PolicyRef, SidecarType};
use sidecar_watch_index::{Index, PolicyEntry, TransitionKind};

use sidecar_watch_index::Writes;
use sidecar_watch_testkit::index::{apply, now, pod, policy};

/// A policy selecting `app`, with the not-ready rule's `for` set to `minutes`.
fn selecting(app: &str, minutes: u32) -> serde_json::Value {
    json!({"selector": {"matchLabels": {"app": app}}, "rules": {"sidecarNotReady": {"for": format!("{minutes}m")}}})
}

/// Every Pod's results (policy, alerts) and sidecars, comparable across indexes.
fn state(index: &Index) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    index.for_each_pod(|p| {
        let results: Vec<String> = p.results.iter().map(|r| format!("{}: {:?}", r.policy_ref(), r.alerts)).collect();
        let sidecars: Vec<(&str, SidecarType)> =
            p.sidecar_containers().map(|(c, kind)| (c.name.as_str(), kind)).collect();
        out.insert(p.view().uid().to_string(), format!("{results:?} sidecars {sidecars:?}"));
    });
    out
}

fn shop_with_twenty_policies(index: &Index) {
    for i in 0..20 {
        apply(index, policy("shop", &format!("p{i:02}"), selecting("web", 5), Some(i)));
    }
    apply(index, policy("shop", "edited", selecting("db", 5), Some(30)));
    for i in 0..10 {
        index.apply_pod(pod("shop", &format!("web-{i}"), "web"), now());
        index.apply_pod(pod("shop", &format!("db-{i}"), "db"), now());
        index.apply_pod(pod("other", &format!("web-{i}"), "web"), now());
    }
}

/// 21 policies over 20 Pods of one namespace: an edit of the policy that selects the 10 db
/// Pods costs 10 evaluations (not 20 Pods × their policies); moving its selector to the web
/// Pods costs the 10 web Pods; deleting it costs none. After each, the index holds exactly
/// what evaluating everything from scratch gives.
#[test]
fn a_policy_edit_evaluates_only_its_own_pods_under_itself() {
    let index = Index::with_limits(32, 100);
    shop_with_twenty_policies(&index);
    let fresh = |policies: &[(PolicyRef, PolicyEntry)]| {
        let fresh = Index::with_limits(32, 100);
        for p in policies {
            apply(&fresh, p.clone());
        }
        for i in 0..10 {
            fresh.apply_pod(pod("shop", &format!("web-{i}"), "web"), now());
            fresh.apply_pod(pod("shop", &format!("db-{i}"), "db"), now());
            fresh.apply_pod(pod("other", &format!("web-{i}"), "web"), now());
        }
        state(&fresh)
    };
    let mut policies: Vec<(PolicyRef, PolicyEntry)> =
        (0..20).map(|i| policy("shop", &format!("p{i:02}"), selecting("web", 5), Some(i))).collect();

    let cost = |change: &dyn Fn()| {
        let before = index.evaluations();
        change();
        index.evaluations() - before
    };
    assert_eq!(cost(&|| drop(apply(&index, policy("shop", "edited", selecting("db", 7), Some(30))))), 10);
    policies.push(policy("shop", "edited", selecting("db", 7), Some(30)));
    assert_eq!(state(&index), fresh(&policies));

    assert_eq!(cost(&|| drop(apply(&index, policy("shop", "edited", selecting("web", 7), Some(30))))), 10);
    policies.pop();
    policies.push(policy("shop", "edited", selecting("web", 7), Some(30)));
    assert_eq!(state(&index), fresh(&policies));

    assert_eq!(cost(&|| drop(index.delete_policy(&PolicyRef::namespaced("shop", "edited"), now()))), 0);
    policies.pop();
    assert_eq!(state(&index), fresh(&policies));
    // A status-only update (same UID and generation: the API server bumps the generation on
    // every spec change) costs nothing; a new generation is evaluated again.
    let at_generation = |generation| {
        let (policy, mut entry) = policy("shop", "p00", selecting("web", 5), Some(0));
        (entry.generation, entry.uid) = (Some(generation), Some("p00-uid".into()));
        (policy, entry)
    };
    assert_eq!(cost(&|| drop(apply(&index, at_generation(2)))), 10);
    assert_eq!(cost(&|| drop(apply(&index, at_generation(2)))), 0);
    assert_eq!(cost(&|| drop(apply(&index, at_generation(3)))), 10);
}

/// An edit knows when its own alerts go firing, not when the other policies' do: it asks
/// for a wake-up no later than its own (an earlier timer stays), never replaces one.
#[test]
fn an_edit_asks_for_its_own_wake_up_only() {
    let index = Index::with_limits(32, 100);
    apply(&index, policy("shop", "slow", selecting("web", 30), Some(0)));
    index.apply_pod(pod("shop", "web-0", "web"), now());
    let outcome = apply(&index, policy("shop", "fast", selecting("web", 15), Some(1)));
    assert!(outcome.wakeups.is_empty(), "{:?}", outcome.wakeups);
    // Not ready since 10:00 (the Pod's start), for 15m: 10:15.
    let at: Timestamp = "2026-11-22T10:15:00Z".parse().expect("t");
    assert_eq!(outcome.wake_by, [(PodUidBuf::parse("shop-web-0"), at)]);
}

/// The Pod's sidecars are the union over its policies: a name only one policy gave goes
/// when that policy stops naming it, and comes back when it names it again.
#[test]
fn sidecars_follow_the_policy_that_names_them() {
    let index = Index::with_limits(32, 100);
    let names = |list: &[&str]| json!({"selector": {"matchLabels": {"app": "web"}}, "sidecars": {"names": list}});
    apply(&index, policy("shop", "mesh", json!({"selector": {"matchLabels": {"app": "web"}}}), Some(0)));
    apply(&index, policy("shop", "agents", names(&["log-agent"]), Some(1)));
    index.apply_pod(pod("shop", "web-0", "web"), now());
    let sidecars = || {
        index.with_pod(PodUid::parse("shop-web-0"), |p| {
            p.sidecar_containers().map(|(c, _)| c.name.to_string()).collect::<Vec<_>>()
        })
    };
    assert_eq!(sidecars(), Some(vec!["istio-proxy".to_string(), "log-agent".to_string()]));
    apply(&index, policy("shop", "agents", names(&["nothing-here"]), Some(1)));
    assert_eq!(sidecars(), Some(vec!["istio-proxy".to_string()]));
    apply(&index, policy("shop", "agents", names(&["log-agent"]), Some(1)));
    assert_eq!(sidecars(), Some(vec!["istio-proxy".to_string(), "log-agent".to_string()]));
    index.delete_policy(&PolicyRef::namespaced("shop", "agents"), now());
    assert_eq!(sidecars(), Some(vec!["istio-proxy".to_string()]));
}

/// The names of the Pods' firing `SidecarMissing` alerts and what `kind` of transitions
/// `outcome` holds for them, as `pod/container`.
fn missing(index: &Index, outcome: &sidecar_watch_index::Outcome, kind: TransitionKind) -> (Vec<String>, Vec<String>) {
    let firing = sidecar_watch_testkit::index::alert_names(index, AlertState::Firing)
        .into_iter()
        .filter(|n| n.ends_with(":SidecarMissing"))
        .collect();
    let mut moved: Vec<String> = outcome
        .transitions
        .iter()
        .filter(|t| t.kind == kind && t.alert.name == AlertName::SidecarMissing)
        .map(|t| format!("{}/{}", t.pod, t.alert.container))
        .collect();
    moved.sort();
    (firing, moved)
}

/// A stored `SidecarMissing` keeps no name of its own: the absent sidecar is a catalog entry
/// or a position in the raising policy's `spec.sidecars.required`. An edit that reorders that
/// list and swaps one entry names every alert as before, fires only the new requirement and
/// resolves only the dropped one: the old results are read through the policy they were
/// raised by, the new ones through the edit.
#[test]
fn a_missing_sidecar_keeps_its_name_through_an_edit_of_the_required_list() {
    let index = Index::new();
    let required =
        |names: &[&str]| json!({"selector": {"matchLabels": {"app": "web"}}, "sidecars": {"required": names}});
    let outcome = apply(&index, policy("shop", "mandate", required(&["vector", "linkerd", "istio"]), Some(0)));
    assert!(outcome.transitions.is_empty());
    let outcome = index.apply_pod(pod("shop", "web-0", "web"), now());
    // The Pod runs istio-proxy (catalog id `istio`): only the other two are missing.
    let (firing, fired) = missing(&index, &outcome, TransitionKind::Fired);
    assert_eq!(firing, ["web-0/linkerd-proxy:SidecarMissing", "web-0/vector:SidecarMissing"]);
    assert_eq!(fired, ["web-0/linkerd-proxy", "web-0/vector"]);

    let outcome = apply(&index, policy("shop", "mandate", required(&["audit-agent", "istio", "vector"]), Some(0)));
    let (firing, fired) = missing(&index, &outcome, TransitionKind::Fired);
    assert_eq!(firing, ["web-0/audit-agent:SidecarMissing", "web-0/vector:SidecarMissing"]);
    assert_eq!(fired, ["web-0/audit-agent"]);
    assert_eq!(missing(&index, &outcome, TransitionKind::Resolved).1, ["web-0/linkerd-proxy"]);
}
