//! The reconciler: the one task that changes the index. It applies watch inputs, re-evaluates
//! Pods exactly when a pending alert would fire (the engine's next-change time, not a poll),
//! and hands alert transitions to the Event publisher.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::sync::Arc;

use jiff::Timestamp;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::index::{Index, Outcome};
use super::watch::Input;
use crate::events::{EventCommand, EventSink};
use crate::metrics::Metrics;

/// Pending timers: one per Pod (its latest schedule); superseded heap entries are skipped
/// when they come due, and compacted away before they can outnumber the live ones.
#[derive(Default)]
struct Timers {
    heap: BinaryHeap<Reverse<(Timestamp, String)>>,
    scheduled: HashMap<String, Timestamp>,
}

/// Superseded entries tolerated in the heap beyond twice the live timers: a flapping sidecar
/// reschedules its Pod on every update, minutes ahead, and at thousands of updates per
/// second those entries would otherwise pile up until they come due.
const TIMER_SLACK: usize = 1024;

impl Timers {
    fn schedule(&mut self, uid: String, at: Timestamp) {
        if self.scheduled.get(&uid) == Some(&at) {
            return;
        }
        self.scheduled.insert(uid.clone(), at);
        self.heap.push(Reverse((at, uid)));
        self.compact();
    }

    /// Rebuilds the heap from the live timers once superseded or forgotten entries outnumber
    /// them: O(live timers), at most once per that many changes, so amortized O(1).
    fn compact(&mut self) {
        if self.heap.len() > 2 * self.scheduled.len() + TIMER_SLACK {
            self.heap = self.scheduled.iter().map(|(uid, at)| Reverse((*at, uid.clone()))).collect();
        }
    }

    fn next(&self) -> Option<Timestamp> {
        self.heap.peek().map(|Reverse((t, _))| *t)
    }

    /// Pops the Pods due at `now` whose timer is still the current one.
    fn due(&mut self, now: Timestamp) -> Vec<(String, Timestamp)> {
        let mut due = Vec::new();
        while let Some(Reverse((at, _))) = self.heap.peek() {
            if *at > now {
                break;
            }
            let Some(Reverse((at, uid))) = self.heap.pop() else { break };
            if self.scheduled.get(&uid) == Some(&at) {
                self.scheduled.remove(&uid);
                due.push((uid, at));
            }
        }
        due
    }

    fn forget(&mut self, uid: &str) {
        if self.scheduled.remove(uid).is_some() {
            self.compact();
        }
    }
}

/// Everything the reconciler talks to.
pub struct Reconciler {
    /// The shared state.
    pub index: Arc<Index>,
    /// Metrics.
    pub metrics: Metrics,
    /// The Event publisher.
    pub events: EventSink,
    /// How many initial lists must finish before the operator is ready.
    pub initial_lists: usize,
    /// Leadership, from the lease.
    pub leader: watch::Receiver<bool>,
    /// Wakes the status writer when policy counts may have changed.
    pub status_dirty: Arc<tokio::sync::Notify>,
}

