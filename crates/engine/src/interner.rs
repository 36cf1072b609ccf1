//! One owner for every pool of shared values (names, label sets, workloads, Pod groups,
//! container specs), so that the views built through it share what repeats across Pods.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::container::ContainerSpec;
use super::name::{LabelSet, Name, NamePool, PodGroup, Pool, Workload};

/// Shares what repeats across Pods (names, whole label sets, Pod groups, container specs)
/// between the views built through it. A plain value with no global state: the operator's
/// index owns one (crates/index/src/lib.rs, `view_of`), `audit` owns one per run, a one-off view uses a
/// fresh one.
#[derive(Default)]
pub struct Interner {
    names: NamePool,
    label_sets: Pool<LabelSet>,
    workloads: Pool<Arc<Workload>>,
    groups: Pool<Arc<PodGroup>>,
    container_specs: Pool<Arc<ContainerSpec>>,
}

impl Interner {
    /// The shared copy of `text`.
    pub fn name(&mut self, text: &str) -> Name {
        self.names.name(text)
    }

    /// The string pool alone, for what builds only strings.
    pub fn names(&mut self) -> &mut NamePool {
        &mut self.names
    }

    /// The shared workload `kind`/`name`.
    pub fn workload(&mut self, kind: &str, name: &str) -> Arc<Workload> {
        let wanted = Workload { kind: self.name(kind), name: self.name(name) };
        self.workloads.intern(&wanted, |w| Arc::new(w.clone()))
    }

    /// The shared copy of `group`.
    pub fn pod_group(&mut self, group: PodGroup) -> Arc<PodGroup> {
        self.groups.intern(&group, |g| Arc::new(g.clone()))
    }

    /// The shared copy of a container's spec: replicas of a workload hold one per container.
    pub fn container_spec(&mut self, spec: &ContainerSpec) -> Arc<ContainerSpec> {
        self.container_specs.intern(spec, |s| Arc::new(s.clone()))
    }

    /// The shared copy of a label set.
    pub fn label_set(&mut self, labels: BTreeMap<String, String>) -> LabelSet {
        self.label_sets.intern(&labels, |l| Arc::new(l.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::{ContainerKind, SpecFlags};

    #[test]
    fn equal_names_share_storage_through_one_interner() {
        let mut interner = Interner::default();
        let a = interner.name("istio-proxy");
        let b = interner.name(&String::from("istio-proxy"));
        assert!(std::ptr::eq(a.as_str(), b.as_str()));
        assert_eq!(a, "istio-proxy");
        assert_eq!(String::from("istio-proxy"), a);
        // Another interner (another process part, another audit run) shares nothing.
        assert!(!std::ptr::eq(a.as_str(), Interner::default().name("istio-proxy").as_str()));
    }

    #[test]
    fn equal_label_sets_share_storage() {
        let mut interner = Interner::default();
        let labels = BTreeMap::from([("app".to_string(), "web".to_string())]);
        let a = interner.label_set(labels.clone());
        let b = interner.label_set(labels);
        assert!(Arc::ptr_eq(&a, &b));
    }

    #[test]
    fn equal_container_specs_share_storage() {
        let mut interner = Interner::default();
        let spec = |flags| ContainerSpec {
            name: Name::from("envoy"),
            kind: ContainerKind::RestartableInit,
            flags,
            catalog: None,
            liveness_target: None,
            version: None,
            resources: None,
        };
        let a = interner.container_spec(&spec(SpecFlags::READINESS_PROBE));
        assert!(Arc::ptr_eq(&a, &interner.container_spec(&spec(SpecFlags::READINESS_PROBE))));
        // One spec fact apart: not the same container.
        assert!(!Arc::ptr_eq(&a, &interner.container_spec(&spec(SpecFlags::empty()))));
    }
}
