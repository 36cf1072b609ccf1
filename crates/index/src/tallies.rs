//! Per-policy counts of a segment's Pods, kept up to date with every change of a Pod's results
//! so that policy status and `sidecar_policy_pods` never walk every Pod.

use std::ops::{AddAssign, SubAssign};
use std::sync::Arc;

use super::tracked::PolicyResult;
use sidecar_watch_api::PolicyCounts;
use sidecar_watch_engine::{AlertName, AlertState, PolicyRef};

/// One policy's counts over some Pods: [`PolicyCounts`] with the firing alerts in an array
/// indexed by [`AlertName`], cheap to add and subtract on every evaluation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Tally {
    matched_pods: u32,
    alerting_pods: u32,
    pending_alerts: u32,
    firing: [u32; AlertName::ALL.len()],
}

impl Tally {
    /// What one Pod's result for a policy contributes.
    pub(super) fn of(result: &PolicyResult) -> Tally {
        let mut tally = Tally { matched_pods: 1, ..Tally::default() };
        for alert in &result.alerts {
            match alert.state {
                AlertState::Firing => tally.firing[alert.name as usize] += 1,
                AlertState::Pending => tally.pending_alerts += 1,
            }
        }
        tally.alerting_pods = u32::from(tally.firing.iter().any(|n| *n > 0));
        tally
    }

    /// Adds `other` to every count with `op` ([`AddAssign::add_assign`]), or subtracts it
    /// ([`SubAssign::sub_assign`]).
    pub(super) fn combine(&mut self, other: &Tally, op: impl Fn(&mut u32, u32)) {
        op(&mut self.matched_pods, other.matched_pods);
        op(&mut self.alerting_pods, other.alerting_pods);
        op(&mut self.pending_alerts, other.pending_alerts);
        for (n, m) in self.firing.iter_mut().zip(other.firing) {
            op(n, m);
        }
    }

    pub(super) fn to_counts(self) -> PolicyCounts {
        PolicyCounts {
            matched_pods: self.matched_pods,
            alerting_pods: self.alerting_pods,
            pending_alerts: self.pending_alerts,
            // Like the status has always shown them: only names with a firing alert.
            firing: AlertName::ALL
                .into_iter()
                .map(|name| (name, self.firing[name as usize]))
                .filter(|(_, n)| *n > 0)
                .map(|(name, n)| (name.as_str().to_string(), n))
                .collect(),
        }
    }
}

/// Per-policy counts of one segment's Pods, keyed by the policy of each result. A policy
/// no Pod of the segment matches has no entry, so deleted policies leave nothing behind.
#[derive(Default)]
pub(super) struct Tallies(hashbrown::HashMap<Arc<PolicyRef>, Tally>);

impl Tallies {
    /// A Pod's results change from `before` to `after`: its old contribution goes, the new
    /// one comes. Called under the segment lock with every change of `results`.
    pub(super) fn replace(&mut self, before: &[PolicyResult], after: &[PolicyResult]) {
        for result in before {
            if let Some(tally) = self.0.get_mut(result.policy_ref()) {
                tally.combine(&Tally::of(result), u32::sub_assign);
                if tally.matched_pods == 0 {
                    self.0.remove(result.policy_ref());
                }
            }
        }
        for result in after {
            self.0.entry(result.policy.shared_ref()).or_default().combine(&Tally::of(result), u32::add_assign);
        }
    }

    /// Each policy's counts over the segment's Pods.
    pub(super) fn iter(&self) -> impl Iterator<Item = (&PolicyRef, &Tally)> {
        self.0.iter().map(|(policy, tally)| (&**policy, tally))
    }

    /// Whether no Pod of the segment is selected by any policy.
    #[cfg(test)]
    pub(super) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}
