//! What one policy's change costs the index, and what one namespace may declare: an edit
//! re-evaluates the Pods that policy selects (or selected) under that policy only, with the
//! same result as evaluating everything again; `--max-policies-per-namespace` evaluates the
//! oldest policies of a namespace and holds back the rest.

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde_json::json;
use sidecar_watch::api::{PolicySpec, SlimPod};
use sidecar_watch::engine::{CompiledPolicy, PodView, PolicyRef, SidecarType};
use sidecar_watch::index::{Index, PolicyEntry};

const NOW: &str = "2026-11-22T10:10:00Z";

fn now() -> Timestamp {
    NOW.parse().expect("timestamp")
}

/// A Pod with a native `istio-proxy` that is not ready and a legacy `log-agent`.
fn pod(namespace: &str, name: &str, app: &str) -> PodView {
    let pod: SlimPod = serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": namespace, "uid": format!("{namespace}-{name}"),
                     "labels": {"app": app}, "creationTimestamp": "2026-11-22T10:00:00Z"},
        "spec": {
            "initContainers": [{"name": "istio-proxy", "image": "istio/proxyv2:1.22.0", "restartPolicy": "Always"}],
            "containers": [{"name": "app", "image": "shop/web:1.0"}, {"name": "log-agent", "image": "corp/agent:2"}]
        },
        "status": {
            "startTime": "2026-11-22T10:00:00Z",
            "initContainerStatuses": [{"name": "istio-proxy", "ready": false, "restartCount": 0, "started": true,
                                       "image": "", "imageID": "", "state": {"running": {"startedAt": "2026-11-22T10:00:00Z"}}}],
            "containerStatuses": [
                {"name": "app", "ready": true, "restartCount": 0, "image": "", "imageID": "",
                 "state": {"running": {"startedAt": "2026-11-22T10:00:00Z"}}},
                {"name": "log-agent", "ready": false, "restartCount": 0, "image": "", "imageID": "",
                 "state": {"running": {"startedAt": "2026-11-22T10:00:00Z"}}}]
        }
    }))
    .expect("valid Pod");
    PodView::from_pod(&pod)
}

/// A SidecarPolicy `namespace/name` with `spec`, created at minute `created` (if any).
fn policy(namespace: &str, name: &str, spec: serde_json::Value, created: Option<i64>) -> (PolicyRef, PolicyEntry) {
    let parsed: PolicySpec = serde_json::from_value(spec.clone()).expect("spec");
    let policy = PolicyRef::namespaced(namespace, name);
    let mut entry = PolicyEntry::new(CompiledPolicy::compile(policy.clone(), &parsed), spec);
    entry.created =
        created.map(|m| "2026-11-22T09:00:00Z".parse::<Timestamp>().expect("t") + jiff::SignedDuration::from_mins(m));
    (policy, entry)
}

fn apply(index: &Index, (policy, entry): (PolicyRef, PolicyEntry)) -> sidecar_watch::index::Outcome {
    index.apply_policy(policy, entry, now())
}

/// A policy selecting `app`, with the not-ready rule's `for` set to `minutes`.
fn selecting(app: &str, minutes: u32) -> serde_json::Value {
    json!({"selector": {"matchLabels": {"app": app}}, "rules": {"sidecarNotReady": {"for": format!("{minutes}m")}}})
}

