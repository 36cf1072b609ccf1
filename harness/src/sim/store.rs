//! Object storage with a cluster-wide resourceVersion and a bounded event history.

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;

use serde_json::Value;
use tokio::sync::broadcast;

/// Storage key of a resource: (storage group, plural).
pub type ResKey = (String, String);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    /// Wire name (`ADDED`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// A stored object (storage form) with its JSON serialization, computed on first use and
/// then shared by every list page, GET and watch event that serves the object unchanged.
/// Objects are immutable once stored: the map and the history share them through `Arc`s, so a
/// write copies nothing and each version is serialized at most once.
///
/// An object can also be kept as its JSON alone ([`StoredObject::from_json`]), parsed only
/// when something reads its fields: a parsed Pod costs ~8× its JSON, and serving lists and
/// watches without selectors never needs the parsed form. The benchmark keeps its preloaded
/// Pods this way so that 400,000 of them fit in memory.
#[derive(Debug)]
pub struct StoredObject {
    value: OnceLock<Value>,
    json: OnceLock<Bytes>,
    /// `apiVersion` and `kind`, read without parsing a JSON-only object.
    type_meta: (Box<str>, Box<str>),
}

fn type_meta(value: &Value) -> (Box<str>, Box<str>) {
    let field = |k: &str| value.get(k).and_then(Value::as_str).unwrap_or("").into();
    (field("apiVersion"), field("kind"))
}

impl StoredObject {
    /// Wraps an object; it is serialized only when first needed.
    pub fn new(value: Value) -> Self {
        let type_meta = type_meta(&value);
        Self { value: OnceLock::from(value), json: OnceLock::new(), type_meta }
    }

    /// The same object kept as its JSON only (see the type's documentation).
    pub fn from_json(value: &Value) -> Self {
        Self { value: OnceLock::new(), json: OnceLock::from(json_bytes(value)), type_meta: type_meta(value) }
    }

    /// The object (storage form), parsed from its JSON on first use when kept as JSON only.
    pub fn value(&self) -> &Value {
        self.value.get_or_init(|| {
            // The JSON was serialized from a `Value` by `from_json`: it parses.
            self.json.get().and_then(|j| serde_json::from_slice(j).ok()).unwrap_or(Value::Null)
        })
    }

    /// The object as JSON, serialized on first use and then shared.
    pub fn json(&self) -> &Bytes {
        self.json.get_or_init(|| json_bytes(self.value()))
    }

    /// `apiVersion`.
    pub fn api_version(&self) -> &str {
        &self.type_meta.0
    }

    /// `kind`.
    pub fn kind(&self) -> &str {
        &self.type_meta.1
    }

    /// A copy with `metadata.resourceVersion` set to `rv`, kept as JSON only when this one is
    /// (parsing it does not make this one keep its parsed form).
    fn with_resource_version(&self, rv: u64) -> Self {
        match self.value.get() {
            Some(value) => {
                let mut copy = value.clone();
                set_resource_version(&mut copy, rv);
                Self::new(copy)
            }
            None => {
                let mut copy: Value =
                    self.json.get().and_then(|j| serde_json::from_slice(j).ok()).unwrap_or(Value::Null);
                set_resource_version(&mut copy, rv);
                Self::from_json(&copy)
            }
        }
    }

    /// The object, without a copy when nothing else shares it.
    fn into_value(this: Arc<Self>) -> Value {
        match Arc::try_unwrap(this) {
            Ok(mut o) => match o.value.take() {
                Some(v) => v,
                None => o.value().clone(),
            },
            Err(shared) => shared.value().clone(),
        }
    }
}

/// A change recorded in the history and broadcast to watches.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    /// resourceVersion of the change.
    pub rv: u64,
    pub key: ResKey,
    /// Namespace ("" for cluster-scoped).
    pub namespace: String,
    /// Name of the object.
    pub name: String,
    pub kind: EventType,
    /// Object after the change (shared with the store); for deletions the last state, with
    /// the resourceVersion of the deletion.
    pub object: Arc<StoredObject>,
    /// Object before the change (None for additions and deletions).
    pub old: Option<Arc<StoredObject>>,
    /// For deletions, the resourceVersion the object had (to rebuild it at a snapshot); 0
    /// otherwise (`old` has it).
    pub previous_rv: u64,
}

