//! The operator's in-memory state and the pure logic around it, tested without a cluster.
//!
//! Pods are kept as compact [`PodView`]s with their observed [`PodHistory`] and the alerts
//! of the last evaluation, in segments keyed by UID hash so that a scrape or a status
//! computation locks one small segment at a time and never stalls evaluation for long.
//! Only the reconciler task writes; scrapes, Events and the status writer read. The index
//! knows nothing of clients, leadership or the process: it is what Linkerd's
//! policy-controller calls its index.
//!
//! Each segment also keeps per-policy counts of its Pods' results ([`tallies`]), updated
//! under the same lock whenever a Pod's results change, so that [`Index::policy_stats`]
//! (asked for on every status write and scrape) sums 64 small tables instead of walking
//! every Pod.

mod census;
mod policies;
mod segment;
pub mod shard;
mod tallies;
mod tracked;
mod transitions;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use jiff::Timestamp;

use crate::api::{PolicyCounts, SlimPod};
use crate::engine::{
    evaluate, evaluate_capped, AlertState, CompiledPolicy, Interner, Observation, PodHistory, PodView, PolicyRef,
    SidecarType, DEFAULT_MAX_SIDECARS,
};
use census::Census;
pub use census::SidecarName;
pub use policies::{Labels, PolicyEntry};
use segment::Segment;
use tallies::{Tallies, Tally};
pub use tracked::{PolicyResult, StoredAlert, TrackedPod};
use transitions::{diff, transition};
pub use transitions::{Outcome, Transition, TransitionKind};

const SEGMENTS: usize = 64;

/// The shared state of the operator.
pub struct Index {
    segments: Box<[Mutex<Segment>]>,
    policies: RwLock<BTreeMap<PolicyRef, PolicyEntry>>,
    namespaces: RwLock<HashMap<String, Labels>>,
    census: Census,
    /// Sidecars evaluated per Pod (`--max-sidecars-per-pod`).
    max_sidecars: usize,
    /// What the views of tracked Pods share (names, label sets). Only the Pod watcher builds
    /// views, so the lock is uncontended; it is here rather than in a static so that the
    /// engine stays free of process-wide state.
    names: Mutex<Interner>,
}

