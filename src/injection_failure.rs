//! What a controller's `FailedCreate` Event says about a workload whose Pods a sidecar or
//! its injector keeps from being created (`SidecarInjectionFailed`): which Events are
//! believed, how the object they name is read, and the condition they make. One piece of
//! code for the operator ([`crate::controller::create_failures`], from a filtered watch) and `audit`
//! (from its input, or a filtered list of a live cluster), so that both answer alike.
//!
//! An Event is a tenant's input: anyone who may create Events can write one. So an Event is
//! only believed about an object of its own namespace that exists with the UID it names.

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DynamicObject};
use kube::core::{ApiResource, GroupVersionKind};
use kube::Client;
use serde_json::Value;

use crate::api::Lenient;
use crate::engine::{classify_failed_create, ContainerKind, InjectionFailure, WorkloadId, WorkloadKind};
use crate::fair_queue::InNamespace;
use crate::fair_reader::Lookup;
use crate::index::Condition;

/// The object an Event names.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Involved {
    pub(crate) namespace: String,
    /// One of the kinds whose controllers report `FailedCreate` ([`failed_create_kind`]).
    pub(crate) kind: WorkloadKind,
    pub(crate) name: String,
    pub(crate) uid: String,
}

/// The failure an Event tells of, when it is a controller's `FailedCreate` about an object
/// of the Event's own namespace and its message names a sidecar's cause.
pub(crate) fn sidecar_failure(event: &Event) -> Option<(InjectionFailure, Involved)> {
    if event.reason.as_deref() != Some("FailedCreate") {
        return None;
    }
    let namespace = event.metadata.namespace.clone()?;
    let object = &event.involved_object;
    // Another namespace's object: a tenant must not raise an alert about somebody else's.
    if object.namespace.as_deref() != Some(namespace.as_str()) {
        return None;
    }
    let spelled = object.kind.as_deref()?;
    let kind = failed_create_kind(spelled)?;
    let failure = classify_failed_create(spelled, event.message.as_deref()?)?;
    let involved = Involved { namespace, kind, name: object.name.clone()?, uid: object.uid.clone()? };
    Some((failure, involved))
}

/// What is read of the object an Event names.
#[derive(Clone, Debug)]
pub(crate) struct ReadObject {
    /// The workload as users know it (a ReplicaSet's Deployment, a Job's CronJob).
    pub(crate) workload: WorkloadId,
    /// That workload object's UID.
    pub(crate) uid: String,
    /// The Pod template's labels.
    pub(crate) template_labels: BTreeMap<String, String>,
    /// Where the Pod template declares each of its containers, by name ([`declared`]).
    pub(crate) declared: Vec<(String, ContainerKind)>,
    /// Whether the object still needs Pods it may fail to create ([`needs_pods`]): once it
    /// does not, its failure is over, whatever its Events still say.
    pub(crate) needs_pods: bool,
}

impl InNamespace for Involved {
    fn namespace(&self) -> &str {
        &self.namespace
    }
}

impl Lookup for Involved {
    type Found = Option<ReadObject>;

    async fn read(&self, client: Client) -> Result<Option<ReadObject>, String> {
        read_involved(&client, self).await.map_err(|e| e.to_string())
    }
}

/// Reads the object an Event names from the API server; `None` when it does not exist or
/// has another UID.
pub(crate) async fn read_involved(client: &Client, involved: &Involved) -> Result<Option<ReadObject>, kube::Error> {
    let Some((group, version)) = involved.kind.api_version().and_then(|v| v.split_once('/')) else { return Ok(None) };
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, involved.kind.as_str()));
    // Lenient: its managed fields may carry any time its writer sent.
    let api: Api<Lenient<DynamicObject>> = Api::namespaced_with(client.clone(), &involved.namespace, &resource);
    let Some(object) = api.get_opt(&involved.name).await? else { return Ok(None) };
    let object = object.into_object().map_err(|bad| kube::Error::Service(bad))?;
    Ok(read_object(involved, &object.metadata, &object.data))
}

/// The kind spelled `kind` if its controller reports `FailedCreate` about itself: the
/// controller kinds but a Deployment (its ReplicaSets' controller reports).
pub(crate) fn failed_create_kind(kind: &str) -> Option<WorkloadKind> {
    WorkloadKind::controller(kind, None).filter(|k| *k != WorkloadKind::Deployment)
}

/// What the object an Event names says, from its `metadata` and its body (`spec`, as the
/// API server or a `kubectl get -o json` dump gives it); `None` when its UID is not the one
/// the Event names (a forged Event, or another object of the same name since).
pub(crate) fn read_object(involved: &Involved, meta: &ObjectMeta, body: &Value) -> Option<ReadObject> {
    if meta.uid.as_deref() != Some(involved.uid.as_str()) {
        return None;
    }
    let template = involved.kind.template_pointer().and_then(|pointer| body.pointer(pointer));
    let template_labels = template
        .and_then(|t| t.pointer("/metadata/labels"))
        .and_then(|l| serde_json::from_value(l.clone()).ok())
        .unwrap_or_default();
    let declared = template.and_then(|t| t.get("spec")).map(declared).unwrap_or_default();
    // A ReplicaSet stands for its Deployment, a Job for its CronJob: the controller owner
    // says so exactly (the API server keeps owner references to the same namespace).
    let owner = meta.owner_references.iter().flatten().find(|o| o.controller == Some(true));
    let named_by_owner = owner.and_then(|o| {
        let kind = WorkloadKind::controller(&o.kind, Some(&o.api_version))?;
        let stands_for = matches!(
            (&involved.kind, &kind),
            (WorkloadKind::ReplicaSet, WorkloadKind::Deployment) | (WorkloadKind::Job, WorkloadKind::CronJob)
        );
        stands_for.then(|| (kind, o.name.clone(), o.uid.clone()))
    });
    let (kind, name, uid) =
        named_by_owner.unwrap_or_else(|| (involved.kind.clone(), involved.name.clone(), involved.uid.clone()));
    let workload = WorkloadId { namespace: involved.namespace.clone(), kind, name };
    let needs_pods = needs_pods(&involved.kind, meta.generation, body);
    Some(ReadObject { workload, uid, template_labels, declared, needs_pods })
}

