//! The core/v1 Pod's protobuf messages as kube-apiserver writes them (`k8s.io/api`
//! `core/v1/generated.proto`, tags verified against v1.37), cut to the fields [`SlimPod`]
//! reads. Each derives both [`prost::Message`] (decoding skips every other field without
//! allocating it, as serde does for the JSON) and `Serialize`, which writes the JSON
//! kube-apiserver would have written for those fields, so that [`SlimPod`] decodes it as if it
//! had come from kube-apiserver in JSON.
//!
//! Go's JSON omits empty strings (`omitempty`) where protobuf writes them, so empty strings
//! are skipped here; fields that Go keeps as pointers are `Option` to tell absent from empty.
//!
//! [`SlimPod`]: crate::SlimPod

use std::collections::BTreeMap;

use serde::{Serialize, Serializer};

mod env;
mod status;
use env::signal_env;
pub use env::EnvVar;
pub use status::*;

fn is_empty(text: &str) -> bool {
    text.is_empty()
}

/// A message whose content is not read: only whether it is there (a probe, a hook).
#[derive(Clone, Copy, PartialEq, prost::Message, Serialize)]
pub struct Present {}

/// `metav1.ObjectMeta`, without `managedFields`; of the annotations only those injectors read
/// are written on.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectMeta {
    #[prost(string, tag = "1")]
    #[serde(skip_serializing_if = "is_empty")]
    pub name: String,
    #[prost(string, tag = "3")]
    #[serde(skip_serializing_if = "is_empty")]
    pub namespace: String,
    #[prost(string, tag = "5")]
    #[serde(skip_serializing_if = "is_empty")]
    pub uid: String,
    #[prost(string, tag = "6")]
    #[serde(skip_serializing_if = "is_empty")]
    pub resource_version: String,
    #[prost(bytes = "vec", optional, tag = "8")]
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "time")]
    pub creation_timestamp: Option<Vec<u8>>,
    #[prost(bytes = "vec", optional, tag = "9")]
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "time")]
    pub deletion_timestamp: Option<Vec<u8>>,
    #[prost(btree_map = "string, string", tag = "11")]
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Decoded whole (prost has no filter; the map lives for one event), written on cut to
    /// [`INJECTION_ANNOTATIONS`](crate::INJECTION_ANNOTATIONS).
    #[prost(btree_map = "string, string", tag = "12")]
    #[serde(skip_serializing_if = "BTreeMap::is_empty", serialize_with = "injection_annotations")]
    pub annotations: BTreeMap<String, String>,
    #[prost(message, repeated, tag = "13")]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub owner_references: Vec<OwnerReference>,
}

/// `metav1.OwnerReference`: its four strings are required in JSON, so always written.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OwnerReference {
    #[prost(string, tag = "5")]
    pub api_version: String,
    #[prost(string, tag = "1")]
    pub kind: String,
    #[prost(string, tag = "3")]
    pub name: String,
    #[prost(string, tag = "4")]
    pub uid: String,
    #[prost(bool, optional, tag = "6")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub controller: Option<bool>,
    #[prost(bool, optional, tag = "7")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub block_owner_deletion: Option<bool>,
}

/// `core/v1.Pod`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Pod {
    #[prost(message, optional, tag = "1")]
    pub metadata: Option<ObjectMeta>,
    #[prost(message, optional, tag = "2")]
    pub spec: Option<PodSpec>,
    #[prost(message, optional, tag = "3")]
    pub status: Option<PodStatus>,
}

/// The identity of a Pod whose other fields could not be decoded.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PodIdentity {
    #[prost(message, optional, tag = "1")]
    pub metadata: Option<ObjectMeta>,
}

/// A BOOKMARK's object: only its resourceVersion and annotations (the end of a streamed
/// initial list is `k8s.io/initial-events-end: "true"`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Bookmark {
    #[prost(message, optional, tag = "1")]
    pub metadata: Option<BookmarkMeta>,
}

/// A BOOKMARK's metadata.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BookmarkMeta {
    #[prost(string, tag = "6")]
    pub resource_version: String,
    #[prost(btree_map = "string, string", tag = "12")]
    pub annotations: BTreeMap<String, String>,
}

/// `core/v1.PodSpec`.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PodSpec {
    #[prost(message, repeated, tag = "20")]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub init_containers: Vec<Container>,
    #[prost(message, repeated, tag = "2")]
    pub containers: Vec<Container>,
    #[prost(string, tag = "3")]
    #[serde(skip_serializing_if = "is_empty")]
    pub restart_policy: String,
    #[prost(message, optional, tag = "14")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub security_context: Option<RunAs>,
    #[prost(bool, tag = "11")]
    #[serde(skip_serializing_if = "is_false")]
    pub host_network: bool,
}

