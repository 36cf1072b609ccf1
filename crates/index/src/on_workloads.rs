//! The index's side of the alerts on workloads ([`crate::workloads`]): conditions set by the
//! runtime (a `FailedCreate` Event read) or found here (a rollout's Pods), evaluated under
//! the policies. A workload's `SidecarInjectionFailed` ends only when the runtime clears it
//! (the object that failed no longer needs Pods, or is gone), never because some Pod of the
//! workload appears: that may be an old revision's replacement.

use jiff::{SignedDuration, Timestamp};

use super::workloads::{Condition, Kept, WorkloadAlert};
use super::{Index, Outcome};
use sidecar_watch_engine::AlertName;
use sidecar_watch_engine::WorkloadId;

/// How long marked rollouts wait to be judged together: each judgement is one pass over the
/// Pods, so a burst of Pod changes costs one pass, not one each
/// (docs/benchmarks.md#what-do-the-alerts-on-workloads-cost).
pub(crate) const ROLLOUT_BATCH: SignedDuration = SignedDuration::from_secs(1);

impl Index {
    /// Sets (or, with `None`, clears) the condition of `alert` on `workload` and evaluates the
    /// workload alerts again. Returns what changed, and `false` when the condition was cut
    /// (its namespace, or the index, holds the most workloads it may).
    pub(crate) fn set_workload_condition(
        &self,
        alert: AlertName,
        workload: WorkloadId,
        condition: Option<Condition>,
        now: Timestamp,
    ) -> (Outcome, bool) {
        let key = (alert, workload);
        let kept = self.workloads.lock().0.set(alert, key.1.clone(), condition);
        let mut outcome = Outcome::default();
        self.evaluate_workloads(now, Some(&key), &mut outcome);
        (outcome, kept == Kept::Yes)
    }

    /// The condition of `alert` on `workload`, if it holds.
    pub fn workload_condition(&self, alert: AlertName, workload: &WorkloadId) -> Option<Condition> {
        self.workloads.lock().0.condition(alert, workload).cloned()
    }

    /// When the workload alerts are next due to be looked at ([`Index::revisit_workloads`]): the
    /// first pending one's `for` passing, a candidate's controller due to be read again, or,
    /// when a Pod change marked a rollout, at most `ROLLOUT_BATCH` after `now`. The runtime puts this on the timers it keeps for Pods.
    pub fn workloads_due(&self, now: Timestamp) -> Option<Timestamp> {
        let workloads = self.workloads.lock();
        let marked = workloads.0.has_marked_rollouts().then(|| now + ROLLOUT_BATCH);
        [workloads.1, marked, workloads.0.controllers_due].into_iter().flatten().min()
    }

    /// Judges the marked rollouts and evaluates the workload alerts again if a pending one is
    /// due to fire: the runtime calls this when [`Index::workloads_due`] says.
    pub fn revisit_workloads(&self, now: Timestamp) -> Outcome {
        let mut outcome = Outcome::default();
        self.mark_stale_controllers(now);
        let changed = self.judge_rollouts(now, &mut outcome);
        let due = self.workloads.lock().1.is_some_and(|at| at <= now);
        if due || changed {
            self.evaluate_workloads(now, None, &mut outcome);
        }
        outcome
    }

    /// Evaluates the workload condition `only` names (`None`: every condition) under the
    /// policies again (cheap when none holds).
    pub(crate) fn evaluate_workloads(
        &self,
        now: Timestamp,
        only: Option<&(AlertName, WorkloadId)>,
        outcome: &mut Outcome,
    ) {
        if self.workloads.lock().0.is_empty() {
            return;
        }
        let policies = self.valid_policies();
        let namespaces = self.namespaces.read();
        let mut workloads = self.workloads.lock();
        let (transitions, next) = workloads.0.evaluate(&policies, &namespaces, now, only);
        workloads.1 = next;
        outcome.transitions.extend(transitions);
    }

    /// Visits the workload alerts, pending and firing.
    pub fn for_each_workload_alert(&self, mut visit: impl FnMut(&WorkloadAlert)) {
        for alert in self.workloads.lock().0.alerts() {
            visit(alert);
        }
    }
}
