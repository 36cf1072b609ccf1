//! [`SlimPod`]: a core/v1 Pod decoded with only the fields sidecar-watch reads.
//!
//! Decoding a full `k8s_openapi` Pod costs ~46 µs for a typical 9 KB object, most of it
//! spent on what the rules never look at (`managedFields`, annotations, volumes, env, probe
//! bodies, image IDs). The operator's Pod watch decodes this type instead: unknown fields
//! are skipped by the parser without being allocated, so an initial list of 100k Pods costs
//! a fraction of the CPU and no transient copy of every full object. It is the same JSON,
//! so a full [`Pod`] converts into it losslessly for what the engine needs.

use std::borrow::Cow;
use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;

/// A Pod with only what the engine reads: identity, labels, owners, timestamps, the
/// containers' static facts and their statuses.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct SlimPod {
    /// Identity, labels, owners and timestamps; `managedFields` and annotations are skipped.
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
#[serde(rename_all = "camelCase")]
pub struct SlimPodSpec {
    /// `spec.initContainers` (native sidecars have `restartPolicy: Always`).
    #[serde(default, deserialize_with = "null_as_default")]
    pub init_containers: Vec<SlimContainer>,
    /// `spec.containers`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub containers: Vec<SlimContainer>,
}

/// One declared container: the facts the misconfiguration checks need.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SlimContainer {
    /// The container's name.
    #[serde(default, deserialize_with = "null_as_default")]
    pub name: String,
    /// The image reference.
    #[serde(default)]
    pub image: Option<String>,
    /// `Always` on a native sidecar.
    #[serde(default)]
    pub restart_policy: Option<String>,
    /// Declared ports.
    #[serde(default, deserialize_with = "null_as_default")]
    pub ports: Vec<SlimPort>,
    /// Whether a readiness probe is declared (its body is not needed).
    #[serde(default)]
    pub readiness_probe: Option<IgnoredAny>,
    /// Whether a startup probe is declared.
    #[serde(default)]
    pub startup_probe: Option<IgnoredAny>,
    /// The liveness probe's target (the `main-probe-on-sidecar` check reads it).
    #[serde(default)]
    pub liveness_probe: Option<SlimProbe>,
    /// Whether requests or limits are declared.
    #[serde(default, deserialize_with = "null_as_default")]
    pub resources: SlimResources,
    /// Whether a `postStart` hook is declared: the kubelet waits for it before starting the
    /// next container, as it waits for a startup probe.
    #[serde(default, deserialize_with = "null_as_default")]
    pub lifecycle: SlimLifecycle,
    /// Whether `command` mentions the word `agent` (see [`MentionsAgent`]).
    #[serde(default)]
    pub command: MentionsAgent,
    /// Whether `args` mentions the word `agent`.
    #[serde(default)]
    pub args: MentionsAgent,
}

/// `lifecycle`: only whether a `postStart` hook exists.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SlimLifecycle {
    /// The hook's body is not needed.
    #[serde(default)]
    pub post_start: Option<IgnoredAny>,
}

/// A probe: where it sends its request. Exec probes have no target.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SlimProbe {
    /// `httpGet`.
    #[serde(default)]
    pub http_get: Option<SlimProbeTarget>,
    /// `tcpSocket`.
    #[serde(default)]
    pub tcp_socket: Option<SlimProbeTarget>,
    /// `grpc`.
    #[serde(default)]
    pub grpc: Option<SlimProbeTarget>,
}

impl SlimProbe {
    /// The probe's target, whichever handler it uses.
    pub fn target(&self) -> Option<&SlimProbeTarget> {
        self.http_get.as_ref().or(self.tcp_socket.as_ref()).or(self.grpc.as_ref())
    }
}

/// A probe handler's port, host and (HTTP) path.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct SlimProbeTarget {
    /// A number or the name of a declared port; anything else is read as absent.
    #[serde(default, deserialize_with = "lenient_port")]
    pub port: Option<PortRef>,
    /// Another host than the Pod's IP, when set.
    #[serde(default)]
    pub host: Option<String>,
    /// The HTTP path.
    #[serde(default)]
    pub path: Option<String>,
}

/// A port given by number or by the name of a container port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PortRef {
    /// `port: 15021`.
    Number(i32),
    /// `port: http-admin`.
    Name(String),
}

