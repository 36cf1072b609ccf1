//! What a workload's controller says of its rollout (`RolloutBlockedBySidecar`), read from
//! the workload object for a candidate the index names ([`RolloutRead`]) through the
//! [`crate::fair_reader`], and from the objects of `audit`'s input alike:
//!
//! | workload    | newest revision                                        | held by its controller                      |
//! | ----------- | ------------------------------------------------------ | ------------------------------------------- |
//! | Deployment  | the ReplicaSet whose `deployment.kubernetes.io/revision` is the Deployment's | `spec.paused`          |
//! | StatefulSet | `status.updateRevision`                                | `OnDelete`, or a `rollingUpdate.partition` above 0 |
//! | DaemonSet   | its `deprecated.daemonset.template.generation` (its Pods' `pod-template-generation`) | `OnDelete` |
//!
//! A Deployment's ReplicaSets are read by name (`<deployment>-<pod-template-hash>`, the
//! name its controller gives them), newest by creation first, until one holds its revision;
//! one owned by another object does not count. A workload that does not exist any more says
//! nothing (the Pods decide); a failed read is retried by the reader, then leaves the Pods to
//! decide too.

use std::collections::HashMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DynamicObject};
use kube::core::{ApiResource, GroupVersionKind};
use kube::Client;
use serde_json::Value;

use crate::api::Lenient;
use crate::engine::{ControllerRollout, RolloutHold, WorkloadId, WorkloadKind};
use crate::fair_queue::InNamespace;
use crate::fair_reader::Lookup;
use crate::index::RolloutRead;

/// The annotation the Deployment controller numbers revisions with, on the Deployment and on
/// each of its ReplicaSets.
const REVISION: &str = "deployment.kubernetes.io/revision";
/// The annotation holding a DaemonSet's template generation (`DeprecatedTemplateGeneration`
/// in k8s.io/api apps/v1 types.go).
const TEMPLATE_GENERATION: &str = "deprecated.daemonset.template.generation";

impl InNamespace for RolloutRead {
    fn namespace(&self) -> &str {
        &self.workload.namespace
    }
}

impl Lookup for RolloutRead {
    type Found = ControllerRollout;

    async fn read(&self, client: Client) -> Result<ControllerRollout, String> {
        read_controller(&client, self).await.map_err(|e| e.to_string())
    }
}

async fn read_controller(client: &Client, read: &RolloutRead) -> Result<ControllerRollout, kube::Error> {
    let workload = &read.workload;
    let Some(object) = get(client, &workload.namespace, &workload.kind, &workload.name).await? else {
        return Ok(ControllerRollout::default());
    };
    let mut rollout = controller_rollout(&workload.kind, &object.metadata, &object.data);
    if workload.kind == WorkloadKind::Deployment && rollout.held.is_none() {
        let deployment = Revisioned::of(&object.metadata);
        for hash in &read.revisions {
            let name = replicaset_name(&workload.name, hash);
            let Some(replicaset) = get(client, &workload.namespace, &WorkloadKind::ReplicaSet, &name).await? else {
                continue;
            };
            if deployment.is_revision_of(&Revisioned::of(&replicaset.metadata)) {
                rollout.newest = Some(hash.clone());
                break;
            }
        }
    }
    Ok(rollout)
}

/// The name the Deployment controller gives the ReplicaSet of revision `hash`.
fn replicaset_name(deployment: &str, hash: &str) -> String {
    format!("{deployment}-{hash}")
}

/// What the revision of a Deployment or ReplicaSet rests on, from its metadata.
#[derive(Clone, Debug, Default)]
struct Revisioned {
    uid: Option<String>,
    revision: Option<String>,
    controller_uid: Option<String>,
}

impl Revisioned {
    fn of(meta: &ObjectMeta) -> Self {
        let controller = meta.owner_references.iter().flatten().find(|o| o.controller == Some(true));
        Revisioned {
            uid: meta.uid.clone(),
            revision: meta.annotations.as_ref().and_then(|a| a.get(REVISION)).cloned(),
            controller_uid: controller.map(|o| o.uid.clone()),
        }
    }

    /// Whether `replicaset`, a Deployment's, is the one of this Deployment's revision: owned
    /// by it (not a tenant's object of the same name) and numbered alike.
    fn is_revision_of(&self, replicaset: &Revisioned) -> bool {
        self.uid.is_some()
            && replicaset.controller_uid == self.uid
            && self.revision.is_some()
            && replicaset.revision == self.revision
    }
}

