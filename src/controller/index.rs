//! The operator's in-memory state and the pure logic around it, tested without a cluster.
//!
//! Pods are kept as compact [`PodView`]s with their observed [`PodHistory`] and the alerts
//! of the last evaluation, in segments keyed by UID hash so that a scrape or a status
//! computation locks one small segment at a time and never stalls evaluation for long.
//! Only the reconciler task writes; scrapes and the status writer read.
//!
//! Each segment also keeps per-policy counts of its Pods' results, updated under the same
//! lock whenever a Pod's results change, so that [`Index::policy_stats`] (asked for on
//! every status write and scrape) sums 64 small tables instead of walking every Pod.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use jiff::Timestamp;

use crate::api::{PolicyCounts, Severity};
use crate::engine::{
    evaluate, Alert, AlertName, AlertState, Check, CompiledPolicy, ContainerKind, Observation, PodHistory, PodView,
    PolicyRef, SidecarType, SpecError, Stamp,
};

const SEGMENTS: usize = 64;

/// Labels of a namespace.
pub type Labels = BTreeMap<String, String>;

/// A policy as the index knows it: valid and compiled, or invalid with the reason.
#[derive(Clone, Debug)]
pub struct PolicyEntry {
    /// `metadata.generation` of the object the entry was built from.
    pub generation: Option<i64>,
    /// `metadata.uid`, for Event references.
    pub uid: Option<String>,
    /// The compiled policy, or why it cannot be compiled.
    pub compiled: Result<Arc<CompiledPolicy>, SpecError>,
    /// The object's `spec` as received, to tell spec changes from status-only updates.
    pub spec: serde_json::Value,
    /// The `Ready` condition already on the object: (status, lastTransitionTime).
    pub ready_condition: Option<(String, String)>,
    /// Per-shard counts already on the object (sharded operation).
    pub shard_statuses: BTreeMap<String, crate::api::ShardStatus>,
}

impl PolicyEntry {
    /// An entry for a compiled (or rejected) spec, with nothing known of its object yet: no
    /// generation, UID, condition or shard counts (tools and tests; the watcher fills them).
    pub fn new(compiled: Result<CompiledPolicy, SpecError>, spec: serde_json::Value) -> Self {
        PolicyEntry {
            generation: None,
            uid: None,
            compiled: compiled.map(Arc::new),
            spec,
            ready_condition: None,
            shard_statuses: BTreeMap::new(),
        }
    }
}

/// An active alert as the index keeps it: everything but the message, which is most of an
/// alert's memory and is rebuilt by evaluating again when it is needed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoredAlert {
    /// Which rule.
    pub name: AlertName,
    /// Its severity.
    pub severity: Severity,
    /// Index into the Pod's `view.containers`; `None` for Pod-level checks.
    pub container: Option<u16>,
    /// The failed check, for `SidecarMisconfigured`.
    pub check: Option<Check>,
    /// Pending or firing.
    pub state: AlertState,
    /// Since when the condition holds.
    pub since: Option<Stamp>,
}

impl StoredAlert {
    fn new(view: &PodView, alert: &Alert) -> Self {
        let container =
            view.containers.iter().position(|c| c.name == alert.container).and_then(|i| u16::try_from(i).ok());
        StoredAlert {
            name: alert.name,
            severity: alert.severity,
            container,
            check: alert.check,
            state: alert.state,
            since: alert.since.map(Stamp::new),
        }
    }

    /// The container's name ("" for Pod-level checks).
    pub fn container_name<'a>(&self, view: &'a PodView) -> &'a str {
        self.container.and_then(|i| view.containers.get(usize::from(i))).map_or("", |c| c.name.as_str())
    }

    /// The alert without its message.
    fn to_alert(self, view: &PodView) -> Alert {
        Alert {
            name: self.name,
            severity: self.severity,
            container: self.container_name(view).to_string(),
            check: self.check,
            state: self.state,
            since: self.since.map(Stamp::timestamp),
            message: String::new(),
        }
    }
}

/// The alerts one policy raised on one Pod.
#[derive(Clone, Debug)]
pub struct PolicyResult {
    /// The policy.
    pub policy: Arc<PolicyRef>,
    /// Whether the policy publishes Events.
    pub events: bool,
    /// Active alerts, sorted by key.
    pub alerts: Vec<StoredAlert>,
}

