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

use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting, ContainerStatus, Pod,
    PodCondition, PodSpec, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::Client;
use serde_json::{json, Value};

/// The `schedulerName` of test Pods: no scheduler serves it, so a Pod stays where the suite
/// binds it (on a cluster with a scheduler and kubelets too).
pub const SCHEDULER_NAME: &str = "sidecar-watch-e2e";

/// The Node test Pods are bound to: an object only, no kubelet behind it.
pub const NODE_NAME: &str = "sidecar-watch-e2e-node";

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
    let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(client.clone());
    let node = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": NODE_NAME}});
    nodes.patch(NODE_NAME, &PatchParams::apply("sidecar-watch-e2e"), &Patch::Apply(&node)).await?;
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

fn now() -> Time {
    Time(jiff::Timestamp::now())
}

/// A container state to set.
#[derive(Debug, Clone, PartialEq)]
pub enum State {
    /// Waiting with a reason (`CrashLoopBackOff`, `ImagePullBackOff`, ...).
    Waiting {
        /// Reason.
        reason: String,
        /// Message.
        message: Option<String>,
    },
    /// Running since now.
    Running,
    /// Terminated now.
    Terminated {
        /// Reason (`Error`, `Completed`, `OOMKilled`, ...).
        reason: String,
        /// Exit code.
        exit_code: i32,
        /// Message.
        message: Option<String>,
    },
}

impl State {
    /// Waiting with `reason`.
    pub fn waiting(reason: &str) -> Self {
        State::Waiting { reason: reason.into(), message: None }
    }

    /// Terminated with `reason` and `exit_code`.
    pub fn terminated(reason: &str, exit_code: i32) -> Self {
        State::Terminated { reason: reason.into(), exit_code, message: None }
    }

    /// The Kubernetes representation.
    pub fn to_k8s(&self) -> ContainerState {
        match self {
            State::Waiting { reason, message } => ContainerState {
                waiting: Some(ContainerStateWaiting { reason: Some(reason.clone()), message: message.clone() }),
                ..Default::default()
            },
            State::Running => ContainerState {
                running: Some(ContainerStateRunning { started_at: Some(now()) }),
                ..Default::default()
            },
            State::Terminated { reason, exit_code, message } => ContainerState {
                terminated: Some(terminated(reason, *exit_code, message.clone())),
                ..Default::default()
            },
        }
    }
}

fn terminated(reason: &str, exit_code: i32, message: Option<String>) -> ContainerStateTerminated {
    ContainerStateTerminated {
        reason: Some(reason.into()),
        exit_code,
        message,
        finished_at: Some(now()),
        started_at: None,
        ..Default::default()
    }
}

/// Drives the status of one Pod like a kubelet would.
#[derive(Clone)]
pub struct PodDriver {
    api: Api<Pod>,
    name: String,
}

impl std::fmt::Debug for PodDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PodDriver").field("name", &self.name).finish()
    }
}

fn ensure_statuses(spec: &PodSpec, status: &mut PodStatus) {
    let fill = |specs: Vec<(&str, &str)>, list: &mut Option<Vec<ContainerStatus>>| {
        if specs.is_empty() {
            return;
        }
        let l = list.get_or_insert_with(Vec::new);
        for (name, image) in specs {
            if !l.iter().any(|s| s.name == name) {
                l.push(ContainerStatus {
                    name: name.into(),
                    image: image.into(),
                    image_id: String::new(),
                    ready: false,
                    restart_count: 0,
                    started: Some(false),
                    state: Some(State::waiting("ContainerCreating").to_k8s()),
                    ..Default::default()
                });
            }
        }
    };
    let regular: Vec<(&str, &str)> =
        spec.containers.iter().map(|c| (c.name.as_str(), c.image.as_deref().unwrap_or(""))).collect();
    fill(regular, &mut status.container_statuses);
    let init: Vec<(&str, &str)> =
        spec.init_containers.iter().flatten().map(|c| (c.name.as_str(), c.image.as_deref().unwrap_or(""))).collect();
    fill(init, &mut status.init_container_statuses);
}

impl PodDriver {
    /// Driver for Pod `name` in `namespace`.
    pub fn new(client: Client, namespace: &str, name: &str) -> Self {
        Self { api: Api::namespaced(client, namespace), name: name.into() }
    }

    /// The Pod's current state.
    pub async fn get(&self) -> Result<Pod> {
        Ok(self.api.get(&self.name).await?)
    }

