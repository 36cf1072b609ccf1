//! `RolloutBlockedBySidecar`, judged from the Pods of one workload alone: the Pods of a
//! Deployment's, StatefulSet's or DaemonSet's newest revision are all not Ready and all have
//! the same sidecar firing one of [`BLOCKING`] while Pods of an older revision still run. Pure and linear in
//! the Pods and alerts given (a hostile workload with thousands of revisions costs one hash
//! map entry each); the caller decides when to judge and keeps the `for` clock.
//!
//! # Which revision is the newest
//!
//! The controller's own word, when the runtime has read it ([`ControllerRollout`]): a
//! Deployment's ReplicaSet with the highest `deployment.kubernetes.io/revision`, a
//! StatefulSet's `status.updateRevision`, a DaemonSet's template generation (its Pods are
//! labelled with it). A rollout the controller holds on purpose (a paused
//! Deployment, a StatefulSet with a `partition` or `OnDelete`, a DaemonSet with `OnDelete`)
//! is not blocked, whatever its Pods.
//!
//! Without that word (nothing read yet, the read failed), the Pods decide:
//! revision hashes carry no order, and Pods carry no revision number. The newest revision is
//! the one whose first live Pod was created last. A rollback returns to an old template, and the
//! controllers reuse its old hash (the Deployment controller scales the old ReplicaSet up
//! again), so the old hash is newest again as soon as its old Pods are gone: its live Pods
//! are then the ones the rollback created. The first Pod, not the last, so that an old Pod
//! recreated mid-rollout (an eviction) does not make its revision look newer. Ties (the API
//! serves creation times in whole seconds) go to the revision whose last Pod is later, then to
//! the greater hash: arbitrary, but the same on every evaluation and in `audit`.

use std::collections::HashMap;
use std::fmt::Write as _;

use jiff::Timestamp;

use crate::alert::{AlertName, AlertState};
use crate::pod::PodView;
use crate::workload::WorkloadKind;

/// The per-Pod alerts that keep a Pod from becoming available because of its sidecar, most
/// specific cause first (the order [`Blocked::alert`] is chosen in: a missing sidecar
/// explains nothing else, an OOM kill explains the crash loop it causes, a crash loop the
/// readiness it takes away). `SidecarRestartingFrequently` is left out: a sidecar that
/// restarts and is ready in between lets the rollout progress, and one that is not ready
/// fires `SidecarContainerNotReady` anyway.
pub const BLOCKING: [AlertName; 5] = [
    AlertName::SidecarMissing,
    AlertName::SidecarOomKilled,
    AlertName::SidecarCrashLooping,
    AlertName::SidecarContainerNotReady,
    AlertName::MainContainerReadyButSidecarNot,
];

/// One alert on one container of a Pod, as the caller holds it (only [`BLOCKING`] alerts
/// that fire count; the others may be given and are skipped).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SidecarFiring<'a> {
    /// The sidecar container (present, or absent for `SidecarMissing`).
    pub container: &'a str,
    /// Which rule.
    pub alert: AlertName,
    /// Pending alerts do not count.
    pub state: AlertState,
    /// Since when its condition holds, when known.
    pub since: Option<Timestamp>,
}

/// One Pod of the workload, borrowing what the caller holds.
#[derive(Clone, Debug)]
pub struct RevisionPod<'a, F> {
    /// Its revision (`pod-template-hash`, `controller-revision-hash` or
    /// `pod-template-generation`, by kind).
    pub revision: &'a str,
    /// `metadata.creationTimestamp`.
    pub created: Timestamp,
    /// Neither finished nor being deleted: only live Pods count, in every revision.
    pub live: bool,
    /// The Pod's `Ready` condition is True: the controller counts it available, so whatever
    /// its sidecars fire does not hold the rollout (a missing or once OOM-killed sidecar of a
    /// Ready Pod blocks nothing).
    pub ready: bool,
    /// Its alerts ([`SidecarFiring`]).
    pub alerts: F,
}

impl<'a, F> RevisionPod<'a, F> {
    /// The Pod `view` of a workload of `kind`, with `alerts`; `None` when it carries no
    /// revision label for that kind or no creation time (a Pod without either is ignored).
    pub fn of(view: &'a PodView, kind: &WorkloadKind, alerts: F) -> Option<Self> {
        let revision = view.labels().get(kind.revision_label()?)?.as_str();
        let created = view.created_at?.timestamp();
        let live = view.is_live();
        let ready = view.ready_condition().is_some_and(|c| c.status);
        (!revision.is_empty()).then_some(RevisionPod { revision, created, live, ready, alerts })
    }
}

