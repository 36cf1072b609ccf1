//! One lock's worth of tracked Pods.

use std::hash::BuildHasher;

use super::tallies::Tallies;
use super::tracked::TrackedPod;
use sidecar_watch_engine::PodUid;

/// One segment of tracked Pods, keyed by the UID inside each Pod's view: no second copy of
/// the UID as a key, and one pointer per slot, so spare capacity costs little.
#[derive(Default)]
pub(super) struct Segment {
    table: hashbrown::HashTable<Box<TrackedPod>>,
    hasher: hashbrown::DefaultHashBuilder,
    /// The counts of the Pods in `table`; every change of a Pod's results goes through
    /// [`Tallies::replace`] (evaluation, removal), so the two never disagree under the lock.
    pub(super) tallies: Tallies,
}

impl Segment {
    fn hash(&self, uid: PodUid<'_>) -> u64 {
        self.hasher.hash_one(uid)
    }

    pub(super) fn get(&self, uid: PodUid<'_>) -> Option<&TrackedPod> {
        self.table.find(self.hash(uid), |p| p.view().uid() == uid).map(|p| &**p)
    }

    /// The Pod with the segment's counts, which an evaluation of it updates.
    pub(super) fn get_mut(&mut self, uid: PodUid<'_>) -> Option<(&mut TrackedPod, &mut Tallies)> {
        let hash = self.hash(uid);
        self.table.find_mut(hash, |p| p.view().uid() == uid).map(|p| (&mut **p, &mut self.tallies))
    }

    /// The Pod, inserted without results (so it counts nothing) if new, with the counts.
    pub(super) fn get_or_insert_with(
        &mut self,
        uid: PodUid<'_>,
        make: impl FnOnce() -> TrackedPod,
    ) -> (&mut TrackedPod, &mut Tallies) {
        let hash = self.hash(uid);
        let hasher = &self.hasher;
        let entry = self.table.entry(hash, |p| p.view().uid() == uid, |p| hasher.hash_one(p.view().uid()));
        (entry.or_insert_with(|| Box::new(make())).into_mut(), &mut self.tallies)
    }

    pub(super) fn remove(&mut self, uid: PodUid<'_>) -> Option<Box<TrackedPod>> {
        let hash = self.hash(uid);
        let entry = self.table.find_entry(hash, |p| p.view().uid() == uid).ok()?;
        self.tallies.replace(&entry.get().results, &[]);
        Some(entry.remove().0)
    }

    pub(super) fn retain(&mut self, mut keep: impl FnMut(&TrackedPod) -> bool) {
        let tallies = &mut self.tallies;
        self.table.retain(|p| {
            let kept = keep(p);
            if !kept {
                tallies.replace(&p.results, &[]);
            }
            kept
        });
    }

    pub(super) fn values(&self) -> impl Iterator<Item = &TrackedPod> {
        self.table.iter().map(|p| &**p)
    }

    /// Every Pod with the segment's counts, which evaluations of them update.
    pub(super) fn values_mut(&mut self) -> (impl Iterator<Item = &mut TrackedPod>, &mut Tallies) {
        (self.table.iter_mut().map(|p| &mut **p), &mut self.tallies)
    }

    pub(super) fn len(&self) -> usize {
        self.table.len()
    }

    /// Buckets of the hash table (a power of two holding 7/8 as many entries), each a
    /// pointer and a control byte.
    #[cfg(any(test, feature = "test-support"))]
    pub(super) fn buckets(&self) -> usize {
        match self.table.capacity() {
            0 => 0,
            small @ 1..8 => (small + 1).next_power_of_two(),
            capacity => (capacity * 8 / 7).next_power_of_two(),
        }
    }
}
