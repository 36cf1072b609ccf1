//! A bounded cache that a tenant cannot empty for the others: entries are kept per namespace,
//! and when the cache is full the namespace that holds the most gives up its least recently
//! used entry. A tenant that floods the cache evicts its own entries; a namespace with few
//! keeps them (max-min fair), and a cluster of one namespace still has the whole cache.

use std::collections::HashMap;
use std::hash::Hash;

use lru::LruCache;

use crate::fair_queue::InNamespace;

/// Entries by their key's namespace, least recently used first within each, at most
/// `capacity` in all.
pub(crate) struct FairCache<K: InNamespace + Hash + Eq, V> {
    by_namespace: HashMap<String, LruCache<K, V>>,
    len: usize,
    capacity: usize,
}

impl<K: InNamespace + Hash + Eq, V> FairCache<K, V> {
    /// An empty cache of at most `capacity` entries (at least one).
    pub(crate) fn new(capacity: usize) -> Self {
        FairCache { by_namespace: HashMap::new(), len: 0, capacity: capacity.max(1) }
    }

    /// The entry of `key`, now its namespace's most recently used.
    pub(crate) fn get(&mut self, key: &K) -> Option<&V> {
        self.by_namespace.get_mut(key.namespace())?.get(key)
    }

    /// Sets `key`'s entry; a new entry in a full cache first evicts the least recently used
    /// entry of the namespace that holds the most.
    pub(crate) fn put(&mut self, key: K, value: V) {
        self.entries_with_room_for(&key).put(key, value);
    }

    /// The entry of `key`, made by `make` if there is none (as [`FairCache::put`] would add
    /// it), now its namespace's most recently used.
    pub(crate) fn get_or_insert_mut(&mut self, key: K, make: impl FnOnce() -> V) -> &mut V {
        self.entries_with_room_for(&key).get_or_insert_mut(key, make)
    }

    /// The entries of `key`'s namespace, counting `key` among them: when it is new to a
    /// full cache, after an eviction.
    fn entries_with_room_for(&mut self, key: &K) -> &mut LruCache<K, V> {
        let held = self.by_namespace.get(key.namespace()).is_some_and(|entries| entries.contains(key));
        if !held {
            if self.len >= self.capacity {
                self.evict_from_largest();
            }
            self.len += 1;
        }
        self.by_namespace.entry(key.namespace().to_string()).or_insert_with(LruCache::unbounded)
    }

    /// Removes `key`'s entry.
    pub(crate) fn pop(&mut self, key: &K) -> Option<V> {
        let entries = self.by_namespace.get_mut(key.namespace())?;
        let value = entries.pop(key)?;
        self.len -= 1;
        if entries.is_empty() {
            self.by_namespace.remove(key.namespace());
        }
        Some(value)
    }

    /// Entries held in all.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    fn evict_from_largest(&mut self) {
        // A walk over the namespaces, only when the cache is full: a flood evicts the
        // flooder's own entries, each eviction one pass over the namespaces held.
        let Some(largest) = self.by_namespace.iter().max_by_key(|(_, entries)| entries.len()).map(|(ns, _)| ns.clone())
        else {
            return;
        };
        if let Some(entries) = self.by_namespace.get_mut(&largest) {
            if entries.pop_lru().is_some() {
                self.len -= 1;
            }
            if entries.is_empty() {
                self.by_namespace.remove(&largest);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A key `(namespace, name)`.
    #[derive(Clone, Debug, PartialEq, Eq, Hash)]
    struct Key(&'static str, String);

    impl InNamespace for Key {
        fn namespace(&self) -> &str {
            self.0
        }
    }

    fn key(namespace: &'static str, name: &str) -> Key {
        Key(namespace, name.to_string())
    }

    #[test]
    fn a_flood_evicts_the_flooders_entries_not_the_others() {
        let mut cache = FairCache::new(100);
        cache.put(key("shop", "web"), 1);
        cache.put(key("shop", "api"), 2);
        for i in 0..10_000 {
            cache.put(key("flood", &format!("d{i}")), i);
        }
        assert_eq!(cache.len(), 100);
        assert_eq!(cache.get(&key("shop", "web")), Some(&1));
        assert_eq!(cache.get(&key("shop", "api")), Some(&2));
        assert_eq!(cache.get(&key("flood", "d9999")), Some(&9999), "the flooder keeps its most recent");
        assert_eq!(cache.get(&key("flood", "d0")), None);
    }

    #[test]
    fn one_namespace_has_the_whole_cache_and_least_recently_used_goes_first() {
        let mut cache = FairCache::new(3);
        for name in ["a", "b", "c"] {
            cache.put(key("only", name), ());
        }
        assert!(cache.get(&key("only", "a")).is_some());
        cache.put(key("only", "d"), ());
        assert_eq!(cache.get(&key("only", "b")), None, "b was the least recently used");
        assert!(["a", "c", "d"].iter().all(|name| cache.get(&key("only", name)).is_some()));
        cache.put(key("only", "a"), ());
        assert_eq!(cache.len(), 3, "setting a held key adds nothing");
        assert_eq!(cache.pop(&key("only", "a")), Some(()));
        assert_eq!((cache.pop(&key("only", "a")), cache.len()), (None, 2));
    }
}
