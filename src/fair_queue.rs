//! A bounded queue fair per namespace: the reconciler's work queue ([`crate::controller::queue`]) and
//! the Event queue between the reconciler and the publisher (`events`) are each one.
//!
//! One FIFO would let a namespace that produces thousands of items (a node pool failing, a
//! hostile Pod, a tenant editing its policies in a loop) delay or push out everyone else's.
//! Here every namespace has its own queue; the consumer takes one item from each waiting
//! namespace in turn, and within a namespace the most urgent first. When the queue is full,
//! the namespace holding the most gives up its least urgent, newest item; a namespace with
//! little queued loses nothing to a flood elsewhere.

use std::collections::{HashMap, VecDeque};

/// How soon an item is served within its namespace, and which goes first when room is made.
/// Its discriminant is the index of its FIFO in a namespace's queues.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Rank {
    /// Served first, dropped last.
    Urgent,
    /// Between the two.
    Normal,
    /// Served last, dropped first.
    Deferred,
}

/// Something that counts against one namespace's share: of a queue ([`Fair`]), of the
/// reads of workload objects ([`crate::fair_reader`]) or of a cache ([`crate::fair_cache`]).
pub trait InNamespace {
    /// The namespace whose share it counts against.
    fn namespace(&self) -> &str;
}

/// An item with the namespace it is fair within and its rank.
pub trait Fair: InNamespace {
    /// How soon it is served within its namespace.
    fn rank(&self) -> Rank;
}

/// A bounded queue, fair per namespace, most urgent first within one.
#[derive(Debug)]
pub struct FairQueue<T> {
    /// Per namespace: one FIFO per rank, most urgent first.
    queues: HashMap<String, [VecDeque<T>; 3]>,
    /// Namespaces with something queued, in the order they are served.
    turns: VecDeque<String>,
    len: usize,
    capacity: usize,
}

impl<T: Fair> FairQueue<T> {
    /// An empty queue holding at most `capacity` items.
    pub fn new(capacity: usize) -> Self {
        FairQueue { queues: HashMap::new(), turns: VecDeque::new(), len: 0, capacity: capacity.max(1) }
    }

    /// Items queued.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Queues `item`; returns what had to go to make room: the least urgent, newest item of
    /// the namespace holding the most, or `item` itself when that is its own namespace and
    /// nothing queued there is less urgent.
    pub fn push(&mut self, item: T) -> Option<T> {
        if self.len < self.capacity {
            self.insert(item);
            return None;
        }
        match self.make_room(&item) {
            Some(dropped) => {
                self.insert(item);
                Some(dropped)
            }
            None => Some(item),
        }
    }

    fn insert(&mut self, item: T) {
        let queues = self.queues.entry(item.namespace().to_string()).or_default();
        if queues.iter().all(VecDeque::is_empty) {
            self.turns.push_back(item.namespace().to_string());
        }
        queues[item.rank() as usize].push_back(item);
        self.len += 1;
    }

    /// Drops one queued item to make room for `incoming`, or `None` when `incoming` is the
    /// one to drop.
    fn make_room(&mut self, incoming: &T) -> Option<T> {
        let size = |queues: &[VecDeque<T>; 3]| queues.iter().map(VecDeque::len).sum::<usize>();
        let own = incoming.namespace();
        let own_len = self.queues.get(own).map_or(0, size);
        let (largest, largest_len) = self
            .queues
            .iter()
            .map(|(ns, q)| (ns.as_str(), size(q)))
            .max_by(|a, b| a.1.cmp(&b.1).then_with(|| b.0.cmp(a.0)))?;
        // The newcomer's namespace holds the most (or as much): it pays for itself.
        let victim = if own_len >= largest_len { own.to_string() } else { largest.to_string() };
        let queues = self.queues.get_mut(&victim)?;
        let worst = (0..3).rev().find(|r| !queues[*r].is_empty())?;
        if victim == own && incoming.rank() as usize >= worst {
            return None;
        }
        let dropped = queues[worst].pop_back()?;
        self.len -= 1;
        if queues.iter().all(VecDeque::is_empty) {
            self.queues.remove(&victim);
            self.turns.retain(|ns| *ns != victim);
        }
        Some(dropped)
    }

