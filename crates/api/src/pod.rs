//! [`SlimPod`]: a core/v1 Pod decoded with only the fields sidecar-watch reads.
//!
//! Decoding a full `k8s_openapi` Pod spends most of its time on what the rules never look at
//! (`managedFields`, annotations, volumes, env, probe bodies, image IDs;
//! docs/benchmarks.md#figures-the-codes-comments-cite). The operator's Pod watch decodes this
//! type instead: unknown fields are skipped by the parser without being allocated, so an
//! initial list of 100k Pods costs a fraction of the CPU and no transient copy of every full
//! object. It is the same JSON, so a full [`Pod`] converts into it losslessly for what the
//! engine needs.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use serde::de::Deserializer;
use serde::Deserialize;

use super::container::{SlimContainer, SlimSecurityContext};
use super::field_decoders::{clamped_time, null_as_default};

/// A Pod with only what the engine reads: identity, labels, owners, timestamps, the
/// containers' static facts and their statuses.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct SlimPod {
    /// Identity, labels, owners, timestamps and the annotations injectors read
    /// ([`INJECTION_ANNOTATIONS`](crate::INJECTION_ANNOTATIONS)); `managedFields` and every
    /// other annotation are skipped.
    #[serde(default, deserialize_with = "slim_meta")]
    pub metadata: ObjectMeta,
    /// The containers as declared.
    #[serde(default, deserialize_with = "null_as_default")]
    pub spec: SlimPodSpec,
    /// What the kubelet reports.
    #[serde(default, deserialize_with = "null_as_default")]
    pub status: SlimPodStatus,
}

/// `spec`: the declared containers.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SlimPodSpec {
    /// `spec.initContainers` (native sidecars have `restartPolicy: Always`).
    #[serde(deserialize_with = "null_as_default")]
    pub init_containers: Vec<SlimContainer>,
    /// `spec.containers`.
    #[serde(deserialize_with = "null_as_default")]
    pub containers: Vec<SlimContainer>,
    /// `spec.restartPolicy` (`Always` when absent): whether the kubelet restarts a regular
    /// container that has no `restartPolicy` of its own.
    pub restart_policy: Option<String>,
    /// `spec.securityContext`: the user containers run as unless they say otherwise.
    #[serde(deserialize_with = "null_as_default")]
    pub security_context: SlimSecurityContext,
    /// `spec.hostNetwork`: most mesh injectors skip such Pods.
    #[serde(deserialize_with = "null_as_default")]
    pub host_network: bool,
}

/// `status`: timestamps, conditions and container statuses.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SlimPodStatus {
    /// `Pending`, `Running`, `Succeeded` or `Failed`: in the last two the kubelet starts no
    /// container of the Pod again.
    pub phase: Option<String>,
    /// When the kubelet started the Pod.
    #[serde(deserialize_with = "clamped_time")]
    pub start_time: Option<Time>,
    /// Pod conditions (the engine reads `Ready`).
    #[serde(deserialize_with = "null_as_default")]
    pub conditions: Vec<SlimCondition>,
    /// Statuses of init containers, native sidecars included.
    #[serde(deserialize_with = "null_as_default")]
    pub init_container_statuses: Vec<SlimContainerStatus>,
    /// Statuses of regular containers.
    #[serde(deserialize_with = "null_as_default")]
    pub container_statuses: Vec<SlimContainerStatus>,
}

/// A Pod condition.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SlimCondition {
    /// `Ready`, `ContainersReady`, …
    #[serde(rename = "type", default, deserialize_with = "null_as_default")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub status: String,
    /// When `status` last changed.
    #[serde(default, deserialize_with = "clamped_time")]
    pub last_transition_time: Option<Time>,
}

/// A container's status.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SlimContainerStatus {
    /// The container's name.
    #[serde(deserialize_with = "null_as_default")]
    pub name: String,
    /// Readiness as the kubelet reports it.
    pub ready: bool,
    /// Whether the startup probe has passed (or the container has started).
    pub started: Option<bool>,
    /// Restarts so far.
    pub restart_count: i32,
    /// The current state.
    pub state: Option<SlimContainerState>,
    /// The previous state (the last termination).
    pub last_state: Option<SlimContainerState>,
}

/// A container state: at most one of the three is set.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct SlimContainerState {
    pub waiting: Option<SlimWaiting>,
    pub running: Option<SlimRunning>,
    pub terminated: Option<SlimTerminated>,
}

/// `state.waiting`.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct SlimWaiting {
    /// E.g. `CrashLoopBackOff`.
    #[serde(default)]
    pub reason: Option<String>,
}

/// `state.running`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SlimRunning {
    #[serde(default, deserialize_with = "clamped_time")]
    pub started_at: Option<Time>,
}

