//! A rollout's Pods in the index: blocked when every new Pod's sidecar fails while old Pods
//! run, resolved when the rollout is undone; healthy workloads are never judged.

use jiff::Timestamp;
use sidecar_watch_api::{PolicySpec, SlimPod};
use sidecar_watch_engine::{
    AlertName, AlertState, CompiledPolicy, ControllerRollout, PodUid, PodView, PolicyRef, RolloutHold, WorkloadId,
};
use sidecar_watch_testkit::pod::{Container, PodBuilder};

use crate::on_workloads::ROLLOUT_BATCH;
use crate::Writes;
use crate::{Index, Outcome, PolicyEntry, RolloutRead, TransitionKind, CONTROLLER_REREAD};

fn at(t: &str) -> Timestamp {
    t.parse().expect("time")
}

/// Pod `name` of Deployment web on revision `hash`, created at `created`, its native
/// `istio-proxy` ready or not.
fn web_pod(name: &str, hash: &str, created: &str, ready: bool) -> PodView {
    pod_of("shop", "web", name, hash, created, ready)
}

/// Pod `name` of Deployment `deployment` in `namespace` (labelled `app: web`), as [`web_pod`].
fn pod_of(namespace: &str, deployment: &str, name: &str, hash: &str, created: &str, ready: bool) -> PodView {
    let pod = PodBuilder::new(namespace, name)
        .uid(format!("u-{namespace}-{name}"))
        .created(created)
        .label("app", "web")
        .label("pod-template-hash", hash)
        .owner("ReplicaSet", &format!("{deployment}-{hash}"))
        .native_sidecar(Container::istio_proxy().ready(ready))
        .container(Container::new("app", "shop/web:1.0"));
    PodView::from_pod(&pod.decode::<SlimPod>())
}

fn index() -> Index {
    let index = Index::new();
    add_policy(&index, "shop");
    index
}

/// Policy mesh in `namespace`: `app: web`, not ready for 1m, blocked for 2m.
fn add_policy(index: &Index, namespace: &str) {
    let spec: PolicySpec = serde_json::from_value(serde_json::json!({
        "selector": {"matchLabels": {"app": "web"}},
        "rules": {"sidecarNotReady": {"for": "1m"}, "rolloutBlocked": {"for": "2m"}}
    }))
    .expect("spec");
    let policy = PolicyRef::namespaced(namespace, "mesh");
    let compiled = CompiledPolicy::compile(policy.clone(), &spec);
    index.apply_policy(policy, PolicyEntry::new(compiled), at("2026-01-01T09:00:00Z"));
}

fn rollout_alerts(index: &Index) -> Vec<(String, AlertState, String)> {
    let mut out = Vec::new();
    index.for_each_workload_alert(|a| {
        if a.alert.name == AlertName::RolloutBlockedBySidecar {
            out.push((a.workload.to_string(), a.alert.state, a.alert.container.clone()))
        }
    });
    out
}

