//! Interned values for what repeats across Pods: namespaces, container names, reasons and
//! whole label sets (the pools; [`Interner`](super::interner::Interner) holds them). Replicas of one workload share them, so a tracked Pod
//! holds a pointer instead of a copy, which is most of what keeps a tracked Pod far smaller
//! than the object it was read from (docs/benchmarks.md#how-much-memory-does-a-tracked-pod-cost).

use std::borrow::Borrow;
use std::collections::{BTreeMap, HashSet};
use std::hash::Hash;
use std::sync::Arc;

/// An immutable, cheaply cloned, interned string: a thin pointer (8 bytes, not the 16 of an
/// `Arc<str>`) to one allocation that holds the count, the length and the text. A tracked Pod
/// holds one per container, per history entry and per waiting or termination reason. Its
/// hash and order are the string's, so a set of names is looked up by `&str`.
pub type Name = arcstr::ArcStr;

/// A Pod's labels, shared between Pods that have exactly the same ones.
pub type LabelSet = Arc<BTreeMap<String, String>>;

/// The workload a Pod belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Workload {
    /// `Deployment`, `StatefulSet`, `Job`, …
    pub kind: Name,
    /// The workload's name.
    pub name: Name,
}

/// A shared value a [`Pool`] holds, which knows whether anything but the pool holds it too.
pub(super) trait Shared: Clone + Eq + Hash {
    fn in_use(&self) -> bool;
}

impl<T: Eq + Hash + ?Sized> Shared for Arc<T> {
    fn in_use(&self) -> bool {
        Arc::strong_count(self) > 1
    }
}

impl Shared for Name {
    fn in_use(&self) -> bool {
        // `None`: a literal, which no pool frees.
        Name::strong_count(self).is_none_or(|count| count > 1)
    }
}

/// Interns values of one type. Entries that only the pool still holds are swept when the
/// set has doubled since the last sweep, so it stays proportional to what is in use.
pub(super) struct Pool<T: Shared> {
    set: HashSet<T>,
    sweep_at: usize,
}

impl<T: Shared> Default for Pool<T> {
    fn default() -> Self {
        Pool { set: HashSet::new(), sweep_at: 1024 }
    }
}

impl<T: Shared> Pool<T> {
    pub(super) fn intern<Q>(&mut self, value: &Q, make: impl FnOnce(&Q) -> T) -> T
    where
        T: Borrow<Q>,
        Q: Eq + Hash + ?Sized,
    {
        if let Some(existing) = self.set.get(value) {
            return existing.clone();
        }
        if self.set.len() >= self.sweep_at {
            self.set.retain(Shared::in_use);
            self.sweep_at = (self.set.len() * 2).max(1024);
        }
        let fresh = make(value);
        self.set.insert(fresh.clone());
        fresh
    }
}

/// What a Pod shares with the other replicas of its workload: its namespace, its labels and
/// its owner. A view holds it behind one pointer where the three took three, so that a
/// tracked Pod falls into a smaller size class of the allocator (what it saved:
/// docs/benchmarks.md#smaller-parts-per-pod-real-control-plane-2026-11-25). A Pod whose
/// labels are its own (a StatefulSet's carry its name) pays for a group of its own, beside
/// the label set it already paid for.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct PodGroup {
    /// `metadata.namespace`.
    pub namespace: Name,
    /// `metadata.labels`.
    pub labels: LabelSet,
    /// The annotations injectors read ([`sidecar_watch_api::INJECTION_ANNOTATIONS`]); empty
    /// for most Pods, and shared like labels.
    pub injection_annotations: LabelSet,
    /// `spec.hostNetwork`.
    pub host_network: bool,
    /// The workload that owns the Pod; `None` for a Pod without owner.
    pub owner: Option<Arc<Workload>>,
    /// The UID of the owner reference [`Self::owner`] was read from (for a Deployment, its
    /// ReplicaSet's), interned: the workload Events name their object by UID, and replicas
    /// share the group, so it costs a tracked Pod nothing but in a group of its own (8 bytes).
    pub owner_uid: Option<Name>,
    /// Whether an owner reference is a `batch/v1` Job (or, for a template, the workload is a
    /// Job or CronJob).
    pub owned_by_job: bool,
    /// Whether `spec.restartPolicy` is `Never` or `OnFailure`: the Pod runs to completion,
    /// whoever owns it (a Job, an Argo Workflow, a Tekton TaskRun, nobody).
    pub runs_to_completion: bool,
}

/// Interns strings. The [`Interner`](super::interner::Interner) holds one beside its other
/// pools; what builds only strings (a container's view) takes this one alone.
#[derive(Default)]
pub struct NamePool(Pool<Name>);

impl NamePool {
    /// The shared copy of `text`.
    pub fn name(&mut self, text: &str) -> Name {
        self.0.intern(text, |text: &str| Name::from(text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unused_entries_are_swept() {
        let mut pool: Pool<Name> = Pool::default();
        for i in 0..5000 {
            pool.intern(format!("name-{i}").as_str(), |text: &str| Name::from(text));
        }
        assert!(pool.set.len() < 2100, "{}", pool.set.len());
    }
}
