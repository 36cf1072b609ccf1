//! Interned strings for what repeats across Pods: namespaces, container names, reasons and
//! whole label sets. Replicas of one workload share them, so a tracked Pod holds a pointer
//! instead of a copy, which is most of the difference between ~4 KiB and under 2 KiB per Pod.

use std::borrow::Borrow;
use std::collections::{BTreeMap, HashSet};
use std::hash::Hash;
use std::ops::Deref;
use std::sync::Arc;

/// An immutable, cheaply cloned, interned string.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Name(Arc<str>);

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

/// Interns values of one type. Entries that only the pool still holds are swept when the
/// set has doubled since the last sweep, so it stays proportional to what is in use.
struct Pool<T: Eq + Hash + ?Sized> {
    set: HashSet<Arc<T>>,
    sweep_at: usize,
}

impl<T: Eq + Hash + ?Sized> Default for Pool<T> {
    fn default() -> Self {
        Pool { set: HashSet::new(), sweep_at: 1024 }
    }
}

impl<T: Eq + Hash + ?Sized> Pool<T> {
    fn intern<Q>(&mut self, value: &Q, make: impl FnOnce(&Q) -> Arc<T>) -> Arc<T>
    where
        Arc<T>: Borrow<Q>,
        Q: Eq + Hash + ?Sized,
    {
        if let Some(existing) = self.set.get(value) {
            return Arc::clone(existing);
        }
        if self.set.len() >= self.sweep_at {
            self.set.retain(|v| Arc::strong_count(v) > 1);
            self.sweep_at = (self.set.len() * 2).max(1024);
        }
        let fresh = make(value);
        self.set.insert(Arc::clone(&fresh));
        fresh
    }
}

/// Shares what repeats across Pods (names, whole label sets) between the views built
/// through it. A plain value with no global state: the operator's index owns one (see
/// `Index::view_of`), `audit` owns one per run, a one-off view uses a fresh one.
#[derive(Default)]
pub struct Interner {
    names: Pool<str>,
    label_sets: Pool<BTreeMap<String, String>>,
    workloads: Pool<Workload>,
}

impl Interner {
    /// The shared copy of `text`.
    pub fn name(&mut self, text: &str) -> Name {
        Name(self.names.intern(text, |t: &str| Arc::from(t)))
    }

    /// The shared workload `kind`/`name`.
    pub fn workload(&mut self, kind: &str, name: &str) -> Arc<Workload> {
        let wanted = Workload { kind: self.name(kind), name: self.name(name) };
        self.workloads.intern(&wanted, |w| Arc::new(w.clone()))
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
        Name(Arc::from(text))
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
        &*self.0 == other
    }
}

impl PartialEq<&str> for Name {
    fn eq(&self, other: &&str) -> bool {
        &*self.0 == *other
    }
}

impl PartialEq<String> for Name {
    fn eq(&self, other: &String) -> bool {
        *self.0 == **other
    }
}

impl PartialEq<Name> for String {
    fn eq(&self, other: &Name) -> bool {
        **self == *other.0
    }
}

impl PartialEq<Name> for str {
    fn eq(&self, other: &Name) -> bool {
        *self == *other.0
    }
}

impl PartialEq<Name> for &str {
    fn eq(&self, other: &Name) -> bool {
        **self == *other.0
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
        let mut pool: Pool<str> = Pool::default();
        for i in 0..5000 {
            pool.intern(format!("name-{i}").as_str(), |t: &str| Arc::from(t));
        }
        assert!(pool.set.len() < 2100, "{}", pool.set.len());
    }
}
