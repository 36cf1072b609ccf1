//! The publisher's side of the workload Events: counting each transition, publishing the
//! due Warnings once the queue is drained (so that Pods failing together are counted in
//! one note), and the `Resolved` of the last Pod.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use k8s_openapi::api::core::v1::ObjectReference;
use tokio::time::Instant;

use super::{workload_field_path, Announced, Step, WorkloadId, WorkloadKey, WorkloadKind};
use crate::engine::{cronjob_concurrency, AlertName};
use crate::events::owners::{OwnerInfo, OwnerKey, OwnerUid};
use crate::events::{alert_event, note, Publisher};
use crate::index::{Transition, TransitionKind};

/// A due Warning waits at most this long for the queue to drain before it is published.
pub(crate) const BATCH: Duration = Duration::from_secs(1);

impl Publisher {
    /// Counts `t` on its workload: the first Pod makes a Warning due, the last one's clearing
    /// publishes the `Resolved`.
    pub(crate) async fn count_on_workload(&mut self, t: &Transition) {
        let Some(key) = WorkloadKey::of(t) else { return };
        match t.kind {
            TransitionKind::Fired => {
                // A CronJob's Pod: the name of its Job, to read the CronJob through it.
                let job = (key.workload.kind == WorkloadKind::CronJob && !key.alert.name.on_workload())
                    .then(|| {
                        let uid = t.pod_uid.as_ref()?;
                        self.index.with_pod(uid.as_uid(), |p| {
                            JOB_NAME_LABELS.iter().find_map(|l| p.view().labels().get(*l)).cloned()
                        })
                    })
                    .flatten()
                    .flatten();
                match self.workloads.fired(key.clone(), t, t.object_uid.as_deref(), job.as_deref()) {
                    Step::Announce => self.due.push_back((key, Instant::now())),
                    Step::Limited => self.metrics.limited.with_label_values(&["workload-events"]).inc(),
                    Step::Nothing | Step::Resolve(_) => {}
                }
            }
            TransitionKind::Resolved => {
                if let Step::Resolve(announced) = self.workloads.resolved(&key, &t.pod_uid) {
                    self.publish_workload_resolved(&key, announced).await;
                }
            }
        }
    }

    /// Whether the due Warnings should go out now: the queue is drained, or the oldest has
    /// waited a [`BATCH`].
    pub(crate) fn workloads_due(&self, queue_empty: bool) -> bool {
        self.due.front().is_some_and(|(_, since)| queue_empty || since.elapsed() >= BATCH)
    }

    /// Publishes the due Warnings whose workload UID is known; those of Deployments and
    /// CronJobs being read wait for the answer.
    pub(crate) async fn publish_due(&mut self) {
        let now = Instant::now();
        for (key, since) in std::mem::take(&mut self.due) {
            // Gone (its Pods cleared first), or already announced (due twice).
            let Some(firing) = self.workloads.get(&key).filter(|f| f.announced.is_none()) else { continue };
            let (namespace, name) = (key.workload.namespace.clone(), key.workload.name.clone());
            let on_workload = key.alert.name.on_workload();
            let uid = match (&key.workload.kind, firing.owner_uid.clone(), firing.job.clone()) {
                (WorkloadKind::Deployment, Some(replica_set_uid), _) => {
                    self.owners.uid(&OwnerKey::Deployment { namespace, name, replica_set_uid }, now)
                }
                (WorkloadKind::CronJob, Some(job_uid), Some(job)) if !on_workload => {
                    self.owners.uid(&OwnerKey::CronJob { namespace, name, job, job_uid }, now)
                }
                // A CronJob's Pod without its Job's name (a Job with a manual selector):
                // nothing to read the CronJob through, as good as a failed read.
                (WorkloadKind::Deployment, _, _) | (WorkloadKind::CronJob, _, _) if !on_workload => OwnerUid::Failed,
                // The workload's own UID (a workload alert's condition read the object), or the
                // Pod's owner's, which is the workload.
                (_, owner, _) => {
                    owner.map_or(OwnerUid::Failed, |uid| OwnerUid::Known(OwnerInfo { uid, concurrency_policy: None }))
                }
            };
            match uid {
                OwnerUid::Known(info) => self.publish_workload_warning(&key, info).await,
                OwnerUid::Reading => self.due.push_back((key, since)),
                // Without its UID the Warning cannot name the workload: counted as an error.
                OwnerUid::Failed => {
                    let reason = note::reason_of(key.alert.name, TransitionKind::Fired);
                    self.metrics.events.with_label_values(&[&reason, "error"]).inc();
                }
            }
        }
    }

    /// A Deployment or CronJob was read (or not): its due Warnings go out.
    pub(crate) async fn owner_answered(&mut self, key: OwnerKey, answer: Result<OwnerInfo, String>) {
        self.owners.answered(key, answer, Instant::now());
        self.publish_due().await;
    }