/// `state.terminated`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SlimTerminated {
    pub exit_code: i32,
    /// E.g. `OOMKilled`, `Error`, `Completed`.
    pub reason: Option<String>,
    /// The container's termination message.
    pub message: Option<String>,
    #[serde(deserialize_with = "clamped_time")]
    pub started_at: Option<Time>,
    #[serde(deserialize_with = "clamped_time")]
    pub finished_at: Option<Time>,
}

/// The metadata fields kept; everything else (`managedFields`, finalizers, the annotations
/// no injector reads) is skipped while parsing.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct SlimMeta {
    name: Option<String>,
    namespace: Option<String>,
    uid: Option<String>,
    resource_version: Option<String>,
    labels: Option<BTreeMap<String, String>>,
    #[serde(deserialize_with = "super::markers::deserialize_injection_annotations")]
    annotations: Option<BTreeMap<String, String>>,
    owner_references: Option<Vec<OwnerReference>>,
    #[serde(deserialize_with = "clamped_time")]
    creation_timestamp: Option<Time>,
    #[serde(deserialize_with = "clamped_time")]
    deletion_timestamp: Option<Time>,
}

fn slim_meta<'de, D: Deserializer<'de>>(deserializer: D) -> Result<ObjectMeta, D::Error> {
    let Some(meta) = Option::<SlimMeta>::deserialize(deserializer)? else { return Ok(ObjectMeta::default()) };
    Ok(ObjectMeta {
        name: meta.name,
        namespace: meta.namespace,
        uid: meta.uid,
        resource_version: meta.resource_version,
        labels: meta.labels,
        annotations: meta.annotations,
        owner_references: meta.owner_references,
        creation_timestamp: meta.creation_timestamp,
        deletion_timestamp: meta.deletion_timestamp,
        ..ObjectMeta::default()
    })
}

impl TryFrom<&Pod> for SlimPod {
    type Error = serde_json::Error;

    /// For callers that hold a full object (tests, tools): the same JSON, decoded slim.
    fn try_from(pod: &Pod) -> Result<Self, Self::Error> {
        serde_json::from_value(serde_json::to_value(pod)?)
    }
}

/// A Pod's API endpoint: a list or watch of `SlimPod`s asks for Pods.
impl kube::Resource for SlimPod {
    type DynamicType = ();
    type Scope = <k8s_openapi::api::core::v1::Pod as kube::Resource>::Scope;

