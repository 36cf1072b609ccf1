//! `RolloutBlockedBySidecar` from the Pods the index holds: a Pod change that may block or
//! unblock its workload's rollout marks the workload, and the next judgement (at most
//! `ROLLOUT_BATCH` later, [`Index::workloads_due`]) judges each marked
//! workload ([`rollout_blocked`]) from a copy of its Pods, taken in one pass over the
//! segments. Only workloads with a Pod firing a [`BLOCKING`] alert (or already blocked)
//! are ever marked: a healthy workload costs nothing, and a rollout's Pods are judged once
//! per batch, not once per Pod change.

use std::collections::{BTreeMap, HashMap};

use jiff::Timestamp;

use super::tracked::TrackedPod;
use super::workloads::Condition;
use super::{Index, Outcome};
use sidecar_watch_engine::{
    rollout_blocked, AlertName, AlertState, CatalogId, ContainerKind, RevisionPod, SidecarFiring, WorkloadId,
    WorkloadKind, BLOCKING,
};

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

    /// Judges the marked workloads' rollouts again; returns whether a condition changed.
    pub(crate) fn judge_rollouts(&self, now: Timestamp) -> bool {
        let marked: Vec<WorkloadId> = self.workloads.lock().0.take_marked_rollouts().into_iter().collect();
        if marked.is_empty() {
            return false;
        }
        // Looked up by borrowed names: a Pod of an unmarked workload costs a hash, no copy
        // (docs/benchmarks.md#what-do-the-alerts-on-workloads-cost).
        let lookup: HashMap<(&str, &str, &str), usize> = marked
            .iter()
            .enumerate()
            .map(|(i, w)| ((w.namespace.as_str(), w.kind.as_str(), w.name.as_str()), i))
            .collect();
        let mut copies: Vec<Vec<CopiedPod>> = (0..marked.len()).map(|_| Vec::new()).collect();
        self.for_each_pod(|pod| {
            let view = pod.view();
            let (kind, name) = view.workload();
            let Some(&i) = lookup.get(&(view.namespace().as_str(), kind, name)) else { return };
            if let Some(copied) = copy(pod, &marked[i].kind) {
                copies[i].push(copied);
            }
        });
        drop(lookup);
        let mut changed = false;
        let mut workloads = self.workloads.lock();
        for (id, pods) in marked.into_iter().zip(copies) {
            let held = workloads.0.condition(AlertName::RolloutBlockedBySidecar, &id).cloned();
            let condition = judge(&id, &pods, held.as_ref(), now);
            changed |= condition != held;
            // Bounded like every workload condition; a cut one is judged again on its next change.
            workloads.0.set(AlertName::RolloutBlockedBySidecar, id, condition);
        }
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

/// The rollout condition of workload `id` from its Pods' copies; `held` keeps its clock
/// when the Pods' alerts do not say since when.
fn judge(id: &WorkloadId, pods: &[CopiedPod], held: Option<&Condition>, now: Timestamp) -> Option<Condition> {
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
    let blocked = rollout_blocked(&id.kind, &id.name, judged)?;
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