impl Reconciler {
    /// Runs until `inputs` closes or `shutdown` is cancelled.
    pub async fn run(mut self, mut inputs: mpsc::Receiver<Input>, shutdown: CancellationToken) {
        let mut timers = Timers::default();
        // Each watcher's first list counts once: a relist of one must not stand in for
        // another's first list.
        let mut lists_done: HashSet<ListSource> = HashSet::new();
        self.index.set_leader(*self.leader.borrow());
        loop {
            let next = timers.next();
            let sleep = async {
                match next {
                    Some(at) => {
                        let wait = Timestamp::now().duration_until(at);
                        tokio::time::sleep(wait.try_into().unwrap_or_default()).await
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                changed = self.leader.changed() => {
                    if changed.is_err() {
                        // The lease task ended (shutdown); nothing leads any more.
                        self.index.set_leader(false);
                        self.leader = watch::channel(false).1;
                        continue;
                    }
                    let leading = *self.leader.borrow_and_update();
                    self.index.set_leader(leading);
                    tracing::info!(leader = leading, "leadership changed");
                    if leading && self.index.is_synced() {
                        self.announce_leadership();
                    }
                }
                input = inputs.recv() => {
                    let Some(input) = input else { break };
                    crate::memory::note_activity();
                    let started = Instant::now();
                    let received = match &input {
                        Input::Pod { received, .. } | Input::Policy { received, .. } => Some(*received),
                        _ => None,
                    };
                    let lists_before = lists_done.len();
                    let outcome = self.apply(input, &mut timers, &mut lists_done);
                    self.finish(outcome, &mut timers);
                    self.metrics.reconcile_duration.observe(started.elapsed().as_secs_f64());
                    if let Some(received) = received {
                        self.metrics.detection_latency.observe(received.elapsed().as_secs_f64());
                    }
                    if lists_before < self.initial_lists && lists_done.len() >= self.initial_lists {
                        self.index.set_synced();
                        tracing::info!(pods = self.index.pod_count(), "initial lists done; ready");
                        if self.index.is_leader() {
                            self.announce_leadership();
                        }
                    }
                }
                _ = sleep => {
                    crate::memory::note_activity();
                    let now = Timestamp::now();
                    for (uid, at) in timers.due(now) {
                        let started = Instant::now();
                        // Evaluate at least at the scheduled instant, whatever the timer's jitter.
                        let outcome = self.index.reevaluate(&uid, now.max(at));
                        self.finish(outcome, &mut timers);
                        self.metrics.reconcile_duration.observe(started.elapsed().as_secs_f64());
                    }
                }
            }
        }
    }

    fn announce_leadership(&self) {
        let firing = self.index.firing_now(Timestamp::now()).into_iter().filter(|t| t.policy_events).collect();
        self.events.send(EventCommand::Lead { firing, pods: self.index.pod_uids() });
        self.status_dirty.notify_one();
    }

    fn apply(&self, input: Input, timers: &mut Timers, lists_done: &mut HashSet<ListSource>) -> Outcome {
        let now = Timestamp::now();
        match input {
            Input::Pod { view, .. } => self.index.apply_pod(view, now),
            Input::PodDeleted { uid } => {
                timers.forget(&uid);
                if self.index.delete_pod(&uid) {
                    self.events.send(EventCommand::PodsGone(HashSet::from([uid])));
                }
                Outcome::default()
            }
            Input::PodsListed { namespace, seen } => {
                let gone = self.index.retain_pods(namespace.as_deref(), &seen);
                for uid in &gone {
                    timers.forget(uid);
                }
                if !gone.is_empty() {
                    self.events.send(EventCommand::PodsGone(gone));
                }
                lists_done.insert(ListSource::Pods(namespace));
                Outcome::default()
            }
            Input::Policy { policy, entry, .. } => {
                if let Err(error) = &entry.compiled {
                    tracing::warn!(%policy, %error, "invalid policy; not evaluated");
                    self.events.send(EventCommand::InvalidPolicy {
                        policy: policy.clone(),
                        uid: entry.uid.clone(),
                        generation: entry.generation,
                        message: error.to_string(),
                    });
                }
                self.index.apply_policy(policy, entry, now)
            }
            Input::PolicyDeleted(policy) => self.index.delete_policy(&policy, now),
            Input::PoliciesListed { cluster, namespace, seen } => {
                let outcome = self.index.retain_policies(cluster, namespace.as_deref(), &seen, now);
                lists_done.insert(ListSource::Policies { cluster, namespace });
                outcome
            }
            Input::Namespace { name, labels } => self.index.apply_namespace(&name, labels, now),
            Input::NamespaceDeleted(name) => {
                self.index.delete_namespace(&name);
                Outcome::default()
            }
            Input::NamespacesListed(seen) => {
                self.index.retain_namespaces(&seen);
                lists_done.insert(ListSource::Namespaces);
                Outcome::default()
            }
        }
    }

    fn finish(&self, outcome: Outcome, timers: &mut Timers) {
        for (uid, at) in outcome.wakeups {
            match at {
                Some(at) => timers.schedule(uid, at),
                None => timers.forget(&uid),
            }
        }
        for (namespace, container, seconds) in outcome.startups {
            self.metrics.startup_seconds.with_label_values(&[&namespace, &container]).observe(seconds);
        }
        for transition in outcome.transitions {
            if transition.policy_events {
                self.events.send(EventCommand::Transition(transition));
            }
        }
        // Counts change without a transition too (a Pod selected, unselected or deleted, an
        // alert going pending): the writer debounces and skips policies whose status is
        // unchanged, so waking it on every change is cheap.
        self.status_dirty.notify_one();
    }
}

/// A watcher whose lists the operator waits for before it is ready.
#[derive(Debug, PartialEq, Eq, Hash)]
enum ListSource {
    /// Pods of a namespace (`None`: all namespaces).
    Pods(Option<String>),
    /// SidecarPolicies of a namespace, or ClusterSidecarPolicies.
    Policies { cluster: bool, namespace: Option<String> },
    /// Namespaces.
    Namespaces,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timers_keep_only_the_latest_schedule() {
        let mut timers = Timers::default();
        let t0: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let t1: Timestamp = "2026-01-01T00:01:00Z".parse().unwrap();
        timers.schedule("a".into(), t1);
        timers.schedule("a".into(), t0);
        timers.schedule("b".into(), t1);
        assert_eq!(timers.next(), Some(t0));
        assert_eq!(timers.due(t0), vec![("a".to_string(), t0)]);
        // The superseded t1 entry for "a" is discarded.
        assert_eq!(timers.due(t1), vec![("b".to_string(), t1)]);
        assert_eq!(timers.next(), None);
    }

    #[test]
    fn rescheduling_keeps_the_heap_bounded() {
        let mut timers = Timers::default();
        let t0: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        // Ten Pods rescheduled 10,000 times each, always further ahead.
        for round in 0..10_000i64 {
            for pod in 0..10 {
                timers.schedule(format!("pod-{pod}"), t0 + jiff::SignedDuration::from_secs(round));
            }
        }
        assert!(timers.heap.len() <= 2 * 10 + TIMER_SLACK + 1, "heap grew to {}", timers.heap.len());
        let last = t0 + jiff::SignedDuration::from_secs(9_999);
        let due = timers.due(last);
        assert_eq!(due.len(), 10, "each Pod fires once, at its latest schedule");
        assert!(due.iter().all(|(_, at)| *at == last));
        assert_eq!(timers.next(), None);

        // Timers set and dropped again (a sidecar not ready for a moment, many Pods): the
        // dropped entries do not stay in the heap until they would have come due.
        for pod in 0..100_000 {
            timers.schedule(format!("flip-{pod}"), last);
            timers.forget(&format!("flip-{pod}"));
        }
        assert!(timers.heap.len() <= TIMER_SLACK + 1, "heap holds {} dropped timers", timers.heap.len());
    }
}
