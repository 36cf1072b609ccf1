#![forbid(unsafe_code)]
//! The operator's in-memory state and the pure logic around it, tested without a cluster.
//!
//! Pods are kept as [`ObservedPod`]s (the compact [`PodView`] last observed with its
//! [`PodHistory`](sidecar_watch_engine::PodHistory)) with the alerts of the last evaluation,
//! in segments keyed by UID hash so that a scrape or a status computation locks one small
//! segment at a time and never stalls evaluation for long.
//! Only the reconciler task writes Pods, policies and namespaces (the Pod watcher adds names
//! to the interner as it builds views); scrapes, Events and the status writer read. The index
//! knows nothing of clients, leadership or the process: it is what Linkerd's
//! policy-controller calls its index.
//!
//! Each segment also keeps per-policy counts of its Pods' results ([`tallies`]), updated
//! under the same lock whenever a Pod's results change, so that [`Index::policy_stats`]
//! (asked for on every status write and scrape) sums 64 small tables instead of walking
//! every Pod.
//!
//! It also counts the versions each workload's Pods run of each sidecar ([`SidecarVersions`]):
//! when a workload's newest version changes (a rollout starts or ends), every one of its
//! Pods is evaluated again, as each public change does before it returns. Which segments
//! hold a workload's Pods ([`spread`]) bounds that walk, and the rollout judgement's, to
//! those segments.

mod census;
mod evaluate;
pub mod link;
mod namespaces;
mod on_workloads;
mod policies;
mod readout;
mod rollouts_blocked;
mod segment;
pub mod shard;
mod shares;
mod spread;
mod tallies;
mod tracked;
mod transitions;
mod workloads;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, MutexGuard, RwLock};

use jiff::Timestamp;

use census::Census;
pub use census::SidecarName;
use evaluate::{Evaluator, PolicyChange};
pub use link::{CreateFailures, IndexResource, Namespaces, Pods, Policies, PolicyScope, Watched, Writes};
pub use policies::{Labels, PolicyEntry};
pub use rollouts_blocked::{RolloutRead, CONTROLLER_REREAD, MAX_READ_REVISIONS};
use segment::Segment;
pub use shares::NamespaceShares;
use sidecar_watch_api::SlimPod;
use sidecar_watch_engine::{
    CompiledPolicy, Interner, NamespaceMeta, Observation, ObservedPod, PodUid, PodView, PolicyRef, DEFAULT_MAX_SIDECARS,
};
use sidecar_watch_engine::{InternedWorkload, SidecarVersions};
use spread::{SegmentSet, WorkloadSpread, EVERY_SEGMENT};
pub use tracked::{PolicyResult, StoredAlert, TrackedPod};
pub use transitions::{InvalidPolicy, Outcome, Transition, TransitionKind};
use workloads::Workloads;
pub use workloads::{Condition, WorkloadAlert, MAX_PER_NAMESPACE, MAX_WORKLOADS};

const SEGMENTS: usize = 64;

/// SidecarPolicies evaluated per namespace unless told otherwise
/// (`--max-policies-per-namespace`): far more than a team writes, few enough that one
/// namespace's Pod update costs at most this many evaluations.
pub const DEFAULT_MAX_POLICIES_PER_NAMESPACE: usize = 100;

/// The shared state of the operator.
pub struct Index {
    segments: Box<[Mutex<Segment>]>,
    policies: RwLock<BTreeMap<PolicyRef, PolicyEntry>>,
    namespaces: RwLock<HashMap<String, NamespaceMeta>>,
    census: Census,
    /// The versions each workload's Pods run of each sidecar (`SidecarVersionDrift`).
    versions: Mutex<SidecarVersions>,
    /// Sidecars evaluated per Pod (`--max-sidecars-per-pod`).
    max_sidecars: usize,
    /// SidecarPolicies evaluated per namespace (`--max-policies-per-namespace`).
    max_policies: usize,
    /// Evaluations of one Pod under one policy so far.
    evaluations: AtomicU64,
    /// What the views of tracked Pods share (names, label sets). Only the Pod watcher builds
    /// views, so the lock is uncontended; it is here rather than in a static so that the
    /// engine stays free of process-wide state.
    names: Mutex<Interner>,
    /// Which segments hold each workload's Pods: what reads one workload's Pods walks those.
    spread: Mutex<WorkloadSpread>,
    /// Conditions and alerts on workloads rather than Pods, and when a pending one fires.
    workloads: Mutex<(Workloads, Option<Timestamp>)>,
}

