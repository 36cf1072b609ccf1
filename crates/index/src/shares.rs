//! Places counted per namespace under two caps, a namespace's share and the total: what a
//! tenant fills is its own share, so that every other namespace keeps room. Every bounded
//! store a tenant can grow (workload conditions, controller reads, workload Event keys,
//! believed `FailedCreate` Events) takes its places here, in constant time: a store that
//! counted its namespace's entries by walking them would let one tenant slow every insert.

use std::collections::HashMap;

/// Places held per namespace; a place is taken only while its namespace holds fewer than
/// `max_per_namespace` and all namespaces together fewer than `max_total`.
#[derive(Debug)]
pub struct NamespaceShares {
    held: HashMap<String, usize>,
    total: usize,
    max_per_namespace: usize,
    max_total: usize,
}

impl NamespaceShares {
    /// No place held yet.
    pub fn new(max_per_namespace: usize, max_total: usize) -> Self {
        NamespaceShares { held: HashMap::new(), total: 0, max_per_namespace, max_total }
    }

    /// Whether a place in `namespace` would be given.
    pub fn has_room(&self, namespace: &str) -> bool {
        self.total < self.max_total && self.held.get(namespace).copied().unwrap_or(0) < self.max_per_namespace
    }

    /// Takes a place in `namespace`; `false`, and nothing taken, when its share or the total
    /// is full.
    pub fn take(&mut self, namespace: &str) -> bool {
        if !self.has_room(namespace) {
            return false;
        }
        match self.held.get_mut(namespace) {
            Some(n) => *n += 1,
            None => {
                self.held.insert(namespace.to_string(), 1);
            }
        }
        self.total += 1;
        true
    }

    /// Gives back a place taken in `namespace` (none held there: nothing happens).
    pub fn give_back(&mut self, namespace: &str) {
        let Some(n) = self.held.get_mut(namespace) else { return };
        *n -= 1;
        self.total -= 1;
        if *n == 0 {
            self.held.remove(namespace);
        }
    }

    /// Whether no place is held.
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_namespace_leaves_room_for_the_others_until_the_total_is_reached() {
        let mut shares = NamespaceShares::new(2, 3);
        assert!(shares.take("flood") && shares.take("flood"));
        assert!(!shares.take("flood"), "the namespace's share is full");
        assert!(shares.take("other"), "another namespace still has room");
        assert!(!shares.take("third"), "the total is full");
        shares.give_back("flood");
        assert!(shares.has_room("third") && shares.has_room("flood"));
        shares.give_back("nowhere");
        assert!(shares.take("third"));
        for namespace in ["flood", "other", "third"] {
            shares.give_back(namespace);
        }
        assert!(shares.is_empty());
        assert!(shares.held.is_empty(), "an emptied namespace is forgotten");
    }
}
