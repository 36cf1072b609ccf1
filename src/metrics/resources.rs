//! The sidecar tax: `sidecar_resource_requests` and `sidecar_resource_limits`, the `cpu`
//! (cores) and `memory` (bytes) a workload's sidecars request and are limited to, summed
//! over the workload's live Pods from the specs the index already holds (replicas share
//! one), counted in the `sidecar_info` table ([`super::info::InfoCounts`]) and written
//! after it. A sidecar that declares no such request or limit writes no series for it (not
//! 0: kube-state-metrics does the same, and a sum over it stays honest).

use std::collections::{BTreeMap, HashMap};

use super::identity::with_identity;
use super::info::{InfoWorkload, SeriesCap};
use super::namespace_labels::{NamespaceLabels, NamespacePairs};
use super::writer::{Family, SampleWriter};
use crate::engine::{CatalogId, ContainerResources, ContainerSpec, Name, NamespaceMeta};

pub(super) const REQUESTS: Family = Family {
    name: "sidecar_resource_requests",
    help: "Resources the sidecar requests in the workload's live Pods (cpu in cores, memory in bytes)",
    kind: "gauge",
};

pub(super) const LIMITS: Family = Family {
    name: "sidecar_resource_limits",
    help: "Resource limits of the sidecar in the workload's live Pods (cpu in cores, memory in bytes)",
    kind: "gauge",
};

/// One sidecar of one workload: namespace, workload, container, product (no version: a
/// rollout's old and new Pods add up).
type TaxKey = (Name, InfoWorkload, Name, &'static str);

/// What [`NamespacePairs::of`] needs to give a namespace's `label_*` pairs.
pub(super) type NamespaceLookup<'a> =
    (&'a NamespaceLabels, &'a mut NamespacePairs, Option<&'a HashMap<String, NamespaceMeta>>);

/// The sums of one render, per sidecar of a workload, with the catalog entry its product
/// names (for [`with_identity`]).
#[derive(Default)]
pub(super) struct ResourceTable(BTreeMap<TaxKey, (Option<CatalogId>, ContainerResources)>);

impl ResourceTable {
    /// Adds `live` Pods' worth of `spec`'s requests and limits to `key`'s sums; nothing when
    /// no Pod is live or the spec declares none.
    pub(super) fn add(&mut self, key: TaxKey, spec: &ContainerSpec, live: u32) {
        let Some(resources) = spec.resources.as_deref().filter(|_| live > 0) else { return };
        let (_, sums) = self.0.entry(key).or_insert_with(|| (spec.catalog, ContainerResources::default()));
        sums.add_times(resources, live);
    }

    /// Writes `family` ([`REQUESTS`] or [`LIMITS`]): its header and a series per sidecar,
    /// workload and declared resource, within `cap`.
    pub(super) fn write(
        &self,
        family: &Family,
        out: &mut SampleWriter,
        cap: &mut SeriesCap,
        (labels, namespace_pairs, namespaces): NamespaceLookup<'_>,
    ) {
        out.header(family);
        for ((namespace, workload, container, _), (catalog, sums)) in &self.0 {
            let amounts = if family.name == LIMITS.name { &sums.limits } else { &sums.requests };
            for (resource, amount) in [("cpu", amounts.cpu_millis), ("memory", amounts.memory_bytes)] {
                let Some(amount) = amount else { continue };
                if !cap.admits(namespace) {
                    continue;
                }
                let sample = out.sample(family.name).label("namespace", namespace).label("container", container);
                let pairs = namespace_pairs.of(labels, namespace, namespaces);
                let sample =
                    with_identity(sample.label("resource", resource), workload.kind_and_name(), *catalog, pairs);
                if resource == "cpu" {
                    sample.value_thousandths(amount);
                } else {
                    sample.value(amount);
                }
            }
        }
    }
}
