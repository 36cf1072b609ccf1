//! The policy table's entries and namespace labels, as the watchers deliver them, and which
//! of a namespace's policies are evaluated under `--max-policies-per-namespace`.

use std::collections::BTreeMap;
use std::sync::Arc;

use jiff::Timestamp;

use sidecar_watch_engine::{CompiledPolicy, PolicyRef, SpecError};

/// Labels of a namespace.
pub type Labels = BTreeMap<String, String>;

/// A policy as the index knows it: valid and compiled, or invalid with the reason.
#[derive(Clone, Debug)]
pub struct PolicyEntry {
    /// `metadata.generation` of the object the entry was built from: the API server
    /// bumps it on every change of `spec` and never on a status write (the CRDs have the
    /// status subresource), so it is what tells a spec change from a status-only update.
    pub generation: Option<i64>,
    /// `metadata.uid`, for Event references.
    pub uid: Option<String>,
    /// The compiled policy, or why it cannot be compiled.
    pub compiled: Result<Arc<CompiledPolicy>, SpecError>,
    /// The `Ready` condition already on the object: (status, lastTransitionTime).
    pub ready_condition: Option<(String, String)>,
    /// Per-shard counts already on the object (sharded operation).
    pub shard_statuses: BTreeMap<String, sidecar_watch_api::ShardStatus>,
    /// `metadata.creationTimestamp`: the oldest policies of a namespace are the ones
    /// evaluated under the limit.
    pub created: Option<Timestamp>,
    /// Set by the index (the watcher leaves it `None`): `Some(limit)` when the policy is
    /// beyond its namespace's `--max-policies-per-namespace` and is not evaluated.
    pub held_back: Option<usize>,
}

impl PolicyEntry {
    /// An entry for a compiled (or rejected) spec, with nothing known of its object yet: no
    /// generation, UID, condition or shard counts (tools and tests; the watcher fills them).
    pub fn new(compiled: Result<CompiledPolicy, SpecError>) -> Self {
        PolicyEntry {
            generation: None,
            uid: None,
            compiled: compiled.map(Arc::new),
            ready_condition: None,
            shard_statuses: BTreeMap::new(),
            created: None,
            held_back: None,
        }
    }

    /// Whether `self` is the same object at the same spec as `earlier`: same UID and the
    /// same known generation. Without a generation (tools and tests) every entry is a change.
    pub fn same_spec_as(&self, earlier: &PolicyEntry) -> bool {
        self.uid == earlier.uid && self.generation.is_some() && self.generation == earlier.generation
    }

    /// The compiled policy when it is evaluated: valid and not held back.
    pub fn evaluated(&self) -> Option<&Arc<CompiledPolicy>> {
        self.compiled.as_ref().ok().filter(|_| self.held_back.is_none())
    }
}

/// Decides which policies of `namespace` are evaluated: the `limit` oldest (by creation,
/// then name, so the choice never flaps), valid or not; the rest are held back. Returns the
/// policies whose decision changed.
pub(super) fn admit(table: &mut BTreeMap<PolicyRef, PolicyEntry>, namespace: &str, limit: usize) -> Vec<PolicyRef> {
    let start = PolicyRef::namespaced(namespace, "");
    let mut order: Vec<(Timestamp, PolicyRef)> = table
        .range(start..)
        .take_while(|(p, _)| p.namespace.as_deref() == Some(namespace))
        // Without a creation time (tools, tests): after every dated policy.
        .map(|(p, e)| (e.created.unwrap_or(Timestamp::MAX), p.clone()))
        .collect();
    order.sort();
    let mut changed = Vec::new();
    for (rank, (_, policy)) in order.into_iter().enumerate() {
        let Some(entry) = table.get_mut(&policy) else { continue };
        let held_back = (rank >= limit).then_some(limit);
        if entry.held_back.is_some() != held_back.is_some() {
            changed.push(policy);
        }
        entry.held_back = held_back;
    }
    changed
}