/// What a workload's controller says of its rollout, as the runtime read it from the
/// workload object (`Default`: nothing read, the Pods decide).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ControllerRollout {
    /// The revision the controller rolls to, as its Pods' revision label spells it.
    pub newest: Option<String>,
    /// Why the controller itself holds the rollout, if it does.
    pub held: Option<RolloutHold>,
}

/// A rollout its controller holds on purpose: old Pods stay by design, so a sidecar blocks
/// nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RolloutHold {
    /// A Deployment with `spec.paused`.
    Paused,
    /// A StatefulSet whose `rollingUpdate.partition` keeps this many Pods old.
    Partition(u32),
    /// A StatefulSet or DaemonSet updated `OnDelete`: old Pods go only when deleted.
    OnDelete,
}

/// A revision and how many live Pods it has.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Revision {
    /// The hash.
    pub hash: String,
    /// Its live Pods.
    pub pods: u32,
}

/// A rollout that a sidecar blocks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Blocked {
    /// The newest revision, every live Pod of which has [`Self::container`] failing.
    pub newest: Revision,
    /// The older revisions that still have live Pods, newest first.
    pub older: Vec<Revision>,
    /// The sidecar: of several failing on every Pod, the one with the alert first in
    /// [`BLOCKING`] (one every Pod has before one only some have), then the first by name.
    pub container: String,
    /// The first alert of [`BLOCKING`] that every Pod of the newest revision has firing on
    /// it, else the first that any has.
    pub alert: AlertName,
    /// How many Pods of the newest revision have [`Self::alert`] firing on it.
    pub alert_pods: u32,
    /// When the last of the newest revision's Pods started firing one of [`BLOCKING`] on the
    /// sidecar (its earliest known `since`): the condition holds from then. `None` when a
    /// Pod's is unknown.
    pub since: Option<Timestamp>,
    /// One line naming the workload, both revisions with their Pod counts, the sidecar and
    /// the alert.
    pub message: String,
}

