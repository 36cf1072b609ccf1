//! Alerts on workloads rather than on Pods: `SidecarInjectionFailed` (the workload's
//! controller cannot create its Pods because of a sidecar or its injector) and
//! `RolloutBlockedBySidecar` (every Pod of its newest revision has the same sidecar failing).
//!
//! Each is kept as a [`Condition`] per workload — only for workloads where it holds, so a
//! healthy workload costs nothing — and evaluated under every policy that selects the
//! workload as it would select the Pods it creates: its namespace, and the Pod template's
//! labels where they are known. A workload's conditions are few and change rarely, so the
//! alerts are evaluated again on each change of theirs (and when a `for` passes, on the
//! runtime's timers), never per Pod.
//!
//! A condition comes from a tenant (anyone who may create Events can forge a `FailedCreate`):
//! at most [`MAX_PER_NAMESPACE`] workloads per namespace and [`MAX_WORKLOADS`] in all hold
//! one; the rest are cut and counted.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};

use super::rollouts_blocked::ControllerRead;
use super::shares::NamespaceShares;
use super::transitions::{Transition, TransitionKind};
use sidecar_watch_engine::{
    Alert, AlertName, AlertState, CatalogId, CompiledPolicy, ContainerKind, NamespaceMeta, PolicyRef, WorkloadId,
};

/// Workloads of one namespace that may hold a condition of one kind at once.
pub const MAX_PER_NAMESPACE: usize = 100;
/// Workloads that may hold a condition of one kind at once, over every namespace.
pub const MAX_WORKLOADS: usize = 10_000;

/// Why a workload-level alert's condition holds, as the layer that found it says.
#[derive(Clone, Debug, PartialEq)]
pub struct Condition {
    /// The sidecar container named: the one the failure names, or the injector's usual one.
    pub container: String,
    /// Where the container is declared in the Pod template, when known (the Event's
    /// `fieldPath`).
    pub container_kind: Option<ContainerKind>,
    /// The catalog entry of the sidecar or injector (the `product` label).
    pub catalog: Option<CatalogId>,
    /// Since when the condition holds (the `for` clock).
    pub since: Timestamp,
    /// The latest evidence of it. An injection failure is not over because some Pod of the
    /// workload was created after this (an old revision's replacement, say): it ends when
    /// the runtime, reading the object that failed, clears the condition.
    pub latest: Timestamp,
    /// One line naming the workload, the cause and the fix.
    pub message: String,
    /// The UID of the object the workload's Events are about, when known; for a Deployment
    /// found from its Pods, the UID of their ReplicaSet (the Event path reads the
    /// Deployment's).
    pub object_uid: Option<String>,
    /// The Pod template's labels, when the controller's object gives them: policies select
    /// the workload by them. `None`: only policies that select every Pod select it.
    pub template_labels: Option<BTreeMap<String, String>>,
}

/// One workload alert under one policy.
#[derive(Clone, Debug, PartialEq)]
pub struct WorkloadAlert {
    /// The workload.
    pub workload: WorkloadId,
    /// The policy that selects it.
    pub policy: Arc<PolicyRef>,
    /// Whether that policy publishes Events.
    pub policy_events: bool,
    /// The catalog entry of the sidecar (the `product` label).
    pub catalog: Option<CatalogId>,
    /// The alert (its container, state, `since` and message).
    pub alert: Alert,
    /// See [`Condition::object_uid`].
    pub object_uid: Option<String>,
    /// See [`Condition::container_kind`].
    pub container_kind: Option<ContainerKind>,
    /// When it fires (pending until then).
    pub fires_at: Timestamp,
}

impl WorkloadAlert {
    pub(crate) fn transition(&self, kind: TransitionKind) -> Transition {
        Transition {
            kind,
            namespace: self.workload.namespace.clone(),
            pod: String::new(),
            pod_uid: None,
            container_kind: self.container_kind,
            workload: self.workload.clone(),
            object_uid: self.object_uid.clone(),
            policy: Arc::clone(&self.policy),
            policy_events: self.policy_events,
            alert: self.alert.clone(),
        }
    }
}

/// (policy, alert name, workload): what identifies one workload alert.
type AlertKey = (Arc<PolicyRef>, AlertName, WorkloadId);

