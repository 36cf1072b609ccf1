//! `RolloutBlockedBySidecar`'s judgement: revisions by hash and creation, rollbacks, which
//! Pods count, which alerts count, and determinism.

use jiff::Timestamp;
use serde_json::json;

use super::{rollout_blocked, Blocked, ControllerRollout, Revision, RevisionPod, RolloutHold, SidecarFiring};
use crate::alert::{AlertName, AlertState};
use crate::pod::PodView;
use crate::workload::WorkloadKind;
use sidecar_watch_api::SlimPod;

const OLD: &str = "5c6b7d8f9";
const NEW: &str = "7d9f8c6b5";
const PROXY: &str = "istio-proxy";

/// 10:MM:SS on the test's day.
fn at(minute: u32, second: u32) -> Timestamp {
    format!("2026-11-27T10:{minute:02}:{second:02}Z").parse().expect("a time")
}

/// `alert` firing on `container` since 10:MM.
fn fire(container: &'static str, alert: AlertName, minute: u32) -> SidecarFiring<'static> {
    SidecarFiring { container, alert, state: AlertState::Firing, since: Some(at(minute, 0)) }
}

type Pod = RevisionPod<'static, Vec<SidecarFiring<'static>>>;

/// A live Pod of `revision` created at 10:MM with `alerts`.
fn pod(revision: &'static str, minute: u32, alerts: Vec<SidecarFiring<'static>>) -> Pod {
    RevisionPod { revision, created: at(minute, 0), live: true, ready: false, alerts }
}

fn deployment(pods: Vec<Pod>) -> Option<Blocked> {
    rollout_blocked(&WorkloadKind::Deployment, "web", pods, &ControllerRollout::default())
}

/// Three old Pods since 10:00, and two of the new revision from 10:30 whose `istio-proxy`
/// has not been ready since 10:31 and 10:33.
fn blocked_rollout() -> Vec<Pod> {
    vec![
        pod(OLD, 0, vec![]),
        pod(OLD, 0, vec![]),
        pod(OLD, 1, vec![]),
        pod(NEW, 30, vec![fire(PROXY, AlertName::SidecarContainerNotReady, 31)]),
        pod(NEW, 32, vec![fire(PROXY, AlertName::SidecarContainerNotReady, 33)]),
    ]
}

#[test]
fn a_new_revision_whose_pods_all_have_the_sidecar_failing_beside_running_old_pods_fires() {
    let blocked = deployment(blocked_rollout()).expect("blocked");
    assert_eq!(
        blocked,
        Blocked {
            newest: Revision { hash: NEW.into(), pods: 2 },
            older: vec![Revision { hash: OLD.into(), pods: 3 }],
            container: PROXY.into(),
            alert: AlertName::SidecarContainerNotReady,
            alert_pods: 2,
            // The condition holds once the last of the new Pods fires.
            since: Some(at(33, 0)),
            message: "Deployment web: all 2 Pods of revision 7d9f8c6b5 have istio-proxy SidecarContainerNotReady \
                      while 3 Pods of revision 5c6b7d8f9 still run"
                .into(),
        }
    );
}

#[test]
fn one_pod_each_is_said_in_the_singular() {
    let pods = vec![pod(OLD, 0, vec![]), pod(NEW, 30, vec![fire(PROXY, AlertName::SidecarCrashLooping, 31)])];
    let blocked = deployment(pods).expect("blocked");
    assert_eq!(
        blocked.message,
        "Deployment web: the 1 Pod of revision 7d9f8c6b5 has istio-proxy SidecarCrashLooping \
         while 1 Pod of revision 5c6b7d8f9 still runs"
    );
}

#[test]
fn a_completed_rollout_has_no_old_pods_and_fires_nothing() {
    let mut pods: Vec<Pod> = blocked_rollout().into_iter().filter(|p| p.revision == NEW).collect();
    assert_eq!(deployment(pods.clone()), None);
    // The old Pods terminating (the rollout's last step) count no more than gone ones.
    pods.extend([pod(OLD, 0, vec![]), pod(OLD, 0, vec![])].map(|p| RevisionPod { live: false, ..p }));
    assert_eq!(deployment(pods), None);
}

#[test]
fn a_rollback_makes_the_old_hash_newest_again() {
    // OLD rolled out to NEW, completed; NEW's proxy broke later; `kubectl rollout undo`
    // brings OLD back: its Pods are created again, healthy, while NEW's still run.
    let failing = |minute| vec![fire(PROXY, AlertName::SidecarContainerNotReady, minute)];
    let pods = vec![pod(NEW, 30, failing(50)), pod(NEW, 30, failing(50)), pod(OLD, 55, vec![])];
    assert_eq!(deployment(pods), None, "the rollback's revision is healthy");
    // The same with the rolled-back Pods failing: OLD is the newest, NEW the older.
    let pods = vec![pod(NEW, 30, vec![]), pod(NEW, 30, vec![]), pod(OLD, 55, failing(56))];
    let blocked = deployment(pods).expect("blocked");
    assert_eq!((blocked.newest.hash.as_str(), blocked.older[0].hash.as_str()), (OLD, NEW));
}

/// What the controller says: rolling to `newest`, holding it or not.
fn controller(newest: Option<&str>, held: Option<RolloutHold>) -> ControllerRollout {
    ControllerRollout { newest: newest.map(str::to_string), held }
}

#[test]
fn the_controllers_newest_revision_wins_over_the_pods_creation_times() {
    // A drain recreated an OLD Pod after the NEW Pods: by creation times OLD looks newest.
    let failing = |minute| vec![fire(PROXY, AlertName::SidecarContainerNotReady, minute)];
    let pods = || vec![pod(OLD, 40, vec![]), pod(NEW, 30, failing(31)), pod(NEW, 31, failing(32))];
    assert_eq!(deployment(pods()), None, "the Pods alone get the order wrong");
    let said = controller(Some(NEW), None);
    let blocked = rollout_blocked(&WorkloadKind::Deployment, "web", pods(), &said).expect("blocked");
    assert_eq!(
        (blocked.newest, blocked.older),
        (Revision { hash: NEW.into(), pods: 2 }, vec![Revision { hash: OLD.into(), pods: 1 }])
    );
    // The controller rolls to a revision with no live Pod yet: nothing of it is held back.
    let said = controller(Some("0a1b2c3d4"), None);
    assert_eq!(rollout_blocked(&WorkloadKind::Deployment, "web", blocked_rollout(), &said), None);
}

#[test]
fn a_rollout_its_controller_holds_is_not_blocked() {
    for held in [RolloutHold::Paused, RolloutHold::Partition(2), RolloutHold::OnDelete] {
        let said = controller(Some(NEW), Some(held));
        assert_eq!(rollout_blocked(&WorkloadKind::Deployment, "web", blocked_rollout(), &said), None, "{held:?}");
    }
}

#[test]
fn only_some_new_pods_failing_fires_nothing() {
    let mut pods = blocked_rollout();
    pods.push(pod(NEW, 34, vec![]));
    assert_eq!(deployment(pods), None);
}

#[test]
fn new_pods_failing_for_a_reason_that_is_not_their_sidecars_fire_nothing() {
    // No alert at all: the app is not ready.
    let mut pods = blocked_rollout();
    pods.iter_mut().for_each(|p| p.alerts.clear());
    assert_eq!(deployment(pods), None);
    // Alerts that do not block a rollout, or that are only pending.
    for (alert, state) in [
        (AlertName::SidecarRestartingFrequently, AlertState::Firing),
        (AlertName::MainStartedBeforeSidecarReady, AlertState::Firing),
        (AlertName::SidecarMisconfigured, AlertState::Firing),
        (AlertName::SidecarVersionDrift, AlertState::Firing),
        (AlertName::SidecarContainerNotReady, AlertState::Pending),
    ] {
        let mut pods = blocked_rollout();
        for p in pods.iter_mut().filter(|p| p.revision == NEW) {
            p.alerts = vec![SidecarFiring { container: PROXY, alert, state, since: Some(at(31, 0)) }];
        }
        assert_eq!(deployment(pods), None, "{alert} {state:?}");
    }
    // A Pod-level alert names no container.
    let mut pods = blocked_rollout();
    pods.iter_mut().filter(|p| p.revision == NEW).for_each(|p| p.alerts[0].container = "");
    assert_eq!(deployment(pods), None);
}

#[test]
fn a_ready_pod_blocks_nothing_whatever_its_sidecars_fire() {
    // A Pod the kubelet reports Ready is available to its controller: a missing sidecar or an
    // OOM kill it recovered from does not hold the rollout, and one Ready new Pod means the
    // sidecar does not keep every new Pod from being Ready.
    for alert in [AlertName::SidecarMissing, AlertName::SidecarOomKilled, AlertName::SidecarContainerNotReady] {
        let mut pods = blocked_rollout();
        for p in pods.iter_mut().filter(|p| p.revision == NEW) {
            p.alerts = vec![fire(PROXY, alert, 31)];
            p.ready = true;
        }
        assert_eq!(deployment(pods), None, "{alert}");
    }
    let mut pods = blocked_rollout();
    pods.push(RevisionPod { ready: true, ..pod(NEW, 34, vec![fire(PROXY, AlertName::SidecarMissing, 34)]) });
    assert_eq!(deployment(pods), None);
    // Ready old Pods are the rollout's normal state.
    let mut pods = blocked_rollout();
    pods.iter_mut().filter(|p| p.revision == OLD).for_each(|p| p.ready = true);
    assert_eq!(deployment(pods).map(|b| b.newest.pods), Some(2));
}

#[test]
fn different_sidecars_failing_on_different_pods_fire_nothing() {
    let mut pods = blocked_rollout();
    pods[4].alerts = vec![fire("linkerd-proxy", AlertName::SidecarContainerNotReady, 33)];
    assert_eq!(deployment(pods), None);
}

#[test]
fn the_alert_is_the_first_every_pod_has_else_the_first_any_has() {
    // Both crash loop or not ready: not ready is the one they share.
    let mut pods = blocked_rollout();
    pods[3].alerts.push(fire(PROXY, AlertName::SidecarCrashLooping, 30));
    let blocked = deployment(pods).expect("blocked");
    assert_eq!((blocked.alert, blocked.alert_pods), (AlertName::SidecarContainerNotReady, 2));
    // Both OOM-killed and crash looping: the cause comes first; earliest since per Pod.
    let mut pods = blocked_rollout();
    for p in pods.iter_mut().filter(|p| p.revision == NEW) {
        p.alerts.push(fire(PROXY, AlertName::SidecarOomKilled, 40));
        p.alerts.push(fire(PROXY, AlertName::SidecarCrashLooping, 41));
    }
    let blocked = deployment(pods).expect("blocked");
    assert_eq!((blocked.alert, blocked.since), (AlertName::SidecarOomKilled, Some(at(33, 0))));
    // Nothing shared: the first any has, with how many have it.
    let mut pods = blocked_rollout();
    pods[3].alerts = vec![fire(PROXY, AlertName::SidecarOomKilled, 31)];
    pods[4].alerts = vec![fire(PROXY, AlertName::SidecarCrashLooping, 33)];
    let blocked = deployment(pods).expect("blocked");
    assert_eq!((blocked.alert, blocked.alert_pods), (AlertName::SidecarOomKilled, 1));
    assert_eq!(
        blocked.message,
        "Deployment web: all 2 Pods of revision 7d9f8c6b5 have istio-proxy firing sidecar alerts \
         (SidecarOOMKilled on 1) while 3 Pods of revision 5c6b7d8f9 still run"
    );
}

#[test]
fn an_alert_given_twice_counts_once_and_an_unknown_since_leaves_since_unknown() {
    let mut pods = blocked_rollout();
    // Two policies select the Pod: the same alert twice.
    let again = pods[3].alerts[0];
    pods[3].alerts.push(again);
    pods[4].alerts[0].since = None;
    let blocked = deployment(pods).expect("blocked");
    assert_eq!((blocked.alert_pods, blocked.since), (2, None));
}

#[test]
fn of_several_sidecars_failing_everywhere_the_first_alert_then_name_is_chosen() {
    let mut pods = blocked_rollout();
    for p in pods.iter_mut().filter(|p| p.revision == NEW) {
        p.alerts.push(fire("vault-agent", AlertName::SidecarContainerNotReady, 31));
        p.alerts.push(fire("a-proxy", AlertName::SidecarContainerNotReady, 31));
        p.alerts.push(fire("z-proxy", AlertName::SidecarMissing, 31));
    }
    assert_eq!(deployment(pods.clone()).expect("blocked").container, "z-proxy", "missing is the first alert");
    for p in pods.iter_mut() {
        p.alerts.retain(|a| a.container != "z-proxy");
    }
    assert_eq!(deployment(pods).expect("blocked").container, "a-proxy", "then by name");
}

#[test]
fn the_judgement_does_not_depend_on_the_order_of_the_pods() {
    let expected = deployment(blocked_rollout());
    for turn in 0..5 {
        let mut pods = blocked_rollout();
        pods.rotate_left(turn);
        assert_eq!(deployment(pods.clone()), expected, "rotated by {turn}");
        pods.reverse();
        assert_eq!(deployment(pods), expected, "reversed, rotated by {turn}");
    }
    // Two revisions whose first Pods were created in the same second: the later last Pod,
    // then the greater hash, is the newest, in any order.
    let failing = || vec![fire(PROXY, AlertName::SidecarContainerNotReady, 31)];
    let tie = vec![pod("aaa", 30, failing()), pod("bbb", 30, failing())];
    let newest = |pods: Vec<Pod>| deployment(pods).map(|b| b.newest.hash);
    assert_eq!(newest(tie.clone()), Some("bbb".into()));
    assert_eq!(newest(tie.into_iter().rev().collect()), Some("bbb".into()));
    let later_last = vec![pod("aaa", 30, failing()), pod("aaa", 35, failing()), pod("bbb", 30, failing())];
    assert_eq!(newest(later_last), Some("aaa".into()));
}

#[test]
fn thousands_of_revisions_stay_linear_and_the_message_one_line() {
    let hashes: Vec<&'static str> = (0..20_000).map(|i| &*format!("h{i:05}").leak()).collect();
    let mut pods: Vec<Pod> = hashes.iter().map(|h| pod(h, 1, vec![])).collect();
    pods.push(pod(NEW, 30, vec![fire(PROXY, AlertName::SidecarContainerNotReady, 31)]));
    let started = std::time::Instant::now();
    let blocked = deployment(pods).expect("blocked");
    // Generous for a debug build on a shared machine; a square would take minutes.
    assert!(started.elapsed() < std::time::Duration::from_secs(5), "{:?}", started.elapsed());
    assert_eq!(blocked.older.len(), 20_000);
    // Same creation: greater hash first.
    assert_eq!(blocked.older[0].hash, "h19999");
    assert_eq!(
        blocked.message,
        "Deployment web: the 1 Pod of revision 7d9f8c6b5 has istio-proxy SidecarContainerNotReady while \
         1 Pod of revision h19999, 1 Pod of revision h19998, 1 Pod of revision h19997 and 19997 Pods of 19997 \
         more revisions still run"
    );
}

/// Pod `name` of a `kind` workload (its ReplicaSet for a Deployment), with `labels`,
/// created at 10:MM, in `phase`, and deleting when asked.
fn view(kind: &str, name: &str, labels: serde_json::Value, minute: u32, phase: &str, deleting: bool) -> PodView {
    let owner = if kind == "Deployment" { ("ReplicaSet", "web-abc") } else { (kind, "web") };
    let mut metadata = json!({
        "name": name, "namespace": "shop", "uid": format!("u-{name}"),
        "creationTimestamp": format!("2026-11-27T10:{minute:02}:00Z"), "labels": labels,
        "ownerReferences": [{"apiVersion": "apps/v1", "kind": owner.0, "name": owner.1, "uid": "w", "controller": true}],
    });
    if deleting {
        metadata["deletionTimestamp"] = json!("2026-11-27T11:00:00Z");
    }
    let pod = json!({"metadata": metadata, "spec": {"containers": [{"name": "app", "image": "shop/web:1"}]},
                     "status": {"phase": phase}});
    PodView::from_pod(&serde_json::from_value::<SlimPod>(pod).expect("a Pod"))
}

#[test]
fn statefulsets_and_daemonsets_are_judged_by_their_own_revision_labels() {
    assert_eq!(WorkloadKind::Deployment.revision_label(), Some("pod-template-hash"));
    let kinds = [
        ("StatefulSet", "controller-revision-hash", "web-6d4b5c7f8", "web-7f9c8d6b5"),
        ("DaemonSet", "pod-template-generation", "1", "2"),
    ];
    for (kind, label_key, old, new) in kinds {
        assert_eq!(WorkloadKind::parse(kind).revision_label(), Some(label_key));
        let label = |revision: &str| json!({label_key: revision, "app": "web"});
        let views = [
            view(kind, "web-0", label(old), 0, "Running", false),
            view(kind, "web-1", label(new), 30, "Running", false),
        ];
        let failing = |v: &PodView| {
            let minute = if v.name() == "web-1" { 31 } else { 0 };
            vec![fire(PROXY, AlertName::SidecarCrashLooping, minute)].into_iter().filter(move |_| minute > 0)
        };
        let pods = views.iter().filter_map(|v| RevisionPod::of(v, &WorkloadKind::parse(kind), failing(v)));
        let blocked =
            rollout_blocked(&WorkloadKind::parse(kind), "web", pods, &ControllerRollout::default()).expect("blocked");
        assert_eq!(
            blocked.message,
            format!(
                "{kind} web: the 1 Pod of revision {new} has istio-proxy SidecarCrashLooping \
                 while 1 Pod of revision {old} still runs"
            )
        );
        // A Deployment reads another label: these Pods carry no revision for it.
        assert!(RevisionPod::of(&views[0], &WorkloadKind::Deployment, ()).is_none());
    }
    // Kinds without revisions are not judged.
    for kind in ["Job", "CronJob", "ReplicaSet", "Pod"] {
        assert_eq!(WorkloadKind::parse(kind).revision_label(), None);
        assert_eq!(
            rollout_blocked(&WorkloadKind::parse(kind), "web", blocked_rollout(), &ControllerRollout::default()),
            None,
            "{kind}"
        );
    }
}

#[test]
fn finished_deleting_and_unlabelled_pods_are_ignored() {
    let label = json!({"pod-template-hash": OLD});
    let live = view("Deployment", "a", label.clone(), 0, "Running", false);
    assert!(RevisionPod::of(&live, &WorkloadKind::Deployment, ()).is_some_and(|p| p.live && p.revision == OLD));
    let deleting = view("Deployment", "b", label.clone(), 0, "Running", true);
    assert!(RevisionPod::of(&deleting, &WorkloadKind::Deployment, ()).is_some_and(|p| !p.live));
    for phase in ["Succeeded", "Failed"] {
        let finished = view("Deployment", "c", label.clone(), 0, phase, false);
        assert!(RevisionPod::of(&finished, &WorkloadKind::Deployment, ()).is_some_and(|p| !p.live), "{phase}");
    }
    for labels in [json!({"app": "web"}), json!({"pod-template-hash": ""})] {
        let unlabelled = view("Deployment", "d", labels, 0, "Running", false);
        assert!(RevisionPod::of(&unlabelled, &WorkloadKind::Deployment, ()).is_none());
    }
    // Old Pods that are all finished or deleting leave the new revision alone: nothing fires.
    let mut pods = blocked_rollout();
    pods.iter_mut().filter(|p| p.revision == OLD).for_each(|p| p.live = false);
    assert_eq!(deployment(pods), None);
    // New Pods that are deleting do not count among the newest revision's.
    let mut pods = blocked_rollout();
    pods.push(RevisionPod { live: false, ..pod(NEW, 40, vec![]) });
    assert_eq!(deployment(pods).map(|b| b.newest.pods), Some(2));
}

/// A Pod drawn from a small world: 3 revisions, 3 containers, every alert name and state.
fn any_pod() -> impl proptest::strategy::Strategy<Value = Pod> {
    use proptest::prelude::*;
    let alert = (0..3usize, 0..AlertName::ALL.len(), any::<bool>(), proptest::option::of(0..60u32)).prop_map(
        |(c, a, firing, since)| SidecarFiring {
            container: ["proxy", "agent", ""][c],
            alert: AlertName::ALL[a],
            state: if firing { AlertState::Firing } else { AlertState::Pending },
            since: since.map(|m| at(m, 0)),
        },
    );
    (0..3usize, 0..60u32, any::<bool>(), proptest::bool::weighted(0.2), proptest::collection::vec(alert, 0..4))
        .prop_map(|(r, minute, live, ready, alerts)| RevisionPod {
            revision: ["aaa", "bbb", "ccc"][r],
            created: at(minute, 0),
            live,
            ready,
            alerts,
        })
}

/// The judgement from its definition, Pod by Pod: the newest revision's hash and Pod count,
/// the older revisions' Pods, and the sidecars failing on every new Pod.
fn reference(pods: &[Pod]) -> Option<(String, u32, u32, Vec<&'static str>)> {
    let live: Vec<&Pod> = pods.iter().filter(|p| p.live).collect();
    let mut hashes: Vec<&str> = live.iter().map(|p| p.revision).collect();
    hashes.sort_unstable();
    hashes.dedup();
    if hashes.len() < 2 {
        return None;
    }
    let of = |h: &str| live.iter().filter(|p| p.revision == h).copied().collect::<Vec<_>>();
    let key = |h: &str| {
        let pods = of(h);
        (pods.iter().map(|p| p.created).min(), pods.iter().map(|p| p.created).max(), h.to_string())
    };
    let newest = *hashes.iter().max_by_key(|h| key(h))?;
    let new_pods = of(newest);
    let blocks = |p: &Pod, c: &str| {
        !p.ready
            && p.alerts
                .iter()
                .any(|a| a.container == c && a.state == AlertState::Firing && super::BLOCKING.contains(&a.alert))
    };
    let failing: Vec<&'static str> =
        ["proxy", "agent"].into_iter().filter(|c| new_pods.iter().all(|p| blocks(p, c))).collect();
    let older = live.len() - new_pods.len();
    (!failing.is_empty()).then(|| (newest.to_string(), new_pods.len() as u32, older as u32, failing))
}

proptest::proptest! {
    #[test]
    fn the_judgement_matches_its_definition_in_any_order(pods in proptest::collection::vec(any_pod(), 0..12)) {
        let got = deployment(pods.clone());
        let expected = reference(&pods);
        proptest::prop_assert_eq!(got.is_some(), expected.is_some(), "{:?} vs {:?}", got, expected);
        if let (Some(b), Some((hash, new, older, failing))) = (&got, &expected) {
            proptest::prop_assert_eq!(&b.newest.hash, hash);
            proptest::prop_assert_eq!(b.newest.pods, *new);
            proptest::prop_assert_eq!(b.older.iter().map(|r| r.pods).sum::<u32>(), *older);
            proptest::prop_assert!(failing.contains(&b.container.as_str()), "{} not in {:?}", b.container, failing);
            proptest::prop_assert!(b.alert_pods >= 1 && b.alert_pods <= b.newest.pods);
        }
        let mut reversed = pods;
        reversed.reverse();
        proptest::prop_assert_eq!(deployment(reversed), got);
    }
}