    fn kind(dt: &()) -> std::borrow::Cow<'_, str> {
        <k8s_openapi::api::core::v1::Pod as kube::Resource>::kind(dt)
    }
    fn group(dt: &()) -> std::borrow::Cow<'_, str> {
        <k8s_openapi::api::core::v1::Pod as kube::Resource>::group(dt)
    }
    fn version(dt: &()) -> std::borrow::Cow<'_, str> {
        <k8s_openapi::api::core::v1::Pod as kube::Resource>::version(dt)
    }
    fn plural(dt: &()) -> std::borrow::Cow<'_, str> {
        <k8s_openapi::api::core::v1::Pod as kube::Resource>::plural(dt)
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skips_what_the_engine_does_not_read_and_accepts_nulls() {
        let pod: SlimPod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "namespace": "shop", "uid": "u1", "resourceVersion": "7",
                         "annotations": {"big": "x"}, "managedFields": [{"manager": "kubelet", "fieldsV1": {"f:a": {}}}],
                         "labels": {"app": "web"}, "ownerReferences": null},
            "spec": {"volumes": [{"name": "v"}], "initContainers": null, "containers": [
                {"name": "app", "image": "shop/web:1", "env": [{"name": "A", "value": "b"}],
                 "ports": [{"containerPort": 8080}], "readinessProbe": {"httpGet": {"port": 8080}},
                 "livenessProbe": null, "resources": {"requests": {}, "limits": {"cpu": "1", "memory": 134217728, "nvidia.com/gpu": "1"}}}]},
            "status": {"phase": "Running", "conditions": null, "containerStatuses": [
                {"name": "app", "ready": true, "restartCount": 2, "imageID": "x", "state": {"running": {}}}]}
        }))
        .expect("decodes");
        assert_eq!(pod.metadata.name.as_deref(), Some("web"));
        assert_eq!(pod.metadata.resource_version.as_deref(), Some("7"));
        assert!(pod.metadata.annotations.is_none() && pod.metadata.managed_fields.is_none());
        let app = &pod.spec.containers[0];
        assert!(app.readiness_probe.is_some() && app.liveness_probe.is_none() && app.startup_probe.is_none());
        assert_eq!(app.resources.requests, crate::SlimResourceList::default());
        let limits = crate::SlimResourceList { any: true, cpu: Some("1".into()), memory: Some("134217728".into()) };
        assert_eq!(app.resources.limits, limits);
        assert_eq!(app.ports[0].container_port, 8080);
        assert!(pod.spec.init_containers.is_empty() && pod.status.conditions.is_empty());
        assert_eq!(pod.status.container_statuses[0].restart_count, 2);
    }

    #[test]
    fn timestamps_beyond_the_range_are_clamped() {
        let pod: SlimPod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "creationTimestamp": "2026-11-22T10:00:00Z"},
            "status": {"containerStatuses": [{"name": "app", "lastState": {"terminated": {
                "exitCode": 1, "startedAt": "2026-11-22T10:00:00Z", "finishedAt": "9999-12-31T23:59:59Z"}}}]}
        }))
        .expect("decodes");
        let last = pod.status.container_statuses[0].last_state.as_ref().and_then(|s| s.terminated.as_ref());
        assert_eq!(last.and_then(|t| t.finished_at.as_ref()).map(|t| t.0), Some(jiff::Timestamp::MAX));
        let bad = crate::decode::<SlimPod>(serde_json::json!({"status": {"startTime": "yesterday"}}));
        assert_eq!(bad.expect_err("not a timestamp").path, "status.startTime");
    }

    #[test]
    fn a_type_error_names_the_field() {
        let value =
            serde_json::json!({"metadata": {"name": "web"}, "status": {"containerStatuses": [{"restartCount": "x"}]}});
        let error = crate::decode::<SlimPod>(value).expect_err("restartCount is not a number");
        assert_eq!(error.path, "status.containerStatuses[0].restartCount", "{error}");
    }

    #[test]
    fn fields_of_newer_kubernetes_decode_and_unknown_ones_never_fail_a_pod() {
        // Kubernetes 1.37: container restart rules (KEP-5307, KEP-5532), resize policy
        // (KEP-1287), stop signals (KEP-4960), and fields no release has yet.
        let pod: SlimPod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "trainer", "namespace": "ml"},
            "spec": {"restartPolicy": "Never", "securityContext": {"runAsUser": 1000, "fsGroup": 2000},
                "initContainers": [{"name": "watcher", "image": "ml/watcher:1", "restartPolicy": "Always",
                    "restartPolicyRules": [{"action": "RestartAllContainers", "exitCodes": {"operator": "In", "values": [88]}}],
                    "lifecycle": {"preStop": {"exec": {"command": ["pilot-agent", "request", "POST", "drain"]}},
                                  "stopSignal": "SIGUSR1"}}],
                "containers": [{"name": "train", "image": "ml/train:1", "restartPolicy": "Never",
                    "restartPolicyRules": [{"action": "Restart", "exitCodes": {"operator": "NotIn", "values": [0, 1]}},
                                           {"action": "RestartOnTuesdays", "exitCodes": {"operator": "Between", "values": [3]},
                                            "onExit": {"signals": ["SIGKILL"]}}],
                    "resizePolicy": [{"resourceName": "memory", "restartPolicy": "RestartContainer"}],
                    "securityContext": {"runAsUser": 1337}, "futureField": {"anything": [1, "two"]}}]},
            "status": {"conditions": [{"type": "AllContainersRestarting", "status": "True",
                                       "reason": "RestartAllContainersStarted", "observedGeneration": 3}],
                       "containerStatuses": [{"name": "train", "stopSignal": "SIGTERM", "restartCount": 0,
                                              "allocatedResourcesStatus": [], "user": {"linux": {"uid": 1337}}}]}
        }))
        .expect("decodes");
        assert_eq!(
            (pod.spec.restart_policy.as_deref(), pod.spec.security_context.run_as_user),
            (Some("Never"), Some(1000))
        );
        let (watcher, train) = (&pod.spec.init_containers[0], &pod.spec.containers[0]);
        assert_eq!(watcher.restart_policy_rules[0].action, "RestartAllContainers");
        let codes = watcher.restart_policy_rules[0].exit_codes.as_ref().expect("exit codes");
        assert_eq!((codes.operator.as_str(), codes.values.as_slice()), ("In", &[88][..]));
        let hook = watcher.lifecycle.pre_stop.as_ref().expect("a preStop hook");
        assert!(hook.can_act());
        assert_eq!(hook.exec.as_ref().map(|e| e.command.len()), Some(4));
        assert_eq!(train.restart_policy_rules.len(), 2, "an action no release has is kept, and matches nothing");
        assert_eq!(train.restart_policy_rules[1].action, "RestartOnTuesdays");
        assert_eq!(train.resize_policy[0].restart_policy, "RestartContainer");
        assert_eq!(train.security_context.run_as_user, Some(1337));
        assert_eq!(pod.status.conditions[0].type_, "AllContainersRestarting");
    }
}