/// `securityContext` (Pod's or container's): only `runAsUser`, tag 2 in the Pod's.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunAs {
    #[prost(int64, optional, tag = "2")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_as_user: Option<i64>,
}

/// A container's `securityContext`: `runAsUser` is tag 4 there.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerRunAs {
    #[prost(int64, optional, tag = "4")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_as_user: Option<i64>,
}

/// `core/v1.Container`.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Container {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    #[serde(skip_serializing_if = "is_empty")]
    pub image: String,
    #[prost(string, repeated, tag = "3")]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    #[prost(string, repeated, tag = "4")]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// Only the variables that switch a sidecar's own signal are written (see
    /// [`SignalSwitch::env`](crate::SignalSwitch::env)).
    #[prost(message, repeated, tag = "7")]
    #[serde(skip_serializing_if = "Vec::is_empty", serialize_with = "signal_env")]
    pub env: Vec<EnvVar>,
    #[prost(message, repeated, tag = "6")]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<ContainerPort>,
    #[prost(message, optional, tag = "8")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resources: Option<Resources>,
    #[prost(message, repeated, tag = "23")]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub resize_policy: Vec<ResizePolicy>,
    #[prost(string, optional, tag = "24")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restart_policy: Option<String>,
    #[prost(message, repeated, tag = "25")]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub restart_policy_rules: Vec<RestartRule>,
    #[prost(message, optional, tag = "10")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub liveness_probe: Option<Probe>,
    #[prost(message, optional, tag = "11")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub readiness_probe: Option<Present>,
    #[prost(message, optional, tag = "22")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub startup_probe: Option<Present>,
    #[prost(message, optional, tag = "12")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lifecycle: Option<Lifecycle>,
    #[prost(message, optional, tag = "15")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub security_context: Option<ContainerRunAs>,
}

/// `core/v1.ContainerPort`.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerPort {
    #[prost(string, tag = "1")]
    #[serde(skip_serializing_if = "is_empty")]
    pub name: String,
    #[prost(int32, tag = "3")]
    pub container_port: i32,
    #[prost(string, tag = "4")]
    #[serde(skip_serializing_if = "is_empty")]
    pub protocol: String,
}

/// `resources` (`core/v1.ResourceRequirements`): `limits` and `requests`, each a map from the
/// resource's name to its quantity, written as JSON writes them (`{"cpu": "100m"}`).
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct Resources {
    #[prost(btree_map = "string, message", tag = "1")]
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub limits: BTreeMap<String, Quantity>,
    #[prost(btree_map = "string, message", tag = "2")]
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub requests: BTreeMap<String, Quantity>,
}

/// `resource.Quantity`: its text (`string`, tag 1), as JSON writes it.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
#[serde(transparent)]
pub struct Quantity {
    #[prost(string, optional, tag = "1")]
    pub string: Option<String>,
}

/// `core/v1.ContainerResizePolicy`.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ResizePolicy {
    #[prost(string, tag = "1")]
    pub resource_name: String,
    #[prost(string, tag = "2")]
    pub restart_policy: String,
}

/// `core/v1.ContainerRestartRule`.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RestartRule {
    #[prost(string, tag = "1")]
    pub action: String,
    #[prost(message, optional, tag = "2")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_codes: Option<ExitCodes>,
}

/// `core/v1.ContainerRestartRuleOnExitCodes`.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct ExitCodes {
    #[prost(string, tag = "1")]
    pub operator: String,
    #[prost(int32, repeated, packed = "false", tag = "2")]
    pub values: Vec<i32>,
}

/// `core/v1.Probe`: its handler, which JSON inlines into the probe.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct Probe {
    #[prost(message, optional, tag = "1")]
    #[serde(flatten)]
    pub handler: Option<ProbeHandler>,
}

/// `core/v1.ProbeHandler`, without `exec` (a probe target is a port).
#[derive(Clone, PartialEq, prost::Message, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProbeHandler {
    #[prost(message, optional, tag = "2")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_get: Option<HttpGet>,
    #[prost(message, optional, tag = "3")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcp_socket: Option<TcpSocket>,
    #[prost(message, optional, tag = "4")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grpc: Option<Grpc>,
}

/// `core/v1.HTTPGetAction`.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct HttpGet {
    #[prost(string, tag = "1")]
    #[serde(skip_serializing_if = "is_empty")]
    pub path: String,
    #[prost(message, optional, tag = "2")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<IntOrString>,
    #[prost(string, tag = "3")]
    #[serde(skip_serializing_if = "is_empty")]
    pub host: String,
}

/// `core/v1.TCPSocketAction`.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct TcpSocket {
    #[prost(message, optional, tag = "1")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<IntOrString>,
    #[prost(string, tag = "2")]
    #[serde(skip_serializing_if = "is_empty")]
    pub host: String,
}

