//! The counting per workload: one Warning at the first Pod, one `Resolved` at the last.

use std::sync::Arc;

use super::*;
use crate::api::Severity;
use crate::engine::{Alert, AlertName, AlertState};
use crate::engine::{WorkloadId, WorkloadKind};
use crate::index::TransitionKind;

fn alert(name: AlertName) -> Alert {
    Alert {
        name,
        severity: Severity::Warning,
        container: "istio-proxy".into(),
        check: None,
        state: AlertState::Firing,
        since: None,
        message: "istio-proxy is not ready".into(),
        identified_by: None,
    }
}

/// The workload `kind`/`name` of namespace `shop`.
fn workload(kind: &str, name: &str) -> WorkloadId {
    WorkloadId::new("shop", kind, name)
}

fn transition(kind: TransitionKind, policy: &str, workload: WorkloadId, pod: usize) -> Transition {
    Transition {
        kind,
        namespace: "shop".into(),
        pod: format!("web-7d9f-{pod}"),
        pod_uid: Some(PodUidBuf::parse(&format!("uid-{pod}"))),
        container_kind: Some(ContainerKind::RestartableInit),
        workload,
        object_uid: Some("rs-uid".into()),
        policy: Arc::new(PolicyRef::namespaced("shop", policy)),
        policy_events: true,
        alert: alert(AlertName::SidecarContainerNotReady),
    }
}

fn fired(policy: &str, pod: usize) -> Transition {
    transition(TransitionKind::Fired, policy, workload("Deployment", "web"), pod)
}

fn resolved(policy: &str, pod: usize) -> Transition {
    transition(TransitionKind::Resolved, policy, workload("Deployment", "web"), pod)
}

fn deployment(uid: &str) -> ObjectReference {
    ObjectReference {
        api_version: Some("apps/v1".into()),
        kind: Some("Deployment".into()),
        name: Some("web".into()),
        namespace: Some("shop".into()),
        uid: Some(uid.into()),
        field_path: workload_field_path(&WorkloadKind::Deployment, Some(ContainerKind::RestartableInit), "istio-proxy"),
        ..Default::default()
    }
}

/// [`deployment`] as a published Warning about `istio-proxy`.
fn announced(uid: &str) -> Announced {
    Announced { object: deployment(uid), container: "istio-proxy".into() }
}

/// Feeds `t` and announces a due Warning at once, as the publisher does.
fn step(alerts: &mut WorkloadAlerts, t: &Transition) -> Step {
    let key = WorkloadKey::of(t).expect("a workload");
    let step = match t.kind {
        TransitionKind::Fired => alerts.fired(key.clone(), t, Some("rs-uid"), None),
        TransitionKind::Resolved => alerts.resolved(&key, &t.pod_uid),
    };
    if step == Step::Announce {
        alerts.set_announced(&key, Some(deployment("deploy-uid")));
    }
    step
}

#[test]
fn forty_pods_one_warning_and_one_resolved_at_the_last() {
    let mut alerts = WorkloadAlerts::default();
    assert_eq!(step(&mut alerts, &fired("mesh", 0)), Step::Announce, "the first Pod");
    for pod in 1..40 {
        assert_eq!(step(&mut alerts, &fired("mesh", pod)), Step::Nothing, "Pod {pod}");
    }
    // A Pod announced twice (a new leader's catch-up) is one Pod.
    assert_eq!(step(&mut alerts, &fired("mesh", 7)), Step::Nothing);
    let key = WorkloadKey::of(&fired("mesh", 0)).expect("a workload");
    let firing = alerts.get(&key).expect("firing");
    assert_eq!(
        (firing.pods.len(), firing.example.as_str(), firing.owner_uid.as_deref()),
        (40, "web-7d9f-0", Some("rs-uid"))
    );
    for pod in 0..39 {
        assert_eq!(step(&mut alerts, &resolved("mesh", pod)), Step::Nothing, "Pod {pod} clears");
    }
    assert_eq!(step(&mut alerts, &resolved("mesh", 39)), Step::Resolve(announced("deploy-uid")), "the last");
    assert!(alerts.is_empty(), "a healthy workload costs nothing");
    assert_eq!(step(&mut alerts, &resolved("mesh", 39)), Step::Nothing, "resolved once");
}

#[test]
fn two_policies_and_two_workloads_are_counted_apart() {
    let mut alerts = WorkloadAlerts::default();
    assert_eq!(step(&mut alerts, &fired("mesh", 0)), Step::Announce);
    assert_eq!(step(&mut alerts, &fired("strict", 0)), Step::Announce, "the other policy's own Warning");
    let other = transition(TransitionKind::Fired, "mesh", workload("StatefulSet", "db"), 9);
    assert_eq!(step(&mut alerts, &other), Step::Announce);
    assert_eq!(alerts.len(), 3);
    assert_eq!(step(&mut alerts, &resolved("mesh", 0)), Step::Resolve(announced("deploy-uid")));
    assert_eq!(alerts.len(), 2, "strict still fires on web, mesh on db");
}

