//! What the index's readers ask of all of it: the alerts firing now (a new leader's
//! reconciliation), the counts per policy (status and metrics) and the namespaces (the
//! labels `/metrics` copies).

use std::collections::{BTreeMap, HashMap};

use jiff::Timestamp;

use super::tallies::Tally;
use super::transitions::transition;
use super::{Index, Transition, TransitionKind};
use sidecar_watch_api::PolicyCounts;
use sidecar_watch_engine::{evaluate, AlertState, Around, NamespaceMeta, PolicyRef};

impl Index {
    /// Every firing alert now, as `Fired` transitions with their messages: what a new leader
    /// reconciles the Events already in the cluster against. Pods with firing alerts are
    /// evaluated again (at their last evaluation's state) to rebuild the messages.
    pub fn firing_now(&self, now: Timestamp) -> Vec<Transition> {
        let namespaces = self.namespaces.read();
        let mut out = Vec::new();
        self.for_each_pod(|pod| {
            for result in &pod.results {
                if !result.is_firing() {
                    continue;
                }
                // The policy that raised the stored alerts: every change of a policy
                // replaces its results before the change returns.
                let policy = &result.policy;
                // The segment's lock is held: the counts' lock is taken after it, as everywhere.
                let newest = self.versions.lock().newest_of(pod.view());
                let around = Around {
                    namespace: namespaces.get(pod.view().namespace().as_str()),
                    newest: &newest,
                    max_sidecars: self.max_sidecars,
                };
                let evaluation = evaluate(pod.view(), policy, pod.history(), now, around);
                for stored in result.alerts.iter().filter(|a| a.state == AlertState::Firing) {
                    let key = stored.key(pod.view(), &result.policy);
                    let alert = evaluation
                        .alerts
                        .iter()
                        .find(|a| a.key() == key)
                        .cloned()
                        .unwrap_or_else(|| stored.to_alert(pod.view(), &result.policy));
                    out.push(transition(TransitionKind::Fired, pod.view(), result, alert));
                }
            }
        });
        drop(namespaces);
        self.for_each_workload_alert(|a| {
            if a.alert.state == AlertState::Firing {
                out.push(a.transition(TransitionKind::Fired));
            }
        });
        out
    }

    /// Counts per policy (every policy in the table, invalid ones with zeros), for status and
    /// metrics: the sums of the segments' counts, one segment lock at a time, so each
    /// segment's share is as consistent as a walk over its Pods would be.
    pub fn policy_stats(&self) -> BTreeMap<PolicyRef, PolicyCounts> {
        let mut sums: BTreeMap<PolicyRef, Tally> = {
            let table = self.policies.read();
            table.keys().map(|p| (p.clone(), Tally::default())).collect()
        };
        for segment in self.segments.iter() {
            for (policy, tally) in segment.lock().tallies.iter() {
                // Results of a policy just deleted, until its Pods are evaluated again.
                let Some(sum) = sums.get_mut(policy) else { continue };
                sum.combine(tally, std::ops::AddAssign::add_assign);
            }
        }
        let mut counts: BTreeMap<PolicyRef, PolicyCounts> =
            sums.into_iter().map(|(policy, sum)| (policy, sum.to_counts())).collect();
        // Alerts on workloads count as alerts, not as Pods.
        self.for_each_workload_alert(|a| {
            let Some(c) = counts.get_mut(&a.policy) else { return };
            match a.alert.state {
                AlertState::Firing => *c.firing.entry(a.alert.name.as_str().to_string()).or_default() += 1,
                AlertState::Pending => c.pending_alerts += 1,
            }
        });
        counts
    }

    /// Reads the namespaces by name under their lock. `read` may visit a segment's Pods
    /// (the namespaces' lock is taken before a segment's, as evaluation takes them), never
    /// the other way round; keep it short, a namespace change waits for it.
    pub fn with_namespaces<R>(&self, read: impl FnOnce(&HashMap<String, NamespaceMeta>) -> R) -> R {
        read(&self.namespaces.read())
    }
}
