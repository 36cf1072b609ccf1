//! Policy status: counts, the `Ready` condition and the last evaluation time, written with
//! server-side apply by the leader. Writes are debounced (at most one per policy per
//! interval, only when woken by a change or for the periodic refresh) and skipped when the
//! status would not change.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::ApiResource;
use kube::Client;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::api::{ClusterSidecarPolicy, Lenient, PolicyCounts, PolicyStatus, ShardStatus, SidecarPolicy};
use crate::engine::{AlertName, PolicyRef};
use crate::index::shard::Shard;
use crate::index::{Index, PolicyEntry};
use crate::leadership::RoleReceiver;
use crate::metrics::Metrics;

/// The field manager of every status write.
const FIELD_MANAGER: &str = "sidecar-watch";
/// The `Ready=False` reason of a policy beyond `--max-policies-per-namespace`.
const TOO_MANY_POLICIES: &str = "TooManyPolicies";
/// Even without changes, status is refreshed this often (so `lastEvaluationTime` moves).
const REFRESH: Duration = Duration::from_secs(300);

/// The status a policy should have, without the times (for change detection). Sharded, the
/// counts are this shard's fresh ones plus the other shards' as last written on the object.
pub fn desired_status(entry: &PolicyEntry, stats: &PolicyCounts, shard: Shard) -> PolicyStatus {
    let mut status = unsharded_status(entry, stats);
    if shard.count <= 1 {
        return status;
    }
    let own = ShardStatus { counts: status.counts.clone(), shard_count: shard.count };
    let mut shards: BTreeMap<String, ShardStatus> = entry
        .shard_statuses
        .iter()
        .filter(|(index, s)| s.shard_count == shard.count && index.parse::<u32>().is_ok_and(|i| i < shard.count))
        .map(|(i, s)| (i.clone(), s.clone()))
        .collect();
    shards.insert(shard.index.to_string(), own);
    status.counts = PolicyCounts::default();
    for s in shards.values() {
        status.counts.add(&s.counts);
    }
    if let Some(condition) = status.conditions.first_mut().filter(|_| entry.evaluated().is_some()) {
        condition.message = format!("Evaluating {} Pods in {} shards", status.counts.matched_pods, shard.count);
    }
    status.shards = shards;
    status
}

fn unsharded_status(entry: &PolicyEntry, stats: &PolicyCounts) -> PolicyStatus {
    let (status, reason, message) = match (&entry.compiled, entry.held_back) {
        (_, Some(limit)) => (
            "False",
            TOO_MANY_POLICIES,
            format!(
                "Not evaluated: the namespace has more than {limit} SidecarPolicies \
                 (--max-policies-per-namespace); the {limit} oldest are evaluated"
            ),
        ),
        (Ok(_), None) => ("True", "Evaluating", format!("Evaluating {} Pods", stats.matched_pods)),
        (Err(e), None) => ("False", "InvalidSpec", format!("Invalid spec: {e}")),
    };
    PolicyStatus {
        observed_generation: entry.generation,
        // A policy not evaluated (invalid, held back) counts nothing.
        counts: if entry.evaluated().is_some() { stats.clone() } else { PolicyCounts::default() },
        last_evaluation_time: None,
        shards: Default::default(),
        conditions: vec![Condition {
            type_: "Ready".into(),
            status: status.into(),
            reason: reason.into(),
            message,
            observed_generation: entry.generation,
            last_transition_time: Time(Timestamp::UNIX_EPOCH),
        }],
    }
}

/// Writes policy status while this replica leads.
pub(crate) struct StatusWriter {
    pub(crate) client: Client,
    pub(crate) index: Arc<Index>,
    /// Writes only while this replica [acts](crate::leadership::Role::acts).
    pub(crate) role: RoleReceiver,
    /// Failed writes count as reconcile errors.
    pub(crate) metrics: Metrics,
    /// Minimum time between two writes of the same policy.
    pub(crate) interval: Duration,
    /// Woken by the reconciler when counts may have changed.
    pub(crate) dirty: Arc<Notify>,
    /// This replica's shard: sharded, each shard writes its own entry under `status.shards`
    /// and the sums, with merge patches that never conflict.
    pub(crate) shard: Shard,
}

struct Written {
    /// The object written: a policy deleted and created again under its name is another.
    uid: Option<String>,
    status: PolicyStatus,
    at: Timestamp,
}