/// Objects by resource, namespace and name, the cluster-wide resourceVersion, and the recent
/// changes that watches resume from.
#[derive(Debug)]
pub struct Store {
    objects: BTreeMap<ResKey, BTreeMap<(String, String), Arc<StoredObject>>>,
    rv: u64,
    history: VecDeque<Arc<StoredEvent>>,
    history_limit: usize,
    /// Every change with rv > floor is in `history`.
    floor: u64,
    tx: broadcast::Sender<Arc<StoredEvent>>,
}

impl Store {
    /// Creates an empty store keeping at most `history_limit` events.
    pub fn new(history_limit: usize) -> Self {
        let (tx, _) = broadcast::channel(history_limit.clamp(1024, 1 << 16));
        Self {
            objects: BTreeMap::new(),
            rv: 1,
            history: VecDeque::new(),
            history_limit: history_limit.max(1),
            floor: 1,
            tx,
        }
    }

    /// Current (latest) resourceVersion.
    pub fn rv(&self) -> u64 {
        self.rv
    }

    /// Oldest resourceVersion from which a watch can still resume.
    pub fn floor(&self) -> u64 {
        self.floor
    }

    pub fn get(&self, key: &ResKey, ns: &str, name: &str) -> Option<&Value> {
        self.get_object(key, ns, name).map(|o| o.value())
    }

    /// Gets an object with its cached serialization.
    pub fn get_object(&self, key: &ResKey, ns: &str, name: &str) -> Option<&Arc<StoredObject>> {
        self.objects.get(key)?.get(&(ns.to_string(), name.to_string()))
    }

    /// All objects of a resource (optionally one namespace), ordered by (namespace, name).
    pub fn list<'a>(&'a self, key: &ResKey, ns: Option<&'a str>) -> Vec<&'a Arc<StoredObject>> {
        self.range_after(key, ns, None).map(|(_, v)| v).collect()
    }

    /// Objects of a resource (optionally one namespace) whose (namespace, name) is after
    /// `after`, in order. Seeks in the ordered map (O(log N)) instead of scanning from the
    /// start, so that paginated lists cost O(page) per page rather than O(N).
    pub fn range_after<'a>(
        &'a self,
        key: &ResKey,
        ns: Option<&'a str>,
        after: Option<&(String, String)>,
    ) -> impl Iterator<Item = (&'a (String, String), &'a Arc<StoredObject>)> + use<'a> {
        let after = after.cloned();
        self.objects.get(key).into_iter().flat_map(move |m| range_in(m, ns, after.as_ref()))
    }

    /// The objects of a resource as they were at `rv`, which must not be older than
    /// [`Store::floor`]: the current ones with every later change undone from the history,
    /// as etcd serves a list at a past revision. Costs O(changes since `rv`).
    pub fn snapshot(&self, key: &ResKey, rv: u64) -> Snapshot {
        let mut undone = BTreeMap::new();
        // Back in time from the latest change: the last one seen per object, the first after
        // `rv`, tells what it was at `rv`.
        for ev in self.history.iter().rev().take_while(|e| e.rv > rv).filter(|e| e.key == *key) {
            let then = match ev.kind {
                EventType::Added => None,
                EventType::Modified => ev.old.clone().map(Then::Stored),
                EventType::Deleted => Some(Then::Deleted(ev.clone())),
            };
            undone.insert((ev.namespace.clone(), ev.name.clone()), then);
        }
        Snapshot { key: key.clone(), undone }
    }

    /// Number of objects of a resource.
    pub fn count(&self, key: &ResKey) -> usize {
        self.objects.get(key).map_or(0, BTreeMap::len)
    }

    /// All (namespace, name) pairs of a resource.
    pub fn keys(&self, key: &ResKey) -> Vec<(String, String)> {
        self.objects.get(key).map(|m| m.keys().cloned().collect()).unwrap_or_default()
    }

    /// Stores (creates or replaces) an object, bumping the resourceVersion. The object is
    /// moved into the store and shared with the history event, not copied.
    pub fn put(&mut self, key: &ResKey, ns: &str, name: &str, obj: Value) -> Arc<StoredObject> {
        self.put_stored(key, ns, name, obj, StoredObject::new)
    }

    /// [`Store::put`], keeping the object as its JSON only (see [`StoredObject::from_json`]).
    pub fn put_as_json(&mut self, key: &ResKey, ns: &str, name: &str, obj: Value) -> Arc<StoredObject> {
        self.put_stored(key, ns, name, obj, |v| StoredObject::from_json(&v))
    }

    fn put_stored(
        &mut self,
        key: &ResKey,
        ns: &str,
        name: &str,
        mut obj: Value,
        store: impl FnOnce(Value) -> StoredObject,
    ) -> Arc<StoredObject> {
        self.rv += 1;
        set_resource_version(&mut obj, self.rv);
        let obj = Arc::new(store(obj));
        let map = self.objects.entry(key.clone()).or_default();
        let old = map.insert((ns.to_string(), name.to_string()), obj.clone());
        let kind = if old.is_some() { EventType::Modified } else { EventType::Added };
        let (namespace, name) = (ns.to_string(), name.to_string());
        let object = obj.clone();
        self.record(StoredEvent { rv: self.rv, key: key.clone(), namespace, name, kind, object, old, previous_rv: 0 });
        obj
    }

    /// Removes an object, emitting a DELETED event with a fresh resourceVersion.
    pub fn remove(&mut self, key: &ResKey, ns: &str, name: &str) -> Option<Arc<StoredObject>> {
        let last = self.objects.get_mut(key)?.remove(&(ns.to_string(), name.to_string()))?;
        self.rv += 1;
        let previous_rv = resource_version(last.value());
        let mut obj = StoredObject::into_value(last);
        set_resource_version(&mut obj, self.rv);
        let obj = Arc::new(StoredObject::new(obj));
        let ev = StoredEvent {
            rv: self.rv,
            key: key.clone(),
            namespace: ns.to_string(),
            name: name.to_string(),
            kind: EventType::Deleted,
            object: obj.clone(),
            old: None,
            previous_rv,
        };
        self.record(ev);
        Some(obj)
    }

    /// Keeps a change in the history and sends it to the watches.
    fn record(&mut self, ev: StoredEvent) {
        let ev = Arc::new(ev);
        self.history.push_back(ev.clone());
        while self.history.len() > self.history_limit {
            if let Some(old) = self.history.pop_front() {
                self.floor = old.rv;
            }
        }
        let _ = self.tx.send(ev);
    }

    /// Drops the whole history: watches from any earlier resourceVersion get 410 Expired.
    pub fn compact(&mut self) {
        self.history.clear();
        self.floor = self.rv;
    }

    /// Events after `rv` (which must be >= floor) for a resource.
    pub fn events_since(&self, key: &ResKey, rv: u64) -> Vec<Arc<StoredEvent>> {
        self.history.iter().filter(|e| e.rv > rv && e.key == *key).cloned().collect()
    }

    /// Subscribes to future changes (call while holding the lock to avoid gaps).
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<StoredEvent>> {
        self.tx.subscribe()
    }
}

