//! The Event path's limits as properties: the fair queue never lets a flood in one namespace
//! drop or hold back another namespace's Events beyond one turn, and the spam filter never
//! lets an object have more than its burst plus one Event per refill period.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use proptest::prelude::*;
use sidecar_watch::events::spam_filter::{SpamFilter, BURST, REFILL};
use sidecar_watch::fair_queue::{Fair, FairQueue, InNamespace, Rank};

#[derive(Clone, Debug)]
struct Item {
    namespace: &'static str,
    severity: Rank,
    id: u32,
}

impl InNamespace for Item {
    fn namespace(&self) -> &str {
        self.namespace
    }
}

impl Fair for Item {
    fn rank(&self) -> Rank {
        self.severity
    }
}

#[derive(Clone, Debug)]
enum Op {
    Flood(Rank),
    Shop(Rank),
    Pop,
}

fn severity() -> impl Strategy<Value = Rank> {
    prop_oneof![Just(Rank::Urgent), Just(Rank::Normal), Just(Rank::Deferred)]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![6 => severity().prop_map(Op::Flood), 1 => severity().prop_map(Op::Shop), 2 => Just(Op::Pop)]
}

const CAPACITY: usize = 16;

proptest! {
    /// Shop keeps at most half the queue; the flood pushes without limit. No shop Event is
    /// dropped, and while a shop Event waits, the flood gets at most one turn per shop turn
    /// (plus the one in progress).
    #[test]
    fn a_flood_neither_drops_nor_holds_back_another_namespace(ops in prop::collection::vec(op(), 1..400)) {
        let mut q = FairQueue::new(CAPACITY);
        let mut next = 0_u32;
        // Shop Events waiting: id → (flood pops, shop pops) since pushed.
        let mut waiting: HashMap<u32, (u32, u32)> = HashMap::new();
        let mut dropped = HashSet::new();
        for op in ops {
            match op {
                Op::Flood(severity) | Op::Shop(severity) => {
                    let namespace = if matches!(op, Op::Flood(_)) { "flood" } else { "shop" };
                    if namespace == "shop" && waiting.len() >= CAPACITY / 2 {
                        continue;
                    }
                    next += 1;
                    if namespace == "shop" {
                        waiting.insert(next, (0, 0));
                    }
                    if let Some(gone) = q.push(Item { namespace, severity, id: next }) {
                        prop_assert_ne!(gone.namespace, "shop", "a shop Event was dropped");
                        dropped.insert(gone.id);
                    }
                }
                Op::Pop => {
                    let Some(item) = q.pop() else { continue };
                    if item.namespace == "shop" {
                        waiting.remove(&item.id);
                        for (_, shop) in waiting.values_mut() {
                            *shop += 1;
                        }
                    } else {
                        for (flood, shop) in waiting.values_mut() {
                            *flood += 1;
                            prop_assert!(*flood <= *shop + 1, "the flood got {} turns to shop's {}", flood, shop);
                        }
                    }
                }
            }
            prop_assert!(q.len() <= CAPACITY);
        }
    }

    /// Whatever the timing, an object never gets more than its burst plus one Event per
    /// refill period that has passed.
    #[test]
    fn an_object_gets_its_burst_then_one_per_refill(gaps in prop::collection::vec(0_u64..400, 1..300)) {
        let mut filter = SpamFilter::default();
        let t0 = tokio::time::Instant::now();
        let mut now = t0;
        let mut allowed = 0_u64;
        for gap in gaps {
            now += Duration::from_secs(gap);
            if filter.allow("shop", "pod", now) {
                allowed += 1;
            }
            let periods = now.duration_since(t0).as_secs() / REFILL.as_secs();
            prop_assert!(allowed <= u64::from(BURST) + periods, "{} Events after {} refills", allowed, periods);
        }
    }
}
