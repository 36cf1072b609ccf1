//! A bounded cache that a tenant cannot empty for the others: entries are kept per namespace,
//! and when the cache is full the namespace that holds the most gives up its least recently
//! used entry. A tenant that floods the cache evicts its own entries; a namespace with few
//! keeps them (max-min fair), and a cluster of one namespace still has the whole cache.

use std::collections::HashMap;
use std::hash::Hash;

use lru::LruCache;

use crate::fair_reader::Lookup;

/// Entries by their key's namespace ([`Lookup::namespace`]: the cache keeps what the fair
/// reader read), least recently used first within each, at most `capacity` in all.
pub(crate) struct FairCache<K: Lookup + Hash + Eq, V> {
    by_namespace: HashMap<String, LruCache<K, V>>,
    len: usize,
    capacity: usize,
}

impl<K: Lookup + Hash + Eq, V> FairCache<K, V> {
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
        if let Some(entries) = self.by_namespace.get_mut(key.namespace()) {
            if entries.contains(&key) {
                entries.put(key, value);
                return;
            }
        }
        if self.len >= self.capacity {
            self.evict_from_largest();
        }
        let entries = match self.by_namespace.get_mut(key.namespace()) {
            Some(entries) => entries,
            None => self.by_namespace.entry(key.namespace().to_string()).or_insert_with(LruCache::unbounded),
        };
        entries.put(key, value);
        self.len += 1;
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

    /// A key `(namespace, name)`, never read.
    #[derive(Clone, Debug, PartialEq, Eq, Hash)]
    struct Key(&'static str, String);

    impl Lookup for Key {
        type Found = ();
        fn namespace(&self) -> &str {
            self.0
        }
        async fn read(&self, _: kube::Client) -> Result<(), String> {
            Ok(())
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
