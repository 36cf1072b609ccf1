//! `RolloutBlockedBySidecar` from the Pods the index holds: a Pod change that may block or
//! unblock its workload's rollout marks the workload, and the next judgement (at most
//! `ROLLOUT_BATCH` later, [`Index::workloads_due`]) judges each marked
//! workload ([`rollout_blocked`]) from a copy of its Pods, taken in one pass over the
//! segments that hold them ([`crate::spread`]). Only workloads with a Pod firing a
//! [`BLOCKING`] alert (or already blocked) are ever marked: a healthy workload costs nothing,
//! and a rollout's Pods are judged once per batch, not once per Pod change.
//!
//! A workload its Pods say is blocked (a candidate) is not blocked until its controller has
//! been heard ([`ControllerRollout`]: its newest revision, a pause, a partition, `OnDelete`):
//! the judgement asks the runtime to read it ([`Outcome::rollout_reads`]) and judges again
//! with the answer ([`Index::set_rollout_controller`]); while the workload stays a candidate
//! it is read again every [`CONTROLLER_REREAD`]. The `for` clock runs from the Pods' alerts,
//! not from the read, so a read does not delay the alert by its own time. Only candidates are
//! read, never a workload per Pod change; at most [`crate::MAX_PER_NAMESPACE`] per namespace
//! and [`crate::MAX_WORKLOADS`] in all are remembered (the rest are judged by their Pods alone,
//! and counted), so one tenant's candidates never take another's.

use std::collections::{BTreeMap, HashMap};

use jiff::{SignedDuration, Timestamp};

use super::spread;
use super::tracked::TrackedPod;
use super::workloads::Condition;
use super::{Index, Outcome};
use sidecar_watch_engine::{
    rollout_blocked, AlertName, AlertState, CatalogId, ContainerKind, ControllerRollout, RevisionPod, SidecarFiring,
    WorkloadId, WorkloadKind, BLOCKING,
};

/// How long what a candidate's controller said is trusted: a paused rollout resumed or a
/// partition lowered changes no Pod until the controller acts on it.
pub const CONTROLLER_REREAD: SignedDuration = SignedDuration::from_secs(30);

/// Revisions a read names at most (a Deployment's ReplicaSets are read one by one): the
/// newest by creation first; a workload with more keeps the rest unread, and its controller's
/// newest revision among them is then not found (judged by the Pods).
pub const MAX_READ_REVISIONS: usize = 8;

/// A read of a candidate workload's controller, for the runtime to make and answer with
/// [`Index::set_rollout_controller`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RolloutRead {
    /// The workload (a Deployment, StatefulSet or DaemonSet).
    pub workload: WorkloadId,
    /// Its revisions with live Pods (a Deployment's ReplicaSet of each is `<name>-<hash>`),
    /// the newest by creation first, at most [`MAX_READ_REVISIONS`].
    pub revisions: Vec<String>,
    /// A periodic re-read of a controller read before (served after first reads).
    pub recheck: bool,
}

/// What the index knows of a candidate's controller.
#[derive(Clone, Debug)]
pub(crate) enum ControllerRead {
    /// A read is on its way.
    Asked,
    /// Read at `at`; `asked_again` once its re-read is on its way.
    Read { rollout: ControllerRollout, at: Timestamp, asked_again: bool },
}

/// One alert of a copied Pod: container, rule, state, since, catalog entry.
type CopiedAlert = (String, AlertName, AlertState, Option<Timestamp>, Option<CatalogId>);

/// What a judgement reads of one Pod, copied out of its segment.
struct CopiedPod {
    revision: String,
    created: Timestamp,
    live: bool,
    ready: bool,
    alerts: Vec<CopiedAlert>,
    labels: BTreeMap<String, String>,
    owner_uid: Option<String>,
    containers: HashMap<String, ContainerKind>,
}

/// Whether `pod` fires an alert that can block its workload's rollout.
pub(crate) fn fires_blocking(pod: &TrackedPod) -> bool {
    pod.results
        .iter()
        .flat_map(|r| r.alerts.iter())
        .any(|a| a.state == AlertState::Firing && BLOCKING.contains(&a.name))
}

/// Whether an evaluation of `pod` that did `outcome` may have changed its workload's
/// rollout: it fires a blocking alert, or one started or stopped firing.
pub(crate) fn may_block(pod: &TrackedPod, outcome: &Outcome) -> bool {
    fires_blocking(pod) || outcome.transitions.iter().any(|t| BLOCKING.contains(&t.alert.name))
}

