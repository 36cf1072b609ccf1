//! The controllers' `FailedCreate` Events, read through a watch filtered on the reason by
//! the API server (never an unfiltered Events watch), as the conditions of the workloads
//! whose Pods a sidecar or its injector keeps from being created (`SidecarInjectionFailed`).
//!
//! An Event is a tenant's input: anyone who may create Events can write one. So an Event is
//! only believed about an object of its own namespace that exists with the UID it names,
//! and only the few whose message names a sidecar's cause ([`classify_failed_create`]) cost
//! a read of that object (bounded in time); everything else is dropped at once. What is
//! remembered here is bounded too, and every cut is counted in
//! `sidecar_watch_limited_total{limit="failed-create-events"}`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Event;
use kube::api::{Api, DynamicObject};
use kube::core::{ApiResource, GroupVersionKind};
use kube::runtime::{watcher, WatchStreamExt};
use kube::Client;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::queue::{Change, Op};
use crate::engine::{classify_failed_create, ContainerKind, InjectionFailure};
use crate::index::shard::Shard;
use crate::index::{Condition, CreateFailures, WorkloadId};
use crate::metrics::Metrics;

/// Events remembered at most (each a UID and a workload): past that, new ones are dropped.
const MAX_EVENTS: usize = 20_000;
/// A read of the object an Event names is given up after this long.
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// The `limit` label of what is cut here.
const LIMIT: &str = "failed-create-events";
/// The watch never lists more than this per page: Events are many in a busy cluster.
const PAGE: u32 = 500;

/// Watches the `FailedCreate` Events of `namespace` (`None`: every one) and sends the
/// conditions they reveal to the reconciler until `tx` closes.
pub(crate) async fn watch(
    client: Client,
    namespace: Option<String>,
    shard: Shard,
    tx: mpsc::Sender<Change>,
    metrics: Metrics,
) {
    let events: Api<Event> = match &namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let config = watcher::Config::default().fields("reason=FailedCreate").page_size(PAGE);
    let stream = watcher(events, config).default_backoff();
    futures::pin_mut!(stream);
    let mut known = Known::default();
    while let Some(event) = stream.next().await {
        let ops = match event {
            Ok(watcher::Event::Init) => {
                known.relisting = Some(HashSet::new());
                continue;
            }
            Ok(watcher::Event::InitApply(event) | watcher::Event::Apply(event)) => {
                known.applied(&client, event, shard, &metrics).await
            }
            Ok(watcher::Event::Delete(event)) => known.deleted(&event),
            Ok(watcher::Event::InitDone) => known.relisted(&namespace),
            Err(e) => {
                tracing::debug!(error = %e, "FailedCreate Events watch failed; retrying");
                metrics.watch_restarts.inc();
                continue;
            }
        };
        for op in ops {
            if tx.send(Change::from(op)).await.is_err() {
                return;
            }
        }
    }
}

/// The Events that told of a sidecar's failure, by UID, with their workload.
#[derive(Default)]
struct Known {
    events: HashMap<String, WorkloadId>,
    /// The Events listed since the last `Init`, while a relist runs.
    relisting: Option<HashSet<String>>,
}

impl Known {
    async fn applied(
        &mut self,
        client: &Client,
        event: Event,
        shard: Shard,
        metrics: &Metrics,
    ) -> Vec<Op<CreateFailures>> {
        let uid = event.metadata.uid.clone().unwrap_or_default();
        if let Some(listed) = self.relisting.as_mut() {
            listed.insert(uid.clone());
        }
        let Some((failure, involved)) = sidecar_failure(&event) else {
            // A message edited into something that is not ours any more.
            return self.deleted(&event);
        };
        if !self.events.contains_key(&uid) && self.events.len() >= MAX_EVENTS {
            metrics.limited.with_label_values(&[LIMIT]).inc();
            return Vec::new();
        }
        let object = match tokio::time::timeout(READ_TIMEOUT, read_involved(client, &involved)).await {
            Ok(Ok(Some(object))) => object,
            // Gone, or not what the Event says it is (a forged UID): nothing to report.
            Ok(Ok(None)) => return self.deleted(&event),
            Ok(Err(e)) => {
                tracing::debug!(object = %involved.name, error = %e, "reading the object of a FailedCreate Event failed");
                return Vec::new();
            }
            Err(_) => return Vec::new(),
        };
        let condition = condition_of(&event, &failure, &object);
        let workload = object.workload;
        if !shard.owns(&workload.to_string()) {
            return Vec::new();
        }
        self.events.insert(uid, workload.clone());
        vec![Op::Applied { object: (workload, condition), received: Instant::now() }]
    }

    fn deleted(&mut self, event: &Event) -> Vec<Op<CreateFailures>> {
        let uid = event.metadata.uid.as_deref().unwrap_or_default();
        let Some(workload) = self.events.remove(uid) else { return Vec::new() };
        if self.events.values().any(|w| *w == workload) {
            return Vec::new();
        }
        vec![Op::Deleted { namespace: workload.namespace.clone(), key: workload }]
    }

    fn relisted(&mut self, namespace: &Option<String>) -> Vec<Op<CreateFailures>> {
        let listed = self.relisting.take().unwrap_or_default();
        self.events.retain(|uid, _| listed.contains(uid));
        let seen: HashSet<WorkloadId> = self.events.values().cloned().collect();
        // Not a watch that readiness waits for: its number is none of theirs.
        vec![Op::Relisted { source: usize::MAX, scope: namespace.clone(), seen }]
    }
}

