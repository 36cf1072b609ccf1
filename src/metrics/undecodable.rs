//! The objects that cannot be decoded, wherever they are listed or watched: each counted in
//! `sidecar_watch_decode_errors_total{kind}` and logged by namespace/name and field, never
//! its body.

use std::collections::HashSet;

use crate::api::Undecodable;

use super::Metrics;

/// UIDs remembered as logged; past that the set starts again (a tenant can create any
/// number of undecodable objects).
const REMEMBERED: usize = 10_000;

/// The undecodable objects of one kind seen by one watch or list: each is counted every time
/// it comes, and logged once (by UID), not on every update.
pub(crate) struct Undecodables {
    kind: &'static str,
    metrics: Metrics,
    logged: HashSet<String>,
}

impl Undecodables {
    /// For the objects of `kind` (the `kind` label).
    pub(crate) fn new(kind: &'static str, metrics: Metrics) -> Self {
        Undecodables { kind, metrics, logged: HashSet::new() }
    }

    /// Counts `bad`, and logs it if it was not logged yet.
    pub(crate) fn report(&mut self, bad: &Undecodable) {
        self.metrics.decode_errors.with_label_values(&[self.kind]).inc();
        if self.logged.len() >= REMEMBERED {
            self.logged.clear();
        }
        if self.logged.insert(bad.metadata.uid.clone().unwrap_or_default()) {
            tracing::warn!(kind = self.kind, object = %bad.key(), error = %bad.error, "object cannot be decoded; skipped");
        }
    }
}