#[test]
fn bare_pods_and_unknown_owners_get_no_workload_event() {
    for (kind, name) in [("Pod", "web-1"), ("Rollout", "web"), ("Node", "n1"), ("", "")] {
        let t = transition(TransitionKind::Fired, "mesh", workload(kind, name), 0);
        assert_eq!(WorkloadKey::of(&t), None, "{kind}/{name}");
    }
    assert_eq!(WorkloadKind::controller("Job", Some("batch/v1")), Some(WorkloadKind::Job));
    assert_eq!(WorkloadKind::controller("CronJob", Some("batch/v1")), Some(WorkloadKind::CronJob));
    assert_eq!(WorkloadKind::controller("CronJob", Some("apps/v1")), None);
    let cronjob =
        WorkloadKey::of(&transition(TransitionKind::Fired, "mesh", workload("CronJob", "nightly"), 0)).expect("a key");
    assert_eq!(
        (&cronjob.workload.kind, cronjob.object()),
        (&WorkloadKind::CronJob, "CronJob/shop/nightly".to_string())
    );
    assert_eq!(
        workload_field_path(&WorkloadKind::CronJob, Some(ContainerKind::Regular), "log-sidecar").as_deref(),
        Some("spec.jobTemplate.spec.template.spec.containers{log-sidecar}")
    );
    assert_eq!(
        workload_field_path(&WorkloadKind::Job, Some(ContainerKind::Regular), "log-sidecar").as_deref(),
        Some("spec.template.spec.containers{log-sidecar}")
    );
    assert_eq!(WorkloadKind::controller("Deployment", Some("example.com/v1")), None, "another group's kind");
}

#[test]
fn a_pod_that_clears_before_its_warning_leaves_nothing_to_resolve() {
    let mut alerts = WorkloadAlerts::default();
    let key = WorkloadKey::of(&fired("mesh", 0)).expect("a workload");
    assert_eq!(alerts.fired(key.clone(), &fired("mesh", 0), None, None), Step::Announce);
    // Not announced (the queue had not drained, the Deployment could not be read).
    assert_eq!(alerts.resolved(&key, &Some(PodUidBuf::parse("uid-0"))), Step::Nothing);
    assert!(alerts.is_empty());
}

#[test]
fn deleted_workload_pods_resolve_at_the_sweep() {
    let mut alerts = WorkloadAlerts::default();
    for pod in 0..5 {
        step(&mut alerts, &fired("mesh", pod));
    }
    let left = |keep: &'static [&'static str]| move |uid: PodUid<'_>| keep.iter().any(|k| uid == *k);
    assert!(alerts.forget_untracked(left(&["uid-3"])).is_empty(), "one Pod still fires");
    let resolved = alerts.forget_untracked(left(&[]));
    assert_eq!(resolved.len(), 1, "the workload and its Pods are gone: one Resolved");
    assert_eq!(resolved[0].1, announced("deploy-uid"));
    assert!(alerts.is_empty());
}

#[test]
fn keys_are_bounded() {
    let mut alerts = WorkloadAlerts::new(100, 100);
    let mut limited = 0;
    for i in 0..1_000 {
        let t = transition(TransitionKind::Fired, "mesh", workload("Deployment", &format!("web-{i}")), i);
        if step(&mut alerts, &t) == Step::Limited {
            limited += 1;
        }
    }
    assert_eq!((alerts.len(), limited), (100, 900));
    // A workload already counted still counts its Pods at the bound.
    let again = transition(TransitionKind::Fired, "mesh", workload("Deployment", "web-0"), 5000);
    assert_eq!(step(&mut alerts, &again), Step::Nothing);
}

