//! `sidecar_info`: Pods per workload that run a sidecar container of one product and
//! version, counted while a render walks the Pods' sidecars for another family
//! ([`super::pods::IndexRender`]) and written after the per-Pod families.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::identity::product;
use super::namespace_labels::{NamespaceLabels, NamespacePairs};
use super::writer::{Family, SampleWriter};
use crate::engine::ContainerSpec;
use crate::engine::{Name, NamespaceMeta, Workload};
use crate::index::TrackedPod;

pub(super) const SIDECAR_INFO: Family = Family {
    name: "sidecar_info",
    help: "Pods per workload that run a sidecar container of one product and version",
    kind: "gauge",
};

/// The workload of a `sidecar_info` series: the owner its replicas share, held by pointer
/// so that grouping them copies no names, or the Pod's own name for a Pod without owner
/// (its own series: one copy per series, as the map's node is).
#[derive(Clone, Debug)]
enum InfoWorkload {
    Owner(Arc<Workload>),
    Pod(Arc<str>),
}

impl InfoWorkload {
    /// Kind and name, as [`PodView::workload`](crate::engine::PodView::workload) gives them.
    fn kind_and_name(&self) -> (&str, &str) {
        match self {
            InfoWorkload::Owner(owner) => (owner.kind.as_str(), owner.name.as_str()),
            InfoWorkload::Pod(name) => ("Pod", name),
        }
    }
}

// Compared by kind and name, not by pointer or variant: series are grouped and ordered by
// their label values, so that the text is the same whichever `Arc` a Pod holds.
impl PartialEq for InfoWorkload {
    fn eq(&self, other: &Self) -> bool {
        self.kind_and_name() == other.kind_and_name()
    }
}

impl Eq for InfoWorkload {}

impl PartialOrd for InfoWorkload {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for InfoWorkload {
    fn cmp(&self, other: &Self) -> Ordering {
        self.kind_and_name().cmp(&other.kind_and_name())
    }
}

/// One `sidecar_info` series: namespace, workload, container, product, version.
type InfoKey = (Name, InfoWorkload, Name, &'static str, Option<Name>);

/// What the replicas of a workload share for one sidecar: the namespace, the owner and the
/// container's spec (which holds its name, catalog entry and version). Counted by their
/// addresses, so counting a replica hashes three pointers and copies nothing; two keys of
/// equal values at different addresses are merged by value when the series are written.
/// Holding the values keeps their addresses from being reused by others while the render
/// lasts.
struct SharedKey {
    namespace: Name,
    owner: Arc<Workload>,
    spec: Arc<ContainerSpec>,
}

/// The `sidecar_info` series a render holds counted while its client reads: an entry takes
/// 56 B when counted by shared values, under 150 B for a Pod without owner (its name
/// copied), so at most about 0.6 MiB, the order of the chunk it holds (docs/metrics.md,
/// "Security"). A render whose counts grow past this drops them and counts in a walk of its
/// own at its end, which holds them only while it writes them.
pub(super) const HELD_SERIES: usize = 4096;

/// The `sidecar_info` counts of one render.
#[derive(Default)]
pub(super) struct InfoCounts {
    /// Pods with an owner, by the addresses of their [`SharedKey`].
    shared: hashbrown::HashMap<[usize; 3], (SharedKey, u32)>,
    /// Pods without an owner, each a workload of its own.
    own: BTreeMap<InfoKey, u32>,
}

impl InfoCounts {
    /// Counts each sidecar container of `pod`.
    pub(super) fn count(&mut self, pod: &TrackedPod) {
        if !pod.has_sidecars() {
            return;
        }
        let namespace = pod.view().namespace();
        let Some(owner) = pod.view().owner() else {
            let workload = InfoWorkload::Pod(pod.view().name().into());
            for (container, _) in pod.sidecar_containers() {
                let key = (
                    namespace.clone(),
                    workload.clone(),
                    container.name.clone(),
                    product(container.catalog),
                    container.version.clone(),
                );
                *self.own.entry(key).or_default() += 1;
            }
            return;
        };
        for (container, _) in pod.sidecar_containers() {
            let spec = container.shared_spec();
            let addresses = [namespace.as_str().as_ptr().addr(), Arc::as_ptr(owner).addr(), Arc::as_ptr(spec).addr()];
            let (_, pods) = self.shared.entry(addresses).or_insert_with(|| {
                (SharedKey { namespace: namespace.clone(), owner: Arc::clone(owner), spec: Arc::clone(spec) }, 0)
            });
            *pods += 1;
        }
    }

    /// How many series are counted so far (before the ones of equal values are merged).
    pub(super) fn series(&self) -> usize {
        self.shared.len() + self.own.len()
    }

    /// Writes the series, at most `max_series_per_namespace` per namespace, each with the
    /// `labels` of its namespace as `namespaces` holds them; returns whether a namespace had
    /// more.
    pub(super) fn write(
        self,
        out: &mut SampleWriter,
        max_series_per_namespace: u32,
        labels: &NamespaceLabels,
        namespace_pairs: &mut NamespacePairs,
        namespaces: Option<&HashMap<String, NamespaceMeta>>,
    ) -> bool {
        let mut counts = self.own;
        for (SharedKey { namespace, owner, spec }, pods) in self.shared.into_values() {
            let series =
                (namespace, InfoWorkload::Owner(owner), spec.name.clone(), product(spec.catalog), spec.version.clone());
            *counts.entry(series).or_default() += pods;
        }
        let mut series_per_namespace: HashMap<Name, u32> = HashMap::new();
        let mut limited = false;
        // The series come sorted by namespace: its labels are looked up once per namespace.
        for ((namespace, workload, container, product, version), pods) in counts {
            let written = series_per_namespace.entry(namespace.clone()).or_default();
            if *written >= max_series_per_namespace {
                limited = true;
                continue;
            }
            *written += 1;
            let (kind, name) = workload.kind_and_name();
            out.sample(SIDECAR_INFO.name)
                .label("namespace", &namespace)
                .label("workload_kind", kind)
                .label("workload", name)
                .label("container", &container)
                .label("product", product)
                .label("version", version.as_ref().map_or("", |v| v.as_str()))
                .labels(namespace_pairs.of(labels, &namespace, namespaces))
                .value(pods);
        }
        limited
    }
}