    async fn publish_workload_warning(&mut self, key: &WorkloadKey, info: OwnerInfo) {
        let Some(firing) = self.workloads.get(key) else { return };
        let object = ObjectReference {
            api_version: key.workload.kind.api_version().map(Into::into),
            kind: Some(key.workload.kind.as_str().into()),
            name: Some(key.workload.name.clone()),
            namespace: Some(key.workload.namespace.clone()),
            uid: Some(info.uid),
            field_path: workload_field_path(&key.workload.kind, firing.container_kind, &firing.container),
            ..Default::default()
        };
        let pods = firing.pods.len();
        let text = if key.alert.name.on_workload() {
            format!(
                "{}{} of {}/{}: {} (policy {})",
                key.alert.name.as_str(),
                on_container(&firing.container),
                key.workload.kind.as_str(),
                key.workload.name,
                firing.message,
                key.policy
            )
        } else {
            // What the CronJob does to its next runs meanwhile: said before the example, so
            // that a long message cannot truncate it away.
            let runs = info
                .concurrency_policy
                .filter(|_| key.alert.name == AlertName::JobBlockedBySidecar)
                .and_then(|policy| cronjob_concurrency(&key.workload.name, &policy))
                .map(|sentence| format!(" ({sentence})"))
                .unwrap_or_default();
            format!(
                "{}{} in {pods} Pod{} of {}/{}{runs}, e.g. Pod {}: {} (policy {})",
                key.alert.name.as_str(),
                on_container(&firing.container),
                if pods == 1 { "" } else { "s" },
                key.workload.kind.as_str(),
                key.workload.name,
                firing.example,
                firing.message,
                key.policy
            )
        };
        let event = alert_event(&key.alert, TransitionKind::Fired, note::truncate(text), &key.policy);
        // Past the budget not announced: no `Resolved` follows, a later leader announces it
        // if it fires.
        if self.publish_within_budget(&key.object(), event, &object).await {
            tracing::debug!(?key, pods, "workload Warning");
            self.workloads.set_announced(key, Some(object));
        }
    }

    /// The `Resolved` of an announced workload alert that no Pod fires any more.
    pub(crate) async fn publish_workload_resolved(&mut self, key: &WorkloadKey, announced: Announced) {
        let Announced { object, container } = announced;
        let note = note::truncate(format!(
            "{}{} of {}/{} resolved: {} (policy {})",
            key.alert.name.as_str(),
            on_container(&container),
            key.workload.kind.as_str(),
            key.workload.name,
            resolved_because(key.alert.name),
            key.policy
        ));
        let event = alert_event(&key.alert, TransitionKind::Resolved, note, &key.policy);
        if self.publish_within_budget(&key.object(), event, &object).await {
            tracing::debug!(?key, "workload Resolved");
        }
    }

    /// A new leader: count what fires now per workload; a Warning that stands (`standing`,
    /// from the cluster's Events) is not announced again, one whose alert no Pod fires any
    /// more is resolved.
    pub(crate) async fn lead_workloads(
        &mut self,
        firing: &[Transition],
        mut standing: HashMap<WorkloadKey, Announced>,
    ) {
        self.workloads = super::WorkloadAlerts::default();
        self.due.clear();
        for t in firing {
            self.count_on_workload(t).await;
        }
        tracing::debug!(standing = standing.len(), firing = self.workloads.len(), "workload Events reconciled");
        let now_firing: Vec<WorkloadKey> = self.workloads.keys().cloned().collect();
        for key in now_firing {
            if let Some(announced) = standing.remove(&key) {
                self.workloads.set_announced(&key, Some(announced.object));
                self.due.retain(|(k, _)| *k != key);
            }
        }
        // Only a workload of Pods this replica tracks: the others' Events are another
        // replica's (another namespace watched, another shard), listed here all the same.
        let tracked = self.tracked_workloads(standing.keys());
        for (key, announced) in standing {
            if tracked.contains(key.workload()) {
                self.publish_workload_resolved(&key, announced).await;
            }
        }
    }

    /// Which of the workloads of `keys` have a Pod in the index: one pass over the Pods.
    fn tracked_workloads<'a>(&self, keys: impl Iterator<Item = &'a WorkloadKey>) -> HashSet<WorkloadId> {
        let wanted: HashSet<WorkloadId> = keys.map(|k| k.workload().clone()).collect();
        let namespaces: HashSet<&str> = wanted.iter().map(|w| w.namespace.as_str()).collect();
        let mut found = HashSet::new();
        if wanted.is_empty() {
            return found;
        }
        self.index.for_each_pod(|p| {
            let view = p.view();
            if !namespaces.contains(view.namespace().as_str()) {
                return;
            }
            let workload = view.workload_id();
            if wanted.contains(&workload) {
                found.insert(workload);
            }
        });
        found
    }

    /// Forgets the Pods that are gone; an announced alert whose last Pod went is resolved.
    pub(crate) async fn forget_gone_workload_pods(&mut self) {
        let index = &self.index;
        let resolved = self.workloads.forget_untracked(|uid| index.contains_pod(uid));
        for (key, announced) in resolved {
            self.publish_workload_resolved(&key, announced).await;
        }
    }
}

/// The labels the Job API puts on a Job's Pod template, with the Job's name
/// (kubernetes/kubernetes pkg/registry/batch/job/strategy.go `generateSelector`:
/// `batch.LegacyJobNameLabel`, `batch.JobNameLabel`; v1.29.15, v1.33.13, v1.35.8, v1.37.2).
const JOB_NAME_LABELS: [&str; 2] = ["batch.kubernetes.io/job-name", "job-name"];

/// Why a workload alert resolved, for its `Resolved` note.
fn resolved_because(alert: AlertName) -> &'static str {
    match alert {
        AlertName::SidecarInjectionFailed => "the workload creates Pods again, or is gone",
        AlertName::RolloutBlockedBySidecar => "the rollout completed, was undone, or its new Pods' sidecar recovered",
        _ => "no Pod fires it any more",
    }
}

/// ` on sidecar container <name>`, or nothing for a Pod-level check (`sidecar-sprawl`).
fn on_container(container: &str) -> String {
    if container.is_empty() {
        String::new()
    } else {
        format!(" on sidecar container {container}")
    }
}
