//! The index's side of the alerts on workloads ([`crate::workloads`]): conditions set by the
//! runtime (a `FailedCreate` Event read) or found here (a rollout's Pods), evaluated under
//! the policies. A workload's `SidecarInjectionFailed` ends only when the runtime clears it
//! (the object that failed no longer needs Pods, or is gone), never because some Pod of the
//! workload appears: that may be an old revision's replacement.

use jiff::Timestamp;

use super::workloads::{Condition, Kept, WorkloadAlert};
use super::{Index, Outcome};
use sidecar_watch_engine::AlertName;
use sidecar_watch_engine::WorkloadId;

impl Index {
    /// Sets (or, with `None`, clears) the condition of `alert` on `workload` and evaluates the
    /// workload alerts again. Returns what changed, and `false` when the condition was cut
    /// (its namespace, or the index, holds the most workloads it may).
    pub fn set_workload_condition(
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

    /// Evaluates the workload alerts again if a pending one is due to fire: the runtime calls
    /// this on a short tick (the alerts' `for` clocks run without any change).
    pub fn tick_workloads(&self, now: Timestamp) -> Outcome {
        let mut outcome = Outcome::default();
        let changed = self.judge_rollouts(now);
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
