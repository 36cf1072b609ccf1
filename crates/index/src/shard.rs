//! Horizontal sharding: each replica owns the workloads (namespace, kind and name) that hash
//! to its shard: their Pods, every Pod by the workload the Pod itself names
//! ([`sidecar_watch_engine::pod_workload`], a Pod without owner being its own), and their
//! workload alerts. A workload's Pods are thus all on one shard, which judges its rollout
//! (`RolloutBlockedBySidecar`, `SidecarVersionDrift`) from all of them and owns its
//! `SidecarInjectionFailed`, whichever Pods it has.

use sidecar_watch_engine::WorkloadId;

/// One replica's share of the workloads.
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
    /// Whether this shard owns the workload `kind`/`name` of `namespace` (for a Pod: the
    /// workload it names, else `Pod` and its own name).
    pub fn owns(&self, namespace: &str, kind: &str, name: &str) -> bool {
        self.count <= 1 || shard_of(namespace, kind, name, self.count) == self.index
    }

    /// [`Self::owns`] for a typed workload: every shard reads the same `FailedCreate` Events
    /// and decides alike.
    pub fn owns_workload(&self, workload: &WorkloadId) -> bool {
        self.owns(&workload.namespace, workload.kind.as_str(), &workload.name)
    }
}

/// The shard, out of `count`, of the workload `kind`/`name` of `namespace`: FNV-1a of
/// `<namespace>/<kind>/<name>`, stable across processes, versions and platforms, unlike the
/// standard library's hasher.
pub fn shard_of(namespace: &str, kind: &str, name: &str, count: u32) -> u32 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let bytes = namespace.bytes().chain([b'/']).chain(kind.bytes()).chain([b'/']).chain(name.bytes());
    for byte in bytes {
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
    fn every_workload_has_exactly_one_owner_and_shards_are_balanced() {
        let mut counts = [0u32; 3];
        for i in 0..3000 {
            let name = format!("web-{i}");
            let owners: Vec<u32> =
                (0..3).filter(|&index| Shard { index, count: 3 }.owns("team-a", "Deployment", &name)).collect();
            assert_eq!(owners.len(), 1, "{name}: {owners:?}");
            counts[owners[0] as usize] += 1;
        }
        assert!(counts.iter().all(|&c| (900..=1100).contains(&c)), "{counts:?}");
    }

    /// The hash is part of the upgrade contract: two versions of the operator running side by
    /// side during a rolling update must split the workloads alike.
    #[test]
    fn the_hash_is_fnv1a_of_namespace_kind_and_name() {
        // FNV-1a (64 bits) of "team-a/Deployment/web" is 0x7ce40b9699b9d855 (Python:
        // `h = 0xcbf29ce484222325; for b in key: h = ((h ^ b) * 0x100000001b3) % 2**64`).
        assert_eq!(shard_of("team-a", "Deployment", "web", u32::MAX), (0x7ce4_0b96_99b9_d855u64 % 0xffff_ffff) as u32);
        assert!(Shard { index: 0, count: 1 }.owns("any", "Pod", "any"), "one shard owns everything");
    }

    #[test]
    fn ordinals() {
        assert_eq!(ordinal_of("sidecar-watch-2"), Some(2));
        assert_eq!(ordinal_of("sidecar-watch"), None);
    }
}