/// Whether the rollout of workload `kind`/`name` is blocked by a sidecar, judged from its
/// Pods (every Pod of the workload, in any order; Pods of other workloads must not be given)
/// and what its `controller` says.
pub fn rollout_blocked<'a, 'b, F>(
    kind: &WorkloadKind,
    name: &str,
    pods: impl IntoIterator<Item = RevisionPod<'a, F>>,
    controller: &ControllerRollout,
) -> Option<Blocked>
where
    F: IntoIterator<Item = SidecarFiring<'b>>,
{
    kind.revision_label()?;
    if controller.held.is_some() {
        return None;
    }
    let mut revisions: HashMap<&'a str, RevisionAcc<'b>> = HashMap::new();
    // One Pod's blocking alerts, sorted to group them by container; reused across Pods.
    let mut firing: Vec<(&'b str, usize, Option<Timestamp>)> = Vec::new();
    for pod in pods {
        if !pod.live || pod.revision.is_empty() {
            continue;
        }
        let acc = revisions.entry(pod.revision).or_insert_with(|| RevisionAcc::new(pod.created));
        acc.pods = acc.pods.saturating_add(1);
        acc.first = acc.first.min(pod.created);
        acc.last = acc.last.max(pod.created);
        firing.clear();
        if pod.ready {
            // Counted among its revision's Pods, with no sidecar holding it back.
            continue;
        }
        firing.extend(pod.alerts.into_iter().filter_map(|a| {
            let rank = BLOCKING.iter().position(|b| *b == a.alert)?;
            (a.state == AlertState::Firing && !a.container.is_empty()).then_some((a.container, rank, a.since))
        }));
        firing.sort_unstable_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
        for group in firing.chunk_by(|a, b| a.0 == b.0) {
            acc.sidecars.entry(group[0].0).or_default().add_pod(group);
        }
    }
    if revisions.len() < 2 {
        return None;
    }
    // The controller's newest revision with no live Pod: no Pod of it for a sidecar to hold.
    let (newest_hash, newest) = match &controller.newest {
        Some(hash) => revisions.get_key_value(hash.as_str())?,
        None => revisions.iter().max_by_key(|(hash, r)| (r.first, r.last, **hash))?,
    };
    let (container, alert, alert_pods, since) = newest
        .sidecars
        .iter()
        .filter(|(_, s)| s.pods == newest.pods)
        .map(|(container, s)| {
            let common = s.per_alert.iter().position(|n| *n == s.pods);
            let rank = common.or_else(|| s.per_alert.iter().position(|n| *n > 0)).unwrap_or(BLOCKING.len());
            (common.is_none(), rank, *container, s)
        })
        .min_by_key(|(mixed, rank, container, _)| (*mixed, *rank, *container))
        .and_then(|(_, rank, container, s)| {
            let alert = *BLOCKING.get(rank)?;
            Some((container, alert, s.per_alert[rank], s.since.filter(|_| !s.since_unknown)))
        })?;
    let newest = Revision { hash: newest_hash.to_string(), pods: newest.pods };
    let mut older: Vec<(&RevisionAcc, Revision)> = revisions
        .iter()
        .filter(|(hash, _)| **hash != newest.hash)
        .map(|(hash, r)| (r, Revision { hash: hash.to_string(), pods: r.pods }))
        .collect();
    older.sort_unstable_by(|(a, ra), (b, rb)| (b.first, b.last, &rb.hash).cmp(&(a.first, a.last, &ra.hash)));
    let older: Vec<Revision> = older.into_iter().map(|(_, r)| r).collect();
    let message = message(kind, name, &newest, &older, container, alert, alert_pods);
    Some(Blocked { newest, older, container: container.to_string(), alert, alert_pods, since, message })
}

/// How many older revisions the message names one by one; the rest are summed up, so that
/// a workload with thousands of revisions has a message of one line.
const NAMED_OLDER: usize = 3;

fn message(
    kind: &WorkloadKind,
    name: &str,
    newest: &Revision,
    older: &[Revision],
    container: &str,
    alert: AlertName,
    alert_pods: u32,
) -> String {
    let mut m = format!("{kind} {name}: ");
    let _ = match newest.pods {
        1 => write!(m, "the 1 Pod of revision {} has {container} ", newest.hash),
        n => write!(m, "all {n} Pods of revision {} have {container} ", newest.hash),
    };
    let _ = match alert_pods == newest.pods {
        true => write!(m, "{alert}"),
        false => write!(m, "firing sidecar alerts ({alert} on {alert_pods})"),
    };
    m.push_str(" while ");
    let mut parts: Vec<String> =
        older.iter().take(NAMED_OLDER).map(|r| format!("{} of revision {}", pods(r.pods), r.hash)).collect();
    let rest = older.get(NAMED_OLDER..).unwrap_or_default();
    if !rest.is_empty() {
        let total = rest.iter().fold(0u32, |sum, r| sum.saturating_add(r.pods));
        parts.push(format!("{} of {} more revisions", pods(total), rest.len()));
    }
    match parts.split_last() {
        Some((last, [])) => m.push_str(last),
        Some((last, init)) => {
            m.push_str(&init.join(", "));
            m.push_str(" and ");
            m.push_str(last);
        }
        None => {}
    }
    let total = older.iter().fold(0u32, |sum, r| sum.saturating_add(r.pods));
    m.push_str(if total == 1 { " still runs" } else { " still run" });
    m
}

fn pods(n: u32) -> String {
    match n {
        1 => "1 Pod".to_string(),
        n => format!("{n} Pods"),
    }
}

/// What the live Pods of one revision add up to.
struct RevisionAcc<'a> {
    pods: u32,
    first: Timestamp,
    last: Timestamp,
    sidecars: HashMap<&'a str, SidecarAcc>,
}

impl RevisionAcc<'_> {
    fn new(created: Timestamp) -> Self {
        RevisionAcc { pods: 0, first: created, last: created, sidecars: HashMap::new() }
    }
}

/// One sidecar's blocking alerts over the live Pods of one revision.
#[derive(Default)]
struct SidecarAcc {
    /// Pods with any of [`BLOCKING`] firing on it.
    pods: u32,
    /// Pods with each of [`BLOCKING`] firing on it.
    per_alert: [u32; BLOCKING.len()],
    /// The latest of the Pods' firing-since.
    since: Option<Timestamp>,
    /// A Pod's firing-since is unknown.
    since_unknown: bool,
}

impl SidecarAcc {
    /// One Pod's alerts on this sidecar: (container, rank in [`BLOCKING`], since), sorted.
    fn add_pod(&mut self, alerts: &[(&str, usize, Option<Timestamp>)]) {
        self.pods = self.pods.saturating_add(1);
        let mut previous = None;
        for (_, rank, _) in alerts {
            // A Pod selected by two policies has the alert twice: counted once.
            if previous != Some(*rank) {
                if let Some(n) = self.per_alert.get_mut(*rank) {
                    *n = n.saturating_add(1);
                }
            }
            previous = Some(*rank);
        }
        match alerts.iter().filter_map(|a| a.2).min() {
            Some(started) => self.since = self.since.max(Some(started)),
            None => self.since_unknown = true,
        }
    }
}

#[cfg(test)]
mod tests;
