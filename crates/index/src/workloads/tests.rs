//! Workload alerts: selected as the workload's Pods would be, pending then firing on the
//! rule's `for`, resolved by the runtime (never by a Pod the workload creates), bounded per
//! namespace.

use std::collections::BTreeMap;

use jiff::Timestamp;
use sidecar_watch_api::{ClusterPolicySpec, PolicySpec, SlimPod};
use sidecar_watch_engine::{AlertName, AlertState, CompiledPolicy, PodView, PolicyRef, WorkloadId, WorkloadKind};
use sidecar_watch_testkit::pod::{Container, PodBuilder};

use crate::Writes;
use crate::{Condition, Index, PolicyEntry, TransitionKind, MAX_PER_NAMESPACE};

fn at(t: &str) -> Timestamp {
    t.parse().expect("time")
}

fn web() -> WorkloadId {
    WorkloadId { namespace: "shop".into(), kind: WorkloadKind::Deployment, name: "web".into() }
}

fn failure(labels: Option<&[(&str, &str)]>) -> Condition {
    Condition {
        container: "istio-proxy".into(),
        container_kind: None,
        catalog: None,
        since: at("2026-01-01T10:00:00Z"),
        latest: at("2026-01-01T10:00:30Z"),
        message: "webhook down".into(),
        object_uid: Some("uid-web".into()),
        template_labels: labels.map(|l| l.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
    }
}

fn index_with(policies: &[(PolicyRef, serde_json::Value)]) -> Index {
    let index = Index::new();
    for (policy, spec) in policies {
        let compiled = match &policy.namespace {
            Some(ns) => {
                let spec: PolicySpec = serde_json::from_value(spec.clone()).expect("spec");
                CompiledPolicy::compile(PolicyRef::namespaced(ns.clone(), policy.name.clone()), &spec)
            }
            None => {
                let spec: ClusterPolicySpec = serde_json::from_value(spec.clone()).expect("spec");
                CompiledPolicy::compile_cluster(&policy.name, &spec)
            }
        };
        index.apply_policy(policy.clone(), PolicyEntry::new(compiled), at("2026-01-01T09:00:00Z"));
    }
    index
}

fn states(index: &Index) -> Vec<(String, AlertName, AlertState)> {
    let mut out = Vec::new();
    index.for_each_workload_alert(|a| out.push((a.policy.name.clone(), a.alert.name, a.alert.state)));
    out
}

fn pod_of_web(created: &str) -> PodView {
    let pod = PodBuilder::new("shop", "web-7d9f8c6b5-abcde")
        .uid("u1")
        .created(created)
        .label("pod-template-hash", "7d9f8c6b5")
        .owner("ReplicaSet", "web-7d9f8c6b5")
        .container(Container::new("app", "shop/web:1.0"));
    PodView::from_pod(&pod.decode::<SlimPod>())
}

/// Pending until `for` has passed since the first failure, then firing on a tick; no Pod of
/// the workload resolves it, old or new (an old revision's replacement after an eviction is
/// new too): only clearing the condition does.
#[test]
fn an_injection_failure_fires_after_its_for_and_resolves_only_when_cleared() {
    let spec = serde_json::json!({"rules": {"injectionFailed": {"for": "2m"}}});
    let index = index_with(&[(PolicyRef::namespaced("shop", "mesh"), spec)]);
    let (outcome, kept) = index.set_workload_condition(
        AlertName::SidecarInjectionFailed,
        web(),
        Some(failure(None)),
        at("2026-01-01T10:00:30Z"),
    );
    assert!(kept);
    assert!(outcome.transitions.is_empty());
    assert_eq!(states(&index), [("mesh".into(), AlertName::SidecarInjectionFailed, AlertState::Pending)]);
    // Due exactly when `for` has passed: the runtime's timer, no poll.
    assert_eq!(index.workloads_due(at("2026-01-01T10:00:30Z")), Some(at("2026-01-01T10:02:00Z")));
    assert!(index.revisit_workloads(at("2026-01-01T10:01:59Z")).transitions.is_empty());
    let fired = index.revisit_workloads(at("2026-01-01T10:02:00Z")).transitions;
    assert_eq!(index.workloads_due(at("2026-01-01T10:02:00Z")), None, "firing: nothing due");
    assert_eq!(fired.len(), 1);
    let t = &fired[0];
    assert_eq!((t.kind, t.pod.as_str(), t.workload.clone()), (TransitionKind::Fired, "", web()));
    assert_eq!((t.alert.container.as_str(), t.object_uid.as_deref()), ("istio-proxy", Some("uid-web")));
    let stats = &index.policy_stats()[&PolicyRef::namespaced("shop", "mesh")];
    assert_eq!((stats.firing.get("SidecarInjectionFailed"), stats.matched_pods), (Some(&1), 0));
    for created in ["2026-01-01T09:00:00Z", "2026-01-01T10:03:00Z"] {
        let outcome = index.apply_pod(pod_of_web(created), at("2026-01-01T10:03:01Z"));
        assert!(outcome.transitions.iter().all(|t| !t.alert.name.on_workload()), "{created}: {outcome:?}");
    }
    assert_eq!(states(&index), [("mesh".into(), AlertName::SidecarInjectionFailed, AlertState::Firing)]);
    let (outcome, _) =
        index.set_workload_condition(AlertName::SidecarInjectionFailed, web(), None, at("2026-01-01T10:03:02Z"));
    let resolved: Vec<_> = outcome.transitions.iter().filter(|t| t.alert.name.on_workload()).collect();
    assert_eq!(resolved.len(), 1);
    assert_eq!(resolved[0].kind, TransitionKind::Resolved);
    assert!(states(&index).is_empty());
}

/// Policies select a workload as they would select its Pods: by namespace, by the template's
/// labels when known, and only with an empty selector when they are not.
#[test]
fn policies_select_a_workload_by_namespace_and_template_labels() {
    let index = index_with(&[
        (PolicyRef::namespaced("shop", "web-only"), serde_json::json!({"selector": {"matchLabels": {"app": "web"}}})),
        (PolicyRef::namespaced("shop", "every-pod"), serde_json::json!({})),
        (PolicyRef::namespaced("other", "every-pod"), serde_json::json!({})),
        (PolicyRef::cluster("labelled"), serde_json::json!({"namespaceSelector": {"matchLabels": {"mesh": "on"}}})),
        (PolicyRef::namespaced("shop", "off"), serde_json::json!({"rules": {"injectionFailed": {"enabled": false}}})),
    ]);
    let now = at("2026-01-01T10:00:30Z");
    index.set_workload_condition(AlertName::SidecarInjectionFailed, web(), Some(failure(None)), now);
    let names = |index: &Index| -> Vec<String> { states(index).into_iter().map(|s| s.0).collect() };
    assert_eq!(names(&index), ["every-pod"]);
    let labels: &[(&str, &str)] = &[("app", "web")];
    index.set_workload_condition(AlertName::SidecarInjectionFailed, web(), Some(failure(Some(labels))), now);
    assert_eq!(names(&index), ["every-pod", "web-only"]);
    let other: &[(&str, &str)] = &[("app", "cart")];
    index.set_workload_condition(AlertName::SidecarInjectionFailed, web(), Some(failure(Some(other))), now);
    assert_eq!(names(&index), ["every-pod"]);
    let (outcome, _) = index.set_workload_condition(AlertName::SidecarInjectionFailed, web(), None, now);
    assert!(outcome.transitions.is_empty(), "a pending alert resolves silently");
    assert!(states(&index).is_empty());
}

/// One namespace cannot fill the index: past its share, conditions are cut (and the caller
/// counts them); other namespaces keep theirs.
#[test]
fn conditions_are_bounded_per_namespace() {
    let index = index_with(&[(PolicyRef::cluster("all"), serde_json::json!({}))]);
    let now = at("2026-01-01T10:00:30Z");
    let workload =
        |ns: &str, i: usize| WorkloadId { namespace: ns.into(), kind: WorkloadKind::Job, name: format!("j{i}") };
    let mut cut = 0;
    for i in 0..MAX_PER_NAMESPACE + 5 {
        let (_, kept) = index.set_workload_condition(
            AlertName::SidecarInjectionFailed,
            workload("hostile", i),
            Some(failure(None)),
            now,
        );
        cut += usize::from(!kept);
    }
    assert_eq!(cut, 5);
    let (_, kept) =
        index.set_workload_condition(AlertName::SidecarInjectionFailed, workload("shop", 0), Some(failure(None)), now);
    assert!(kept, "another namespace keeps its own");
    // Updating a held condition is never cut.
    let (_, kept) = index.set_workload_condition(
        AlertName::SidecarInjectionFailed,
        workload("hostile", 0),
        Some(failure(None)),
        now,
    );
    assert!(kept);
    let mut by_namespace = BTreeMap::<String, usize>::new();
    index.for_each_workload_alert(|a| *by_namespace.entry(a.workload.namespace.clone()).or_default() += 1);
    assert_eq!(by_namespace, BTreeMap::from([("hostile".into(), MAX_PER_NAMESPACE), ("shop".into(), 1)]));
}

/// An Event listed again (a restart, a relist) is believed whatever Pods its workload has:
/// whether the failure is over is the runtime's to say, from the object that failed.
#[test]
fn a_pod_of_the_workload_does_not_hide_a_failure() {
    use crate::{CreateFailures, IndexResource};
    let index = index_with(&[(PolicyRef::namespaced("shop", "mesh"), serde_json::json!({}))]);
    // Created after the last failure, as an old revision's replacement would be.
    index.apply_pod(pod_of_web("2026-01-01T10:50:00Z"), at("2026-01-01T11:00:00Z"));
    IndexResource::<CreateFailures>::apply(&index, (web(), failure(None)), at("2026-01-01T11:00:00Z"));
    assert_eq!(states(&index), [("mesh".into(), AlertName::SidecarInjectionFailed, AlertState::Firing)]);
}