impl PolicyResult {
    /// Whether one of the alerts fires.
    pub fn is_firing(&self) -> bool {
        self.alerts.iter().any(|a| a.state == AlertState::Firing)
    }
}

/// One tracked Pod.
#[derive(Clone, Debug)]
pub struct TrackedPod {
    /// The latest state.
    pub view: PodView,
    /// What the operator observed over time.
    pub history: PodHistory,
    /// One entry per valid policy that selects the Pod.
    pub results: Vec<PolicyResult>,
    /// Sidecar containers under any selecting policy: (index into `view.containers`, type).
    pub sidecars: Vec<(usize, SidecarType)>,
}

/// An alert that started firing or stopped firing: what Events announce.
#[derive(Clone, Debug, PartialEq)]
pub struct Transition {
    /// Fired or resolved.
    pub kind: TransitionKind,
    /// The Pod's namespace.
    pub namespace: String,
    /// The Pod's name.
    pub pod: String,
    /// The Pod's UID.
    pub pod_uid: String,
    /// Where the container is declared, for the Event's `fieldPath`.
    pub container_kind: Option<ContainerKind>,
    /// The policy.
    pub policy: Arc<PolicyRef>,
    /// Whether the policy publishes Events (`spec.events`).
    pub policy_events: bool,
    /// The alert (its state and message as of the transition).
    pub alert: Alert,
}

/// The direction of a [`Transition`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TransitionKind {
    /// The alert started firing.
    Fired,
    /// A firing alert cleared.
    Resolved,
}

/// What one change did: transitions to announce, startup timings, and when to look again.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    /// Alerts that started or stopped firing.
    pub transitions: Vec<Transition>,
    /// Startup durations observed (container, seconds) with the Pod's namespace.
    pub startups: Vec<(String, String, f64)>,
    /// When to re-evaluate each evaluated Pod: (uid, when), or `None` when nothing can change
    /// without a new Pod state, so that a timer set before (say, for a sidecar that was not
    /// ready for a moment) is dropped instead of waiting minutes to fire for nothing.
    pub wakeups: Vec<(String, Option<Timestamp>)>,
}

impl Outcome {
    fn merge(&mut self, other: Outcome) {
        self.transitions.extend(other.transitions);
        self.startups.extend(other.startups);
        self.wakeups.extend(other.wakeups);
    }
}

/// One policy's counts over some Pods: [`PolicyCounts`] with the firing alerts in an array
/// indexed by [`AlertName`], cheap to add and subtract on every evaluation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Tally {
    matched_pods: u32,
    alerting_pods: u32,
    pending_alerts: u32,
    firing: [u32; AlertName::ALL.len()],
}