impl Default for Index {
    fn default() -> Self {
        Self::new()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves consistent data (every write is one insert or
    // remove), so a poisoned lock is still usable.
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl Index {
    /// An empty index that evaluates at most [`DEFAULT_MAX_SIDECARS`] sidecars per Pod.
    pub fn new() -> Self {
        Self::with_max_sidecars(DEFAULT_MAX_SIDECARS)
    }

    /// An empty index that evaluates at most `max_sidecars` sidecars per Pod.
    pub fn with_max_sidecars(max_sidecars: usize) -> Self {
        Self {
            segments: (0..SEGMENTS).map(|_| Mutex::new(Segment::default())).collect(),
            policies: RwLock::new(BTreeMap::new()),
            namespaces: RwLock::new(HashMap::new()),
            census: Census::default(),
            max_sidecars,
            names: Mutex::new(Interner::default()),
        }
    }

    /// The compact view of a Pod, sharing names and label sets with the tracked Pods.
    pub fn view_of(&self, pod: &SlimPod) -> PodView {
        PodView::from_pod_in(pod, &mut lock(&self.names))
    }

    fn segment(&self, uid: &str) -> MutexGuard<'_, Segment> {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        uid.hash(&mut hasher);
        lock(&self.segments[(hasher.finish() as usize) % SEGMENTS])
    }

    /// Number of tracked Pods.
    pub fn pod_count(&self) -> usize {
        self.segments.iter().map(|s| lock(s).len()).sum()
    }

    /// Buckets of the segments' hash tables, for memory accounting: each costs a pointer and
    /// a control byte, used or not.
    pub fn table_buckets(&self) -> usize {
        self.segments.iter().map(|s| lock(s).buckets()).sum()
    }

    /// Visits every tracked Pod, one segment lock at a time.
    pub fn for_each_pod(&self, mut visit: impl FnMut(&TrackedPod)) {
        for segment in 0..SEGMENTS {
            self.for_each_pod_in_segment(segment, &mut visit);
        }
    }

    /// How many segments there are, for callers that work one segment at a time.
    pub fn segment_count(&self) -> usize {
        SEGMENTS
    }

    /// Visits the Pods of one segment (`0..segment_count()`, others have none) under that
    /// segment's lock only: keep `visit` short, evaluation waits for it.
    pub fn for_each_pod_in_segment(&self, segment: usize, mut visit: impl FnMut(&TrackedPod)) {
        if let Some(segment) = self.segments.get(segment) {
            for pod in lock(segment).values() {
                visit(pod);
            }
        }
    }

    /// A copy of the policy table.
    pub fn policies(&self) -> BTreeMap<PolicyRef, PolicyEntry> {
        self.policies.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn valid_policies(&self) -> Vec<Arc<CompiledPolicy>> {
        let table = self.policies.read().unwrap_or_else(|p| p.into_inner());
        table.values().filter_map(|e| e.compiled.as_ref().ok().cloned()).collect()
    }

    /// Evaluates one tracked Pod against every valid policy and records the result, in the
    /// Pod and in its segment's counts.
    fn evaluate_tracked(
        census: &Census,
        max_sidecars: usize,
        pod: &mut TrackedPod,
        tallies: &mut Tallies,
        policies: &[Arc<CompiledPolicy>],
        ns_labels: Option<&Labels>,
        now: Timestamp,
    ) -> Outcome {
        let mut results = Vec::new();
        let mut transitions = Vec::new();
        let mut clocked = Vec::new();
        let mut next_change: Option<Timestamp> = None;
        let mut sidecars: Vec<(u32, SidecarType)> = Vec::new();
        let mut limited = false;
        for policy in policies.iter().filter(|p| p.selects(&pod.view, ns_labels)) {
            let evaluation = evaluate_capped(&pod.view, policy, &pod.history, now, max_sidecars);
            limited |= evaluation.sidecars_skipped > 0;
            clocked.extend(evaluation.clocked);
            next_change = match (next_change, evaluation.next_change) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            // Policies mostly agree on the sidecars: the union stays as small as the cap.
            for &(i, kind) in &evaluation.sidecars {
                // No Pod has 4 billion containers: a view of one would not fit in memory.
                let Ok(i) = u32::try_from(i) else { continue };
                if !sidecars.iter().any(|(j, _)| *j == i) {
                    sidecars.push((i, kind));
                }
            }
            let result = PolicyResult {
                policy: policy.shared_ref(),
                events: policy.events,
                alerts: evaluation
                    .alerts
                    .iter()
                    .map(|a| StoredAlert::new(&pod.view, &evaluation.sidecars, a))
                    .collect(),
            };
            let before = pod.results.iter().find(|r| r.policy == result.policy);
            transitions.extend(diff(&pod.view, before, &result, evaluation.alerts));
            results.push(result);
        }
        sidecars.sort_by_key(|(i, _)| *i);
        pod.history.set_clocks(clocked, now);
        tallies.replace(&pod.results, &results);
        pod.results = results.into_boxed_slice();
        if *pod.sidecars != *sidecars {
            let before = pod.sidecar_names();
            pod.sidecars = sidecars.into_boxed_slice();
            census.replace(&before, &pod.sidecar_names());
        }
        Outcome {
            transitions,
            startups: Vec::new(),
            wakeups: vec![(pod.view.uid().to_string(), next_change)],
            limited_pods: u32::from(limited),
        }
    }

    /// A new or changed Pod.
    pub fn apply_pod(&self, view: PodView, now: Timestamp) -> Outcome {
        let policies = self.valid_policies();
        let namespaces = self.namespaces.read().unwrap_or_else(|p| p.into_inner());
        let ns_labels = namespaces.get(view.namespace.as_str());
        let mut segment = self.segment(view.uid());
        let (pod, tallies) = segment.get_or_insert_with(view.uid(), || TrackedPod {
            view: view.clone(),
            history: PodHistory::default(),
            results: Box::default(),
            sidecars: Box::default(),
        });
        let observations = pod.history.observe(&view, now);
        pod.view = view;
        let mut outcome =
            Self::evaluate_tracked(&self.census, self.max_sidecars, pod, tallies, &policies, ns_labels, now);
        let sidecar_names: HashSet<&str> = pod.sidecar_containers().map(|(c, _)| c.name.as_str()).collect();
        for Observation::StartedUp { container, seconds } in observations {
            if sidecar_names.contains(container.as_str()) {
                outcome.startups.push((pod.view.namespace.to_string(), container, seconds));
            }
        }
        outcome
    }

    /// A Pod is gone: forget it and its series (no Events: there is nothing left to fix).
    /// Returns whether it had a firing alert (so that its announcements can be forgotten).
    pub fn delete_pod(&self, uid: &str) -> bool {
        let Some(pod) = self.segment(uid).remove(uid) else { return false };
        self.census.replace(&pod.sidecar_names(), &[]);
        pod.results.iter().any(PolicyResult::is_firing)
    }

    /// After a relist of `namespace` (or of every namespace): forget the Pods not in `seen`.
    /// Returns the UIDs forgotten.
    pub fn retain_pods(&self, namespace: Option<&str>, seen: &HashSet<String>) -> HashSet<String> {
        let mut gone = HashSet::new();
        for segment in self.segments.iter() {
            lock(segment).retain(|pod| {
                let kept = seen.contains(pod.view.uid()) || namespace.is_some_and(|ns| pod.view.namespace != ns);
                if !kept {
                    gone.insert(pod.view.uid().to_string());
                    self.census.replace(&pod.sidecar_names(), &[]);
                }
                kept
            });
        }
        gone
    }

    /// Sidecar container names (per namespace) that no tracked Pod runs any more since the
    /// last call: their per-name series can go.
    pub fn take_gone_sidecar_names(&self) -> Vec<SidecarName> {
        self.census.take_gone()
    }

    /// Whether the Pod with `uid` is tracked.
    pub fn contains_pod(&self, uid: &str) -> bool {
        self.with_pod(uid, |_| ()).is_some()
    }

    /// Reads one tracked Pod under its segment's lock.
    pub fn with_pod<R>(&self, uid: &str, read: impl FnOnce(&TrackedPod) -> R) -> Option<R> {
        self.segment(uid).get(uid).map(read)
    }

    /// UIDs of every tracked Pod.
    pub fn pod_uids(&self) -> HashSet<String> {
        let mut uids = HashSet::new();
        self.for_each_pod(|p| {
            uids.insert(p.view.uid().to_string());
        });
        uids
    }

    /// Re-evaluates one Pod whose timer is due (no new state).
    pub fn reevaluate(&self, uid: &str, now: Timestamp) -> Outcome {
        let policies = self.valid_policies();
        let namespaces = self.namespaces.read().unwrap_or_else(|p| p.into_inner());
        let mut segment = self.segment(uid);
        match segment.get_mut(uid) {
            Some((pod, tallies)) => {
                let ns_labels = namespaces.get(pod.view.namespace.as_str());
                Self::evaluate_tracked(&self.census, self.max_sidecars, pod, tallies, &policies, ns_labels, now)
            }
            None => Outcome::default(),
        }
    }

    /// Re-evaluates every Pod for which `affected` is true.
    fn reevaluate_where(&self, now: Timestamp, affected: impl Fn(&TrackedPod) -> bool) -> Outcome {
        let policies = self.valid_policies();
        let namespaces = self.namespaces.read().unwrap_or_else(|p| p.into_inner());
        let mut outcome = Outcome::default();
        for segment in self.segments.iter() {
            let mut segment = lock(segment);
            let (pods, tallies) = segment.values_mut();
            for pod in pods.filter(|p| affected(p)) {
                let ns_labels = namespaces.get(pod.view.namespace.as_str());
                outcome.merge(Self::evaluate_tracked(
                    &self.census,
                    self.max_sidecars,
                    pod,
                    tallies,
                    &policies,
                    ns_labels,
                    now,
                ));
            }
        }
        outcome
    }

    /// A new or changed policy: re-evaluates the Pods in its scope.
    /// Status-only updates (the operator's own status writes among them) change nothing.
    pub fn apply_policy(&self, policy: PolicyRef, entry: PolicyEntry, now: Timestamp) -> Outcome {
        let spec_changed = {
            let mut table = self.policies.write().unwrap_or_else(|p| p.into_inner());
            let unchanged = table.get(&policy).is_some_and(|old| old.spec == entry.spec && old.uid == entry.uid);
            table.insert(policy.clone(), entry);
            !unchanged
        };
        if !spec_changed {
            return Outcome::default();
        }
        self.reevaluate_policy_scope(&policy, now)
    }

    /// A deleted policy: re-evaluates the Pods it covered.
    pub fn delete_policy(&self, policy: &PolicyRef, now: Timestamp) -> Outcome {
        let removed = self.policies.write().unwrap_or_else(|p| p.into_inner()).remove(policy).is_some();
        if !removed {
            return Outcome::default();
        }
        self.reevaluate_policy_scope(policy, now)
    }

    /// After a relist of one policy kind: drops the policies of that kind not in `seen`.
    /// `namespace` limits the relist to one namespace (namespaced kind only).
    pub fn retain_policies(
        &self,
        cluster: bool,
        namespace: Option<&str>,
        seen: &HashSet<PolicyRef>,
        now: Timestamp,
    ) -> Outcome {
        let gone: Vec<PolicyRef> = {
            let table = self.policies.read().unwrap_or_else(|p| p.into_inner());
            table
                .keys()
                .filter(|p| p.namespace.is_none() == cluster && !seen.contains(p))
                .filter(|p| namespace.is_none() || p.namespace.as_deref() == namespace)
                .cloned()
                .collect()
        };
        let mut outcome = Outcome::default();
        for policy in gone {
            outcome.merge(self.delete_policy(&policy, now));
        }
        outcome
    }

    fn reevaluate_policy_scope(&self, policy: &PolicyRef, now: Timestamp) -> Outcome {
        // A policy's scope is its namespace (or everything); Pods it covered before are in
        // that scope too, so one namespace filter catches selector changes both ways.
        match &policy.namespace {
            Some(ns) => self.reevaluate_where(now, |p| &p.view.namespace == ns),
            None => self.reevaluate_where(now, |_| true),
        }
    }

    /// Namespace labels changed: re-evaluates its Pods if a cluster policy looks at labels.
    pub fn apply_namespace(&self, name: &str, labels: Labels, now: Timestamp) -> Outcome {
        let changed = {
            let mut namespaces = self.namespaces.write().unwrap_or_else(|p| p.into_inner());
            namespaces.insert(name.to_string(), labels.clone()) != Some(labels)
        };
        let label_sensitive = self.valid_policies().iter().any(|p| p.needs_namespace_labels());
        if !changed || !label_sensitive {
            return Outcome::default();
        }
        self.reevaluate_where(now, |p| p.view.namespace == name)
    }

    /// A namespace is gone.
    pub fn delete_namespace(&self, name: &str) {
        self.namespaces.write().unwrap_or_else(|p| p.into_inner()).remove(name);
    }

    /// After a relist of namespaces: drops those not in `seen`.
    pub fn retain_namespaces(&self, seen: &HashSet<String>) {
        self.namespaces.write().unwrap_or_else(|p| p.into_inner()).retain(|n, _| seen.contains(n));
    }

    /// Every firing alert now, as `Fired` transitions with their messages: what a new leader
    /// reconciles the Events already in the cluster against. Pods with firing alerts are
    /// evaluated again (at their last evaluation's state) to rebuild the messages.
    pub fn firing_now(&self, now: Timestamp) -> Vec<Transition> {
        let policies = self.valid_policies();
        let mut out = Vec::new();
        self.for_each_pod(|pod| {
            for result in &pod.results {
                if !result.is_firing() {
                    continue;
                }
                let Some(policy) = policies.iter().find(|p| p.shared_ref() == result.policy) else { continue };
                let evaluation = evaluate(&pod.view, policy, &pod.history, now);
                for stored in result.alerts.iter().filter(|a| a.state == AlertState::Firing) {
                    let key = (stored.name, stored.container_name(&pod.view), stored.check);
                    let alert = evaluation
                        .alerts
                        .iter()
                        .find(|a| a.key() == key)
                        .cloned()
                        .unwrap_or_else(|| stored.to_alert(&pod.view));
                    out.push(transition(TransitionKind::Fired, &pod.view, result, alert));
                }
            }
        });
        out
    }

    /// Counts per policy (every policy in the table, invalid ones with zeros), for status and
    /// metrics: the sums of the segments' counts, one segment lock at a time, so each
    /// segment's share is as consistent as a walk over its Pods would be.
    pub fn policy_stats(&self) -> BTreeMap<PolicyRef, PolicyCounts> {
        let mut sums: BTreeMap<PolicyRef, Tally> = {
            let table = self.policies.read().unwrap_or_else(|p| p.into_inner());
            table.keys().map(|p| (p.clone(), Tally::default())).collect()
        };
        for segment in self.segments.iter() {
            for (policy, tally) in lock(segment).tallies.iter() {
                // Results of a policy just deleted, until its Pods are evaluated again.
                let Some(sum) = sums.get_mut(policy) else { continue };
                sum.add(tally);
            }
        }
        sums.into_iter().map(|(policy, sum)| (policy, sum.to_counts())).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{ClusterPolicySpec, SlimPod};

    fn pod(uid: usize) -> PodView {
        let pod: SlimPod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": format!("pod-{uid}"), "namespace": "shop", "uid": format!("u{uid}"),
                         "labels": {"app": "web"}, "creationTimestamp": "2026-11-22T10:00:00Z"},
            "spec": {"containers": [{"name": "app", "image": "shop/web:1.0"},
                                    {"name": "log-sidecar", "image": "fluent/fluent-bit:3.0"}]},
            "status": {"containerStatuses": [
                {"name": "app", "ready": true, "restartCount": 0, "image": "", "imageID": "",
                 "state": {"running": {"startedAt": "2026-11-22T10:00:00Z"}}},
                {"name": "log-sidecar", "ready": false, "restartCount": 0, "image": "", "imageID": "",
                 "state": {"running": {"startedAt": "2026-11-22T10:00:00Z"}}}]}
        }))
        .expect("valid Pod");
        PodView::from_pod(&pod)
    }

    /// Deleted Pods and policies leave no counts behind in the segments.
    #[test]
    fn counts_go_with_their_pods() {
        let index = Index::new();
        let now: Timestamp = "2026-11-22T10:00:00Z".parse().expect("time");
        let spec: ClusterPolicySpec = serde_json::from_value(serde_json::json!({})).expect("spec");
        let compiled = CompiledPolicy::compile_cluster("all", &spec);
        index.apply_policy(PolicyRef::cluster("all"), PolicyEntry::new(compiled, serde_json::Value::Null), now);
        for uid in 0..100 {
            index.apply_pod(pod(uid), now);
        }
        assert_eq!(index.policy_stats()[&PolicyRef::cluster("all")].matched_pods, 100);
        for uid in 0..50 {
            index.delete_pod(&format!("u{uid}"));
        }
        index.retain_pods(Some("shop"), &HashSet::new());
        assert!(index.segments.iter().all(|s| lock(s).tallies.is_empty()));
        index.apply_pod(pod(1), now);
        index.delete_policy(&PolicyRef::cluster("all"), now);
        assert!(index.segments.iter().all(|s| lock(s).tallies.is_empty()));
        assert!(index.policy_stats().is_empty());
    }
}