#[test]
fn a_new_revision_whose_sidecar_never_gets_ready_blocks_the_rollout_until_undone() {
    let index = index();
    let t0 = "2026-01-01T10:00:00Z";
    for name in ["web-a-1", "web-a-2"] {
        index.apply_pod(web_pod(name, "aaaa", t0, true), at(t0));
    }
    assert!(index.revisit_workloads(at("2026-01-01T10:00:01Z")).transitions.is_empty());
    assert_eq!(index.workloads_due(at("2026-01-01T10:00:01Z")), None, "healthy Pods mark nothing, nothing is due");
    assert_eq!(index.workloads.lock().0.take_marked_rollouts().len(), 0, "healthy Pods mark nothing");
    // The new revision's first Pod: its sidecar is never ready.
    index.apply_pod(web_pod("web-b-1", "bbbb", "2026-01-01T10:10:00Z", false), at("2026-01-01T10:10:00Z"));
    // Not ready for its 1m: it fires (the timer's evaluation), the rollout is judged blocked.
    index.reevaluate(PodUid::parse("u-shop-web-b-1"), at("2026-01-01T10:11:00Z"));
    // Marked: judged together with whatever else a batch marks, within ROLLOUT_BATCH.
    assert_eq!(index.workloads_due(at("2026-01-01T10:11:00Z")), Some(at("2026-01-01T10:11:01Z")));
    // A candidate: nothing is blocked before its Deployment is heard.
    let reads = index.revisit_workloads(at("2026-01-01T10:11:00Z")).rollout_reads;
    assert_eq!(reads, [read_of_web(false)]);
    assert!(rollout_alerts(&index).is_empty());
    assert!(index.revisit_workloads(at("2026-01-01T10:11:00Z")).rollout_reads.is_empty(), "asked once");
    answer(&index, Some("bbbb"), None, "2026-01-01T10:11:00Z");
    assert_eq!(rollout_alerts(&index), [("Deployment/web".into(), AlertState::Pending, "istio-proxy".into())]);
    let fired = index.revisit_workloads(at("2026-01-01T10:13:00Z")).transitions;
    assert_eq!(fired.len(), 1, "{fired:?}");
    assert_eq!((fired[0].kind, fired[0].workload.to_string()), (TransitionKind::Fired, "Deployment/web".to_string()));
    let message = &fired[0].alert.message;
    assert!(message.contains("bbbb") && message.contains("aaaa") && message.contains("istio-proxy"), "{message}");
    assert_eq!(fired[0].object_uid.as_deref(), Some("uid-web-bbbb"), "the ReplicaSet's, for the Deployment's read");
    // `kubectl rollout undo`: the new Pod goes, the old revision is all there is.
    index.delete_pod(PodUid::parse("u-shop-web-b-1"), at("2026-01-01T10:14:00Z"));
    let resolved = index.revisit_workloads(at("2026-01-01T10:14:01Z")).transitions;
    assert_eq!(resolved.len(), 1);
    assert_eq!(resolved[0].kind, TransitionKind::Resolved);
    assert!(rollout_alerts(&index).is_empty());
}

/// The read of Deployment web's controller, its revisions newest first.
fn read_of_web(recheck: bool) -> RolloutRead {
    let workload = WorkloadId::new("shop", "Deployment", "web");
    RolloutRead { workload, revisions: vec!["bbbb".into(), "aaaa".into()], recheck }
}

/// The runtime's answer for Deployment web at `now`, then the judgement it marks.
fn answer(index: &Index, newest: Option<&str>, held: Option<RolloutHold>, now: &str) -> Outcome {
    let rollout = ControllerRollout { newest: newest.map(str::to_string), held };
    index.set_rollout_controller(WorkloadId::new("shop", "Deployment", "web"), rollout, at(now));
    assert_eq!(index.workloads_due(at(now)), Some(at(now) + ROLLOUT_BATCH), "judged with the answer");
    index.revisit_workloads(at(now))
}

/// Deployment web with two healthy Pods of aaaa and one of bbbb whose sidecar fired at 10:11.
fn candidate() -> Index {
    let index = index();
    for name in ["web-a-1", "web-a-2"] {
        index.apply_pod(web_pod(name, "aaaa", "2026-01-01T10:00:00Z", true), at("2026-01-01T10:00:00Z"));
    }
    index.apply_pod(web_pod("web-b-1", "bbbb", "2026-01-01T10:10:00Z", false), at("2026-01-01T10:10:00Z"));
    index.reevaluate(PodUid::parse("u-shop-web-b-1"), at("2026-01-01T10:11:00Z"));
    assert_eq!(index.revisit_workloads(at("2026-01-01T10:11:00Z")).rollout_reads, [read_of_web(false)]);
    index
}