/// `core/v1.GRPCAction`.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct Grpc {
    #[prost(int32, tag = "1")]
    pub port: i32,
}

/// `intstr.IntOrString`: a number (`type` 0) or a string (`type` 1).
#[derive(Clone, PartialEq, prost::Message)]
pub struct IntOrString {
    #[prost(int64, tag = "1")]
    pub kind: i64,
    #[prost(int32, tag = "2")]
    pub int_val: i32,
    #[prost(string, tag = "3")]
    pub str_val: String,
}

impl Serialize for IntOrString {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if self.kind == 1 {
            serializer.serialize_str(&self.str_val)
        } else {
            serializer.serialize_i32(self.int_val)
        }
    }
}

/// `core/v1.Lifecycle`.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Lifecycle {
    #[prost(message, optional, tag = "1")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub post_start: Option<Present>,
    #[prost(message, optional, tag = "2")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pre_stop: Option<Handler>,
}

/// `core/v1.LifecycleHandler`: the exec command, and which other kind it is.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Handler {
    #[prost(message, optional, tag = "1")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exec: Option<Exec>,
    #[prost(message, optional, tag = "2")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_get: Option<Present>,
    #[prost(message, optional, tag = "3")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcp_socket: Option<Present>,
    #[prost(message, optional, tag = "4")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sleep: Option<Present>,
}

/// `core/v1.ExecAction`.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct Exec {
    #[prost(string, repeated, tag = "1")]
    pub command: Vec<String>,
}

/// Writes a `metav1.Time` as Go writes it in JSON: RFC 3339 in UTC, whole seconds.
fn time<S: Serializer>(encoded: &Option<Vec<u8>>, serializer: S) -> Result<S::Ok, S::Error> {
    let Some(encoded) = encoded.as_deref().filter(|e| !e.is_empty()) else {
        return serializer.serialize_none();
    };
    let seconds = <Timestamp as prost::Message>::decode(encoded).map_err(serde::ser::Error::custom)?.seconds;
    match jiff::Timestamp::from_second(seconds) {
        Ok(at) => serializer.collect_str(&at.strftime("%Y-%m-%dT%H:%M:%SZ")),
        // Beyond jiff's years ±9999: the text `clamped_time` reads as the end of the range.
        Err(_) if seconds < 0 => serializer.serialize_str("-9999-01-01T00:00:00Z"),
        Err(_) => serializer.serialize_str("9999-12-31T23:59:59Z"),
    }
}

fn is_false(value: &bool) -> bool {
    !*value
}

/// The annotations injectors read, values cut.
fn injection_annotations<S: Serializer>(
    annotations: &BTreeMap<String, String>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_map(crate::injection_annotations(annotations))
}

/// `metav1.ListMeta`.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListMeta {
    #[prost(string, tag = "2")]
    #[serde(skip_serializing_if = "is_empty")]
    pub resource_version: String,
    #[prost(string, tag = "3")]
    #[serde(rename = "continue", skip_serializing_if = "is_empty")]
    pub continue_token: String,
    #[prost(int64, optional, tag = "4")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remaining_item_count: Option<i64>,
}

/// `core/v1.PodList`, its items left encoded so that each is decoded on its own.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PodList {
    #[prost(message, optional, tag = "1")]
    pub metadata: Option<ListMeta>,
    #[prost(bytes = "bytes", repeated, tag = "2")]
    pub items: Vec<bytes::Bytes>,
}

/// `metav1.Status`: what kube-apiserver answers instead of an object.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct Status {
    #[prost(string, tag = "2")]
    pub status: String,
    #[prost(string, tag = "3")]
    pub message: String,
    #[prost(string, tag = "4")]
    pub reason: String,
    #[prost(message, optional, tag = "5")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<StatusDetails>,
    #[prost(int32, tag = "6")]
    pub code: i32,
}

/// `metav1.StatusDetails`: only the hint to retry later.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusDetails {
    #[prost(int32, tag = "5")]
    pub retry_after_seconds: i32,
}

/// `metav1.WatchEvent`: its type and the encoded object.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WatchEvent {
    #[prost(string, tag = "1")]
    pub kind: String,
    #[prost(message, optional, tag = "2")]
    pub object: Option<RawExtension>,
}

/// `runtime.RawExtension`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RawExtension {
    #[prost(bytes = "bytes", tag = "1")]
    pub raw: bytes::Bytes,
}

/// `runtime.Unknown`: the envelope after the `k8s\0` magic, naming the kind it carries.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Unknown {
    #[prost(message, optional, tag = "1")]
    pub type_meta: Option<TypeMeta>,
    #[prost(bytes = "bytes", tag = "2")]
    pub raw: bytes::Bytes,
}

/// `runtime.TypeMeta`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TypeMeta {
    #[prost(string, tag = "1")]
    pub api_version: String,
    #[prost(string, tag = "2")]
    pub kind: String,
}
