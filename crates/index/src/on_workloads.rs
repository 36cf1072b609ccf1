//! The index's side of the alerts on workloads ([`crate::workloads`]): conditions set by the
//! runtime (a `FailedCreate` Event read) or found here (a rollout's Pods), evaluated under
//! the policies, resolved by the Pods a workload creates.

use jiff::Timestamp;

use super::workloads::{Condition, Kept, WorkloadAlert, WorkloadId};
use super::{Index, Outcome};
use sidecar_watch_engine::AlertName;

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

    /// What a Pod's creation says of its workload: a workload that could not create Pods
    /// and now created this one (created at `created`, at or after the last failure)
    /// creates Pods again.
    pub(crate) fn pod_created(
        &self,
        workload: WorkloadId,
        created: Option<Timestamp>,
        now: Timestamp,
        outcome: &mut Outcome,
    ) {
        let cleared = {
            let mut workloads = self.workloads.lock();
            let after_failure = workloads
                .0
                .condition(AlertName::SidecarInjectionFailed, &workload)
                // At or after: the API's times are whole seconds, and a Pod created in the
                // second of the last failure was created after it (a later failure makes a
                // newer Event, which sets the condition again).
                .is_some_and(|c| created.is_some_and(|at| at >= c.latest));
            if after_failure {
                workloads.0.set(AlertName::SidecarInjectionFailed, workload, None);
            }
            after_failure
        };
        if cleared {
            self.evaluate_workloads(now, None, outcome);
        }
    }

    /// Whether a new condition of `alert` in `namespace` would be kept (else it is cut).
    pub(crate) fn workload_has_room(&self, alert: AlertName, namespace: &str) -> bool {
        self.workloads.lock().0.has_room(alert, namespace)
    }

    /// Whether any workload cannot create Pods (a Pod's change then checks its workload).
    pub(crate) fn any_injection_failure(&self) -> bool {
        self.workloads.lock().0.holds_any(AlertName::SidecarInjectionFailed)
    }

    /// Whether a tracked Pod of `workload` was created at or after `at`: a failure that old is
    /// over (an Event listed again after a restart or a relist, its workload long healthy).
    /// One pass over the Pods; only a new failure that would be kept costs it.
    pub(crate) fn created_since(&self, workload: &WorkloadId, at: Timestamp) -> bool {
        let mut found = false;
        self.for_each_pod(|pod| {
            let view = pod.view();
            if found || view.namespace().as_str() != workload.namespace {
                return;
            }
            let (kind, name) = view.workload();
            let created = view.created_at.map(|s| s.timestamp());
            found = kind == workload.kind && name == workload.name && created.is_some_and(|c| c >= at);
        });
        found
    }
}
