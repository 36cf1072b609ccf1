//! Object storage with a cluster-wide resourceVersion and a bounded event history.

use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;

use serde_json::Value;
use tokio::sync::broadcast;

/// Storage key of a resource: (storage group, plural).
pub type ResKey = (String, String);

/// Type of a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// Object created.
    Added,
    /// Object changed.
    Modified,
    /// Object removed.
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

/// A change recorded in the history and broadcast to watches.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    /// resourceVersion of the change.
    pub rv: u64,
    /// Resource.
    pub key: ResKey,
    /// Namespace ("" for cluster-scoped).
    pub namespace: String,
    /// Type.
    pub kind: EventType,
    /// Object (storage form) after the change; for deletions the last state.
    pub object: Value,
    /// Object before the change (None for additions).
    pub old: Option<Value>,
    /// `object` serialized once, shared by every watch that serves it unchanged (see
    /// [`StoredEvent::object_json`]).
    pub json: OnceLock<Bytes>,
}

impl StoredEvent {
    /// The stored object as JSON, serialized on first use and then shared by all watches.
    pub fn object_json(&self) -> &Bytes {
        self.json.get_or_init(|| Bytes::from(serde_json::to_vec(&self.object).unwrap_or_default()))
    }
}

/// The object store.
#[derive(Debug)]
pub struct Store {
    objects: BTreeMap<ResKey, BTreeMap<(String, String), Value>>,
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

    /// Gets an object.
    pub fn get(&self, key: &ResKey, ns: &str, name: &str) -> Option<&Value> {
        self.objects.get(key)?.get(&(ns.to_string(), name.to_string()))
    }

    /// All objects of a resource (optionally one namespace), ordered by (namespace, name).
    pub fn list<'a>(&'a self, key: &ResKey, ns: Option<&'a str>) -> Vec<&'a Value> {
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
    ) -> impl Iterator<Item = (&'a (String, String), &'a Value)> + 'a {
        let lower = match (after, ns) {
            (Some(a), Some(n)) if a.0.as_str() >= n => Bound::Excluded(a.clone()),
            (_, Some(n)) => Bound::Included((n.to_string(), String::new())),
            (Some(a), None) => Bound::Excluded(a.clone()),
            (None, None) => Bound::Unbounded,
        };
        self.objects
            .get(key)
            .into_iter()
            .flat_map(move |m| m.range((lower.clone(), Bound::Unbounded)))
            .take_while(move |((n, _), _)| ns.is_none_or(|want| want == n))
    }

    /// Number of objects of a resource.
    pub fn count(&self, key: &ResKey) -> usize {
        self.objects.get(key).map_or(0, BTreeMap::len)
    }

    /// All (namespace, name) pairs of a resource.
    pub fn keys(&self, key: &ResKey) -> Vec<(String, String)> {
        self.objects.get(key).map(|m| m.keys().cloned().collect()).unwrap_or_default()
    }

    /// Stores (creates or replaces) an object, bumping the resourceVersion.
    pub fn put(&mut self, key: &ResKey, ns: &str, name: &str, mut obj: Value) -> Value {
        self.rv += 1;
        if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.insert("resourceVersion".into(), Value::String(self.rv.to_string()));
        }
        let map = self.objects.entry(key.clone()).or_default();
        let old = map.insert((ns.to_string(), name.to_string()), obj.clone());
        let kind = if old.is_some() { EventType::Modified } else { EventType::Added };
        self.record(key, ns, kind, obj.clone(), old);
        obj
    }

    /// Removes an object, emitting a DELETED event with a fresh resourceVersion.
    pub fn remove(&mut self, key: &ResKey, ns: &str, name: &str) -> Option<Value> {
        let mut obj = self.objects.get_mut(key)?.remove(&(ns.to_string(), name.to_string()))?;
        self.rv += 1;
        if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.insert("resourceVersion".into(), Value::String(self.rv.to_string()));
        }
        self.record(key, ns, EventType::Deleted, obj.clone(), None);
        Some(obj)
    }

    fn record(&mut self, key: &ResKey, ns: &str, kind: EventType, object: Value, old: Option<Value>) {
        let ev = Arc::new(StoredEvent {
            rv: self.rv,
            key: key.clone(),
            namespace: ns.to_string(),
            kind,
            object,
            old,
            json: OnceLock::new(),
        });
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