    /// The first item of `rank` queued for `namespace` that `matches`, to replace in place
    /// (it keeps its turn).
    pub fn find_mut(&mut self, namespace: &str, rank: Rank, matches: impl Fn(&T) -> bool) -> Option<&mut T> {
        self.queues.get_mut(namespace)?[rank as usize].iter_mut().find(|item| matches(item))
    }

    /// The next item: the most severe of the namespace whose turn it is.
    pub fn pop(&mut self) -> Option<T> {
        self.pop_where(|_| true)
    }

    /// The next item of the first namespace in turn that `eligible` accepts (one whose
    /// previous item is still being served, say, waits without losing its place).
    pub fn pop_where(&mut self, eligible: impl Fn(&str) -> bool) -> Option<T> {
        let turn = self.turns.iter().position(|ns| eligible(ns))?;
        let namespace = self.turns.remove(turn)?;
        let queues = self.queues.get_mut(&namespace)?;
        let item = queues.iter_mut().find_map(VecDeque::pop_front)?;
        self.len -= 1;
        if queues.iter().all(VecDeque::is_empty) {
            self.queues.remove(&namespace);
        } else {
            self.turns.push_back(namespace);
        }
        Some(item)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Debug, PartialEq)]
    struct Item(&'static str, Rank, u32);

    impl InNamespace for Item {
        fn namespace(&self) -> &str {
            self.0
        }
    }

    impl Fair for Item {
        fn rank(&self) -> Rank {
            self.1
        }
    }

    fn drain(q: &mut FairQueue<Item>) -> Vec<Item> {
        std::iter::from_fn(|| q.pop()).collect()
    }

    #[test]
    fn namespaces_take_turns_and_the_most_severe_goes_first() {
        let mut q = FairQueue::new(100);
        for i in 0..5 {
            assert_eq!(q.push(Item("flood", Rank::Deferred, i)), None);
        }
        q.push(Item("flood", Rank::Urgent, 9));
        q.push(Item("shop", Rank::Normal, 0));
        q.push(Item("shop", Rank::Urgent, 1));
        let order: Vec<(&str, u32)> = drain(&mut q).iter().map(|i| (i.0, i.2)).collect();
        assert_eq!(
            order,
            [
                ("flood", 9),
                ("shop", 1),
                ("flood", 0),
                ("shop", 0),
                ("flood", 1),
                ("flood", 2),
                ("flood", 3),
                ("flood", 4)
            ]
        );
        assert!(q.is_empty());
    }

    #[test]
    fn a_full_queue_drops_from_the_namespace_holding_the_most() {
        let mut q = FairQueue::new(10);
        for i in 0..10 {
            assert_eq!(q.push(Item("flood", Rank::Deferred, i)), None);
        }
        // Another namespace's Event displaces the flood's newest, least severe one.
        assert_eq!(q.push(Item("shop", Rank::Deferred, 0)), Some(Item("flood", Rank::Deferred, 9)));
        // The flood's next Event is dropped itself: nothing of its own is less severe.
        assert_eq!(q.push(Item("flood", Rank::Deferred, 10)), Some(Item("flood", Rank::Deferred, 10)));
        // A more severe flood Event displaces one of its own info Events.
        assert_eq!(q.push(Item("flood", Rank::Normal, 11)), Some(Item("flood", Rank::Deferred, 8)));
        assert_eq!(q.len(), 10);
        let shop: Vec<Item> = drain(&mut q).into_iter().filter(|i| i.0 == "shop").collect();
        assert_eq!(shop, [Item("shop", Rank::Deferred, 0)]);
    }

    #[test]
    fn a_namespace_passed_over_keeps_its_place() {
        let mut q = FairQueue::new(10);
        for item in [Item("a", Rank::Normal, 0), Item("a", Rank::Normal, 1), Item("b", Rank::Normal, 0)] {
            q.push(item);
        }
        q.push(Item("c", Rank::Normal, 0));
        assert_eq!(q.pop_where(|ns| ns != "a"), Some(Item("b", Rank::Normal, 0)));
        assert_eq!(q.pop_where(|ns| ns == "z"), None);
        let order: Vec<(&str, u32)> = drain(&mut q).iter().map(|i| (i.0, i.2)).collect();
        assert_eq!(order, [("a", 0), ("c", 0), ("a", 1)]);
    }
}
