//! The simulator's content and the benchmark's writes, straight into its store (in-process,
//! like a kubelet's status PUT without the HTTP hop): the load generator stays cheap and
//! the operator and the watches see ordinary API-server watch events.

use std::path::Path;

use anyhow::{Context, Result};
use serde_json::{json, Value};
use sidecar_watch_harness::sim::api::{now_string, Params};
use sidecar_watch_harness::sim::Shared;

use super::args::repo_root;
use super::pods::{self, PodFactory};

/// The store key of Pods.
pub fn pods_key() -> (String, String) {
    (String::new(), "pods".to_string())
}

/// Group, version and plural of SidecarPolicies.
pub const SIDECAR_POLICIES: (&str, &str, &str) = ("sidecarwatch.io", "v1alpha1", "sidecarpolicies");
/// Group, version and plural of ClusterSidecarPolicies.
pub const CLUSTER_SIDECAR_POLICIES: (&str, &str, &str) = ("sidecarwatch.io", "v1alpha1", "clustersidecarpolicies");

/// Creates `obj` as an API call would (validation, defaults, CRD registration).
pub fn create(shared: &Shared, group: &str, version: &str, plural: &str, ns: Option<&str>, obj: Value) -> Result<()> {
    let mut st = shared.state();
    let info =
        st.registry.find(group, version, plural).cloned().with_context(|| format!("no resource {group}/{plural}"))?;
    st.create(&info, ns, obj).map_err(|e| anyhow::anyhow!("create {plural}: {e:?}"))?;
    Ok(())
}

/// Replaces the `spec` of the `group`/`plural` object `name` (in `ns`) through the API's
/// update, as `kubectl apply` would: a new generation.
pub fn update_spec(
    shared: &Shared,
    (group, version, plural): (&str, &str, &str),
    ns: Option<&str>,
    name: &str,
    spec: Value,
) -> Result<()> {
    let mut st = shared.state();
    let info =
        st.registry.find(group, version, plural).cloned().with_context(|| format!("no resource {group}/{plural}"))?;
    let key = (group.to_string(), plural.to_string());
    let mut body =
        st.store.get(&key, ns.unwrap_or(""), name).cloned().with_context(|| format!("no {plural} {name}"))?;
    body["spec"] = spec;
    st.update(&info, ns, name, body, sidecar_watch_harness::sim::patch::Scope::Main)
        .map_err(|e| anyhow::anyhow!("update {plural} {name}: {e:?}"))?;
    Ok(())
}

/// The repository's CRDs, the namespaces, the policies and `n` Pods; returns the Pods'
/// (namespace, name) in creation order.
pub fn preload(shared: &Shared, factory: &PodFactory, n: usize) -> Result<Vec<(String, String)>> {
    let crds = repo_root().join("crds");
    let mut files: Vec<_> = std::fs::read_dir(&crds)
        .with_context(|| format!("reading {}", crds.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .collect();
    files.sort();
    for f in files {
        let crd: Value = serde_norway::from_str(&std::fs::read_to_string(&f)?)
            .with_context(|| format!("parsing {}", Path::new(&f).display()))?;
        create(shared, "apiextensions.k8s.io", "v1", "customresourcedefinitions", None, crd)?;
    }
    for i in 0..pods::NAMESPACES {
        let ns = pods::namespace(i);
        let labels = json!({"team": format!("team-{}", i % 7)});
        create(shared, "", "v1", "namespaces", None, json!({"metadata": {"name": ns, "labels": labels}}))?;
    }
    for p in pods::policies() {
        create(shared, "sidecarwatch.io", "v1alpha1", "clustersidecarpolicies", None, p)?;
    }
    let key = pods_key();
    let mut names = Vec::with_capacity(n);
    let now = now_string();
    for i in 0..n {
        let mut pod = factory.pod(i);
        pod["metadata"]["creationTimestamp"] = json!(now);
        let (ns, name) = pods::ns_name(&pod);
        // Serialized now, while the Pod is in the CPU cache (the first LIST would otherwise
        // pay for it, reading 100k cold objects), and kept as JSON only: 400k parsed Pods
        // would not fit in memory.
        shared.state().store.put_as_json(&key, &ns, &name, pod);
        names.push((ns, name));
    }
    Ok(names)
}

/// Read-modify-write of a Pod in the store (one lock hold); returns the new resourceVersion.
/// The one copy is the editable next version: stored versions are shared and immutable.
pub fn write_pod(shared: &Shared, ns: &str, name: &str, f: impl FnOnce(&mut Value)) -> Option<u64> {
    let key = pods_key();
    let mut st = shared.state();
    let mut next = st.store.get(&key, ns, name)?.clone();
    f(&mut next);
    st.store.put(&key, ns, name, next);
    Some(st.store.rv())
}

/// Deletes a Pod at once (grace period 0); false if it was not there.
pub fn delete_pod(shared: &Shared, ns: &str, name: &str) -> bool {
    let mut st = shared.state();
    let Some(info) = st.registry.find("", "v1", "pods").cloned() else { return false };
    let q: Params = [("gracePeriodSeconds".to_string(), "0".to_string())].into_iter().collect();
    st.delete(&info, Some(ns), name, &json!({}), &q).is_ok()
}

/// Stores `pod` (created now); returns its (namespace, name).
pub fn put_pod(shared: &Shared, mut pod: Value) -> (String, String) {
    pod["metadata"]["creationTimestamp"] = json!(now_string());
    let (ns, name) = pods::ns_name(&pod);
    shared.state().store.put(&pods_key(), &ns, &name, pod);
    (ns, name)
}
