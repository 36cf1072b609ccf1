//! The namespaces the index knows: what the engine reads of them, and the Pods a change of
//! them evaluates again.

use jiff::Timestamp;

use super::spread::EVERY_SEGMENT;
use super::{Index, Outcome};
use sidecar_watch_engine::NamespaceMeta;

impl Index {
    /// A new or changed namespace: re-evaluates its Pods if a cluster policy looks at its
    /// labels, or if what injectors read of it changed (`SidecarMissing`).
    pub(crate) fn put_namespace(&self, name: &str, meta: NamespaceMeta, now: Timestamp) -> Outcome {
        let before = {
            let mut namespaces = self.namespaces.write();
            namespaces.insert(name.to_string(), meta.clone())
        };
        let labels_changed = before.as_ref().map(|b| &b.labels) != Some(&meta.labels);
        let label_sensitive = labels_changed && self.valid_policies().iter().any(|p| p.needs_namespace_labels());
        if !label_sensitive && !NamespaceMeta::markers_differ(before.as_ref(), &meta) {
            return Outcome::default();
        }
        let mut outcome = self.reevaluate_where(now, EVERY_SEGMENT, |p| p.view().namespace() == name);
        self.settle_versions(now, &mut outcome);
        self.evaluate_workloads(now, None, &mut outcome);
        outcome
    }

    /// Names of the namespaces known, sorted.
    #[cfg(test)]
    pub(crate) fn namespace_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.namespaces.read().keys().cloned().collect();
        names.sort();
        names
    }
}