thread_local! {
    /// Serialization buffer reused by [`json_bytes`].
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// A value as JSON. Serializes into a reused buffer, then copies into an allocation of the
/// exact size: the cached JSON of an object lives as long as the object, so it should not
/// keep a grown `Vec`'s spare capacity (up to half of it), and no chain of growing buffers is
/// allocated and freed per object.
pub fn json_bytes(value: &Value) -> Bytes {
    SCRATCH.with_borrow_mut(|buf| {
        buf.clear();
        match serde_json::to_writer(&mut *buf, value) {
            Ok(()) => Bytes::copy_from_slice(buf),
            Err(_) => Bytes::new(),
        }
    })
}

/// What an object was at a snapshot.
#[derive(Debug)]
enum Then {
    /// This version, still in the history.
    Stored(Arc<StoredObject>),
    /// The object its deletion removed (rebuilt only when served).
    Deleted(Arc<StoredEvent>),
}

/// The objects of one resource at a past resourceVersion ([`Store::snapshot`]).
#[derive(Debug)]
pub struct Snapshot {
    key: ResKey,
    /// Every object changed since, with what it was then (None: not created yet).
    undone: BTreeMap<(String, String), Option<Then>>,
}

impl Snapshot {
    /// [`Store::range_after`] at the snapshot.
    pub fn range_after<'a>(
        &'a self,
        store: &'a Store,
        ns: Option<&'a str>,
        after: Option<&(String, String)>,
    ) -> impl Iterator<Item = (&'a (String, String), Arc<StoredObject>)> + use<'a> {
        let mut current = store.range_after(&self.key, ns, after).peekable();
        let mut undone = range_in(&self.undone, ns, after).peekable();
        std::iter::from_fn(move || loop {
            let next_undone = match (current.peek(), undone.peek()) {
                (None, None) => return None,
                (Some((c, _)), Some((u, _))) => u <= c,
                (c, _) => c.is_none(),
            };
            if !next_undone {
                return current.next().map(|(k, o)| (k, o.clone()));
            }
            let (key, then) = undone.next()?;
            if current.peek().is_some_and(|(c, _)| *c == key) {
                current.next();
            }
            match then {
                None => continue,
                Some(Then::Stored(o)) => return Some((key, o.clone())),
                Some(Then::Deleted(ev)) => {
                    return Some((key, Arc::new(ev.object.with_resource_version(ev.previous_rv))));
                }
            }
        })
    }
}

/// The entries of `map` (keyed by namespace and name) in namespace `ns` (or all) after `after`.
fn range_in<'a, V>(
    map: &'a BTreeMap<(String, String), V>,
    ns: Option<&'a str>,
    after: Option<&(String, String)>,
) -> impl Iterator<Item = (&'a (String, String), &'a V)> + use<'a, V> {
    let lower = match (after, ns) {
        (Some(a), Some(n)) if a.0.as_str() >= n => Bound::Excluded(a.clone()),
        (_, Some(n)) => Bound::Included((n.to_string(), String::new())),
        (Some(a), None) => Bound::Excluded(a.clone()),
        (None, None) => Bound::Unbounded,
    };
    map.range((lower, Bound::Unbounded)).take_while(move |((n, _), _)| ns.is_none_or(|want| want == n))
}