    /// Read-modify-write of the Pod status (`PUT /status`), retried on 409 Conflict.
    /// Status entries for every container in the spec are created on first use.
    pub async fn update<F>(&self, mut f: F) -> Result<Pod>
    where
        F: FnMut(&PodSpec, &mut PodStatus) -> Result<()>,
    {
        for _ in 0..20 {
            let mut pod = self.api.get(&self.name).await?;
            let spec = pod.spec.clone().unwrap_or_default();
            let status = pod.status.get_or_insert_with(Default::default);
            ensure_statuses(&spec, status);
            f(&spec, status)?;
            match self.api.replace_status(&self.name, &PostParams::default(), &pod).await {
                Ok(p) => return Ok(p),
                Err(kube::Error::Api(s)) if s.code == 409 => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(KubeletError::Conflicts(self.name.clone()))
    }

    /// Modifies the status of container `name` (regular or init container).
    pub async fn container<F>(&self, name: &str, mut f: F) -> Result<Pod>
    where
        F: FnMut(&mut ContainerStatus),
    {
        let pod_name = self.name.clone();
        self.update(|_, status| {
            let found = status
                .container_statuses
                .iter_mut()
                .flatten()
                .chain(status.init_container_statuses.iter_mut().flatten())
                .find(|c| c.name == name);
            match found {
                Some(c) => {
                    f(c);
                    Ok(())
                }
                None => Err(KubeletError::NoSuchContainer { pod: pod_name.clone(), container: name.into() }),
            }
        })
        .await
    }

    /// Sets the state of a container; `Running` marks it started, others not started/not ready.
    pub async fn set_state(&self, container: &str, state: State) -> Result<Pod> {
        self.container(container, |c| {
            c.started = Some(state == State::Running);
            if state != State::Running {
                c.ready = false;
            }
            c.state = Some(state.to_k8s());
        })
        .await
    }

    /// Sets `ready` of a container.
    pub async fn set_ready(&self, container: &str, ready: bool) -> Result<Pod> {
        self.container(container, |c| c.ready = ready).await
    }

    /// Sets `started` of a container.
    pub async fn set_started(&self, container: &str, started: bool) -> Result<Pod> {
        self.container(container, |c| c.started = Some(started)).await
    }

    /// Sets `restartCount` of a container.
    pub async fn set_restart_count(&self, container: &str, count: i32) -> Result<Pod> {
        self.container(container, |c| c.restart_count = count).await
    }

    /// Sets `lastState.terminated` of a container.
    pub async fn set_last_terminated(
        &self,
        container: &str,
        reason: &str,
        exit_code: i32,
        message: Option<&str>,
    ) -> Result<Pod> {
        self.container(container, |c| {
            c.last_state = Some(ContainerState {
                terminated: Some(terminated(reason, exit_code, message.map(str::to_string))),
                ..Default::default()
            })
        })
        .await
    }

    /// Simulates a container crash and restart: `lastState.terminated` gets the exit,
    /// `restartCount` is incremented and the container runs again (started, ready as given).
    pub async fn restart(&self, container: &str, reason: &str, exit_code: i32, ready: bool) -> Result<Pod> {
        self.container(container, |c| {
            c.last_state =
                Some(ContainerState { terminated: Some(terminated(reason, exit_code, None)), ..Default::default() });
            c.restart_count += 1;
            c.state = Some(State::Running.to_k8s());
            c.started = Some(true);
            c.ready = ready;
        })
        .await
    }

    /// Sets the Pod phase.
    pub async fn set_phase(&self, phase: &str) -> Result<Pod> {
        self.update(|_, s| {
            s.phase = Some(phase.into());
            Ok(())
        })
        .await
    }

    /// Sets a Pod condition; `lastTransitionTime` changes only when the status changes.
    pub async fn set_condition(&self, type_: &str, status: bool, reason: Option<&str>) -> Result<Pod> {
        self.update(|_, s| {
            set_condition(s, type_, status, reason);
            Ok(())
        })
        .await
    }

    /// Makes the Pod fully running: every container and sidecar running, started and ready,
    /// phase `Running`, conditions Initialized/ContainersReady/Ready/PodScheduled true.
    pub async fn run_all(&self) -> Result<Pod> {
        self.update(|_, s| {
            for c in s.container_statuses.iter_mut().flatten().chain(s.init_container_statuses.iter_mut().flatten()) {
                if c.state.as_ref().and_then(|st| st.running.as_ref()).is_none() {
                    c.state = Some(State::Running.to_k8s());
                }
                c.started = Some(true);
                c.ready = true;
            }
            s.phase = Some("Running".into());
            for t in ["PodScheduled", "Initialized", "ContainersReady", "Ready"] {
                set_condition(s, t, true, None);
            }
            Ok(())
        })
        .await
    }
}

/// Sets a condition in a status, keeping `lastTransitionTime` when the status is unchanged.
pub fn set_condition(s: &mut PodStatus, type_: &str, status: bool, reason: Option<&str>) {
    let value = if status { "True" } else { "False" };
    let conds = s.conditions.get_or_insert_with(Vec::new);
    match conds.iter_mut().find(|c| c.type_ == type_) {
        Some(c) => {
            if c.status != value {
                c.last_transition_time = Some(now());
            }
            c.status = value.into();
            c.reason = reason.map(str::to_string);
        }
        None => conds.push(PodCondition {
            type_: type_.into(),
            status: value.into(),
            reason: reason.map(str::to_string),
            last_transition_time: Some(now()),
            ..Default::default()
        }),
    }
}
