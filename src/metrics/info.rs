//! The per-workload families: `sidecar_info` (Pods per workload that run a sidecar
//! container of one product and version) and the sidecar tax ([`super::resources`]), counted
//! in one table while a render walks the Pods' sidecars for another family
//! ([`super::pods::IndexRender`]) and written after the per-Pod families.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::identity::product;
use super::namespace_labels::{NamespaceLabels, NamespacePairs};
use super::resources::{self, ResourceTable};
use super::writer::{Family, SampleWriter};
use super::FamilyFilter;
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
pub(super) enum InfoWorkload {
    Owner(Arc<Workload>),
    Pod(Arc<str>),
}

impl InfoWorkload {
    /// Kind and name, as [`PodView::workload`](crate::engine::PodView::workload) gives them.
    pub(super) fn kind_and_name(&self) -> (&str, &str) {
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
/// 56 B when counted by shared values, under 160 B for a Pod without owner (its name
/// copied), so at most about 0.6 MiB, the order of the chunk it holds (docs/metrics.md,
/// "Security"). A render whose counts grow past this drops them and counts in a walk of its
/// own at its end, which holds them only while it writes them.
pub(super) const HELD_SERIES: usize = 4096;

/// The Pods counted for one sidecar of one workload: every tracked one (`sidecar_info`) and
/// the live ones ([`PodView::is_live`](crate::engine::PodView::is_live)), whose requests
/// and limits the sidecar tax sums.
#[derive(Clone, Copy, Default)]
pub(super) struct PodCounts {
    pub(super) pods: u32,
    pub(super) live: u32,
}

impl PodCounts {
    fn add(&mut self, other: PodCounts) {
        self.pods += other.pods;
        self.live += other.live;
    }
}

/// Which of the per-workload families a render exports.
#[derive(Clone, Copy)]
struct Exported {
    info: bool,
    requests: bool,
    limits: bool,
}

/// The per-workload counts of one render: one entry per sidecar spec of a workload.
pub(super) struct InfoCounts {
    exported: Exported,
    /// Pods with an owner, by the addresses of their [`SharedKey`].
    shared: hashbrown::HashMap<[usize; 3], (SharedKey, PodCounts)>,
    /// Pods without an owner, each a workload of its own, with their container's spec.
    own: BTreeMap<InfoKey, (Arc<ContainerSpec>, PodCounts)>,
}

impl InfoCounts {
    /// Counts for the per-workload families `families` exports; `None` when it exports none.
    pub(super) fn new(families: &FamilyFilter) -> Option<Self> {
        let exported = Exported {
            info: families.exports(SIDECAR_INFO.name),
            requests: families.exports(resources::REQUESTS.name),
            limits: families.exports(resources::LIMITS.name),
        };
        (exported.info || exported.requests || exported.limits).then(|| InfoCounts {
            exported,
            shared: hashbrown::HashMap::new(),
            own: BTreeMap::new(),
        })
    }

    /// The same counts, emptied.
    pub(super) fn emptied(&self) -> Self {
        InfoCounts { exported: self.exported, shared: hashbrown::HashMap::new(), own: BTreeMap::new() }
    }

    /// Counts each sidecar container of `pod`.
    pub(super) fn count(&mut self, pod: &TrackedPod) {
        if !pod.has_sidecars() {
            return;
        }
        let counts = PodCounts { pods: 1, live: u32::from(pod.view().is_live()) };
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
                let spec = container.shared_spec();
                self.own.entry(key).or_insert_with(|| (Arc::clone(spec), PodCounts::default())).1.add(counts);
            }
            return;
        };
        for (container, _) in pod.sidecar_containers() {
            let spec = container.shared_spec();
            let addresses = [namespace.as_str().as_ptr().addr(), Arc::as_ptr(owner).addr(), Arc::as_ptr(spec).addr()];
            let (_, pods) = self.shared.entry(addresses).or_insert_with(|| {
                let key = SharedKey { namespace: namespace.clone(), owner: Arc::clone(owner), spec: Arc::clone(spec) };
                (key, PodCounts::default())
            });
            pods.add(counts);
        }
    }

    /// How many series are counted so far (before the ones of equal values are merged).
    pub(super) fn series(&self) -> usize {
        self.shared.len() + self.own.len()
    }

    /// Writes the families' headers and series, at most `max_series_per_namespace` per
    /// namespace and family, each with the `labels` of its namespace as `namespaces` holds
    /// them; returns whether a namespace had more.
    pub(super) fn write(
        self,
        out: &mut SampleWriter,
        max_series_per_namespace: u32,
        labels: &NamespaceLabels,
        namespace_pairs: &mut NamespacePairs,
        namespaces: Option<&HashMap<String, NamespaceMeta>>,
    ) -> bool {
        let mut counts: BTreeMap<InfoKey, u32> = BTreeMap::new();
        let mut tax = ResourceTable::default();
        let shared = self.shared.into_values().map(|(SharedKey { namespace, owner, spec }, pods)| {
            let key =
                (namespace, InfoWorkload::Owner(owner), spec.name.clone(), product(spec.catalog), spec.version.clone());
            (key, spec, pods)
        });
        let own = self.own.into_iter().map(|(key, (spec, pods))| (key, spec, pods));
        for ((namespace, workload, container, product, version), spec, pods) in shared.chain(own) {
            if self.exported.requests || self.exported.limits {
                tax.add((namespace.clone(), workload.clone(), container.clone(), product), &spec, pods.live);
            }
            if self.exported.info {
                *counts.entry((namespace, workload, container, product, version)).or_default() += pods.pods;
            }
        }
        let mut limited = false;
        if self.exported.info {
            out.header(&SIDECAR_INFO);
            let mut cap = SeriesCap::new(max_series_per_namespace);
            // The series come sorted by namespace: its labels are looked up once per namespace.
            for ((namespace, workload, container, product, version), pods) in counts {
                if !cap.admits(&namespace) {
                    continue;
                }
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
            limited |= cap.limited;
        }
        for (family, exported) in
            [(&resources::REQUESTS, self.exported.requests), (&resources::LIMITS, self.exported.limits)]
        {
            if exported {
                let mut cap = SeriesCap::new(max_series_per_namespace);
                tax.write(family, out, &mut cap, (labels, &mut *namespace_pairs, namespaces));
                limited |= cap.limited;
            }
        }
        limited
    }
}

/// At most a number of series per namespace in one family, and whether a namespace had more.
pub(super) struct SeriesCap {
    max: u32,
    written: HashMap<Name, u32>,
    limited: bool,
}

impl SeriesCap {
    fn new(max: u32) -> Self {
        SeriesCap { max, written: HashMap::new(), limited: false }
    }

    /// Whether `namespace` may write one more series (counted when it may).
    pub(super) fn admits(&mut self, namespace: &Name) -> bool {
        let written = self.written.entry(namespace.clone()).or_default();
        if *written >= self.max {
            self.limited = true;
            return false;
        }
        *written += 1;
        true
    }
}