/// `metadata.resourceVersion` as a number (0 when absent).
fn resource_version(obj: &Value) -> u64 {
    obj.pointer("/metadata/resourceVersion").and_then(Value::as_str).and_then(|rv| rv.parse().ok()).unwrap_or(0)
}

/// Sets `metadata.resourceVersion` (objects without metadata are stored as they are).
fn set_resource_version(obj: &mut Value, rv: u64) {
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert("resourceVersion".into(), Value::String(rv.to_string()));
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn an_object_kept_as_json_reads_like_a_parsed_one() {
        let mut store = Store::new(10);
        let key: ResKey = (String::new(), "pods".into());
        let pod = |name: &str| json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "n", "labels": {"app": "x"}}});
        let kept = store.put_as_json(&key, "n", "a", pod("a"));
        let parsed = store.put(&key, "n", "b", pod("b"));
        assert!(kept.value.get().is_none(), "not parsed until read");
        assert_eq!((kept.api_version(), kept.kind()), ("v1", "Pod"));
        assert_eq!((parsed.api_version(), parsed.kind()), ("v1", "Pod"));
        assert_eq!(kept.value()["metadata"]["resourceVersion"], "2");
        assert_eq!(kept.value()["metadata"]["labels"]["app"], "x");
        let served: Value = serde_json::from_slice(kept.json()).expect("its JSON parses");
        assert_eq!(&served, kept.value());
        let removed = store.remove(&key, "n", "a").expect("stored");
        assert_eq!(removed.value()["metadata"]["name"], "a");
        assert_eq!(removed.value()["metadata"]["resourceVersion"], "4");
    }

    #[test]
    fn a_snapshot_undoes_every_later_change() {
        let mut store = Store::new(10);
        let key: ResKey = (String::new(), "pods".into());
        let pod =
            |name: &str, v: u32| json!({"metadata": {"name": name, "namespace": "n", "labels": {"v": v.to_string()}}});
        store.put_as_json(&key, "n", "a", pod("a", 1));
        store.put(&key, "n", "b", pod("b", 1));
        store.put(&key, "n", "d", pod("d", 1));
        let at = store.rv();
        store.put(&key, "n", "b", pod("b", 2));
        store.remove(&key, "n", "a");
        store.put(&key, "n", "c", pod("c", 1));
        store.remove(&key, "n", "d");
        let snapshot = store.snapshot(&key, at);
        let then: Vec<(String, String, String)> = snapshot
            .range_after(&store, Some("n"), None)
            .map(|((_, name), o)| {
                let meta = &o.value()["metadata"];
                (name.clone(), meta["labels"]["v"].to_string(), meta["resourceVersion"].to_string())
            })
            .collect();
        let want = |n: &str, rv: &str| (n.to_string(), "\"1\"".to_string(), format!("\"{rv}\""));
        assert_eq!(then, [want("a", "2"), want("b", "3"), want("d", "4")]);
        let after_a = ("n".to_string(), "a".to_string());
        let rest: Vec<String> =
            snapshot.range_after(&store, None, Some(&after_a)).map(|((_, n), _)| n.clone()).collect();
        assert_eq!(rest, ["b", "d"]);
    }
}
