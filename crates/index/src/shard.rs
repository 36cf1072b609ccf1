//! Horizontal sharding: each replica owns the Pods whose UID hashes to its shard, and the
//! workload alerts whose workload hashes to it.

use sidecar_watch_engine::WorkloadId;

/// One replica's share of the Pods.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    /// This replica's index, `0..count`.
    pub index: u32,
    /// How many shards there are.
    pub count: u32,
}

impl Default for Shard {
    fn default() -> Self {
        Shard { index: 0, count: 1 }
    }
}

impl Shard {
    /// Whether this shard owns the Pod with `uid`. The hash is FNV-1a: stable across
    /// processes, versions and platforms, unlike the standard library's hasher.
    pub fn owns(&self, uid: &str) -> bool {
        self.count <= 1 || shard_of(uid, self.count) == self.index
    }

    /// Whether this shard owns `workload`'s alerts (`SidecarInjectionFailed`), by namespace,
    /// kind and name: every shard reads the same Events and decides alike, whichever shard
    /// the workload's Pods hash to.
    pub fn owns_workload(&self, workload: &WorkloadId) -> bool {
        self.owns(&format!("{}/{workload}", workload.namespace))
    }
}

/// The shard a Pod UID belongs to, out of `count`.
pub fn shard_of(uid: &str, count: u32) -> u32 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in uid.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    (hash % u64::from(count.max(1))) as u32
}

/// The ordinal at the end of a StatefulSet Pod name (`sidecar-watch-2` → 2).
pub fn ordinal_of(name: &str) -> Option<u32> {
    name.rsplit_once('-').and_then(|(_, n)| n.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use sidecar_watch_engine::WorkloadKind;

    #[test]
    fn a_workload_has_one_owner_and_its_namespace_counts() {
        let shards = || (0..3).map(|index| Shard { index, count: 3 });
        let web = |namespace: &str| WorkloadId {
            namespace: namespace.to_string(),
            kind: WorkloadKind::Deployment,
            name: "web".to_string(),
        };
        let owner = |w: &WorkloadId| shards().filter(|s| s.owns_workload(w)).map(|s| s.index).collect::<Vec<_>>();
        let owners: Vec<Vec<u32>> = (0..10).map(|n| owner(&web(&format!("team-{n}")))).collect();
        assert!(owners.iter().all(|o| o.len() == 1), "{owners:?}");
        // `Deployment/web` of ten namespaces does not all land on one shard.
        assert!(owners.iter().any(|o| o != &owners[0]), "{owners:?}");
    }

    #[test]
    fn every_uid_has_exactly_one_owner() {
        for i in 0..1000 {
            let uid = format!("0b5c6f3e-{i:04}-4d7e-9a55-6f1d2c3b4a59");
            let owners = (0..3).filter(|&index| Shard { index, count: 3 }.owns(&uid)).count();
            assert_eq!(owners, 1, "{uid}");
        }
    }

    #[test]
    fn shards_are_balanced() {
        let mut counts = [0u32; 3];
        for i in 0..3000 {
            counts[shard_of(&format!("pod-uid-{i}"), 3) as usize] += 1;
        }
        assert!(counts.iter().all(|&c| (900..=1100).contains(&c)), "{counts:?}");
    }

    #[test]
    fn ordinals() {
        assert_eq!(ordinal_of("sidecar-watch-2"), Some(2));
        assert_eq!(ordinal_of("sidecar-watch"), None);
    }
}
