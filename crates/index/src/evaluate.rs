//! Evaluating one tracked Pod and recording the result in the Pod and in its segment's
//! counts: under every policy (a new Pod state, a timer), or under the one policy that
//! changed.
//!
//! Under one policy is what makes a policy edit cheap: it re-evaluates the Pods that
//! policy selects (or selected), for that policy only. Under every policy of the namespace,
//! an edit cost as many times more as there are policies, and a tenant's edits delayed other
//! namespaces' Events by seconds (docs/benchmarks.md#figures-the-codes-comments-cite).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use jiff::Timestamp;

use super::census::Census;
use super::tallies::Tallies;
use super::tracked::{PolicyResult, StoredAlert, TrackedPod};
use super::transitions::diff;
use super::Outcome;
use sidecar_watch_engine::{counted, SidecarVersions};
use sidecar_watch_engine::{
    evaluate, Alert, Around, CompiledPolicy, Identified, NamespaceMeta, PodView, PolicyRef, SidecarType,
};

/// What evaluations share: the sidecar census, the workloads' sidecar versions, the per-Pod
/// cap, and a count of them.
pub(super) struct Evaluator<'a> {
    pub census: &'a Census,
    pub versions: &'a Mutex<SidecarVersions>,
    pub max_sidecars: usize,
    pub evaluations: &'a AtomicU64,
}

/// One policy's change, as a re-evaluation of its Pods needs it.
pub(super) struct PolicyChange<'a> {
    pub policy: &'a PolicyRef,
    /// The policy as it was evaluated before (`None`: it was not: new, invalid or held back).
    pub before: Option<&'a CompiledPolicy>,
    /// The policy as it is evaluated now (`None`: it is not any more).
    pub after: Option<&'a Arc<CompiledPolicy>>,
}

/// The sidecars `policy` evaluates in `pod`: the first `max` it identifies, in container
/// order, as [`evaluate`] takes them.
fn sidecars_of(policy: &CompiledPolicy, pod: &PodView, max: usize) -> Vec<(usize, SidecarType)> {
    policy.sidecars(pod).take(max).map(|(i, _, identified)| (i, identified.kind)).collect()
}

/// An evaluation's `sidecars` as [`sidecars_of`] gives them: what the index keeps of how a
/// sidecar was identified is its type.
fn kinds(sidecars: &[(usize, Identified)]) -> impl Iterator<Item = (usize, SidecarType)> + '_ {
    sidecars.iter().map(|&(i, how)| (i, how.kind))
}

/// The containers of `sidecars` (indices with their types), by index, each once.
fn compact(sidecars: impl IntoIterator<Item = (usize, SidecarType)>) -> Vec<usize> {
    let mut out: Vec<usize> = sidecars.into_iter().map(|(i, _)| i).collect();
    out.sort_unstable();
    out.dedup();
    out
}