/// The conditions of every workload and the alerts evaluated from them.
#[derive(Debug)]
pub(crate) struct Workloads {
    conditions: BTreeMap<(AlertName, WorkloadId), Condition>,
    /// The places the conditions of each alert hold.
    condition_shares: HashMap<AlertName, NamespaceShares>,
    /// Keyed by (policy, alert name, workload): one alert per workload, alert and policy.
    alerts: BTreeMap<AlertKey, WorkloadAlert>,
    /// Workloads whose rollout is to be judged again at the next judgement.
    marked_rollouts: HashSet<WorkloadId>,
    /// What the runtime read of each candidate's controller ([`crate::rollouts_blocked`]):
    /// entries are added and dropped only through [`Workloads::remember_controller`] and
    /// [`Workloads::forget_controller`], which keep `controller_shares`.
    controllers: HashMap<WorkloadId, ControllerRead>,
    controller_shares: NamespaceShares,
    /// When the first candidate's controller is due to be read again.
    pub(crate) controllers_due: Option<Timestamp>,
}

impl Default for Workloads {
    fn default() -> Self {
        Workloads {
            conditions: BTreeMap::new(),
            condition_shares: HashMap::new(),
            alerts: BTreeMap::new(),
            marked_rollouts: HashSet::new(),
            controllers: HashMap::new(),
            controller_shares: NamespaceShares::new(MAX_PER_NAMESPACE, MAX_WORKLOADS),
            controllers_due: None,
        }
    }
}

/// Whether [`Workloads::set`] kept the condition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kept {
    /// Kept (new or replacing the workload's last one).
    Yes,
    /// Cut: its namespace or the whole index holds too many.
    Limited,
}

impl Workloads {
    /// Sets (or, with `None`, clears) the condition of `alert` on `workload`.
    pub(crate) fn set(&mut self, alert: AlertName, workload: WorkloadId, condition: Option<Condition>) -> Kept {
        let key = (alert, workload);
        let shares = self
            .condition_shares
            .entry(alert)
            .or_insert_with(|| NamespaceShares::new(MAX_PER_NAMESPACE, MAX_WORKLOADS));
        let Some(condition) = condition else {
            if self.conditions.remove(&key).is_some() {
                shares.give_back(&key.1.namespace);
            }
            return Kept::Yes;
        };
        if let Some(held) = self.conditions.get_mut(&key) {
            *held = condition;
            return Kept::Yes;
        }
        if !shares.take(&key.1.namespace) {
            return Kept::Limited;
        }
        self.conditions.insert(key, condition);
        Kept::Yes
    }

    /// Whether any workload holds a condition of `alert`.
    pub(crate) fn holds_any(&self, alert: AlertName) -> bool {
        self.condition_shares.get(&alert).is_some_and(|shares| !shares.is_empty())
    }

    /// Marks `workload`'s rollout to be judged again at the next judgement, which takes every
    /// mark. Not capped, so that no tenant's marks can crowd out another's: a mark is made
    /// for a workload with a Pod in the index, so there are never more than Pods.
    pub(crate) fn mark_rollout(&mut self, workload: WorkloadId) {
        self.marked_rollouts.insert(workload);
    }

    /// Remembers a read of a new candidate's controller, if `namespace` has room for one more
    /// ([`MAX_PER_NAMESPACE`] per namespace, [`MAX_WORKLOADS`] in all); `false` when cut.
    pub(crate) fn remember_controller(&mut self, workload: WorkloadId, read: ControllerRead) -> bool {
        if !self.controllers.contains_key(&workload) && !self.controller_shares.take(&workload.namespace) {
            return false;
        }
        self.controllers.insert(workload, read);
        true
    }

    /// What was read of each candidate's controller.
    pub(crate) fn controllers(&self) -> &HashMap<WorkloadId, ControllerRead> {
        &self.controllers
    }

    /// What was read of `workload`'s controller, to be updated in place.
    pub(crate) fn controller_mut(&mut self, workload: &WorkloadId) -> Option<&mut ControllerRead> {
        self.controllers.get_mut(workload)
    }

    /// Forgets what was read of `workload`'s controller: it is no candidate any more.
    pub(crate) fn forget_controller(&mut self, workload: &WorkloadId) {
        if self.controllers.remove(workload).is_some() {
            self.controller_shares.give_back(&workload.namespace);
        }
    }

    /// Whether a rollout is marked to be judged.
    pub(crate) fn has_marked_rollouts(&self) -> bool {
        !self.marked_rollouts.is_empty()
    }

