//! A bounded cache that a tenant cannot empty for the others: entries are kept per namespace,
//! and when the cache is full the namespace that holds the most gives up its least recently
//! used entry. A tenant that floods the cache evicts its own entries; a namespace with few
//! keeps them (max-min fair), and a cluster of one namespace still has the whole cache.

use std::collections::HashMap;
use std::hash::Hash;

use lru::LruCache;

/// Entries by namespace, least recently used first within each, at most `capacity` in all.
pub(crate) struct FairCache<K: Hash + Eq, V> {
    by_namespace: HashMap<String, LruCache<K, V>>,
    len: usize,
    capacity: usize,
}

impl<K: Hash + Eq, V> FairCache<K, V> {
    /// An empty cache of at most `capacity` entries (at least one).
    pub(crate) fn new(capacity: usize) -> Self {
        FairCache { by_namespace: HashMap::new(), len: 0, capacity: capacity.max(1) }
    }

    /// The entry of `key` in `namespace`, now the namespace's most recently used.
    pub(crate) fn get(&mut self, namespace: &str, key: &K) -> Option<&V> {
        self.by_namespace.get_mut(namespace)?.get(key)
    }

    /// Sets `key`'s entry in `namespace`; a new entry in a full cache first evicts the least
    /// recently used entry of the namespace that holds the most.
    pub(crate) fn put(&mut self, namespace: &str, key: K, value: V) {
        if let Some(entries) = self.by_namespace.get_mut(namespace) {
            if entries.contains(&key) {
                entries.put(key, value);
                return;
            }
        }
        if self.len >= self.capacity {
            self.evict_from_largest();
        }
        let entries = match self.by_namespace.get_mut(namespace) {
            Some(entries) => entries,
            None => self.by_namespace.entry(namespace.to_string()).or_insert_with(LruCache::unbounded),
        };
        entries.put(key, value);
        self.len += 1;
    }

    /// Removes `key`'s entry in `namespace`.
    pub(crate) fn pop(&mut self, namespace: &str, key: &K) -> Option<V> {
        let entries = self.by_namespace.get_mut(namespace)?;
        let value = entries.pop(key)?;
        self.len -= 1;
        if entries.is_empty() {
            self.by_namespace.remove(namespace);
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

    #[test]
    fn a_flood_evicts_the_flooders_entries_not_the_others() {
        let mut cache = FairCache::new(100);
        cache.put("shop", "web".to_string(), 1);
        cache.put("shop", "api".to_string(), 2);
        for i in 0..10_000 {
            cache.put("flood", format!("d{i}"), i);
        }
        assert_eq!(cache.len(), 100);
        assert_eq!(cache.get("shop", &"web".into()), Some(&1));
        assert_eq!(cache.get("shop", &"api".into()), Some(&2));
        assert_eq!(cache.get("flood", &"d9999".into()), Some(&9999), "the flooder keeps its most recent");
        assert_eq!(cache.get("flood", &"d0".into()), None);
    }

    #[test]
    fn one_namespace_has_the_whole_cache_and_least_recently_used_goes_first() {
        let mut cache = FairCache::new(3);
        for key in ["a", "b", "c"] {
            cache.put("only", key, ());
        }
        assert!(cache.get("only", &"a").is_some());
        cache.put("only", "d", ());
        assert_eq!(cache.get("only", &"b"), None, "b was the least recently used");
        assert!(["a", "c", "d"].iter().all(|k| cache.get("only", k).is_some()));
        cache.put("only", "a", ());
        assert_eq!(cache.len(), 3, "setting a held key adds nothing");
        assert_eq!(cache.pop("only", &"a"), Some(()));
        assert_eq!((cache.pop("only", &"a"), cache.len()), (None, 2));
    }
}