impl Tally {
    /// What one Pod's result for a policy contributes.
    fn of(result: &PolicyResult) -> Tally {
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

    fn add(&mut self, other: &Tally) {
        self.matched_pods += other.matched_pods;
        self.alerting_pods += other.alerting_pods;
        self.pending_alerts += other.pending_alerts;
        for (n, m) in self.firing.iter_mut().zip(other.firing) {
            *n += m;
        }
    }

    fn subtract(&mut self, other: &Tally) {
        self.matched_pods -= other.matched_pods;
        self.alerting_pods -= other.alerting_pods;
        self.pending_alerts -= other.pending_alerts;
        for (n, m) in self.firing.iter_mut().zip(other.firing) {
            *n -= m;
        }
    }

    fn to_counts(self) -> PolicyCounts {
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
struct Tallies(hashbrown::HashMap<Arc<PolicyRef>, Tally>);

impl Tallies {
    /// A Pod's results change from `before` to `after`: its old contribution goes, the new
    /// one comes. Called under the segment lock with every change of `results`.
    fn replace(&mut self, before: &[PolicyResult], after: &[PolicyResult]) {
        for result in before {
            if let Some(tally) = self.0.get_mut(&*result.policy) {
                tally.subtract(&Tally::of(result));
                if tally.matched_pods == 0 {
                    self.0.remove(&*result.policy);
                }
            }
        }
        for result in after {
            self.0.entry(Arc::clone(&result.policy)).or_default().add(&Tally::of(result));
        }
    }
}

/// One segment of tracked Pods, keyed by the UID inside each Pod's view: no second copy of
/// the UID as a key, and one pointer per slot, so spare capacity costs little.
#[derive(Default)]
struct Segment {
    table: hashbrown::HashTable<Box<TrackedPod>>,
    hasher: hashbrown::DefaultHashBuilder,
    /// The counts of the Pods in `table`; every change of a Pod's results goes through
    /// [`Tallies::replace`] (evaluation, removal), so the two never disagree under the lock.
    tallies: Tallies,
}

impl Segment {
    fn hash(&self, uid: &str) -> u64 {
        use std::hash::BuildHasher;
        self.hasher.hash_one(uid)
    }

    /// The Pod with the segment's counts, which an evaluation of it updates.
    fn get_mut(&mut self, uid: &str) -> Option<(&mut TrackedPod, &mut Tallies)> {
        let hash = self.hash(uid);
        self.table.find_mut(hash, |p| p.view.uid == uid).map(|p| (&mut **p, &mut self.tallies))
    }

    /// The Pod, inserted without results (so it counts nothing) if new, with the counts.
    fn get_or_insert_with(&mut self, uid: &str, make: impl FnOnce() -> TrackedPod) -> (&mut TrackedPod, &mut Tallies) {
        let hash = self.hash(uid);
        let hasher = &self.hasher;
        let entry = self.table.entry(
            hash,
            |p| p.view.uid == uid,
            |p| {
                use std::hash::BuildHasher;
                hasher.hash_one(p.view.uid.as_str())
            },
        );
        (entry.or_insert_with(|| Box::new(make())).into_mut(), &mut self.tallies)
    }

    fn remove(&mut self, uid: &str) -> Option<Box<TrackedPod>> {
        let hash = self.hash(uid);
        let entry = self.table.find_entry(hash, |p| p.view.uid == uid).ok()?;
        self.tallies.replace(&entry.get().results, &[]);
        Some(entry.remove().0)
    }

    fn retain(&mut self, mut keep: impl FnMut(&TrackedPod) -> bool) {
        let tallies = &mut self.tallies;
        self.table.retain(|p| {
            let kept = keep(p);
            if !kept {
                tallies.replace(&p.results, &[]);
            }
            kept
        });
    }

    fn values(&self) -> impl Iterator<Item = &TrackedPod> {
        self.table.iter().map(|p| &**p)
    }

    /// Every Pod with the segment's counts, which evaluations of them update.
    fn values_mut(&mut self) -> (impl Iterator<Item = &mut TrackedPod>, &mut Tallies) {
        (self.table.iter_mut().map(|p| &mut **p), &mut self.tallies)
    }

    fn len(&self) -> usize {
        self.table.len()
    }
}

/// The shared state of the operator.
pub struct Index {
    segments: Box<[Mutex<Segment>]>,
    policies: RwLock<BTreeMap<PolicyRef, PolicyEntry>>,
    namespaces: RwLock<HashMap<String, Labels>>,
    leader: AtomicBool,
    synced: AtomicBool,
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
    /// An empty index.
    pub fn new() -> Self {
        Self {
            segments: (0..SEGMENTS).map(|_| Mutex::new(Segment::default())).collect(),
            policies: RwLock::new(BTreeMap::new()),
            namespaces: RwLock::new(HashMap::new()),
            leader: AtomicBool::new(false),
            synced: AtomicBool::new(false),
        }
    }

    fn segment(&self, uid: &str) -> MutexGuard<'_, Segment> {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        uid.hash(&mut hasher);
        lock(&self.segments[(hasher.finish() as usize) % SEGMENTS])
    }

    /// Whether this replica leads (publishes Events and status, exports alert series).
    pub fn is_leader(&self) -> bool {
        self.leader.load(Ordering::Acquire)
    }

    /// Sets leadership.
    pub fn set_leader(&self, leader: bool) {
        self.leader.store(leader, Ordering::Release);
    }

    /// Whether the initial lists are done.
    pub fn is_synced(&self) -> bool {
        self.synced.load(Ordering::Acquire)
    }

    /// Marks the initial lists as done.
    pub fn set_synced(&self) {
        self.synced.store(true, Ordering::Release);
    }

    /// Number of tracked Pods.
    pub fn pod_count(&self) -> usize {
        self.segments.iter().map(|s| lock(s).len()).sum()
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
        let mut sidecars: Vec<(usize, SidecarType)> = Vec::new();
        for policy in policies.iter().filter(|p| p.selects(&pod.view, ns_labels)) {
            let evaluation = evaluate(&pod.view, policy, &pod.history, now);
            clocked.extend(evaluation.clocked);
            next_change = match (next_change, evaluation.next_change) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            for (i, c) in pod.view.containers.iter().enumerate() {
                if let Some(kind) = policy.sidecar_type(c) {
                    if !sidecars.iter().any(|(j, _)| *j == i) {
                        sidecars.push((i, kind));
                    }
                }
            }
            let result = PolicyResult {
                policy: policy.shared_ref(),
                events: policy.events,
                alerts: evaluation.alerts.iter().map(|a| StoredAlert::new(&pod.view, a)).collect(),
            };
            let before = pod.results.iter().find(|r| r.policy == result.policy);
            transitions.extend(diff(&pod.view, before, &result, evaluation.alerts));
            results.push(result);
        }
        sidecars.sort_by_key(|(i, _)| *i);
        pod.history.set_clocks(clocked, now);
        tallies.replace(&pod.results, &results);
        pod.results = results;
        pod.sidecars = sidecars;
        Outcome { transitions, startups: Vec::new(), wakeups: vec![(pod.view.uid.clone(), next_change)] }
    }

    /// A new or changed Pod.
    pub fn apply_pod(&self, view: PodView, now: Timestamp) -> Outcome {
        let policies = self.valid_policies();
        let namespaces = self.namespaces.read().unwrap_or_else(|p| p.into_inner());
        let ns_labels = namespaces.get(view.namespace.as_str());
        let mut segment = self.segment(&view.uid);
        let (pod, tallies) = segment.get_or_insert_with(&view.uid, || TrackedPod {
            view: view.clone(),
            history: PodHistory::default(),
            results: Vec::new(),
            sidecars: Vec::new(),
        });
        let observations = pod.history.observe(&view, now);
        pod.view = view;
        let mut outcome = Self::evaluate_tracked(pod, tallies, &policies, ns_labels, now);
        let sidecar_names: HashSet<&str> =
            pod.sidecars.iter().map(|(i, _)| pod.view.containers[*i].name.as_str()).collect();
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
        self.segment(uid).remove(uid).is_some_and(|pod| pod.results.iter().any(PolicyResult::is_firing))
    }

    /// After a relist of `namespace` (or of every namespace): forget the Pods not in `seen`.
    /// Returns the UIDs forgotten.
    pub fn retain_pods(&self, namespace: Option<&str>, seen: &HashSet<String>) -> HashSet<String> {
        let mut gone = HashSet::new();
        for segment in self.segments.iter() {
            lock(segment).retain(|pod| {
                let kept = seen.contains(&pod.view.uid) || namespace.is_some_and(|ns| pod.view.namespace != ns);
                if !kept {
                    gone.insert(pod.view.uid.clone());
                }
                kept
            });
        }
        gone
    }

    /// UIDs of every tracked Pod.
    pub fn pod_uids(&self) -> HashSet<String> {
        let mut uids = HashSet::new();
        self.for_each_pod(|p| {
            uids.insert(p.view.uid.clone());
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
                Self::evaluate_tracked(pod, tallies, &policies, ns_labels, now)
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
                outcome.merge(Self::evaluate_tracked(pod, tallies, &policies, ns_labels, now));
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
            for (policy, tally) in &lock(segment).tallies.0 {
                // Results of a policy just deleted, until its Pods are evaluated again.
                let Some(sum) = sums.get_mut(&**policy) else { continue };
                sum.add(tally);
            }
        }
        sums.into_iter().map(|(policy, sum)| (policy, sum.to_counts())).collect()
    }

    /// [`Index::policy_stats`] the slow way, by walking every Pod: what the counts must equal.
    #[cfg(test)]
    fn policy_stats_by_walk(&self) -> BTreeMap<PolicyRef, PolicyCounts> {
        let mut stats: BTreeMap<PolicyRef, PolicyCounts> =
            self.policies().into_keys().map(|p| (p, PolicyCounts::default())).collect();
        self.for_each_pod(|pod| {
            for result in &pod.results {
                let Some(entry) = stats.get_mut(&result.policy) else { continue };
                entry.matched_pods += 1;
                let mut alerting = false;
                for alert in &result.alerts {
                    match alert.state {
                        AlertState::Firing => {
                            alerting = true;
                            *entry.firing.entry(alert.name.as_str().to_string()).or_default() += 1;
                        }
                        AlertState::Pending => entry.pending_alerts += 1,
                    }
                }
                entry.alerting_pods += u32::from(alerting);
            }
        });
        stats
    }
}

fn transition(kind: TransitionKind, view: &PodView, result: &PolicyResult, alert: Alert) -> Transition {
    Transition {
        kind,
        namespace: view.namespace.to_string(),
        pod: view.name.clone(),
        pod_uid: view.uid.clone(),
        container_kind: view.containers.iter().find(|c| c.name == alert.container).map(|c| c.kind),
        policy: Arc::clone(&result.policy),
        policy_events: result.events,
        alert,
    }
}

/// Alerts of one policy that started firing or stopped firing between two evaluations of
/// the same Pod. A policy that newly selects the Pod announces its firing alerts; one that
/// is deleted or stops selecting the Pod takes its alerts away silently (it is not here).
fn diff(view: &PodView, before: Option<&PolicyResult>, after: &PolicyResult, alerts: Vec<Alert>) -> Vec<Transition> {
    let was_firing = |alert: &Alert| {
        before.is_some_and(|b| {
            b.alerts.iter().any(|s| {
                s.state == AlertState::Firing
                    && s.name == alert.name
                    && s.check == alert.check
                    && s.container_name(view) == alert.container
            })
        })
    };
    let mut out = Vec::new();
    let mut still_firing: Vec<(AlertName, String, Option<Check>)> = Vec::new();
    for alert in alerts.into_iter().filter(|a| a.state == AlertState::Firing) {
        still_firing.push((alert.name, alert.container.clone(), alert.check));
        if !was_firing(&alert) {
            out.push(transition(TransitionKind::Fired, view, after, alert));
        }
    }
    if let Some(before) = before {
        for stored in before.alerts.iter().filter(|a| a.state == AlertState::Firing) {
            let key = (stored.name, stored.container_name(view).to_string(), stored.check);
            if !still_firing.contains(&key) {
                out.push(transition(TransitionKind::Resolved, view, after, stored.to_alert(view)));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{ClusterPolicySpec, PolicySpec, SlimPod};

    /// A small deterministic generator (xorshift): the sequence is the same on every run,
    /// so a failing step can be replayed.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % n as u64) as usize
        }

        fn pick<T: Copy>(&mut self, items: &[T]) -> T {
            items[self.below(items.len())]
        }
    }

    const NAMESPACES: [&str; 3] = ["shop", "ops", "batch"];
    const APPS: [&str; 3] = ["web", "api", "batch"];

    /// The sidecar's state in a generated Pod.
    #[derive(Clone, Copy, Debug)]
    enum Sidecar {
        Ready,
        NotReady,
        CrashLooping,
    }

    /// A Pod with a native `istio-proxy` sidecar (probes optional, so that the static check
    /// fires too) and optionally a legacy `log-sidecar`.
    fn pod(
        uid: usize,
        namespace: &str,
        app: &str,
        sidecar: Sidecar,
        restarts: u32,
        probes: bool,
        legacy: bool,
    ) -> PodView {
        let ready = matches!(sidecar, Sidecar::Ready);
        let running = serde_json::json!({"running": {"startedAt": "2026-11-22T10:00:00Z"}});
        let status = |name: &str, ready: bool, restarts: u32, state: &serde_json::Value| {
            serde_json::json!({"name": name, "ready": ready, "restartCount": restarts, "started": true,
                               "image": "", "imageID": "", "state": state})
        };
        let proxy_state = match sidecar {
            Sidecar::CrashLooping => serde_json::json!({"waiting": {"reason": "CrashLoopBackOff"}}),
            _ => running.clone(),
        };
        let mut proxy = serde_json::json!({"name": "istio-proxy", "image": "istio/proxyv2:1.22.0",
                                           "restartPolicy": "Always", "resources": {"requests": {"cpu": "10m"}}});
        if probes {
            proxy["readinessProbe"] = serde_json::json!({"httpGet": {"path": "/healthz/ready", "port": 15021}});
            proxy["startupProbe"] = serde_json::json!({"httpGet": {"path": "/healthz/ready", "port": 15021}});
        }
        let mut containers = vec![serde_json::json!({"name": "app", "image": "shop/web:1.0"})];
        let mut statuses = vec![status("app", true, 0, &running)];
        if legacy {
            containers.push(serde_json::json!({"name": "log-sidecar", "image": "fluent/fluent-bit:3.0"}));
            statuses.push(status("log-sidecar", ready, 0, &running));
        }
        let pod: SlimPod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": format!("pod-{uid}"), "namespace": namespace, "uid": format!("u{uid}"),
                         "labels": {"app": app}, "creationTimestamp": "2026-11-22T10:00:00Z"},
            "spec": {"initContainers": [proxy], "containers": containers},
            "status": {
                "startTime": "2026-11-22T10:00:00Z",
                "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"},
                                "lastTransitionTime": "2026-11-22T10:00:00Z"}],
                "initContainerStatuses": [status("istio-proxy", ready, restarts, &proxy_state)],
                "containerStatuses": statuses
            }
        }))
        .expect("valid Pod");
        PodView::from_pod(&pod)
    }

    /// One of a few policies, in one of a few variants: namespaced with changing selectors,
    /// cluster-wide with and without a namespace selector, and invalid.
    fn policy(rng: &mut Rng) -> (PolicyRef, PolicyEntry) {
        match rng.below(4) {
            0 | 1 => {
                let namespace = rng.pick(&NAMESPACES[..2]);
                let selector = match rng.below(3) {
                    0 => serde_json::json!({}),
                    _ => serde_json::json!({"matchLabels": {"app": rng.pick(&APPS)}}),
                };
                let spec: PolicySpec =
                    serde_json::from_value(serde_json::json!({"selector": selector, "events": rng.below(2) == 0}))
                        .expect("spec");
                let policy = PolicyRef::namespaced(namespace, "mesh");
                let compiled = CompiledPolicy::compile(policy.clone(), &spec);
                (policy, PolicyEntry::new(compiled, serde_json::to_value(&spec).expect("json")))
            }
            2 => {
                let spec: ClusterPolicySpec = serde_json::from_value(match rng.below(2) {
                    0 => serde_json::json!({"namespaceSelector": {"matchLabels": {"mesh": "on"}}}),
                    _ => serde_json::json!({"rules": {"startupOrder": {"enabled": false}}}),
                })
                .expect("spec");
                let compiled = CompiledPolicy::compile_cluster("platform", &spec);
                (PolicyRef::cluster("platform"), PolicyEntry::new(compiled, serde_json::to_value(&spec).expect("json")))
            }
            _ => {
                let spec: PolicySpec =
                    serde_json::from_value(serde_json::json!({"sidecars": {"pattern": "envoy("}})).expect("spec");
                let policy = PolicyRef::namespaced("shop", "broken");
                let compiled = CompiledPolicy::compile(policy.clone(), &spec);
                assert!(compiled.is_err());
                (policy, PolicyEntry::new(compiled, serde_json::to_value(&spec).expect("json")))
            }
        }
    }

    /// Drives the index through a long random-ish sequence of every kind of change and
    /// checks after each one that the incremental counts equal a walk over every Pod.
    #[test]
    fn incremental_policy_stats_equal_the_full_walk() {
        let mut saw = (false, false, false);
        for seed in [1_u64, 7, 42, 2026] {
            let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
            let index = Index::new();
            let mut now: Timestamp = "2026-11-22T10:00:00Z".parse().expect("time");
            let mut restarts = [0_u32; 40];
            // The cluster policy stays in, so that most Pods are selected by something.
            let all: ClusterPolicySpec = serde_json::from_value(serde_json::json!({})).expect("spec");
            let compiled = CompiledPolicy::compile_cluster("all", &all);
            index.apply_policy(PolicyRef::cluster("all"), PolicyEntry::new(compiled, serde_json::Value::Null), now);
            for step in 0..400 {
                now = now.checked_add(jiff::SignedDuration::from_secs(rng.below(90) as i64)).expect("time");
                let what = match rng.below(14) {
                    0..=4 => {
                        let uid = rng.below(restarts.len());
                        let sidecar = rng.pick(&[Sidecar::Ready, Sidecar::NotReady, Sidecar::CrashLooping]);
                        if matches!(sidecar, Sidecar::CrashLooping) || rng.below(8) == 0 {
                            restarts[uid] += 1;
                        }
                        let view = pod(
                            uid,
                            NAMESPACES[uid % NAMESPACES.len()],
                            rng.pick(&APPS),
                            sidecar,
                            restarts[uid],
                            rng.below(4) != 0,
                            rng.below(3) == 0,
                        );
                        index.apply_pod(view, now);
                        format!("apply pod u{uid} {sidecar:?}")
                    }
                    5 | 6 => {
                        let uid = format!("u{}", rng.below(restarts.len()));
                        index.reevaluate(&uid, now);
                        format!("reevaluate {uid}")
                    }
                    7 => {
                        let uid = format!("u{}", rng.below(restarts.len()));
                        index.delete_pod(&uid);
                        format!("delete pod {uid}")
                    }
                    8 | 9 => {
                        let (policy, entry) = policy(&mut rng);
                        index.apply_policy(policy.clone(), entry, now);
                        format!("apply policy {policy}")
                    }
                    10 => {
                        let (policy, _) = policy(&mut rng);
                        index.delete_policy(&policy, now);
                        format!("delete policy {policy}")
                    }
                    11 => {
                        let namespace = rng.pick(&NAMESPACES);
                        let labels = match rng.below(2) {
                            0 => Labels::from([("mesh".to_string(), "on".to_string())]),
                            _ => Labels::new(),
                        };
                        index.apply_namespace(namespace, labels.clone(), now);
                        format!("namespace {namespace} {labels:?}")
                    }
                    12 => {
                        let namespace = if rng.below(2) == 0 { None } else { Some(rng.pick(&NAMESPACES)) };
                        let seen: HashSet<String> =
                            index.pod_uids().into_iter().filter(|_| rng.below(4) != 0).collect();
                        index.retain_pods(namespace, &seen);
                        format!("retain pods in {namespace:?}")
                    }
                    _ => {
                        let seen: HashSet<PolicyRef> =
                            index.policies().into_keys().filter(|_| rng.below(3) != 0).collect();
                        let cluster = rng.below(2) == 0;
                        index.retain_policies(cluster, None, &seen, now);
                        format!("retain policies (cluster: {cluster})")
                    }
                };
                let stats = index.policy_stats();
                assert_eq!(stats, index.policy_stats_by_walk(), "seed {seed}, step {step}: {what}");
                for counts in stats.values() {
                    saw.0 |= counts.firing.values().any(|n| *n > 0);
                    saw.1 |= counts.pending_alerts > 0;
                    saw.2 |= counts.matched_pods > counts.alerting_pods && counts.alerting_pods > 0;
                }
            }
        }
        assert_eq!(saw, (true, true, true), "the sequence reaches firing, pending and mixed counts");
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
            index.apply_pod(pod(uid, "shop", "web", Sidecar::NotReady, 0, true, true), now);
        }
        assert_eq!(index.policy_stats()[&PolicyRef::cluster("all")].matched_pods, 100);
        for uid in 0..50 {
            index.delete_pod(&format!("u{uid}"));
        }
        index.retain_pods(Some("shop"), &HashSet::new());
        assert!(index.segments.iter().all(|s| lock(s).tallies.0.is_empty()));
        index.apply_pod(pod(1, "shop", "web", Sidecar::NotReady, 0, true, true), now);
        index.delete_policy(&PolicyRef::cluster("all"), now);
        assert!(index.segments.iter().all(|s| lock(s).tallies.0.is_empty()));
        assert!(index.policy_stats().is_empty());
    }
}
