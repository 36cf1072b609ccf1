//! Interned strings for what repeats across Pods: namespaces, container names, reasons and
//! whole label sets. Replicas of one workload share them, so a tracked Pod holds a pointer
//! instead of a copy, which is most of the difference between ~4 KiB and under 1 KiB per Pod
//! (866 B measured at 100k Pods: docs/benchmarks.md).

use std::borrow::Borrow;
use std::collections::{BTreeMap, HashSet};
use std::hash::Hash;
use std::ops::Deref;
use std::sync::Arc;

/// An immutable, cheaply cloned, interned string.
///
/// A thin pointer (8 bytes, not the 16 of an `Arc<str>`): a tracked Pod holds one per
/// container, per history entry and per waiting or termination reason, while the few
/// distinct strings pay the second allocation and the reader one more hop. Its hash and
/// order are the string's, so a set of names is looked up by `&str`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Name(Arc<Box<str>>);

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
trait Shared: Clone + Eq + Hash {
    fn in_use(&self) -> bool;
}

impl<T: Eq + Hash + ?Sized> Shared for Arc<T> {
    fn in_use(&self) -> bool {
        Arc::strong_count(self) > 1
    }
}

impl Shared for Name {
    fn in_use(&self) -> bool {
        Arc::strong_count(&self.0) > 1
    }
}

/// Interns values of one type. Entries that only the pool still holds are swept when the
/// set has doubled since the last sweep, so it stays proportional to what is in use.
struct Pool<T: Shared> {
    set: HashSet<T>,
    sweep_at: usize,
}

impl<T: Shared> Default for Pool<T> {
    fn default() -> Self {
        Pool { set: HashSet::new(), sweep_at: 1024 }
    }
}

impl<T: Shared> Pool<T> {
    fn intern<Q>(&mut self, value: &Q, make: impl FnOnce(&Q) -> T) -> T
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
/// its owner. A view holds it behind one pointer, 8 bytes where the three took 24, which
/// brings a tracked Pod into mimalloc's 128-byte size class (`cargo bench --bench
/// index_memory -- mix`). A Pod whose labels are its own (a StatefulSet's carry its name)
/// pays for a group of its own: 48 bytes, beside the label set it already paid for.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct PodGroup {
    /// `metadata.namespace`.
    pub namespace: Name,
    /// `metadata.labels`.
    pub labels: LabelSet,
    /// The workload that owns the Pod; `None` for a Pod without owner.
    pub owner: Option<Arc<Workload>>,
    /// Whether an owner reference is a `batch/v1` Job (or, for a template, the workload is a
    /// Job or CronJob).
    pub owned_by_job: bool,
}

/// Shares what repeats across Pods (names, whole label sets) between the views built
/// through it. A plain value with no global state: the operator's index owns one (see
/// `Index::view_of`), `audit` owns one per run, a one-off view uses a fresh one.
#[derive(Default)]
pub struct Interner {
    names: Pool<Name>,
    label_sets: Pool<LabelSet>,
    workloads: Pool<Arc<Workload>>,
    groups: Pool<Arc<PodGroup>>,
}

impl Interner {
    /// The shared copy of `text`.
    pub fn name(&mut self, text: &str) -> Name {
        self.names.intern(text, Name::new)
    }

    /// The shared workload `kind`/`name`.
    pub fn workload(&mut self, kind: &str, name: &str) -> Arc<Workload> {
        let wanted = Workload { kind: self.name(kind), name: self.name(name) };
        self.workloads.intern(&wanted, |w| Arc::new(w.clone()))
    }

    /// The shared copy of `group`.
    pub fn pod_group(&mut self, group: PodGroup) -> Arc<PodGroup> {
        self.groups.intern(&group, |g| Arc::new(g.clone()))
    }

    /// The shared copy of a label set.
    pub fn label_set(&mut self, labels: BTreeMap<String, String>) -> LabelSet {
        self.label_sets.intern(&labels, |l| Arc::new(l.clone()))
    }
}

impl Name {
    /// A name of its own, shared with nothing (views built through an [`Interner`] share
    /// theirs).
    pub fn new(text: &str) -> Name {
        Name(Arc::new(Box::from(text)))
    }

    /// The string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for Name {
    fn default() -> Name {
        Name::new("")
    }
}

impl Deref for Name {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Name {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for Name {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl From<&str> for Name {
    fn from(text: &str) -> Name {
        Name::new(text)
    }
}

impl From<String> for Name {
    fn from(text: String) -> Name {
        Name::new(&text)
    }
}

impl From<&String> for Name {
    fn from(text: &String) -> Name {
        Name::new(text)
    }
}

impl From<Name> for String {
    fn from(name: Name) -> String {
        name.0.to_string()
    }
}

impl PartialEq<str> for Name {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Name {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<String> for Name {
    fn eq(&self, other: &String) -> bool {
        self.as_str() == other.as_str()
    }
}

impl PartialEq<Name> for String {
    fn eq(&self, other: &Name) -> bool {
        self.as_str() == other.as_str()
    }
}

impl PartialEq<Name> for str {
    fn eq(&self, other: &Name) -> bool {
        self == other.as_str()
    }
}

impl PartialEq<Name> for &str {
    fn eq(&self, other: &Name) -> bool {
        *self == other.as_str()
    }
}

impl std::fmt::Display for Name {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::fmt::Debug for Name {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&*self.0, f)
    }
}

impl serde::Serialize for Name {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_names_share_storage_through_one_interner() {
        let mut interner = Interner::default();
        let a = interner.name("istio-proxy");
        let b = interner.name(&String::from("istio-proxy"));
        assert!(Arc::ptr_eq(&a.0, &b.0));
        assert_eq!(a, "istio-proxy");
        assert_eq!(String::from("istio-proxy"), a);
        // Another interner (another process part, another audit run) shares nothing.
        assert!(!Arc::ptr_eq(&a.0, &Interner::default().name("istio-proxy").0));
    }

    #[test]
    fn equal_label_sets_share_storage() {
        let mut interner = Interner::default();
        let labels = BTreeMap::from([("app".to_string(), "web".to_string())]);
        let a = interner.label_set(labels.clone());
        let b = interner.label_set(labels);
        assert!(Arc::ptr_eq(&a, &b));
    }

    #[test]
    fn unused_entries_are_swept() {
        let mut pool: Pool<Name> = Pool::default();
        for i in 0..5000 {
            pool.intern(format!("name-{i}").as_str(), Name::new);
        }
        assert!(pool.set.len() < 2100, "{}", pool.set.len());
    }
}
