//! The reconciler's pending work, served fairly per namespace.
//!
//! One FIFO let one tenant's policy edits hold up every other namespace's Pod changes for
//! seconds (docs/benchmarks.md#figures-the-codes-comments-cite). Here the watch changes and
//! due timers wait in a [`FairQueue`]: one item from each waiting namespace in turn, and
//! within a namespace Pod changes and timers before policy and namespace work. A busy
//! namespace waits behind itself. Edits of one policy coalesce into its newest version (the
//! index only needs that one), so a tenant's edits cost at most one item per policy.
//!
//! Order across namespaces does not matter to the index (each Pod and each policy is
//! applied as it is now), except for relists: a relist ([`Op::Relisted`]) waits until
//! everything received before it is applied, and nothing received after it is taken in
//! until it is, so that a Pod it found gone cannot be brought back by an older change.

use std::collections::HashSet;

use jiff::Timestamp;
use tokio::time::Instant;

use super::create_failures::FailedCreateEvents;
use crate::engine::{PodUidBuf, PolicyRef};
use crate::fair_queue::{Fair, FairQueue, InNamespace, Rank};
use crate::fair_reader::Read;
use crate::index::{Namespaces, Pods, Policies, RolloutRead, Watched};
use crate::injection_failure::Involved;

/// Items waiting at most; beyond it the reconciler takes no more changes (the watchers wait
/// on the bounded channel) and no more timers until some are applied.
const MAX_PENDING: usize = 4096;

/// What a watch of kind `K` reports.
#[derive(Debug)]
pub(crate) enum Op<K: Watched> {
    /// An object was created or changed.
    Applied {
        /// The object, as the index takes it.
        object: K::Object,
        /// When the watch event arrived.
        received: Instant,
    },
    /// An object was deleted (or can no longer be read).
    Deleted {
        /// The namespace whose turn the deletion takes.
        namespace: String,
        /// Which object.
        key: K::Key,
    },
    /// A (re)list finished: what it did not list is forgotten.
    Relisted {
        /// Which watch (its first list counts towards readiness once).
        source: usize,
        /// What the watch lists.
        scope: K::Scope,
        /// What it listed.
        seen: HashSet<K::Key>,
    },
}

impl<K: Watched> Op<K> {
    fn namespace(&self) -> &str {
        match self {
            Op::Applied { object, .. } => K::namespace(object),
            Op::Deleted { namespace, .. } => namespace,
            // A relist waits as the barrier, ahead of every namespace.
            Op::Relisted { .. } => "",
        }
    }
}

/// One change for the reconciler: what a watch reported, or a Pod's timer falling due.
#[derive(Debug)]
pub(crate) enum Change {
    /// Of a Pod.
    Pod(Op<Pods>),
    /// Of a SidecarPolicy or ClusterSidecarPolicy.
    Policy(Op<Policies>),
    /// Of a namespace.
    Namespace(Op<Namespaces>),
    /// Of a controller's `FailedCreate` Event ([`super::create_failures`]).
    FailedCreate(Op<FailedCreateEvents>),
    /// What a read of the object a `FailedCreate` Event names found.
    FailedCreateRead(Read<Involved>),
    /// What a candidate blocked rollout's controller said ([`crate::rollout_controller`]).
    Controller(Read<RolloutRead>),
    /// A Pod's timer is due: a pending alert may fire now.
    Due {
        /// The Pod's namespace, whose turn it takes.
        namespace: String,
        /// The Pod.
        uid: PodUidBuf,
        /// The instant it was scheduled for.
        at: Timestamp,
    },
}

/// Each kind's [`Op`] is its own variant of [`Change`].
macro_rules! change_from_op {
    ($($kind:ty => $variant:ident),*) => {$(
        impl From<Op<$kind>> for Change {
            fn from(op: Op<$kind>) -> Self {
                Change::$variant(op)
            }
        }
    )*};
}
change_from_op!(Pods => Pod, Policies => Policy, Namespaces => Namespace, FailedCreateEvents => FailedCreate);

impl Change {
    fn is_relist(&self) -> bool {
        matches!(
            self,
            Change::Pod(Op::Relisted { .. })
                | Change::Policy(Op::Relisted { .. })
                | Change::Namespace(Op::Relisted { .. })
                | Change::FailedCreate(Op::Relisted { .. })
        )
    }

    /// The policy an edit or deletion is of: edits of one policy coalesce.
    fn policy(&self) -> Option<&PolicyRef> {
        match self {
            Change::Policy(Op::Applied { object: (policy, _), .. } | Op::Deleted { key: policy, .. }) => Some(policy),
            _ => None,
        }
    }
}

impl InNamespace for Change {
    fn namespace(&self) -> &str {
        match self {
            Change::Pod(op) => op.namespace(),
            Change::Policy(op) => op.namespace(),
            Change::Namespace(op) => op.namespace(),
            Change::FailedCreate(op) => op.namespace(),
            Change::FailedCreateRead(read) => read.lookup.namespace(),
            Change::Controller(read) => read.lookup.namespace(),
            Change::Due { namespace, .. } => namespace,
        }
    }
}