/// The object an Event names.
struct Involved {
    namespace: String,
    kind: String,
    name: String,
    uid: String,
}

/// The failure an Event tells of, when it is a controller's `FailedCreate` about an object
/// of the Event's own namespace and its message names a sidecar's cause.
fn sidecar_failure(event: &Event) -> Option<(InjectionFailure, Involved)> {
    if event.reason.as_deref() != Some("FailedCreate") {
        return None;
    }
    let namespace = event.metadata.namespace.clone()?;
    let object = &event.involved_object;
    // Another namespace's object: a tenant must not raise an alert about somebody else's.
    if object.namespace.as_deref() != Some(namespace.as_str()) {
        return None;
    }
    let kind = object.kind.clone()?;
    let failure = classify_failed_create(&kind, event.message.as_deref()?)?;
    let involved = Involved { namespace, kind, name: object.name.clone()?, uid: object.uid.clone()? };
    Some((failure, involved))
}

/// What is read of the object an Event names.
struct ReadObject {
    /// The workload as users know it (a ReplicaSet's Deployment, a Job's CronJob).
    workload: WorkloadId,
    /// That workload object's UID.
    uid: String,
    /// The Pod template's labels.
    template_labels: BTreeMap<String, String>,
    /// The Pod template's spec (`containers`, `initContainers`).
    pod_spec: Value,
}

/// Reads the object an Event names; `None` when it does not exist or has another UID.
async fn read_involved(client: &Client, involved: &Involved) -> Result<Option<ReadObject>, kube::Error> {
    let Some((group, version)) = api_of(&involved.kind) else { return Ok(None) };
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, &involved.kind));
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &involved.namespace, &resource);
    let Some(object) = api.get_opt(&involved.name).await? else { return Ok(None) };
    if object.metadata.uid.as_deref() != Some(involved.uid.as_str()) {
        return Ok(None);
    }
    let template = if involved.kind == "CronJob" {
        object.data.pointer("/spec/jobTemplate/spec/template")
    } else {
        object.data.pointer("/spec/template")
    };
    let template_labels = template
        .and_then(|t| t.pointer("/metadata/labels"))
        .and_then(|l| serde_json::from_value(l.clone()).ok())
        .unwrap_or_default();
    let pod_spec = template.and_then(|t| t.get("spec")).cloned().unwrap_or(Value::Null);
    // A ReplicaSet stands for its Deployment, a Job for its CronJob: the controller owner
    // says so exactly (the API server keeps owner references to the same namespace).
    let owner = object.metadata.owner_references.iter().flatten().find(|o| o.controller == Some(true));
    let named_by_owner = owner.filter(|o| {
        matches!((involved.kind.as_str(), o.kind.as_str()), ("ReplicaSet", "Deployment") | ("Job", "CronJob"))
    });
    let (kind, name, uid) = match named_by_owner {
        Some(o) => (o.kind.clone(), o.name.clone(), o.uid.clone()),
        None => (involved.kind.clone(), involved.name.clone(), involved.uid.clone()),
    };
    let workload = WorkloadId { namespace: involved.namespace.clone(), kind, name };
    Ok(Some(ReadObject { workload, uid, template_labels, pod_spec }))
}

/// The API group and version of the kinds whose controllers report `FailedCreate`.
fn api_of(kind: &str) -> Option<(&'static str, &'static str)> {
    match kind {
        "ReplicaSet" | "StatefulSet" | "DaemonSet" => Some(("apps", "v1")),
        "Job" | "CronJob" => Some(("batch", "v1")),
        _ => None,
    }
}

/// The workload's condition from its Event and object.
fn condition_of(event: &Event, failure: &InjectionFailure, object: &ReadObject) -> Condition {
    let first = event.first_timestamp.as_ref().map(|t| t.0).or(event.event_time.as_ref().map(|t| t.0));
    let last = event
        .series
        .as_ref()
        .and_then(|s| s.last_observed_time.as_ref().map(|t| t.0))
        .or(event.last_timestamp.as_ref().map(|t| t.0))
        .or(first);
    let now = Timestamp::now();
    let since = first.unwrap_or(now).min(now);
    let latest = last.unwrap_or(now).min(now).max(since);
    Condition {
        container: failure.container.clone(),
        container_kind: declared_as(&object.pod_spec, &failure.container),
        catalog: failure.catalog,
        since,
        latest,
        message: format!("{} cannot create Pods: {} Fix: {}", object.workload, failure.summary, failure.fix),
        object_uid: Some(object.uid.clone()),
        template_labels: Some(object.template_labels.clone()),
    }
}

/// Where the Pod template declares `container`, if it does (an injected one is not in it).
fn declared_as(pod_spec: &Value, container: &str) -> Option<ContainerKind> {
    let find = |field: &str| {
        pod_spec
            .get(field)
            .and_then(Value::as_array)
            .and_then(|list| list.iter().find(|c| c.get("name").and_then(Value::as_str) == Some(container)))
    };
    if let Some(init) = find("initContainers") {
        let native = init.get("restartPolicy").and_then(Value::as_str) == Some("Always");
        Some(if native { ContainerKind::RestartableInit } else { ContainerKind::Init })
    } else {
        find("containers").map(|_| ContainerKind::Regular)
    }
}

#[cfg(test)]
mod tests;