impl Index {
    /// After a change of `pod` (`blocking`: it fired a [`BLOCKING`] alert before or after):
    /// marks its workload for the next judgement if its rollout may have changed.
    pub(crate) fn note_rollout_change(&self, pod: &sidecar_watch_engine::PodView, blocking: bool) {
        if WorkloadKind::controller(pod.workload().0, None).and_then(|k| k.revision_label()).is_none() {
            return;
        }
        let mut workloads = self.workloads.lock();
        if !blocking && !workloads.0.holds_any(AlertName::RolloutBlockedBySidecar) {
            return;
        }
        let id = pod.workload_id();
        if blocking || workloads.0.condition(AlertName::RolloutBlockedBySidecar, &id).is_some() {
            workloads.0.mark_rollout(id);
        }
    }

    /// What the runtime read of `workload`'s controller (the default [`ControllerRollout`]
    /// when the read failed: the Pods decide). Judged again at the next judgement; ignored when the
    /// workload is no candidate any more.
    pub fn set_rollout_controller(&self, workload: WorkloadId, rollout: ControllerRollout, now: Timestamp) {
        let mut workloads = self.workloads.lock();
        let Some(read) = workloads.0.controller_mut(&workload) else { return };
        *read = ControllerRead::Read { rollout, at: now, asked_again: false };
        let due = now + CONTROLLER_REREAD;
        workloads.0.controllers_due = Some(workloads.0.controllers_due.map_or(due, |d| d.min(due)));
        workloads.0.mark_rollout(workload);
    }

    /// Marks the candidates whose controller is due to be read again.
    pub(crate) fn mark_stale_controllers(&self, now: Timestamp) {
        let mut workloads = self.workloads.lock();
        if workloads.0.controllers_due.is_none_or(|due| due > now) {
            return;
        }
        let stale: Vec<WorkloadId> = workloads
            .0
            .controllers()
            .iter()
            .filter(|(_, read)| matches!(read, ControllerRead::Read { at, asked_again: false, .. } if *at + CONTROLLER_REREAD <= now))
            .map(|(id, _)| id.clone())
            .collect();
        if stale.is_empty() {
            // Those due were dropped or asked again meanwhile.
            workloads.0.controllers_due = next_reread(workloads.0.controllers());
        }
        for id in stale {
            workloads.0.mark_rollout(id);
        }
    }

    /// Judges the marked workloads' rollouts again; returns whether a condition changed.
    pub(crate) fn judge_rollouts(&self, now: Timestamp, outcome: &mut Outcome) -> bool {
        let marked: Vec<WorkloadId> = self.workloads.lock().0.take_marked_rollouts().into_iter().collect();
        if marked.is_empty() {
            return false;
        }
        // Looked up by borrowed names: a Pod of an unmarked workload costs a hash, no copy;
        // foldhash (hashbrown's), not SipHash: the hash is most of a pass over a segment
        // (docs/benchmarks.md#what-do-the-alerts-on-workloads-cost).
        let lookup: hashbrown::HashMap<(&str, &str, &str), usize> = marked
            .iter()
            .enumerate()
            .map(|(i, w)| ((w.namespace.as_str(), w.kind.as_str(), w.name.as_str()), i))
            .collect();
        // Only the segments that hold the marked workloads' Pods, not every Pod.
        let segments = self.spread.lock().segments_of(lookup.keys().copied());
        let mut copies: Vec<Vec<CopiedPod>> = (0..marked.len()).map(|_| Vec::new()).collect();
        for segment in spread::members(segments) {
            self.for_each_pod_in_segment(segment, |pod| {
                let view = pod.view();
                let (kind, name) = view.workload();
                let Some(&i) = lookup.get(&(view.namespace().as_str(), kind, name)) else { return };
                if let Some(copied) = copy(pod, &marked[i].kind) {
                    copies[i].push(copied);
                }
            });
        }
        drop(lookup);
        let mut changed = false;
        let mut workloads = self.workloads.lock();
        for (id, pods) in marked.into_iter().zip(copies) {
            let held = workloads.0.condition(AlertName::RolloutBlockedBySidecar, &id).cloned();
            let said = match workloads.0.controllers().get(&id) {
                Some(ControllerRead::Read { rollout, at, asked_again }) => Some((rollout.clone(), *at, *asked_again)),
                _ => None,
            };
            let by_pods = judge(&id, &pods, held.as_ref(), now, &ControllerRollout::default());
            let unheld = said.as_ref().map(|(r, ..)| ControllerRollout { newest: r.newest.clone(), held: None });
            let candidate = by_pods.is_some() || unheld.is_some_and(|r| judge(&id, &pods, None, now, &r).is_some());
            let condition = match (candidate, said) {
                (false, _) => {
                    workloads.0.forget_controller(&id);
                    None
                }
                (true, Some((rollout, at, asked_again))) => {
                    if at + CONTROLLER_REREAD <= now && !asked_again {
                        outcome.rollout_reads.push(read_of(&id, &pods, true));
                        workloads.0.remember_controller(
                            id.clone(),
                            ControllerRead::Read { rollout: rollout.clone(), at, asked_again: true },
                        );
                    }
                    judge(&id, &pods, held.as_ref(), now, &rollout)
                }
                (true, None) if workloads.0.controllers().contains_key(&id) => held.clone(),
                (true, None) => {
                    if workloads.0.remember_controller(id.clone(), ControllerRead::Asked) {
                        outcome.rollout_reads.push(read_of(&id, &pods, false));
                        held.clone()
                    } else {
                        // No room to remember a read: judged by the Pods, and counted.
                        outcome.limited_workloads += 1;
                        by_pods
                    }
                }
            };
            changed |= condition != held;
            // Bounded like every workload condition; a cut one is judged again on its next change.
            workloads.0.set(AlertName::RolloutBlockedBySidecar, id, condition);
        }
        workloads.0.controllers_due = next_reread(workloads.0.controllers());
        changed
    }
}