impl StatusWriter {
    /// Runs until `shutdown`, then writes once more (a final flush).
    pub(crate) async fn run(self, shutdown: CancellationToken) {
        let mut written: HashMap<PolicyRef, Written> = HashMap::new();
        let mut refresh = tokio::time::interval(REFRESH);
        let mut role = self.role.clone();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = self.dirty.notified() => {}
                _ = refresh.tick() => {}
                changed = role.changed() => {
                    if changed.is_err() {
                        // The role's writers are gone (shutdown): nothing acts any more.
                        break;
                    }
                }
            }
            // Debounce: let a burst of changes settle into one write.
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = tokio::time::sleep(self.interval) => {}
            }
            self.write_all(&mut written).await;
        }
        self.write_all(&mut written).await;
    }

    async fn write_all(&self, written: &mut HashMap<PolicyRef, Written>) {
        if !self.role.borrow().acts() {
            written.clear();
            return;
        }
        let stats = self.index.policy_stats();
        let now = Timestamp::now();
        let policies = self.index.policies();
        written.retain(|p, _| policies.contains_key(p));
        for (policy, entry) in &policies {
            let desired = desired_status(entry, stats.get(policy).unwrap_or(&PolicyCounts::default()), self.shard);
            if let Some(previous) = written.get(policy).filter(|w| w.uid == entry.uid) {
                let fresh = now.duration_since(previous.at) < REFRESH.try_into().unwrap_or_default();
                if previous.status == desired && fresh {
                    continue;
                }
            }
            match self.patch(policy, entry, &desired, now).await {
                Ok(()) => {
                    written.insert(policy.clone(), Written { uid: entry.uid.clone(), status: desired, at: now });
                }
                Err(e) => {
                    self.metrics.reconcile_errors.inc();
                    tracing::warn!(%policy, error = %e, "writing policy status failed; will retry");
                }
            }
        }
    }

    async fn patch(
        &self,
        policy: &PolicyRef,
        entry: &PolicyEntry,
        desired: &PolicyStatus,
        now: Timestamp,
    ) -> Result<(), kube::Error> {
        let mut status = desired.clone();
        status.last_evaluation_time = Some(now.to_string());
        for condition in &mut status.conditions {
            // Keep the transition time while the condition's status stays the same.
            condition.last_transition_time = match &entry.ready_condition {
                Some((previous, since)) if *previous == condition.status => {
                    since.parse().map(Time).unwrap_or(Time(now))
                }
                _ => Time(now),
            };
        }
        let (resource, kind) = match policy.namespace {
            Some(_) => (ApiResource::erase::<SidecarPolicy>(&()), "SidecarPolicy"),
            None => (ApiResource::erase::<ClusterSidecarPolicy>(&()), "ClusterSidecarPolicy"),
        };
        // Lenient: the answer's managed fields may carry any time a writer sent.
        let api: Api<Lenient<DynamicObject>> = match &policy.namespace {
            Some(ns) => Api::namespaced_with(self.client.clone(), ns, &resource),
            None => Api::all_with(self.client.clone(), &resource),
        };
        let body = serde_json::json!({
            "apiVersion": format!("{}/{}", crate::api::GROUP, crate::api::VERSION),
            "kind": kind,
            "status": status,
        });
        if self.shard.count > 1 {
            // Only this shard's entry and the sums: a merge patch leaves the other shards'
            // entries alone, whoever wrote them.
            let mut status = serde_json::to_value(&status).unwrap_or_default();
            let own = self.shard.index.to_string();
            if let Some(shards) = status.get_mut("shards").and_then(|s| s.as_object_mut()) {
                shards.retain(|index, _| *index == own);
            }
            remove_ended_alerts(Some(&mut status));
            remove_ended_alerts(status.get_mut("shards").and_then(|s| s.get_mut(&own)));
            let params = PatchParams {
                field_manager: Some(format!("{FIELD_MANAGER}-shard-{}", self.shard.index)),
                ..Default::default()
            };
            api.patch_status(&policy.name, &params, &Patch::Merge(serde_json::json!({ "status": status }))).await?;
        } else {
            api.patch_status(&policy.name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(body)).await?;
        }
        Ok(())
    }
}

/// A merge patch keeps every key it does not name, so the `firing` map of `counts` names
/// each alert that fires no more as `null` (removed): left out, the count of the last alert
/// that ended would stay on the policy for good.
fn remove_ended_alerts(counts: Option<&mut serde_json::Value>) {
    let Some(counts) = counts.and_then(|c| c.as_object_mut()) else { return };
    let firing = counts.entry("firing").or_insert_with(|| serde_json::Value::Object(Default::default()));
    if let Some(firing) = firing.as_object_mut() {
        for name in AlertName::ALL {
            firing.entry(name.as_str()).or_insert(serde_json::Value::Null);
        }
    }
}

#[cfg(test)]
mod tests;