/// Every Pod's results (policy, alerts) and sidecars, comparable across indexes.
fn state(index: &Index) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    index.for_each_pod(|p| {
        let results: Vec<String> = p.results.iter().map(|r| format!("{}: {:?}", r.policy, r.alerts)).collect();
        let sidecars: Vec<(&str, SidecarType)> =
            p.sidecar_containers().map(|(c, kind)| (c.name.as_str(), kind)).collect();
        out.insert(p.view.uid().to_string(), format!("{results:?} sidecars {sidecars:?}"));
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
    // A status-only update (same spec) costs nothing.
    assert_eq!(cost(&|| drop(apply(&index, policy("shop", "p00", selecting("web", 5), Some(0))))), 0);
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
    assert_eq!(outcome.wake_by, [("shop-web-0".to_string(), at)]);
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
        index.with_pod("shop-web-0", |p| p.sidecar_containers().map(|(c, _)| c.name.to_string()).collect::<Vec<_>>())
    };
    assert_eq!(sidecars(), Some(vec!["istio-proxy".to_string(), "log-agent".to_string()]));
    apply(&index, policy("shop", "agents", names(&["nothing-here"]), Some(1)));
    assert_eq!(sidecars(), Some(vec!["istio-proxy".to_string()]));
    apply(&index, policy("shop", "agents", names(&["log-agent"]), Some(1)));
    assert_eq!(sidecars(), Some(vec!["istio-proxy".to_string(), "log-agent".to_string()]));
    index.delete_policy(&PolicyRef::namespaced("shop", "agents"), now());
    assert_eq!(sidecars(), Some(vec!["istio-proxy".to_string()]));
}

/// Limit 2: of three policies (arriving newest first), the two oldest are evaluated; the
/// newest is held back (evaluates nothing, counts nothing, its edits are counted as
/// limited and cost nothing) until an older one goes. Other namespaces have their own 2.
#[test]
fn the_oldest_policies_of_a_namespace_are_evaluated_up_to_the_limit() {
    let index = Index::with_limits(32, 2);
    for i in 0..5 {
        index.apply_pod(pod("shop", &format!("web-{i}"), "web"), now());
        index.apply_pod(pod("other", &format!("web-{i}"), "web"), now());
    }
    let newest = apply(&index, policy("shop", "c-newest", selecting("web", 5), Some(3)));
    assert_eq!(newest.limited_policies, 0, "alone, it is within the limit");
    apply(&index, policy("shop", "b-oldest", selecting("web", 5), Some(1)));
    let third = apply(&index, policy("shop", "a-middle", selecting("web", 5), Some(2)));
    assert_eq!(third.limited_policies, 1, "c-newest is held back now");
    for i in 0..3 {
        apply(&index, policy("other", &format!("o{i}"), selecting("web", 5), Some(i)));
    }
    let held_back = |name: &str| index.policies()[&PolicyRef::namespaced("shop", name)].held_back;
    assert_eq!((held_back("a-middle"), held_back("b-oldest"), held_back("c-newest")), (None, None, Some(2)));
    let matched = |ns: &str, name: &str| index.policy_stats()[&PolicyRef::namespaced(ns, name)].matched_pods;
    assert_eq!((matched("shop", "a-middle"), matched("shop", "b-oldest"), matched("shop", "c-newest")), (5, 5, 0));
    assert_eq!((matched("other", "o0"), matched("other", "o1"), matched("other", "o2")), (5, 5, 0));

    // Its status says why, and counts nothing.
    let newest = PolicyRef::namespaced("shop", "c-newest");
    let stats = index.policy_stats();
    let status = sidecar_watch::controller::status::desired_status(
        &index.policies()[&newest],
        &stats[&newest],
        Default::default(),
    );
    let ready = &status.conditions[0];
    assert_eq!((ready.status.as_str(), ready.reason.as_str()), ("False", "TooManyPolicies"));
    assert_eq!(
        ready.message,
        "Not evaluated: the namespace has more than 2 SidecarPolicies (--max-policies-per-namespace); the 2 oldest are evaluated"
    );
    assert_eq!(status.counts.matched_pods, 0);

    // Editing the held-back policy is counted and evaluates nothing.
    let before = index.evaluations();
    let edit = apply(&index, policy("shop", "c-newest", selecting("web", 9), Some(3)));
    assert_eq!((edit.limited_policies, index.evaluations() - before), (1, 0));

    // The oldest goes: the held-back one is evaluated now, under itself only.
    let before = index.evaluations();
    index.delete_policy(&PolicyRef::namespaced("shop", "b-oldest"), now());
    assert_eq!(index.evaluations() - before, 5);
    assert_eq!(held_back("c-newest"), None);
    assert_eq!(matched("shop", "c-newest"), 5);
}