/// The rollout objects of `audit`'s input, answering [`RolloutRead`]s as the API server
/// answers the operator's.
#[derive(Debug, Default)]
pub(crate) struct InputObjects {
    controllers: HashMap<WorkloadId, (Revisioned, ControllerRollout)>,
    replicasets: HashMap<(String, String), Revisioned>,
}

impl InputObjects {
    /// Keeps what a read would find of `object`, if it is a Deployment, StatefulSet,
    /// DaemonSet or ReplicaSet (anything else is passed over).
    pub(crate) fn insert(&mut self, object: &Value) {
        let kind = object.get("kind").and_then(Value::as_str).and_then(|k| WorkloadKind::controller(k, None));
        let Some(kind) = kind else { return };
        let metadata = object.get("metadata").cloned().unwrap_or_default();
        let Ok(meta) = serde_json::from_value::<ObjectMeta>(metadata) else { return };
        let namespace = meta.namespace.clone().unwrap_or_else(|| "default".into());
        let Some(name) = meta.name.clone() else { return };
        match kind {
            WorkloadKind::ReplicaSet => {
                self.replicasets.insert((namespace, name), Revisioned::of(&meta));
            }
            WorkloadKind::Deployment | WorkloadKind::StatefulSet | WorkloadKind::DaemonSet => {
                let rollout = controller_rollout(&kind, &meta, object);
                self.controllers.insert(WorkloadId { namespace, kind, name }, (Revisioned::of(&meta), rollout));
            }
            _ => {}
        }
    }

    /// What the operator's read of the same objects would say.
    pub(crate) fn answer(&self, read: &RolloutRead) -> ControllerRollout {
        let Some((deployment, rollout)) = self.controllers.get(&read.workload) else {
            return ControllerRollout::default();
        };
        let mut rollout = rollout.clone();
        if read.workload.kind == WorkloadKind::Deployment && rollout.held.is_none() {
            let of_revision = |hash: &&String| {
                let key = (read.workload.namespace.clone(), replicaset_name(&read.workload.name, hash));
                self.replicasets.get(&key).is_some_and(|rs| deployment.is_revision_of(rs))
            };
            rollout.newest = read.revisions.iter().find(of_revision).cloned();
        }
        rollout
    }
}

/// What a Deployment's, StatefulSet's or DaemonSet's own object (`meta`, and `body`: its
/// `spec` and `status`) says of its rollout; a Deployment's newest revision needs its
/// ReplicaSets too.
pub(crate) fn controller_rollout(kind: &WorkloadKind, meta: &ObjectMeta, body: &Value) -> ControllerRollout {
    let strategy = body.pointer("/spec/updateStrategy/type").and_then(Value::as_str);
    let held = match kind {
        WorkloadKind::Deployment => {
            (body.pointer("/spec/paused").and_then(Value::as_bool) == Some(true)).then_some(RolloutHold::Paused)
        }
        WorkloadKind::StatefulSet | WorkloadKind::DaemonSet if strategy == Some("OnDelete") => {
            Some(RolloutHold::OnDelete)
        }
        WorkloadKind::StatefulSet => body
            .pointer("/spec/updateStrategy/rollingUpdate/partition")
            .and_then(Value::as_u64)
            .filter(|p| *p > 0)
            .map(|p| RolloutHold::Partition(u32::try_from(p).unwrap_or(u32::MAX))),
        _ => None,
    };
    let newest = match kind {
        WorkloadKind::StatefulSet => body.pointer("/status/updateRevision").and_then(Value::as_str).map(str::to_string),
        // A number the API server keeps (kubernetes/kubernetes pkg/apis/apps/v1
        // conversion.go); anything else in it is a tenant's edit and says nothing.
        WorkloadKind::DaemonSet => meta
            .annotations
            .as_ref()
            .and_then(|a| a.get(TEMPLATE_GENERATION))
            .and_then(|g| g.parse::<u64>().ok())
            .map(|g| g.to_string()),
        _ => None,
    };
    ControllerRollout { newest: newest.filter(|n| !n.is_empty()), held }
}

async fn get(
    client: &Client,
    namespace: &str,
    kind: &WorkloadKind,
    name: &str,
) -> Result<Option<DynamicObject>, kube::Error> {
    let Some((group, version)) = kind.api_version().and_then(|v| v.split_once('/')) else { return Ok(None) };
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind.as_str()));
    // Lenient: its managed fields may carry any time its writer sent.
    let api = Api::<Lenient<DynamicObject>>::namespaced_with(client.clone(), namespace, &resource);
    api.get_opt(name).await?.map(|object| object.into_object().map_err(|bad| kube::Error::Service(bad))).transpose()
}

#[cfg(test)]
mod tests;
