//! The reconciler's pending work, served fairly per namespace.
//!
//! One FIFO let one tenant's policy edits (300 policies over 1,000 Pods, 20 edits/s) hold up
//! every other namespace's Pod changes by 10.7–16 s. Here the watch inputs and due timers
//! wait in the Event queue's [`FairQueue`]: one item from each waiting namespace in turn,
//! and within a namespace Pod changes and timers before policy and namespace work. A busy
//! namespace waits behind itself. Edits of one policy coalesce into its newest version (the
//! index only needs that one), so a tenant's edits cost at most one item per policy.
//!
//! Order across namespaces does not matter to the index (each Pod and each policy is
//! applied as it is now), except for relists: a relist ([`Input::PodsListed`], ...) waits
//! until everything received before it is applied, and nothing received after it is taken
//! in until it is, so that a Pod it found gone cannot be brought back by an older input.

use std::collections::HashMap;

use jiff::Timestamp;

use super::watch::Input;
use crate::engine::PolicyRef;
use crate::fair_queue::{Fair, FairQueue, Rank};
use crate::index::PolicyEntry;

/// Items waiting at most; beyond it the reconciler takes no more inputs (the watchers wait
/// on the bounded channel) and no more timers until some are applied.
const MAX_PENDING: usize = 4096;

/// One piece of work for the reconciler.
#[derive(Debug)]
pub(crate) enum Work {
    /// A watch input, as received (a relist is one only when everything before it is done).
    Input(Input),
    /// The newest version of a policy, or its deletion (`None`).
    Policy {
        /// Which policy.
        policy: PolicyRef,
        /// The entry, or `None` when it was deleted (boxed as it came from the watch).
        entry: Option<Box<PolicyEntry>>,
        /// When its newest watch event arrived.
        received: Option<tokio::time::Instant>,
    },
    /// A Pod's timer is due: a pending alert may fire now.
    Timer {
        /// The Pod.
        uid: String,
        /// The instant it was scheduled for.
        at: Timestamp,
    },
}

/// A queued item: the policy of a `Policy` item stays in [`Pending::policies`] until taken.
/// Nearly every item is an input (a Pod change): boxing it to shrink the rare others would
/// cost an allocation per Pod change.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
enum Queued {
    Input(Input),
    Policy(PolicyRef),
    Timer { namespace: String, uid: String, at: Timestamp },
}

impl Fair for Queued {
    fn namespace(&self) -> &str {
        match self {
            Queued::Input(Input::Pod { view, .. }) => view.namespace().as_str(),
            Queued::Input(Input::PodDeleted { namespace, .. }) | Queued::Timer { namespace, .. } => namespace,
            Queued::Input(Input::Namespace { name, .. } | Input::NamespaceDeleted(name)) => name,
            Queued::Policy(policy) => policy.namespace.as_deref().unwrap_or(""),
            // Relists and policy inputs are never queued as inputs.
            Queued::Input(_) => "",
        }
    }

    /// Pod changes and timers first: they are what alerts are about. Policy and namespace
    /// work next: it re-evaluates many Pods for a change their owners made themselves.
    fn rank(&self) -> Rank {
        match self {
            Queued::Input(Input::Pod { .. } | Input::PodDeleted { .. }) | Queued::Timer { .. } => Rank::Urgent,
            _ => Rank::Normal,
        }
    }
}

/// What the reconciler has received and not applied yet.
#[derive(Debug)]
pub(crate) struct Pending {
    queue: FairQueue<Queued>,
    /// The newest version of each queued policy (`None`: deleted), with when it arrived.
    policies: HashMap<PolicyRef, (Option<Box<PolicyEntry>>, Option<tokio::time::Instant>)>,
    /// A relist received: applied once the queue is empty, and nothing is taken in before.
    barrier: Option<Input>,
}

impl Default for Pending {
    fn default() -> Self {
        // Never full: `accepts` stops intake at MAX_PENDING, so the queue drops nothing.
        Pending { queue: FairQueue::new(MAX_PENDING + 1), policies: HashMap::new(), barrier: None }
    }
}

impl Pending {
    /// Whether another input or timer may be taken in now.
    pub(crate) fn accepts(&self) -> bool {
        self.barrier.is_none() && self.queue.len() < MAX_PENDING
    }

