//! Alerts that started or stopped firing between two evaluations of a Pod: what Events
//! announce, with the rest of what one change did ([`Outcome`]).

use std::sync::Arc;

use jiff::Timestamp;

use super::rollouts_blocked::RolloutRead;
use super::tracked::PolicyResult;
use sidecar_watch_engine::WorkloadId;
use sidecar_watch_engine::{Alert, AlertKey, AlertState, ContainerKind, PodUidBuf, PodView, PolicyRef};

/// An alert that started firing or stopped firing: what Events announce. An alert on a
/// workload ([`AlertName::on_workload`](sidecar_watch_engine::AlertName::on_workload)) has
/// an empty `pod` and no `pod_uid`.
#[derive(Clone, Debug, PartialEq)]
pub struct Transition {
    /// Fired or resolved.
    pub kind: TransitionKind,
    /// The Pod's namespace.
    pub namespace: String,
    /// The Pod's name.
    pub pod: String,
    /// The Pod's UID; `None` for an alert on a workload.
    pub pod_uid: Option<PodUidBuf>,
    /// Where the container is declared, for the Event's `fieldPath`.
    pub container_kind: Option<ContainerKind>,
    /// The Pod's workload (for an alert on a workload, that workload), named in the Event
    /// note as `Kind/name` and keying the workload's Events.
    pub workload: WorkloadId,
    /// The UID of the workload object its workload Event is about: the Pod's owner
    /// reference's (for a Deployment, its ReplicaSet's: the Event path reads the
    /// Deployment's), or the one a workload alert's condition knows.
    pub object_uid: Option<String>,
    /// The policy.
    pub policy: Arc<PolicyRef>,
    /// Whether the policy publishes Events (`spec.events`).
    pub policy_events: bool,
    /// The alert (its state and message as of the transition).
    pub alert: Alert,
}

/// The direction of a [`Transition`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TransitionKind {
    /// The alert started firing.
    Fired,
    /// A firing alert cleared.
    Resolved,
}

/// What one change did: transitions to announce, startup timings, and when to look again.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    /// Alerts that started or stopped firing.
    pub transitions: Vec<Transition>,
    /// Startup durations observed (container, seconds) with the Pod's namespace.
    pub startups: Vec<(String, String, f64)>,
    /// When to re-evaluate each evaluated Pod: (uid, when), or `None` when nothing can change
    /// without a new Pod state, so that a timer set before (say, for a sidecar that was not
    /// ready for a moment) is dropped instead of waiting minutes to fire for nothing.
    pub wakeups: Vec<(PodUidBuf, Option<Timestamp>)>,
    /// Re-evaluate each of these Pods no later than then (an evaluation under one policy
    /// knows its own next change, not the other policies'): an earlier timer stays.
    pub wake_by: Vec<(PodUidBuf, Timestamp)>,
    /// Evaluations that met `--max-sidecars-per-pod` and left sidecars out.
    pub limited_pods: u32,
    /// Policy changes held back by `--max-policies-per-namespace` (not evaluated).
    pub limited_policies: u32,
    /// Workload conditions cut: their namespace, or the index, holds the most it may.
    pub limited_workloads: u32,
    /// Policies applied whose spec cannot be used: each is announced (an Event on it).
    pub invalid_policies: Vec<InvalidPolicy>,
    /// Controllers of candidate blocked rollouts the runtime is to read.
    pub rollout_reads: Vec<RolloutRead>,
}

/// A policy applied whose spec cannot be used, as its Event names it.
#[derive(Clone, Debug, PartialEq)]
pub struct InvalidPolicy {
    /// Which policy.
    pub policy: PolicyRef,
    /// Its object's UID, if known.
    pub uid: Option<String>,
    /// The generation found invalid.
    pub generation: Option<i64>,
    /// Why (the field and what is wrong with it).
    pub message: String,
}

impl Outcome {
    /// Adds what `other` did, after what this did.
    pub fn merge(&mut self, other: Outcome) {
        self.transitions.extend(other.transitions);
        self.startups.extend(other.startups);
        self.wakeups.extend(other.wakeups);
        self.wake_by.extend(other.wake_by);
        self.limited_pods += other.limited_pods;
        self.limited_policies += other.limited_policies;
        self.limited_workloads += other.limited_workloads;
        self.invalid_policies.extend(other.invalid_policies);
        self.rollout_reads.extend(other.rollout_reads);
    }
}

pub(super) fn transition(kind: TransitionKind, view: &PodView, result: &PolicyResult, alert: Alert) -> Transition {
    Transition {
        kind,
        namespace: view.namespace().to_string(),
        pod: view.name().to_string(),
        pod_uid: Some(view.uid().into()),
        container_kind: view.containers.iter().find(|c| c.name == alert.container).map(|c| c.kind),
        workload: view.workload_id(),
        object_uid: view.owner_uid().map(str::to_string),
        policy: result.policy.shared_ref(),
        policy_events: result.policy.events,
        alert,
    }
}

/// Alerts of one policy that started firing or stopped firing between two evaluations of
/// the same Pod. A policy that newly selects the Pod announces its firing alerts; one that
/// is deleted or stops selecting the Pod takes its alerts away silently (it is not here).
pub(super) fn diff(
    view: &PodView,
    before: Option<&PolicyResult>,
    after: &PolicyResult,
    alerts: Vec<Alert>,
) -> Vec<Transition> {
    let firing_before: Vec<AlertKey<'_>> = before
        .map(|b| b.alerts.iter().filter(|s| s.state == AlertState::Firing).map(|s| s.key(view, &b.policy)).collect())
        .unwrap_or_default();
    let firing_now: Vec<AlertKey<'_>> =
        alerts.iter().filter(|a| a.state == AlertState::Firing).map(Alert::key).collect();
    let resolved: Vec<Transition> = before
        .iter()
        .flat_map(|b| b.alerts.iter().map(move |s| (s, &*b.policy)))
        .filter(|(s, policy)| s.state == AlertState::Firing && !firing_now.contains(&s.key(view, policy)))
        .map(|(s, policy)| transition(TransitionKind::Resolved, view, after, s.to_alert(view, policy)))
        .collect();
    drop(firing_now);
    let mut out: Vec<Transition> = alerts
        .into_iter()
        .filter(|a| a.state == AlertState::Firing && !firing_before.contains(&a.key()))
        .map(|a| transition(TransitionKind::Fired, view, after, a))
        .collect();
    out.extend(resolved);
    out
}