impl Fair for Change {
    /// Pod changes and timers first: they are what alerts are about. Policy and namespace
    /// work next: it re-evaluates many Pods for a change their owners made themselves.
    fn rank(&self) -> Rank {
        match self {
            Change::Pod(_)
            | Change::Due { .. }
            | Change::FailedCreate(_)
            | Change::FailedCreateRead(_)
            | Change::Controller(_) => Rank::Urgent,
            Change::Policy(_) | Change::Namespace(_) => Rank::Normal,
        }
    }
}

/// What the reconciler has received and not applied yet.
#[derive(Debug)]
pub(crate) struct Pending {
    queue: FairQueue<Change>,
    /// Policies with an edit or deletion queued: a newer one replaces it in place.
    policies: HashSet<PolicyRef>,
    /// A relist received: applied once the queue is empty, and nothing is taken in before.
    barrier: Option<Change>,
}

impl Default for Pending {
    fn default() -> Self {
        // Never full: `accepts` stops intake at MAX_PENDING, so the queue drops nothing.
        Pending { queue: FairQueue::new(MAX_PENDING + 1), policies: HashSet::new(), barrier: None }
    }
}

impl Pending {
    /// Whether another change or timer may be taken in now.
    pub(crate) fn accepts(&self) -> bool {
        self.barrier.is_none() && self.queue.len() < MAX_PENDING
    }

    /// Whether nothing waits.
    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.queue.is_empty() && self.barrier.is_none()
    }

    /// Takes in a change (call only while [`Self::accepts`]).
    pub(crate) fn push(&mut self, change: Change) {
        if change.is_relist() {
            self.barrier = Some(change);
            return;
        }
        if let Some(policy) = change.policy() {
            if !self.policies.insert(policy.clone()) {
                let queued = self.queue.find_mut(change.namespace(), Rank::Normal, |q| q.policy() == change.policy());
                if let Some(queued) = queued {
                    *queued = change;
                    return;
                }
            }
        }
        self.queue.push(change);
    }

    /// Takes in a due timer of a Pod in `namespace` (call only while [`Self::accepts`]).
    pub(crate) fn push_timer(&mut self, namespace: String, uid: PodUidBuf, at: Timestamp) {
        self.queue.push(Change::Due { namespace, uid, at });
    }

    /// The next change: the next namespace's turn, or the relist once nothing received
    /// before it is left.
    pub(crate) fn pop(&mut self) -> Option<Change> {
        let Some(change) = self.queue.pop() else { return self.barrier.take() };
        if let Some(policy) = change.policy() {
            self.policies.remove(policy);
        }
        Some(change)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{CompiledPolicy, PodView};
    use crate::index::PolicyEntry;

    fn pod(namespace: &str, name: &str) -> Change {
        let mut view = PodView::from_pod(
            &serde_json::from_value(serde_json::json!({
                "metadata": {"name": name, "namespace": namespace, "uid": format!("{namespace}/{name}")}
            }))
            .expect("Pod"),
        );
        view.group_mut().namespace = namespace.into();
        Change::Pod(Op::Applied { object: view, received: Instant::now() })
    }

    fn policy(namespace: &str, name: &str, generation: i64) -> Change {
        let policy = PolicyRef::namespaced(namespace, name);
        let compiled = CompiledPolicy::compile(policy.clone(), &Default::default());
        let mut entry = PolicyEntry::new(compiled);
        entry.generation = Some(generation);
        Change::Policy(Op::Applied { object: (policy, Box::new(entry)), received: Instant::now() })
    }

    /// (namespace, what) of each piece of work, in the order served.
    fn drain(pending: &mut Pending) -> Vec<(String, String)> {
        std::iter::from_fn(|| pending.pop())
            .map(|change| match change {
                Change::Pod(Op::Applied { object: view, .. }) => {
                    (view.namespace().to_string(), format!("pod {}", view.name()))
                }
                Change::Pod(Op::Relisted { .. }) => (String::new(), "relist".into()),
                Change::Policy(Op::Applied { object: (policy, entry), .. }) => (
                    policy.namespace.clone().unwrap_or_default(),
                    format!("policy {} gen {:?}", policy.name, entry.generation),
                ),
                Change::Policy(Op::Deleted { key: policy, .. }) => {
                    (policy.namespace.clone().unwrap_or_default(), format!("policy {} gen None", policy.name))
                }
                // A timer's uid is `namespace/name` in these tests.
                Change::Due { uid, .. } => {
                    let uid = uid.to_string();
                    (uid.split('/').next().unwrap_or_default().to_string(), format!("timer {uid}"))
                }
                other => (String::new(), format!("{other:?}")),
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
        pending.push_timer("shop".into(), PodUidBuf::parse("shop/web-2"), Timestamp::UNIX_EPOCH);
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
        let key = PolicyRef::namespaced("b", "p");
        pending.push(Change::Policy(Op::Deleted { namespace: "b".into(), key }));
        pending.push(Change::Pod(Op::Relisted { source: 0, scope: None, seen: HashSet::new() }));
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