impl Default for Index {
    fn default() -> Self {
        Self::new()
    }
}

impl Index {
    /// An empty index that evaluates at most [`DEFAULT_MAX_SIDECARS`] sidecars per Pod.
    pub fn new() -> Self {
        Self::with_limits(DEFAULT_MAX_SIDECARS, DEFAULT_MAX_POLICIES_PER_NAMESPACE)
    }

    /// An empty index that evaluates at most `max_sidecars` sidecars per Pod.
    #[cfg(any(test, feature = "test-support"))]
    pub fn with_max_sidecars(max_sidecars: usize) -> Self {
        Self::with_limits(max_sidecars, DEFAULT_MAX_POLICIES_PER_NAMESPACE)
    }

    /// An empty index that evaluates at most `max_sidecars` sidecars per Pod and the
    /// `max_policies` oldest SidecarPolicies of each namespace.
    pub fn with_limits(max_sidecars: usize, max_policies: usize) -> Self {
        Self {
            segments: (0..SEGMENTS).map(|_| Mutex::new(Segment::default())).collect(),
            policies: RwLock::new(BTreeMap::new()),
            namespaces: RwLock::new(HashMap::new()),
            census: Census::default(),
            versions: Mutex::new(SidecarVersions::default()),
            max_sidecars,
            max_policies: max_policies.max(1),
            evaluations: AtomicU64::new(0),
            names: Mutex::new(Interner::default()),
            spread: Mutex::new(WorkloadSpread::default()),
            workloads: Mutex::new((Workloads::default(), None)),
        }
    }

    /// The compact view of a Pod, sharing names and label sets with the tracked Pods.
    pub fn view_of(&self, pod: &SlimPod) -> PodView {
        PodView::from_pod_in(pod, &mut self.names.lock())
    }

    /// The segment that holds (or would hold) the Pod with `uid`.
    fn segment_index(uid: PodUid<'_>) -> usize {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        uid.hash(&mut hasher);
        (hasher.finish() as usize) % SEGMENTS
    }

    fn segment(&self, uid: PodUid<'_>) -> MutexGuard<'_, Segment> {
        self.segments[Self::segment_index(uid)].lock()
    }

    /// Number of tracked Pods.
    pub fn pod_count(&self) -> usize {
        self.segments.iter().map(|s| s.lock().len()).sum()
    }

    /// Buckets of the segments' hash tables, for memory accounting: each costs a pointer and
    /// a control byte, used or not.
    #[cfg(any(test, feature = "test-support"))]
    pub fn table_buckets(&self) -> usize {
        self.segments.iter().map(|s| s.lock().buckets()).sum()
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
            for pod in segment.lock().values() {
                visit(pod);
            }
        }
    }

    /// A copy of the policy table.
    pub fn policies(&self) -> BTreeMap<PolicyRef, PolicyEntry> {
        self.policies.read().clone()
    }

    /// The UID of the object `policy` names now: `None` when the index holds no such policy
    /// (or it has no UID).
    pub fn policy_uid(&self, policy: &PolicyRef) -> Option<String> {
        self.policies.read().get(policy).and_then(|e| e.uid.clone())
    }

    /// Every evaluated policy (valid, not held back), by reference.
    fn valid_policies(&self) -> Vec<Arc<CompiledPolicy>> {
        let table = self.policies.read();
        table.values().filter_map(|e| e.evaluated().cloned()).collect()
    }

