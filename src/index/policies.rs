//! The policy table's entries and namespace labels, as the watchers deliver them.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::engine::{CompiledPolicy, SpecError};

/// Labels of a namespace.
pub type Labels = BTreeMap<String, String>;

/// A policy as the index knows it: valid and compiled, or invalid with the reason.
#[derive(Clone, Debug)]
pub struct PolicyEntry {
    /// `metadata.generation` of the object the entry was built from.
    pub generation: Option<i64>,
    /// `metadata.uid`, for Event references.
    pub uid: Option<String>,
    /// The compiled policy, or why it cannot be compiled.
    pub compiled: Result<Arc<CompiledPolicy>, SpecError>,
    /// The object's `spec` as received, to tell spec changes from status-only updates.
    pub spec: serde_json::Value,
    /// The `Ready` condition already on the object: (status, lastTransitionTime).
    pub ready_condition: Option<(String, String)>,
    /// Per-shard counts already on the object (sharded operation).
    pub shard_statuses: BTreeMap<String, crate::api::ShardStatus>,
}

impl PolicyEntry {
    /// An entry for a compiled (or rejected) spec, with nothing known of its object yet: no
    /// generation, UID, condition or shard counts (tools and tests; the watcher fills them).
    pub fn new(compiled: Result<CompiledPolicy, SpecError>, spec: serde_json::Value) -> Self {
        PolicyEntry {
            generation: None,
            uid: None,
            compiled: compiled.map(Arc::new),
            spec,
            ready_condition: None,
            shard_statuses: BTreeMap::new(),
        }
    }
}