#[test]
fn a_paused_rollout_is_not_blocked_and_fires_once_resumed_by_the_pods_clock() {
    let index = candidate();
    let outcome = answer(&index, Some("bbbb"), Some(RolloutHold::Paused), "2026-01-01T10:11:01Z");
    assert!(outcome.transitions.is_empty() && rollout_alerts(&index).is_empty(), "paused: not blocked");
    // Still a candidate: read again CONTROLLER_REREAD after the answer, with no Pod change.
    let reread = at("2026-01-01T10:11:01Z") + CONTROLLER_REREAD;
    assert_eq!(index.workloads_due(at("2026-01-01T10:11:02Z")), Some(reread));
    assert_eq!(index.revisit_workloads(reread).rollout_reads, [read_of_web(true)]);
    assert_eq!(index.workloads_due(reread), None, "asked again once");
    // `kubectl rollout resume`: the sidecar has failed since 10:11, `for` is 2m: it fires at once.
    let fired = answer(&index, Some("bbbb"), None, "2026-01-01T10:14:00Z").transitions;
    assert_eq!(fired.len(), 1, "{fired:?}");
    assert_eq!(fired[0].kind, TransitionKind::Fired);
}

#[test]
fn a_failed_read_leaves_the_pods_to_decide_and_a_healthy_workload_is_forgotten() {
    let index = candidate();
    answer(&index, None, None, "2026-01-01T10:11:01Z");
    assert_eq!(rollout_alerts(&index), [("Deployment/web".into(), AlertState::Pending, "istio-proxy".into())]);
    // The new Pod gets ready: no candidate, nothing read or kept.
    index.apply_pod(web_pod("web-b-1", "bbbb", "2026-01-01T10:10:00Z", true), at("2026-01-01T10:12:00Z"));
    let outcome = index.revisit_workloads(at("2026-01-01T10:12:01Z"));
    assert!(outcome.rollout_reads.is_empty() && rollout_alerts(&index).is_empty());
    assert!(index.workloads.lock().0.controllers().is_empty());
    assert_eq!(index.workloads_due(at("2026-01-01T10:12:01Z")), None, "no re-read of a forgotten controller");
}

#[test]
fn one_namespaces_candidates_never_take_another_namespaces_reads() {
    let index = index();
    add_policy(&index, "flood");
    // One more stalled rollout in flood than a namespace may have read, then web in shop.
    let stalled = |namespace: &str, deployment: &str| {
        let old = format!("{deployment}-a-1");
        index.apply_pod(
            pod_of(namespace, deployment, &old, "aaaa", "2026-01-01T10:00:00Z", true),
            at("2026-01-01T10:00:00Z"),
        );
        let new = format!("{deployment}-b-1");
        index.apply_pod(
            pod_of(namespace, deployment, &new, "bbbb", "2026-01-01T10:10:00Z", false),
            at("2026-01-01T10:10:00Z"),
        );
        index.reevaluate(PodUid::parse(&format!("u-{namespace}-{new}")), at("2026-01-01T10:11:00Z"));
    };
    for i in 0..=crate::MAX_PER_NAMESPACE {
        stalled("flood", &format!("web{i}"));
    }
    stalled("shop", "web");
    let outcome = index.revisit_workloads(at("2026-01-01T10:11:00Z"));
    let asked = |namespace: &str| outcome.rollout_reads.iter().filter(|r| r.workload.namespace == namespace).count();
    assert_eq!((asked("flood"), asked("shop")), (crate::MAX_PER_NAMESPACE, 1));
    assert_eq!(outcome.limited_workloads, 1, "flood's last candidate is judged by its Pods, and counted");
    assert!(outcome.rollout_reads.contains(&read_of_web(false)));
    // A candidate whose rollout completes gives its place back: the one cut gets it.
    let read: Vec<String> = outcome.rollout_reads.iter().map(|r| r.workload.name.clone()).collect();
    let cut = (0..=crate::MAX_PER_NAMESPACE).map(|i| format!("web{i}")).find(|w| !read.contains(w)).expect("one cut");
    let done = read.iter().find(|w| *w != "web").expect("one read in flood");
    let ready = pod_of("flood", done, &format!("{done}-b-1"), "bbbb", "2026-01-01T10:10:00Z", true);
    index.apply_pod(ready, at("2026-01-01T10:12:00Z"));
    assert!(index.revisit_workloads(at("2026-01-01T10:12:01Z")).rollout_reads.is_empty());
    index.reevaluate(PodUid::parse(&format!("u-flood-{cut}-b-1")), at("2026-01-01T10:12:02Z"));
    let outcome = index.revisit_workloads(at("2026-01-01T10:12:03Z"));
    let read: Vec<&str> = outcome.rollout_reads.iter().map(|r| r.workload.name.as_str()).collect();
    assert_eq!((read, outcome.limited_workloads), (vec![cut.as_str()], 0));
}