    /// Whether nothing waits.
    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.queue.is_empty() && self.barrier.is_none()
    }

    /// Takes in a watch input (call only while [`Self::accepts`]).
    pub(crate) fn push(&mut self, input: Input) {
        match input {
            Input::Policy { policy, entry, received } => self.push_policy(policy, Some(entry), Some(received)),
            Input::PolicyDeleted(policy) => self.push_policy(policy, None, None),
            barrier @ (Input::PodsListed { .. } | Input::PoliciesListed { .. } | Input::NamespacesListed(_)) => {
                self.barrier = Some(barrier);
            }
            other => {
                self.queue.push(Queued::Input(other));
            }
        }
    }

    fn push_policy(
        &mut self,
        policy: PolicyRef,
        entry: Option<Box<PolicyEntry>>,
        received: Option<tokio::time::Instant>,
    ) {
        if self.policies.insert(policy.clone(), (entry, received)).is_none() {
            self.queue.push(Queued::Policy(policy));
        }
    }

    /// Takes in a due timer of a Pod in `namespace` (call only while [`Self::accepts`]).
    pub(crate) fn push_timer(&mut self, namespace: String, uid: String, at: Timestamp) {
        self.queue.push(Queued::Timer { namespace, uid, at });
    }

    /// The next piece of work: the next namespace's turn, or the relist once nothing
    /// received before it is left.
    pub(crate) fn pop(&mut self) -> Option<Work> {
        match self.queue.pop() {
            Some(Queued::Input(input)) => Some(Work::Input(input)),
            Some(Queued::Timer { uid, at, .. }) => Some(Work::Timer { uid, at }),
            Some(Queued::Policy(policy)) => {
                let (entry, received) = self.policies.remove(&policy).unwrap_or((None, None));
                Some(Work::Policy { policy, entry, received })
            }
            None => self.barrier.take().map(Work::Input),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::engine::{CompiledPolicy, PodView};

    fn pod(namespace: &str, name: &str) -> Input {
        let mut view = PodView::from_pod(
            &serde_json::from_value(serde_json::json!({
                "metadata": {"name": name, "namespace": namespace, "uid": format!("{namespace}/{name}")}
            }))
            .expect("Pod"),
        );
        view.group_mut().namespace = namespace.into();
        Input::Pod { view, received: tokio::time::Instant::now() }
    }

    fn policy(namespace: &str, name: &str, generation: i64) -> Input {
        let policy = PolicyRef::namespaced(namespace, name);
        let compiled = CompiledPolicy::compile(policy.clone(), &Default::default());
        let mut entry = PolicyEntry::new(compiled);
        entry.generation = Some(generation);
        Input::Policy { policy, entry: Box::new(entry), received: tokio::time::Instant::now() }
    }

    /// (namespace, what) of each piece of work, in the order served.
    fn drain(pending: &mut Pending) -> Vec<(String, String)> {
        std::iter::from_fn(|| pending.pop())
            .map(|work| match work {
                Work::Input(Input::Pod { view, .. }) => (view.namespace().to_string(), format!("pod {}", view.name())),
                Work::Input(Input::PodsListed { .. }) => (String::new(), "relist".into()),
                Work::Input(other) => (String::new(), format!("{other:?}")),
                Work::Policy { policy, entry, .. } => (
                    policy.namespace.clone().unwrap_or_default(),
                    format!("policy {} gen {:?}", policy.name, entry.and_then(|e| e.generation)),
                ),
                // A timer's uid is `namespace/name` in these tests.
                Work::Timer { uid, .. } => {
                    (uid.split('/').next().unwrap_or_default().to_string(), format!("timer {uid}"))
                }
            })
            .collect()
    }

    /// A tenant's 1,000 edits of 300 policies queued before another namespace's Pod change:
    /// the Pod change is served second, the edits coalesce into one item per policy (the
    /// newest version), and within the tenant Pod changes come before policy work.
    #[test]
    fn a_busy_namespace_waits_behind_itself() {
        let mut pending = Pending::default();
        for edit in 0..1000 {
            pending.push(policy("tenant", &format!("p{:03}", edit % 300), edit));
        }
        pending.push(pod("tenant", "own"));
        pending.push(pod("shop", "web-1"));
        pending.push_timer("shop".into(), "shop/web-2".into(), Timestamp::UNIX_EPOCH);
        let served = drain(&mut pending);
        assert_eq!(served.len(), 300 + 3);
        assert_eq!(
            served[..4],
            [
                ("tenant".to_string(), "pod own".to_string()),
                ("shop".to_string(), "pod web-1".to_string()),
                ("tenant".to_string(), "policy p000 gen Some(900)".to_string()),
                ("shop".to_string(), "timer shop/web-2".to_string()),
            ]
        );
        assert_eq!(served[4], ("tenant".to_string(), "policy p001 gen Some(901)".to_string()));
        assert_eq!(served.last(), Some(&("tenant".to_string(), "policy p299 gen Some(899)".to_string())));
        assert!(pending.is_empty());
    }

    /// A relist waits for everything received before it and holds back what comes after;
    /// a deletion coalesces with the edits before it.
    #[test]
    fn a_relist_is_applied_after_everything_before_it() {
        let mut pending = Pending::default();
        pending.push(pod("a", "1"));
        pending.push(policy("b", "p", 1));
        pending.push(Input::PolicyDeleted(PolicyRef::namespaced("b", "p")));
        pending.push(Input::PodsListed { namespace: None, seen: HashSet::new() });
        assert!(!pending.accepts(), "nothing is taken in while a relist waits");
        let served = drain(&mut pending);
        let what: Vec<&str> = served.iter().map(|(_, w)| w.as_str()).collect();
        assert_eq!(what, ["pod 1", "policy p gen None", "relist"]);
        assert!(pending.accepts());
    }

    #[test]
    fn intake_stops_at_the_bound() {
        let mut pending = Pending::default();
        for i in 0..MAX_PENDING {
            assert!(pending.accepts());
            pending.push(pod("flood", &i.to_string()));
        }
        assert!(!pending.accepts());
        assert!(pending.pop().is_some());
        assert!(pending.accepts());
    }
}