    /// The workloads marked since the last call.
    pub(crate) fn take_marked_rollouts(&mut self) -> HashSet<WorkloadId> {
        std::mem::take(&mut self.marked_rollouts)
    }

    /// The condition of `alert` on `workload`, if it holds.
    pub(crate) fn condition(&self, alert: AlertName, workload: &WorkloadId) -> Option<&Condition> {
        self.conditions.get(&(alert, workload.clone()))
    }

    /// The workloads holding a condition of `alert`.
    pub(crate) fn holding(&self, alert: AlertName) -> impl Iterator<Item = &WorkloadId> {
        self.conditions.keys().filter(move |(a, _)| *a == alert).map(|(_, w)| w)
    }

    /// Whether no workload holds a condition.
    pub(crate) fn is_empty(&self) -> bool {
        self.conditions.is_empty() && self.alerts.is_empty() && self.marked_rollouts.is_empty()
    }

    /// Evaluates every condition under every policy again: what started or stopped firing,
    /// and when a pending alert fires next.
    pub(crate) fn evaluate(
        &mut self,
        policies: &[Arc<CompiledPolicy>],
        namespaces: &HashMap<String, NamespaceMeta>,
        now: Timestamp,
        only: Option<&(AlertName, WorkloadId)>,
    ) -> (Vec<Transition>, Option<Timestamp>) {
        let mut fresh = BTreeMap::new();
        let conditions: Vec<(&(AlertName, WorkloadId), &Condition)> = match only {
            Some(key) => self.conditions.get_key_value(key).into_iter().collect(),
            None => self.conditions.iter().collect(),
        };
        for ((name, workload), condition) in conditions {
            let labels = namespaces.get(&workload.namespace).map(|n| &n.labels);
            for policy in policies {
                if !policy.selects_namespace(&workload.namespace, labels) {
                    continue;
                }
                let selected = match &condition.template_labels {
                    Some(template) => policy.selects_template_labels(template),
                    None => policy.selects_every_pod(),
                };
                let rule = match name {
                    AlertName::SidecarInjectionFailed => policy.rules.injection_failed,
                    _ => policy.rules.rollout_blocked,
                };
                if !selected || !rule.enabled {
                    continue;
                }
                let fires_at = SignedDuration::try_from(rule.for_)
                    .ok()
                    .and_then(|d| condition.since.checked_add(d).ok())
                    .unwrap_or(Timestamp::MAX);
                let state = if fires_at <= now { AlertState::Firing } else { AlertState::Pending };
                let alert = Alert {
                    name: *name,
                    severity: rule.severity,
                    container: condition.container.clone(),
                    check: None,
                    state,
                    since: Some(condition.since),
                    message: condition.message.clone(),
                    identified_by: None,
                };
                let policy_ref = policy.shared_ref();
                let stored = WorkloadAlert {
                    workload: workload.clone(),
                    policy: Arc::clone(&policy_ref),
                    policy_events: policy.events,
                    catalog: condition.catalog,
                    alert,
                    object_uid: condition.object_uid.clone(),
                    container_kind: condition.container_kind,
                    fires_at,
                };
                fresh.insert((policy_ref, *name, workload.clone()), stored);
            }
        }
        // One workload's change re-evaluates that workload only: a flood of failures costs
        // each its own alerts, not every other workload's again.
        let in_scope = |key: &AlertKey| only.is_none_or(|(name, workload)| key.1 == *name && key.2 == *workload);
        let firing = |a: &WorkloadAlert| a.alert.state == AlertState::Firing;
        let mut transitions: Vec<Transition> = fresh
            .iter()
            .filter(|(key, a)| firing(a) && !self.alerts.get(*key).is_some_and(firing))
            .map(|(_, a)| a.transition(TransitionKind::Fired))
            .collect();
        transitions.extend(
            self.alerts
                .iter()
                .filter(|(key, a)| in_scope(key) && firing(a) && !fresh.get(*key).is_some_and(firing))
                .map(|(_, a)| a.transition(TransitionKind::Resolved)),
        );
        self.alerts.retain(|key, _| !in_scope(key));
        self.alerts.extend(fresh);
        let pending = self.alerts.values().filter(|a| a.alert.state == AlertState::Pending);
        (transitions, pending.map(|a| a.fires_at).min())
    }

    /// The alerts evaluated last, pending and firing.
    pub(crate) fn alerts(&self) -> impl Iterator<Item = &WorkloadAlert> {
        self.alerts.values()
    }
}

#[cfg(test)]
mod tests;
