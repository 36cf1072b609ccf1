//! `core/v1.PodStatus` and what it holds, cut to the fields [`SlimPod`](crate::SlimPod) reads.

use serde::Serialize;

use super::{is_empty, time};

/// `core/v1.PodStatus`.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PodStatus {
    #[prost(string, tag = "1")]
    #[serde(skip_serializing_if = "is_empty")]
    pub phase: String,
    #[prost(message, repeated, tag = "2")]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    #[prost(bytes = "vec", optional, tag = "7")]
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "time")]
    pub start_time: Option<Vec<u8>>,
    #[prost(message, repeated, tag = "10")]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub init_container_statuses: Vec<ContainerStatus>,
    #[prost(message, repeated, tag = "8")]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub container_statuses: Vec<ContainerStatus>,
}

/// `core/v1.PodCondition`.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[prost(string, tag = "1")]
    #[serde(rename = "type")]
    pub kind: String,
    #[prost(string, tag = "2")]
    pub status: String,
    #[prost(bytes = "vec", optional, tag = "4")]
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "time")]
    pub last_transition_time: Option<Vec<u8>>,
}

/// `core/v1.ContainerStatus`.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerStatus {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(message, optional, tag = "2")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<ContainerState>,
    #[prost(message, optional, tag = "3")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_state: Option<ContainerState>,
    #[prost(bool, tag = "4")]
    pub ready: bool,
    #[prost(int32, tag = "5")]
    pub restart_count: i32,
    #[prost(bool, optional, tag = "9")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started: Option<bool>,
}

/// `core/v1.ContainerState`.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct ContainerState {
    #[prost(message, optional, tag = "1")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waiting: Option<Waiting>,
    #[prost(message, optional, tag = "2")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub running: Option<Running>,
    #[prost(message, optional, tag = "3")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub terminated: Option<Terminated>,
}

/// `core/v1.ContainerStateWaiting`.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct Waiting {
    #[prost(string, tag = "1")]
    #[serde(skip_serializing_if = "is_empty")]
    pub reason: String,
}

/// `core/v1.ContainerStateRunning`.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Running {
    #[prost(bytes = "vec", optional, tag = "1")]
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "time")]
    pub started_at: Option<Vec<u8>>,
}

/// `core/v1.ContainerStateTerminated`.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Terminated {
    #[prost(int32, tag = "1")]
    pub exit_code: i32,
    #[prost(string, tag = "3")]
    #[serde(skip_serializing_if = "is_empty")]
    pub reason: String,
    #[prost(string, tag = "4")]
    #[serde(skip_serializing_if = "is_empty")]
    pub message: String,
    #[prost(bytes = "vec", optional, tag = "5")]
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "time")]
    pub started_at: Option<Vec<u8>>,
    #[prost(bytes = "vec", optional, tag = "6")]
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "time")]
    pub finished_at: Option<Vec<u8>>,
}

/// `metav1.Time` on the wire: an empty message is Go's zero time (JSON `null`); otherwise
/// whole seconds (kube-apiserver drops the nanoseconds, as its JSON does).
#[derive(Clone, Copy, PartialEq, prost::Message)]
pub struct Timestamp {
    #[prost(int64, tag = "1")]
    pub seconds: i64,
}