/// A tenant's namespace full of failing workloads uses up its own share: another namespace's
/// workload still gets its Warning, and a key freed in the full namespace makes room there.
#[test]
fn one_namespace_cannot_use_up_the_keys_of_another() {
    let mut alerts = WorkloadAlerts::new(100, 10);
    let in_namespace = |namespace: &str, name: &str, pod: usize| {
        let mut workload = workload("Deployment", name);
        workload.namespace = namespace.into();
        let mut t = transition(TransitionKind::Fired, "mesh", workload, pod);
        t.namespace = namespace.into();
        t
    };
    let flood: Vec<Step> = (0..50).map(|i| step(&mut alerts, &in_namespace("tenant", &format!("w-{i}"), i))).collect();
    assert_eq!(flood.iter().filter(|s| **s == Step::Announce).count(), 10);
    assert_eq!(flood.iter().filter(|s| **s == Step::Limited).count(), 40);
    assert_eq!(step(&mut alerts, &in_namespace("shop", "web", 100)), Step::Announce, "another namespace");
    let mut gone = in_namespace("tenant", "w-0", 0);
    gone.kind = TransitionKind::Resolved;
    assert!(matches!(step(&mut alerts, &gone), Step::Resolve(_)), "its last Pod cleared it");
    assert_eq!(step(&mut alerts, &in_namespace("tenant", "w-99", 99)), Step::Announce, "the freed place");
    assert_eq!(step(&mut alerts, &in_namespace("tenant", "w-98", 98)), Step::Limited, "full again");
    // Every Pod gone: every key resolved, every place freed.
    assert_eq!(alerts.forget_untracked(|_| false).len(), 11);
    assert!(alerts.is_empty());
    assert_eq!(step(&mut alerts, &in_namespace("tenant", "w-100", 100)), Step::Announce, "all freed");
}

fn event(reason: &str, kind: &str, time: &str) -> K8sEvent {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": format!("web.{reason}"), "namespace": "shop"},
        "eventTime": time, "reason": reason, "action": "Alert",
        "type": if reason.ends_with("Resolved") {"Normal"} else {"Warning"},
        "reportingController": "sidecar-watch", "reportingInstance": "old-leader",
        "regarding": {"kind": kind, "apiVersion": if kind == "Pod" {"v1"} else {"apps/v1"}, "name": "web",
                      "namespace": "shop", "uid": "deploy-uid",
                      "fieldPath": "spec.template.spec.initContainers{istio-proxy}"},
        "related": {"kind": "SidecarPolicy", "apiVersion": "sidecarwatch.io/v1alpha1", "name": "mesh", "namespace": "shop"}
    }))
    .expect("an Event")
}

#[test]
fn a_new_leader_reads_the_standing_workload_warnings() {
    let events = [
        event("SidecarContainerNotReady", "Deployment", "2026-11-22T10:05:00.000000Z"),
        event("SidecarCrashLooping", "Deployment", "2026-11-22T10:01:00.000000Z"),
        event("SidecarCrashLoopingResolved", "Deployment", "2026-11-22T10:02:00.000000Z"),
        // A Pod's Event is the Pod announcer's.
        event("MainContainerReadyButSidecarNot", "Pod", "2026-11-22T10:05:00.000000Z"),
    ];
    let standing = standing_from_events(&events);
    assert_eq!(standing.len(), 1, "{standing:?}");
    let key = WorkloadKey::of(&fired("mesh", 0)).expect("a workload");
    assert_eq!(standing.get(&key), Some(&announced("deploy-uid")));
}

/// An alert on a workload (no Pod) is its own single member: announced once, kept by the
/// sweep of gone Pods, resolved only by its own `Resolved`.
#[test]
fn an_alert_on_a_workload_stands_until_it_resolves() {
    let mut alerts = WorkloadAlerts::default();
    let on_workload = |kind| {
        let mut t = transition(kind, "mesh", workload("Deployment", "web"), 0);
        t.pod.clear();
        t.pod_uid = None;
        t.alert = alert(AlertName::SidecarInjectionFailed);
        t
    };
    assert_eq!(step(&mut alerts, &on_workload(TransitionKind::Fired)), Step::Announce);
    assert_eq!(step(&mut alerts, &on_workload(TransitionKind::Fired)), Step::Nothing, "announced once");
    assert!(alerts.forget_untracked(|_| false).is_empty(), "no Pod to be gone");
    assert_eq!(alerts.len(), 1);
    let resolved = step(&mut alerts, &on_workload(TransitionKind::Resolved));
    assert_eq!(resolved, Step::Resolve(announced("deploy-uid")));
    assert!(alerts.is_empty());
}

/// A deleted policy's keys are forgotten with their places: a tenant deleting and creating
/// policies never keeps what their alerts held, and the policy made again announces anew.
#[test]
fn a_forgotten_policy_gives_back_its_keys() {
    let mut alerts = WorkloadAlerts::new(100, 2);
    assert_eq!(step(&mut alerts, &fired("mesh", 0)), Step::Announce);
    assert_eq!(step(&mut alerts, &fired("other", 0)), Step::Announce);
    assert_eq!(step(&mut alerts, &fired("third", 0)), Step::Limited, "the namespace's 2 keys");
    alerts.forget_policy(&PolicyRef::namespaced("shop", "mesh"));
    assert_eq!(alerts.len(), 1);
    assert_eq!(step(&mut alerts, &fired("third", 0)), Step::Announce, "its place given back");
    assert_eq!(step(&mut alerts, &fired("mesh", 0)), Step::Limited, "full again: nothing of mesh is left");
    assert_eq!(alerts.policies().count(), 2);
}