impl Evaluator<'_> {
    /// Marks `sidecars` (sorted indices) as the Pod's sidecars, and tells the census of
    /// sidecar names and the workloads' version counts when that changes them.
    fn set_sidecars(&self, pod: &mut TrackedPod, sidecars: Vec<usize>) {
        if !pod.sidecars_are(&sidecars) {
            let before = (pod.sidecar_names(), counted_sidecars(pod));
            pod.mark_sidecars(&sidecars);
            self.census.replace(&before.0, &pod.sidecar_names());
            self.versions.lock().replace(&before.1, &counted_sidecars(pod));
        }
    }

    /// Evaluates `pod` under every policy of `policies` that selects it.
    pub fn all(
        &self,
        pod: &mut TrackedPod,
        tallies: &mut Tallies,
        policies: &[Arc<CompiledPolicy>],
        namespace: Option<&NamespaceMeta>,
        now: Timestamp,
    ) -> Outcome {
        let mut results = Vec::new();
        let mut transitions = Vec::new();
        let mut clocked = Vec::new();
        let mut next_change: Option<Timestamp> = None;
        let mut sidecars = Vec::new();
        let mut limited = false;
        let ns_labels = namespace.map(|ns| &ns.labels);
        let newest = self.versions.lock().newest_of(pod.view());
        let around = Around { namespace, newest: &newest, max_sidecars: self.max_sidecars };
        for policy in policies.iter().filter(|p| p.selects(pod.view(), ns_labels)) {
            let evaluation = evaluate(pod.view(), policy, pod.history(), now, around);
            self.evaluations.fetch_add(1, Ordering::Relaxed);
            limited |= evaluation.sidecars_skipped > 0;
            clocked.extend(evaluation.clocked);
            next_change = match (next_change, evaluation.next_change) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            // Policies mostly agree on the sidecars: the union stays as small as the cap.
            sidecars.extend(kinds(&evaluation.sidecars));
            let result = result_of(policy, pod.view(), &evaluation.alerts, &evaluation.sidecars);
            let before = pod.results.iter().find(|r| r.policy_ref() == result.policy_ref());
            transitions.extend(diff(pod.view(), before, &result, evaluation.alerts));
            results.push(result);
        }
        pod.observed.set_clocks(clocked, now);
        tallies.replace(&pod.results, &results);
        pod.results = results.into_boxed_slice();
        self.set_sidecars(pod, compact(sidecars));
        Outcome {
            transitions,
            wakeups: vec![(pod.view().uid().into(), next_change)],
            limited_pods: u32::from(limited),
            ..Outcome::default()
        }
    }

    /// Evaluates `pod` under the changed policy only: its result is replaced, added (the
    /// policy selects the Pod now) or removed (it does not, or is gone), every other
    /// policy's result stays. `policies` (every evaluated policy, by reference) name the
    /// Pod's sidecars again when the changed policy's sidecars differ.
    pub fn one(
        &self,
        pod: &mut TrackedPod,
        tallies: &mut Tallies,
        change: &PolicyChange<'_>,
        policies: &[Arc<CompiledPolicy>],
        namespace: Option<&NamespaceMeta>,
        now: Timestamp,
    ) -> Outcome {
        // Results are kept by policy (both paths insert them in the policy table's order):
        // a binary search, as a Pod may have a result of each of hundreds of policies.
        let position = pod.results.binary_search_by(|r| r.policy_ref().cmp(change.policy)).ok();
        let selecting = change.after.filter(|p| p.selects(pod.view(), namespace.map(|ns| &ns.labels)));
        let mut outcome = Outcome::default();
        let (result, sidecars_after) = match selecting {
            Some(policy) => {
                let newest = self.versions.lock().newest_of(pod.view());
                let around = Around { namespace, newest: &newest, max_sidecars: self.max_sidecars };
                let evaluation = evaluate(pod.view(), policy, pod.history(), now, around);
                self.evaluations.fetch_add(1, Ordering::Relaxed);
                outcome.limited_pods = u32::from(evaluation.sidecars_skipped > 0);
                pod.observed.add_clocks(evaluation.clocked, now);
                if let Some(at) = evaluation.next_change {
                    outcome.wake_by.push((pod.view().uid().into(), at));
                }
                let result = result_of(policy, pod.view(), &evaluation.alerts, &evaluation.sidecars);
                // A policy that stops selecting the Pod takes its alerts away silently, as a
                // deleted one does: only a result that stays is compared.
                let before = position.map(|i| &pod.results[i]);
                outcome.transitions = diff(pod.view(), before, &result, evaluation.alerts);
                (Some(result), evaluation.sidecars)
            }
            None if position.is_none() => return outcome,
            None => (None, Vec::new()),
        };
        // Whether the Pod's sidecars may change: most edits change rules, not sidecars.
        let sidecars_changed = match (position, change.before, selecting) {
            (None, _, _) => !sidecars_after.is_empty(),
            (Some(_), Some(before), Some(after)) if after.same_sidecars(before) => false,
            (Some(_), Some(before), _) => {
                !sidecars_of(before, pod.view(), self.max_sidecars).into_iter().eq(kinds(&sidecars_after))
            }
            // Not known how it was evaluated: name them again.
            (Some(_), None, _) => true,
        };
        match (position, result) {
            (Some(i), Some(result)) => {
                // In place, as a Pod may have hundreds of results to shift.
                let before = std::mem::replace(&mut pod.results[i], result);
                tallies.replace(std::slice::from_ref(&before), std::slice::from_ref(&pod.results[i]));
            }
            (position, result) => {
                let mut results = std::mem::take(&mut pod.results).into_vec();
                let removed: Vec<PolicyResult> = position.map(|i| results.remove(i)).into_iter().collect();
                let added = result.map(|result| {
                    let at = results.partition_point(|r| r.policy_ref() < result.policy_ref());
                    results.insert(at, result);
                    at
                });
                tallies.replace(&removed, added.map(|i| std::slice::from_ref(&results[i])).unwrap_or_default());
                pod.results = results.into_boxed_slice();
            }
        }
        if sidecars_changed {
            self.name_sidecars_again(pod, policies);
        }
        outcome
    }

    /// The changed policy's sidecars differ: the union is named again from every policy
    /// with a result (identification only, no evaluation).
    fn name_sidecars_again(&self, pod: &mut TrackedPod, policies: &[Arc<CompiledPolicy>]) {
        let union = pod.results.iter().filter_map(|r| {
            let i = policies.binary_search_by(|p| p.policy.cmp(r.policy_ref())).ok()?;
            Some(sidecars_of(&policies[i], pod.view(), self.max_sidecars))
        });
        let union = compact(union.flatten());
        self.set_sidecars(pod, union);
    }
}

/// What the Pod's tracked sidecars add to its workload's version counts.
pub(super) fn counted_sidecars(pod: &TrackedPod) -> Vec<sidecar_watch_engine::Counted> {
    counted(pod.view(), pod.sidecar_containers().map(|(c, _)| c))
}

/// What the index keeps of `policy`'s evaluation of the Pod `view`: its `alerts` without
/// their messages (`sidecars`, the evaluated ones, find their containers).
fn result_of(
    policy: &Arc<CompiledPolicy>,
    view: &PodView,
    alerts: &[Alert],
    sidecars: &[(usize, Identified)],
) -> PolicyResult {
    PolicyResult {
        policy: Arc::clone(policy),
        alerts: alerts.iter().map(|a| StoredAlert::new(view, sidecars, policy, a)).collect(),
    }
}