/// A copy of what a judgement reads of `pod`, a Pod of a workload of `kind`.
fn copy(pod: &TrackedPod, kind: &WorkloadKind) -> Option<CopiedPod> {
    let view = pod.view();
    let judged = RevisionPod::of(view, kind, ())?;
    let mut alerts = Vec::new();
    for result in pod.results.iter() {
        for alert in result.alerts.iter().filter(|a| BLOCKING.contains(&a.name)) {
            let container = result.container_name(alert, view).to_string();
            let catalog = result.catalog_of(alert, view);
            alerts.push((container, alert.name, alert.state, alert.since.map(|s| s.timestamp()), catalog));
        }
    }
    Some(CopiedPod {
        revision: judged.revision.to_string(),
        created: judged.created,
        live: judged.live,
        ready: judged.ready,
        alerts,
        labels: view.labels().iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        owner_uid: view.owner_uid().map(str::to_string),
        containers: view.containers.iter().map(|c| (c.name.to_string(), c.kind)).collect(),
    })
}

/// When the first of `controllers` read and not asked again is due to be read again.
fn next_reread(controllers: &HashMap<WorkloadId, ControllerRead>) -> Option<Timestamp> {
    controllers
        .values()
        .filter_map(|read| match read {
            ControllerRead::Read { at, asked_again: false, .. } => Some(*at + CONTROLLER_REREAD),
            _ => None,
        })
        .min()
}

/// The read of `id`'s controller, naming the revisions of its live `pods`.
fn read_of(id: &WorkloadId, pods: &[CopiedPod], recheck: bool) -> RolloutRead {
    let mut newest_first: Vec<(&str, Timestamp)> = Vec::new();
    for pod in pods.iter().filter(|p| p.live) {
        match newest_first.iter_mut().find(|(revision, _)| *revision == pod.revision) {
            Some((_, last)) => *last = (*last).max(pod.created),
            None => newest_first.push((pod.revision.as_str(), pod.created)),
        }
    }
    newest_first.sort_unstable_by(|a, b| (b.1, b.0).cmp(&(a.1, a.0)));
    let revisions = newest_first.into_iter().take(MAX_READ_REVISIONS).map(|(r, _)| r.to_string()).collect();
    RolloutRead { workload: id.clone(), revisions, recheck }
}

/// The rollout condition of workload `id` from its Pods' copies and what its `controller`
/// said; `held` keeps its clock when the Pods' alerts do not say since when.
fn judge(
    id: &WorkloadId,
    pods: &[CopiedPod],
    held: Option<&Condition>,
    now: Timestamp,
    controller: &ControllerRollout,
) -> Option<Condition> {
    let judged = pods.iter().map(|p| RevisionPod {
        revision: p.revision.as_str(),
        created: p.created,
        live: p.live,
        ready: p.ready,
        alerts: p.alerts.iter().map(|(container, alert, state, since, _)| SidecarFiring {
            container: container.as_str(),
            alert: *alert,
            state: *state,
            since: *since,
        }),
    });
    let blocked = rollout_blocked(&id.kind, &id.name, judged, controller)?;
    let example = pods.iter().filter(|p| p.live && p.revision == blocked.newest.hash).max_by_key(|p| p.created)?;
    let since = blocked.since.or(held.map(|h| h.since)).unwrap_or(now);
    Some(Condition {
        catalog: example.alerts.iter().find(|a| a.0 == blocked.container).and_then(|a| a.4),
        container_kind: example.containers.get(&blocked.container).copied(),
        container: blocked.container,
        since,
        latest: since,
        message: blocked.message,
        object_uid: example.owner_uid.clone(),
        // The template's labels, as its Pods carry them (the revision's hash label too,
        // which no policy selects on).
        template_labels: Some(example.labels.clone()),
    })
}

#[cfg(test)]
mod tests;