#[test]
fn a_rollout_that_completes_fires_nothing() {
    let index = index();
    index.apply_pod(web_pod("web-a-1", "aaaa", "2026-01-01T10:00:00Z", true), at("2026-01-01T10:00:00Z"));
    index.apply_pod(web_pod("web-b-1", "bbbb", "2026-01-01T10:10:00Z", true), at("2026-01-01T10:10:00Z"));
    index.delete_pod(PodUid::parse("u-shop-web-a-1"), at("2026-01-01T10:10:05Z"));
    assert!(index.revisit_workloads(at("2026-01-01T10:30:00Z")).transitions.is_empty());
    assert!(rollout_alerts(&index).is_empty());
}

/// Pod `name` of no workload yet (its ReplicaSet has not adopted it), as [`web_pod`].
fn orphan_pod(name: &str, hash: &str, created: &str, ready: bool) -> PodView {
    let pod = PodBuilder::new("shop", name)
        .uid(format!("u-shop-{name}"))
        .created(created)
        .label("app", "web")
        .label("pod-template-hash", hash)
        .native_sidecar(Container::istio_proxy().ready(ready))
        .container(Container::new("app", "shop/web:1.0"));
    PodView::from_pod(&pod.decode::<SlimPod>())
}

#[test]
fn a_pod_adopted_later_is_judged_with_its_workload_and_gone_pods_leave_no_spread() {
    let index = index();
    let segment = |name: &str| Index::segment_index(PodUid::parse(&format!("u-shop-{name}")));
    // The judgement walks only the segments that hold web's Pods: the adopted Pod's is none of
    // the others' (else the test would pass without its move being noted).
    assert!(!["web-a-1", "web-a-2"].iter().any(|other| segment(other) == segment("web-b-1")));
    for name in ["web-a-1", "web-a-2"] {
        index.apply_pod(web_pod(name, "aaaa", "2026-01-01T10:00:00Z", true), at("2026-01-01T10:00:00Z"));
    }
    index.apply_pod(orphan_pod("web-b-1", "bbbb", "2026-01-01T10:10:00Z", false), at("2026-01-01T10:10:00Z"));
    index.apply_pod(web_pod("web-b-1", "bbbb", "2026-01-01T10:10:00Z", false), at("2026-01-01T10:10:01Z"));
    index.reevaluate(PodUid::parse("u-shop-web-b-1"), at("2026-01-01T10:11:00Z"));
    assert_eq!(index.revisit_workloads(at("2026-01-01T10:11:00Z")).rollout_reads, [read_of_web(false)]);
    assert_eq!(index.spread.lock().len(), 1, "one workload");
    index.delete_pod(PodUid::parse("u-shop-web-a-1"), at("2026-01-01T10:12:00Z"));
    crate::IndexResource::<crate::Pods>::relisted(&index, &None, &Default::default(), at("2026-01-01T10:12:00Z"));
    assert_eq!(index.pod_count(), 0);
    assert_eq!(index.spread.lock().len(), 0, "nothing kept of a workload without Pods");
}
