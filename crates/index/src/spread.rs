//! Which segments hold the Pods of each workload, so that what reads one workload's Pods
//! (the rollout judgement, [`crate::rollouts_blocked`]; a workload's newest sidecar version
//! changing, which evaluates its Pods again) locks and walks those segments only, not all
//! [`SEGMENTS`]: Pods are spread over the segments by UID, and a workload of a few Pods sits in
//! a few of them (docs/benchmarks.md#what-do-the-alerts-on-workloads-cost).
//!
//! Kept per workload, not per Pod: a workload's key is a hash of its namespace, kind and name
//! with its Pod count and a bit per segment that held one of its Pods since the count was last
//! zero. Two workloads whose keys collide share one entry, which only widens both to the union
//! of their segments (the seed is random per process: a tenant cannot aim a collision).

use std::hash::BuildHasher;

use sidecar_watch_engine::Workload;

use super::SEGMENTS;

/// A set of segments, one bit each.
pub(crate) type SegmentSet = u64;

/// Every segment.
pub(crate) const EVERY_SEGMENT: SegmentSet = SegmentSet::MAX;

const _: () = assert!(SEGMENTS <= SegmentSet::BITS as usize, "a segment set has a bit per segment");

/// The segments of each workload's Pods.
#[derive(Default)]
pub(crate) struct WorkloadSpread {
    of: hashbrown::HashMap<u64, Spread>,
    keys: hashbrown::DefaultHashBuilder,
}

#[derive(Default)]
struct Spread {
    segments: SegmentSet,
    pods: u32,
}

impl WorkloadSpread {
    /// The key of workload `kind`/`name` in `namespace`.
    fn key(&self, namespace: &str, kind: &str, name: &str) -> u64 {
        self.keys.hash_one((namespace, kind, name))
    }

    /// The key of the workload `owner` of a Pod in `namespace`, `None` for a Pod of none.
    fn key_of(&self, namespace: &str, owner: Option<&Workload>) -> Option<u64> {
        owner.map(|owner| self.key(namespace, &owner.kind, &owner.name))
    }

    /// A Pod of `owner` in `namespace` is now held in `segment`.
    pub(crate) fn add(&mut self, namespace: &str, owner: Option<&Workload>, segment: usize) {
        if let Some(key) = self.key_of(namespace, owner) {
            let bit: SegmentSet = 1 << segment;
            let spread = self.of.entry(key).or_default();
            spread.segments |= bit;
            spread.pods += 1;
        }
    }

    /// A Pod of `owner` in `namespace` is no longer held, or no longer of that owner.
    pub(crate) fn remove(&mut self, namespace: &str, owner: Option<&Workload>) {
        let Some(key) = self.key_of(namespace, owner) else { return };
        if let hashbrown::hash_map::Entry::Occupied(mut entry) = self.of.entry(key) {
            let pods = &mut entry.get_mut().pods;
            *pods = pods.saturating_sub(1);
            if *pods == 0 {
                entry.remove();
            }
        }
    }

    /// The segments that may hold Pods of the `workloads` (namespace, kind, name).
    pub(crate) fn segments_of<'a>(
        &self,
        workloads: impl IntoIterator<Item = (&'a str, &'a str, &'a str)>,
    ) -> SegmentSet {
        workloads
            .into_iter()
            .filter_map(|(namespace, kind, name)| self.of.get(&self.key(namespace, kind, name)))
            .fold(0, |set, spread| set | spread.segments)
    }

    /// Workloads with Pods.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.of.len()
    }
}

/// The segments in `set`, in order.
pub(crate) fn members(set: SegmentSet) -> impl Iterator<Item = usize> {
    (0..SEGMENTS).filter(move |segment| {
        let bit: SegmentSet = 1 << segment;
        set & bit != 0
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use sidecar_watch_engine::Name;

    #[test]
    fn a_workload_keeps_its_segments_until_its_last_pod_goes() {
        let web = Workload { kind: Name::from("Deployment"), name: Name::from("web") };
        let mut spread = WorkloadSpread::default();
        spread.add("shop", Some(&web), 3);
        spread.add("shop", Some(&web), 63);
        spread.add("shop", None, 5);
        let web_segments = |spread: &WorkloadSpread| spread.segments_of([("shop", "Deployment", "web")]);
        assert_eq!(web_segments(&spread), 1 << 3 | 1 << 63, "a bare Pod is no workload's");
        assert_eq!(spread.segments_of([("other", "Deployment", "web"), ("shop", "StatefulSet", "web")]), 0);
        spread.remove("shop", Some(&web));
        assert_eq!(web_segments(&spread), 1 << 3 | 1 << 63, "a segment may stay without the Pod: a wider walk");
        spread.remove("shop", Some(&web));
        spread.remove("shop", Some(&web));
        assert_eq!((web_segments(&spread), spread.len()), (0, 0));
        assert_eq!(members(1 << 63 | 1 << 3).collect::<Vec<_>>(), [3, 63]);
    }
}
