//! A kubelet-like driver of Pod status for tests.
//!
//! It only uses normal API calls through a [`kube::Client`] (read the Pod, then `PUT
//! /status` with the resourceVersion it read, retrying on 409 Conflict), so it works against
//! the real control plane, the simulator and any cluster.
//!
//! Test Pods ([`test_pod`]) name a scheduler that does not exist ([`SCHEDULER_NAME`]), so no
//! scheduler touches them, and the suite binds each to a Node object of its own
//! ([`NODE_NAME`], [`bind`]) as a scheduler would. Bound, a Pod is deleted as on a real node:
//! `DELETE` sets `deletionTimestamp` and the Pod stays until the kubelet (here the test)
//! deletes it with grace period 0; an unbound Pod would be deleted at once.
//!
//! The test says what each container does and when; the driver writes it the way kubelet
//! 1.37.2 does. Every write also carries what the kubelet derives from the container
//! statuses in that same write: the phase, the conditions `PodReadyToStartContainers`,
//! `Initialized`, `Ready` and `ContainersReady` (their `lastTransitionTime` moves only when
//! their status does), `startTime`, and the container fields that go with a state
//! (`started`, `ready`, `restartCount`, `lastState`). The real kubelet's writes, recorded on a
//! real node, are played again through the same code by a unit test; harness/README.md, "The
//! simulated kubelet and the real one", lists what differed and what still does.
//!
//! One idea per file: [`PodDriver`] writes through the API server (`driver.rs`); the steps
//! and container states it writes (`steps.rs`); what the kubelet derives in each write
//! (`status.rs`) from what it reads in the spec (`spec.rs`); the replay of the recordings
//! (`recorded.rs`); shorthands of the operator suite ([`native_pod`], [`drive`],
//! [`set_ready`]: `pods.rs`).

mod driver;
mod pods;
#[cfg(test)]
mod recorded;
mod spec;
mod status;
mod steps;

use k8s_openapi::api::core::v1::{Node, Pod, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::Client;
use serde_json::{json, Value};

pub use driver::PodDriver;
pub use pods::{drive, native_pod, set_ready};
pub use status::derive_status;
pub use steps::State;

/// The `schedulerName` of test Pods: no scheduler serves it, so a Pod stays where the suite
/// binds it (on a cluster with a scheduler and kubelets too).
pub const SCHEDULER_NAME: &str = "sidecar-watch-harness";

/// The Node test Pods are bound to: an object only, no kubelet behind it.
pub const NODE_NAME: &str = "sidecar-watch-harness-node";

/// Errors of the Pod status driver.
#[derive(Debug, thiserror::Error)]
pub enum KubeletError {
    /// API call failed.
    #[error("kubernetes API error: {0}")]
    Kube(#[from] kube::Error),
    /// The named container is not in the Pod spec.
    #[error("pod {pod} has no container named {container}")]
    NoSuchContainer {
        /// Pod name.
        pod: String,
        /// Container name.
        container: String,
    },
    /// Kept conflicting.
    #[error("pod {0}: status update kept conflicting")]
    Conflicts(String),
}

/// Result alias of the driver.
pub type Result<T, E = KubeletError> = std::result::Result<T, E>;

/// Builds a test Pod (JSON) for [`SCHEDULER_NAME`] with regular containers and native
/// sidecars (init containers with `restartPolicy: Always`), all with image `busybox`.
pub fn test_pod(name: &str, labels: &[(&str, &str)], containers: &[&str], sidecars: &[&str]) -> Value {
    let labels: serde_json::Map<String, Value> = labels.iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
    let c: Vec<Value> = containers.iter().map(|n| json!({"name": n, "image": "busybox"})).collect();
    let s: Vec<Value> =
        sidecars.iter().map(|n| json!({"name": n, "image": "busybox", "restartPolicy": "Always"})).collect();
    let mut spec = json!({"schedulerName": SCHEDULER_NAME, "containers": c, "terminationGracePeriodSeconds": 30});
    if !s.is_empty() {
        spec["initContainers"] = json!(s);
    }
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels}, "spec": spec})
}

/// Creates [`NODE_NAME`] if it does not exist (server-side apply: idempotent).
pub async fn ensure_node(client: &Client) -> Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    let node = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": NODE_NAME}});
    nodes.patch(NODE_NAME, &PatchParams::apply("sidecar-watch-harness"), &Patch::Apply(&node)).await?;
    Ok(())
}

/// Binds Pod `namespace/name` to [`NODE_NAME`] (`pods/binding`, as a scheduler does).
pub async fn bind(client: &Client, namespace: &str, name: &str) -> Result<()> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let binding = json!({
        "apiVersion": "v1", "kind": "Binding",
        "metadata": {"name": name, "namespace": namespace},
        "target": {"apiVersion": "v1", "kind": "Node", "name": NODE_NAME},
    });
    let _: Value = pods.create_subresource("binding", name, &PostParams::default(), &binding).await?;
    Ok(())
}

/// The instant of a write: the kubelet stamps its writes with its own clock.
fn now() -> Time {
    Time(jiff::Timestamp::now())
}

/// Sets a condition in a status, keeping `lastTransitionTime` when the status is unchanged.
pub fn set_condition(s: &mut PodStatus, type_: &str, status: bool, reason: Option<&str>) {
    status::put_condition(s.conditions.get_or_insert_with(Vec::new), type_, (status, reason), &now());
}