/// Whether an object of `kind` still needs Pods (a Job: its CronJob a Job) that it may fail
/// to create, from its own state: the failure it had is over once it does not.
/// - ReplicaSet, StatefulSet: no once scaled to zero (`spec.replicas: 0`, as `rollout undo`
///   leaves the new ReplicaSet) or once its status, written for its current generation,
///   counts the Pods its spec asks for (`status.replicas`: created, ready or not).
/// - DaemonSet: no once its current status schedules a Pod on every node it should
///   (`currentNumberScheduled >= desiredNumberScheduled`, none wanted included).
/// - Job: no once finished (`Complete` or `Failed`), suspended, or running as many Pods as
///   it wants now (`parallelism`, at most the completions still to go).
/// - CronJob: no once suspended; otherwise yes until it is deleted or its Event expires (its
///   Jobs are judged as Jobs).
///
/// A status not written yet for the current generation (or absent) proves nothing: the
/// object still needs its Pods.
pub(crate) fn needs_pods(kind: &WorkloadKind, generation: Option<i64>, body: &Value) -> bool {
    let int = |pointer: &str| body.pointer(pointer).and_then(Value::as_i64);
    let current = generation.is_some_and(|g| int("/status/observedGeneration").is_some_and(|o| o >= g));
    let suspended = body.pointer("/spec/suspend").and_then(Value::as_bool) == Some(true);
    match kind {
        WorkloadKind::ReplicaSet | WorkloadKind::StatefulSet => {
            let wanted = int("/spec/replicas").unwrap_or(1);
            wanted > 0 && !(current && int("/status/replicas").unwrap_or(0) >= wanted)
        }
        WorkloadKind::DaemonSet => {
            let (created, wanted) = (int("/status/currentNumberScheduled"), int("/status/desiredNumberScheduled"));
            !(current && created.unwrap_or(0) >= wanted.unwrap_or(0))
        }
        WorkloadKind::Job => {
            let conditions = body.pointer("/status/conditions").and_then(Value::as_array).into_iter().flatten();
            let finished = conditions.into_iter().any(|c| {
                matches!(c.get("type").and_then(Value::as_str), Some("Complete" | "Failed"))
                    && c.get("status").and_then(Value::as_str) == Some("True")
            });
            let mut wanted = int("/spec/parallelism").unwrap_or(1);
            if let Some(completions) = int("/spec/completions") {
                wanted = wanted.min(completions - int("/status/succeeded").unwrap_or(0));
            }
            !finished && !suspended && wanted > 0 && int("/status/active").unwrap_or(0) < wanted
        }
        _ => !suspended,
    }
}

/// Where a Pod spec declares each of its containers, by name, init containers first (a
/// native sidecar is an init container with `restartPolicy: Always`): `audit` keeps this
/// per workload object of its input, not their specs.
pub(crate) fn declared(spec: &Value) -> Vec<(String, ContainerKind)> {
    let list = |field: &str| spec.get(field).and_then(Value::as_array).into_iter().flatten();
    let init = list("initContainers").map(|c| {
        let native = c.get("restartPolicy").and_then(Value::as_str) == Some("Always");
        (c, if native { ContainerKind::RestartableInit } else { ContainerKind::Init })
    });
    init.chain(list("containers").map(|c| (c, ContainerKind::Regular)))
        .filter_map(|(c, kind)| Some((c.get("name")?.as_str()?.to_string(), kind)))
        .collect()
}

/// When an Event's failure was first and last seen, as at `now`: no time after `now` counts
/// (a clock ahead, or an Event written with a time to come).
pub(crate) fn event_times(event: &Event, now: Timestamp) -> (Timestamp, Timestamp) {
    let first = event.first_timestamp.as_ref().map(|t| t.0).or(event.event_time.as_ref().map(|t| t.0));
    let last = event
        .series
        .as_ref()
        .and_then(|s| s.last_observed_time.as_ref().map(|t| t.0))
        .or(event.last_timestamp.as_ref().map(|t| t.0))
        .or(first);
    let since = first.unwrap_or(now).min(now);
    (since, last.unwrap_or(now).min(now).max(since))
}

/// The workload's condition from its Event and object at `now`: no time after `now` counts
/// (a clock ahead, or an Event written with a time to come).
pub(crate) fn condition_of(
    event: &Event,
    failure: &InjectionFailure,
    object: &ReadObject,
    now: Timestamp,
) -> Condition {
    let (since, latest) = event_times(event, now);
    Condition {
        container: failure.container.clone(),
        // Where the template declares it, if it does (an injected one is not in it).
        container_kind: object.declared.iter().find(|(name, _)| *name == failure.container).map(|(_, kind)| *kind),
        catalog: failure.catalog,
        since,
        latest,
        message: format!(
            "{} cannot create Pods: {}. Fix: {}",
            object.workload,
            failure.summary.trim_end_matches('.'),
            failure.fix
        ),
        object_uid: Some(object.uid.clone()),
        template_labels: Some(object.template_labels.clone()),
    }
}

#[cfg(test)]
mod tests;
