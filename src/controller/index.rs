//! The operator's in-memory state and the pure logic around it, tested without a cluster.
//!
//! Pods are kept as compact [`PodView`]s with their observed [`PodHistory`] and the alerts
//! of the last evaluation, in segments keyed by UID hash so that a scrape or a status
//! computation locks one small segment at a time and never stalls evaluation for long.
//! Only the reconciler task writes; scrapes and the status writer read.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use jiff::Timestamp;

use crate::api::{PolicyCounts, Severity};
use crate::engine::{
    evaluate, Alert, AlertName, AlertState, Check, CompiledPolicy, ContainerKind, Observation, PodHistory, PodView,
    PolicyRef, SidecarType, SpecError,
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
    pub since: Option<Timestamp>,
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
            since: alert.since,
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
            since: self.since,
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
    /// When the evaluation can change next without a new Pod state.
    pub next_change: Option<Timestamp>,
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
    /// Pods to re-evaluate at a given time: (uid, when).
    pub wakeups: Vec<(String, Timestamp)>,
}

impl Outcome {
    fn merge(&mut self, other: Outcome) {
        self.transitions.extend(other.transitions);
        self.startups.extend(other.startups);
        self.wakeups.extend(other.wakeups);
    }
}

/// One segment of tracked Pods, keyed by the UID inside each Pod's view: no second copy of
/// the UID as a key, and one pointer per slot, so spare capacity costs little.
#[derive(Default)]
struct Segment {
    table: hashbrown::HashTable<Box<TrackedPod>>,
    hasher: hashbrown::DefaultHashBuilder,
}

impl Segment {
    fn hash(&self, uid: &str) -> u64 {
        use std::hash::BuildHasher;
        self.hasher.hash_one(uid)
    }

    fn get_mut(&mut self, uid: &str) -> Option<&mut TrackedPod> {
        let hash = self.hash(uid);
        self.table.find_mut(hash, |p| p.view.uid == uid).map(|p| &mut **p)
    }

    fn get_or_insert_with(&mut self, uid: &str, make: impl FnOnce() -> TrackedPod) -> &mut TrackedPod {
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
        entry.or_insert_with(|| Box::new(make())).into_mut()
    }

    fn remove(&mut self, uid: &str) {
        let hash = self.hash(uid);
        if let Ok(entry) = self.table.find_entry(hash, |p| p.view.uid == uid) {
            entry.remove();
        }
    }

    fn retain(&mut self, mut keep: impl FnMut(&TrackedPod) -> bool) {
        self.table.retain(|p| keep(p));
    }

    fn values(&self) -> impl Iterator<Item = &TrackedPod> {
        self.table.iter().map(|p| &**p)
    }

    fn values_mut(&mut self) -> impl Iterator<Item = &mut TrackedPod> {
        self.table.iter_mut().map(|p| &mut **p)
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
        for segment in self.segments.iter() {
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

    /// Evaluates one tracked Pod against every valid policy and records the result.
    fn evaluate_tracked(
        pod: &mut TrackedPod,
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
        pod.results = results;
        pod.sidecars = sidecars;
        pod.next_change = next_change;
        Outcome {
            transitions,
            startups: Vec::new(),
            wakeups: next_change.map(|t| (pod.view.uid.clone(), t)).into_iter().collect(),
        }
    }

    /// A new or changed Pod.
    pub fn apply_pod(&self, view: PodView, now: Timestamp) -> Outcome {
        let policies = self.valid_policies();
        let namespaces = self.namespaces.read().unwrap_or_else(|p| p.into_inner());
        let ns_labels = namespaces.get(view.namespace.as_str());
        let mut segment = self.segment(&view.uid);
        let pod = segment.get_or_insert_with(&view.uid, || TrackedPod {
            view: view.clone(),
            history: PodHistory::default(),
            results: Vec::new(),
            sidecars: Vec::new(),
            next_change: None,
        });
        let observations = pod.history.observe(&view, now);
        pod.view = view;
        let mut outcome = Self::evaluate_tracked(pod, &policies, ns_labels, now);
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
    pub fn delete_pod(&self, uid: &str) {
        self.segment(uid).remove(uid);
    }

    /// After a relist of `namespace` (or of every namespace): forget the Pods not in `seen`.
    pub fn retain_pods(&self, namespace: Option<&str>, seen: &HashSet<String>) {
        for segment in self.segments.iter() {
            lock(segment)
                .retain(|pod| seen.contains(&pod.view.uid) || namespace.is_some_and(|ns| pod.view.namespace != ns));
        }
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
            Some(pod) => {
                let ns_labels = namespaces.get(pod.view.namespace.as_str());
                Self::evaluate_tracked(pod, &policies, ns_labels, now)
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
            for pod in lock(segment).values_mut().filter(|p| affected(p)) {
                let ns_labels = namespaces.get(pod.view.namespace.as_str());
                outcome.merge(Self::evaluate_tracked(pod, &policies, ns_labels, now));
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
                if !result.alerts.iter().any(|a| a.state == AlertState::Firing) {
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

    /// Counts per policy, for status and metrics.
    pub fn policy_stats(&self) -> BTreeMap<PolicyRef, PolicyCounts> {
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