    fn evaluator(&self) -> Evaluator<'_> {
        Evaluator {
            census: &self.census,
            versions: &self.versions,
            max_sidecars: self.max_sidecars,
            evaluations: &self.evaluations,
        }
    }

    /// Evaluations of one Pod under one policy so far: what a change cost, for tests and
    /// benchmarks.
    pub fn evaluations(&self) -> u64 {
        self.evaluations.load(Ordering::Relaxed)
    }

    /// A new or changed Pod.
    pub(crate) fn put_pod(&self, view: PodView, now: Timestamp) -> Outcome {
        let mut outcome = {
            let policies = self.valid_policies();
            let namespaces = self.namespaces.read();
            let namespace = namespaces.get(view.namespace().as_str());
            let uid = view.uid();
            let segment_index = Self::segment_index(uid);
            let mut segment = self.segments[segment_index].lock();
            let counted_before = segment.get(uid).map(evaluate::counted_sidecars).unwrap_or_default();
            // A Pod first seen is observed for the first time as it is inserted (which
            // reports nothing); one already tracked observes the view after the last.
            let mut inserted = false;
            let (pod, tallies) = segment.get_or_insert_with(uid, || {
                inserted = true;
                TrackedPod::new(ObservedPod::new(view.clone(), now))
            });
            let owner_before = (!inserted).then(|| pod.view().owner().cloned());
            let observations = if inserted { Vec::new() } else { pod.observe(view, now) };
            let owner_after = pod.view().owner();
            // An owner is interned: the same workload is the same pointer.
            if owner_before
                .as_ref()
                .is_none_or(|before| before.as_ref().map(Arc::as_ptr) != owner_after.map(Arc::as_ptr))
            {
                let mut spread = self.spread.lock();
                let namespace = pod.view().namespace();
                if let Some(before) = owner_before {
                    spread.remove(namespace, before.as_deref());
                }
                spread.add(namespace, owner_after.map(Arc::as_ref), segment_index);
            }
            self.versions.lock().replace(&counted_before, &evaluate::counted_sidecars(pod));
            let mut outcome = self.evaluator().all(pod, tallies, &policies, namespace, now);
            self.note_rollout_change(pod.view(), rollouts_blocked::may_block(pod, &outcome));
            let sidecar_names: HashSet<&str> = pod.sidecar_containers().map(|(c, _)| c.name.as_str()).collect();
            for Observation::StartedUp { container, seconds } in observations {
                if sidecar_names.contains(container.as_str()) {
                    outcome.startups.push((pod.view().namespace().to_string(), container, seconds));
                }
            }
            outcome
        };
        self.settle_versions(now, &mut outcome);
        outcome
    }

    /// A Pod is gone: forget it and its series (no Events: there is nothing left to fix).
    /// The other Pods of its workload are evaluated again if it changes their newest sidecar
    /// versions.
    pub(crate) fn remove_pod(&self, uid: PodUid<'_>, now: Timestamp) -> Outcome {
        let Some(pod) = self.segment(uid).remove(uid) else { return Outcome::default() };
        self.forget(&pod);
        let mut outcome = Outcome::default();
        self.settle_versions(now, &mut outcome);
        outcome
    }

    /// Takes a Pod that is no longer tracked out of the census and the version counts.
    fn forget(&self, pod: &TrackedPod) {
        self.spread.lock().remove(pod.view().namespace(), pod.view().owner().map(Arc::as_ref));
        self.note_rollout_change(pod.view(), rollouts_blocked::fires_blocking(pod));
        self.census.replace(&pod.sidecar_names(), &[]);
        self.versions.lock().replace(&evaluate::counted_sidecars(pod), &[]);
    }

    /// Evaluates again every Pod of each workload whose newest version of a sidecar changed,
    /// so that its Pods are compared with the new one. One round is enough (evaluating
    /// again changes no Pod's sidecars), the second one a guard.
    fn settle_versions(&self, now: Timestamp, outcome: &mut Outcome) {
        for _ in 0..2 {
            let changed: Vec<InternedWorkload> = self.versions.lock().take_changed();
            if changed.is_empty() {
                return;
            }
            let segments = self
                .spread
                .lock()
                .segments_of(changed.iter().map(|(ns, w)| (ns.as_str(), w.kind.as_str(), w.name.as_str())));
            outcome.merge(self.reevaluate_where(now, segments, |p| {
                p.view().owner().is_some_and(|w| changed.iter().any(|(ns, cw)| cw == w && ns == p.view().namespace()))
            }));
        }
    }

    /// Sidecar container names (per namespace) that no tracked Pod runs any more since the
    /// last call: their per-name series can go.
    pub fn take_gone_sidecar_names(&self) -> Vec<SidecarName> {
        self.census.take_gone()
    }

    /// Whether the Pod with `uid` is tracked.
    pub fn contains_pod(&self, uid: PodUid<'_>) -> bool {
        self.with_pod(uid, |_| ()).is_some()
    }

    /// Reads one tracked Pod under its segment's lock.
    pub fn with_pod<R>(&self, uid: PodUid<'_>, read: impl FnOnce(&TrackedPod) -> R) -> Option<R> {
        self.segment(uid).get(uid).map(read)
    }

    /// UIDs of every tracked Pod.
    #[cfg(any(test, feature = "test-support"))]
    pub fn pod_uids(&self) -> HashSet<sidecar_watch_engine::PodUidBuf> {
        let mut uids = HashSet::new();
        self.for_each_pod(|p| {
            uids.insert(p.view().uid().into());
        });
        uids
    }

    /// Re-evaluates one Pod whose timer is due (no new state).
    pub fn reevaluate(&self, uid: PodUid<'_>, now: Timestamp) -> Outcome {
        let mut outcome = {
            let policies = self.valid_policies();
            let namespaces = self.namespaces.read();
            let mut segment = self.segment(uid);
            let Some((pod, tallies)) = segment.get_mut(uid) else { return Outcome::default() };
            let namespace = namespaces.get(pod.view().namespace().as_str());
            let outcome = self.evaluator().all(pod, tallies, &policies, namespace, now);
            self.note_rollout_change(pod.view(), rollouts_blocked::may_block(pod, &outcome));
            outcome
        };
        self.settle_versions(now, &mut outcome);
        outcome
    }

    /// Re-evaluates every Pod of `segments` for which `affected` is true.
    fn reevaluate_where(
        &self,
        now: Timestamp,
        segments: SegmentSet,
        affected: impl Fn(&TrackedPod) -> bool,
    ) -> Outcome {
        let policies = self.valid_policies();
        let evaluator = self.evaluator();
        self.reevaluate_with(segments, affected, |pod, tallies, namespace| {
            evaluator.all(pod, tallies, &policies, namespace, now)
        })
    }

    /// Evaluates again, with `evaluate`, every Pod of `segments` for which `affected` is
    /// true, one segment lock at a time, noting what each evaluation may do to its workload's
    /// rollout.
    fn reevaluate_with(
        &self,
        segments: SegmentSet,
        affected: impl Fn(&TrackedPod) -> bool,
        mut evaluate: impl FnMut(&mut TrackedPod, &mut tallies::Tallies, Option<&NamespaceMeta>) -> Outcome,
    ) -> Outcome {
        let namespaces = self.namespaces.read();
        let mut outcome = Outcome::default();
        for segment in spread::members(segments) {
            let mut segment = self.segments[segment].lock();
            let (pods, tallies) = segment.values_mut();
            for pod in pods.filter(|p| affected(p)) {
                let namespace = namespaces.get(pod.view().namespace().as_str());
                let evaluated = evaluate(pod, tallies, namespace);
                self.note_rollout_change(pod.view(), rollouts_blocked::may_block(pod, &evaluated));
                outcome.merge(evaluated);
            }
        }
        outcome
    }

    /// A new or changed policy: re-evaluates the Pods in its scope under this policy only
    /// (and under the policies of its namespace that the limit admits or holds back now).
    /// Status-only updates (the operator's own status writes among them) change nothing.
    pub(crate) fn put_policy(&self, policy: PolicyRef, mut entry: PolicyEntry, now: Timestamp) -> Outcome {
        let mut table = self.policies.write();
        let old = table.get(&policy);
        let unchanged = old.is_some_and(|old| entry.same_spec_as(old));
        let before = old.and_then(PolicyEntry::evaluated).cloned();
        // The limit's decision is the index's; a status-only update keeps it.
        entry.held_back = old.and_then(|o| o.held_back);
        table.insert(policy.clone(), entry);
        if unchanged {
            return Outcome::default();
        }
        let mut outcome = self.policy_changed(table, &policy, before, now);
        let held_back = self.policies.read().get(&policy).and_then(|e| e.held_back);
        outcome.limited_policies += u32::from(held_back.is_some());
        outcome
    }

    /// A deleted policy: its results go from the Pods it covered, and a policy of its
    /// namespace that the limit held back may be evaluated now.
    pub(crate) fn remove_policy(&self, policy: &PolicyRef, now: Timestamp) -> Outcome {
        let mut table = self.policies.write();
        let Some(old) = table.remove(policy) else { return Outcome::default() };
        self.policy_changed(table, policy, old.evaluated().cloned(), now)
    }

    /// After `policy` changed in `table` (it was evaluated as `before`): decides the limit
    /// of its namespace again and re-evaluates every policy whose evaluation changed, each
    /// under itself only.
    fn policy_changed(
        &self,
        mut table: parking_lot::RwLockWriteGuard<'_, BTreeMap<PolicyRef, PolicyEntry>>,
        policy: &PolicyRef,
        before: Option<Arc<CompiledPolicy>>,
        now: Timestamp,
    ) -> Outcome {
        let mut changes = vec![(policy.clone(), before)];
        if let Some(namespace) = policy.namespace.clone() {
            for other in policies::admit(&mut table, &namespace, self.max_policies) {
                if other == *policy {
                    continue;
                }
                let Some(entry) = table.get(&other) else { continue };
                // Held back now: it was evaluated before, as it is compiled.
                let before = entry.held_back.and(entry.compiled.as_ref().ok().cloned());
                changes.push((other, before));
            }
        }
        let after: Vec<Option<Arc<CompiledPolicy>>> =
            changes.iter().map(|(p, _)| table.get(p).and_then(PolicyEntry::evaluated).cloned()).collect();
        let newly_held_back = changes[1..].iter().filter(|(p, _)| table.get(p).is_some_and(|e| e.held_back.is_some()));
        let held_back = u32::try_from(newly_held_back.count()).unwrap_or(u32::MAX);
        drop(table);
        let mut outcome = Outcome { limited_policies: held_back, ..Outcome::default() };
        for ((policy, before), after) in changes.iter().zip(&after) {
            let change = PolicyChange { policy, before: before.as_deref(), after: after.as_ref() };
            outcome.merge(self.reevaluate_for_policy(&change, now));
        }
        // A policy that finds other sidecars changes what the workloads' versions count.
        self.settle_versions(now, &mut outcome);
        self.evaluate_workloads(now, None, &mut outcome);
        outcome
    }

    /// Re-evaluates, under the changed policy only, the Pods in its scope: its namespace (or
    /// everything), where the Pods it covered before are too, so that one namespace filter
    /// catches selector changes both ways.
    fn reevaluate_for_policy(&self, change: &PolicyChange<'_>, now: Timestamp) -> Outcome {
        let policies = self.valid_policies();
        let evaluator = self.evaluator();
        let in_scope = |p: &TrackedPod| change.policy.namespace.as_ref().is_none_or(|ns| *p.view().namespace() == *ns);
        self.reevaluate_with(EVERY_SEGMENT, in_scope, |pod, tallies, namespace| {
            evaluator.one(pod, tallies, change, &policies, namespace, now)
        })
    }
}

#[cfg(test)]
mod tests;