/// The API validates probe ports, but a hand-written dump need not be valid: an odd port
/// makes the probe target unknown rather than the Pod undecodable.
fn lenient_port<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<PortRef>, D::Error> {
    Ok(match serde_json::Value::deserialize(deserializer)? {
        serde_json::Value::Number(n) => n.as_i64().and_then(|n| i32::try_from(n).ok()).map(PortRef::Number),
        serde_json::Value::String(s) => Some(match s.parse::<i32>() {
            Ok(n) => PortRef::Number(n),
            Err(_) => PortRef::Name(s),
        }),
        _ => None,
    })
}

/// Whether a list of strings (`command` or `args`) contains the word `agent` anywhere, e.g.
/// `vault agent -config=…` inside a shell command. Vault Agent runs Vault's own image, so only
/// its subcommand tells it from a Vault server. Read without keeping the strings.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MentionsAgent(pub bool);

impl<'de> Deserialize<'de> for MentionsAgent {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let words = Option::<Vec<Cow<'de, str>>>::deserialize(deserializer)?.unwrap_or_default();
        Ok(MentionsAgent(
            words.iter().any(|w| w.split(|c: char| c.is_whitespace() || c == ';' || c == '&').any(|t| t == "agent")),
        ))
    }
}

/// A declared container port.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SlimPort {
    /// The port number.
    #[serde(default)]
    pub container_port: i32,
    /// The port's name, which probes may use instead of the number.
    #[serde(default)]
    pub name: Option<String>,
    /// `TCP` when absent.
    #[serde(default)]
    pub protocol: Option<String>,
}

/// `resources`: only whether anything is requested or limited.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct SlimResources {
    /// `requests` has at least one entry.
    #[serde(default)]
    pub requests: NonEmpty,
    /// `limits` has at least one entry.
    #[serde(default)]
    pub limits: NonEmpty,
}

/// Whether a JSON object has at least one entry; read without allocating its keys.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NonEmpty(pub bool);

impl<'de> Deserialize<'de> for NonEmpty {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EntriesVisitor;
        impl<'de> Visitor<'de> for EntriesVisitor {
            type Value = NonEmpty;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object or null")
            }
            fn visit_unit<E>(self) -> Result<NonEmpty, E> {
                Ok(NonEmpty(false))
            }
            fn visit_none<E>(self) -> Result<NonEmpty, E> {
                Ok(NonEmpty(false))
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<NonEmpty, D::Error> {
                d.deserialize_map(self)
            }
            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<NonEmpty, M::Error> {
                let mut any = false;
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {
                    any = true;
                }
                Ok(NonEmpty(any))
            }
        }
        deserializer.deserialize_option(EntriesVisitor)
    }
}

/// `status`: timestamps, conditions and container statuses.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SlimPodStatus {
    /// When the kubelet started the Pod.
    #[serde(default, deserialize_with = "clamped_time")]
    pub start_time: Option<Time>,
    /// Pod conditions (the engine reads `Ready`).
    #[serde(default, deserialize_with = "null_as_default")]
    pub conditions: Vec<SlimCondition>,
    /// Statuses of init containers, native sidecars included.
    #[serde(default, deserialize_with = "null_as_default")]
    pub init_container_statuses: Vec<SlimContainerStatus>,
    /// Statuses of regular containers.
    #[serde(default, deserialize_with = "null_as_default")]
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
#[serde(rename_all = "camelCase")]
pub struct SlimContainerStatus {
    /// The container's name.
    #[serde(default, deserialize_with = "null_as_default")]
    pub name: String,
    /// Readiness as the kubelet reports it.
    #[serde(default)]
    pub ready: bool,
    /// Whether the startup probe has passed (or the container has started).
    #[serde(default)]
    pub started: Option<bool>,
    /// Restarts so far.
    #[serde(default)]
    pub restart_count: i32,
    /// The current state.
    #[serde(default)]
    pub state: Option<SlimContainerState>,
    /// The previous state (the last termination).
    #[serde(default)]
    pub last_state: Option<SlimContainerState>,
}

/// A container state: at most one of the three is set.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct SlimContainerState {
    #[serde(default)]
    pub waiting: Option<SlimWaiting>,
    #[serde(default)]
    pub running: Option<SlimRunning>,
    #[serde(default)]
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
#[serde(rename_all = "camelCase")]
pub struct SlimTerminated {
    #[serde(default)]
    pub exit_code: i32,
    /// E.g. `OOMKilled`, `Error`, `Completed`.
    #[serde(default)]
    pub reason: Option<String>,
    /// The container's termination message.
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default, deserialize_with = "clamped_time")]
    pub started_at: Option<Time>,
    #[serde(default, deserialize_with = "clamped_time")]
    pub finished_at: Option<Time>,
}

