//! The identity of a sidecar on the series that name one: its workload, its catalog product
//! and its namespace's copied labels (`label_<key>`), written by one function for every
//! family that carries it, so that a rule can join a product's own series on them and get
//! the same values from each family.

use super::writer::{LabelSet, Sample};
use crate::engine::CatalogId;

/// The catalog product of a container, `unknown` for one the catalog does not know.
pub(super) fn product(catalog: Option<CatalogId>) -> &'static str {
    catalog.map_or("unknown", |id| id.entry().id)
}

/// Adds `workload_kind`, `workload` (as [`PodView::workload`](crate::engine::PodView::workload)
/// names it), `product` (see [`product`]) and the namespace's `label_*` pairs (from
/// [`NamespacePairs`](super::namespace_labels::NamespacePairs)), in that order.
pub(super) fn with_identity<'w>(
    sample: Sample<'w>,
    (workload_kind, workload): (&str, &str),
    catalog: Option<CatalogId>,
    namespace_labels: &LabelSet,
) -> Sample<'w> {
    sample
        .label("workload_kind", workload_kind)
        .label("workload", workload)
        .label("product", product(catalog))
        .labels(namespace_labels)
}
