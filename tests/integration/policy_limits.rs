//! What one namespace may declare, as the operator reports it: `--max-policies-per-namespace`
//! evaluates the oldest policies of a namespace and holds back the rest, whose status says
//! why. What one policy's change costs the index is tested in its crate,
//! `crates/index/tests/index/policies.rs`.

use serde_json::json;
use sidecar_watch::engine::PolicyRef;
use sidecar_watch::index::Index;

use sidecar_watch::index::Writes;
use sidecar_watch_testkit::index::{apply, now, pod, policy};

/// A policy selecting `app`, with the not-ready rule's `for` set to `minutes`.
fn selecting(app: &str, minutes: u32) -> serde_json::Value {
    json!({"selector": {"matchLabels": {"app": app}}, "rules": {"sidecarNotReady": {"for": format!("{minutes}m")}}})
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