/// A timestamp, clamped to the representable range: RFC 3339 (and Go) allow years up to
/// 9999 in full, jiff stops just short of the end of year 9999 (and of year -9999). A Pod
/// whose kubelet, readiness-gate controller or tenant writes `9999-12-31T23:59:59Z` is read
/// as the last instant there is, instead of failing its decoding (and with it a whole list).
fn clamped_time<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Time>, D::Error> {
    let Some(text) = Option::<Cow<'de, str>>::deserialize(deserializer)? else { return Ok(None) };
    match text.parse::<jiff::Timestamp>() {
        Ok(t) => Ok(Some(Time(t))),
        Err(e) => {
            let year: Option<i32> = text.trim_start_matches('+').split('-').next().and_then(|y| y.parse().ok());
            match year {
                Some(y) if y >= 9999 => Ok(Some(Time(jiff::Timestamp::MAX))),
                _ if text.starts_with("-") => Ok(Some(Time(jiff::Timestamp::MIN))),
                _ => Err(serde::de::Error::custom(format!("invalid timestamp: {e}"))),
            }
        }
    }
}

/// The metadata fields kept; everything else (`managedFields`, annotations, finalizers) is
/// skipped while parsing.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SlimMeta {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    uid: Option<String>,
    #[serde(default)]
    resource_version: Option<String>,
    #[serde(default)]
    labels: Option<BTreeMap<String, String>>,
    #[serde(default)]
    owner_references: Option<Vec<OwnerReference>>,
    #[serde(default, deserialize_with = "clamped_time")]
    creation_timestamp: Option<Time>,
    #[serde(default, deserialize_with = "clamped_time")]
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
        owner_references: meta.owner_references,
        creation_timestamp: meta.creation_timestamp,
        deletion_timestamp: meta.deletion_timestamp,
        ..ObjectMeta::default()
    })
}

/// The API writes `null` for empty lists and objects at times; treat it as absent.
fn null_as_default<'de, D: Deserializer<'de>, T: Deserialize<'de> + Default>(deserializer: D) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

impl TryFrom<&Pod> for SlimPod {
    type Error = serde_json::Error;

    /// For callers that hold a full object (tests, tools): the same JSON, decoded slim.
    fn try_from(pod: &Pod) -> Result<Self, Self::Error> {
        serde_json::from_value(serde_json::to_value(pod)?)
    }
}

/// `kube::Resource` for a type decoded from the Pod endpoint: served from the same endpoint as
/// the full Pod, only the decoding differs. `$meta` and `$meta_mut` give the metadata.
macro_rules! pod_endpoint_resource {
    ($type:ty, |$this:ident| $meta:expr, |$this_mut:ident| $meta_mut:expr) => {
        impl kube::Resource for $type {
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
                let $this = self;
                $meta
            }
            fn meta_mut(&mut self) -> &mut ObjectMeta {
                let $this_mut = self;
                $meta_mut
            }
        }
    };
}
pub(crate) use pod_endpoint_resource;

pod_endpoint_resource!(SlimPod, |pod| &pod.metadata, |pod| &mut pod.metadata);

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
                 "livenessProbe": null, "resources": {"requests": {}, "limits": {"cpu": "1"}}}]},
            "status": {"phase": "Running", "conditions": null, "containerStatuses": [
                {"name": "app", "ready": true, "restartCount": 2, "imageID": "x", "state": {"running": {}}}]}
        }))
        .expect("decodes");
        assert_eq!(pod.metadata.name.as_deref(), Some("web"));
        assert_eq!(pod.metadata.resource_version.as_deref(), Some("7"));
        assert!(pod.metadata.annotations.is_none() && pod.metadata.managed_fields.is_none());
        let app = &pod.spec.containers[0];
        assert!(app.readiness_probe.is_some() && app.liveness_probe.is_none() && app.startup_probe.is_none());
        assert_eq!((app.resources.requests, app.resources.limits), (NonEmpty(false), NonEmpty(true)));
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
        let bad = crate::api::decode::<SlimPod>(serde_json::json!({"status": {"startTime": "yesterday"}}));
        assert_eq!(bad.expect_err("not a timestamp").path, "status.startTime");
    }

    #[test]
    fn a_type_error_names_the_field() {
        let value =
            serde_json::json!({"metadata": {"name": "web"}, "status": {"containerStatuses": [{"restartCount": "x"}]}});
        let error = crate::api::decode::<SlimPod>(value).expect_err("restartCount is not a number");
        assert_eq!(error.path, "status.containerStatuses[0].restartCount", "{error}");
    }
}
