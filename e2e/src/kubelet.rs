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
//! 1.37.2 does (recorded on a real node, e2e/README.md "The simulated kubelet and the real
//! one"): every write also carries what the kubelet derives from the container statuses in
//! that same write — the phase, the conditions `PodReadyToStartContainers`, `Initialized`,
//! `Ready` and `ContainersReady` (their `lastTransitionTime` moves only when their status
//! does), `startTime` — and the container fields that go with a state (`started`, `ready`,
//! `restartCount`, `lastState`). [`PodDriver::update_raw`] writes what no kubelet would.

use std::time::Duration;

use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting, ContainerStatus, Pod,
    PodCondition, PodSpec, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, DynamicObject};
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
    },
}

impl State {
    /// Waiting with `reason`.
    pub fn waiting(reason: &str) -> Self {
        State::Waiting { reason: reason.into(), message: None }
    }

    /// Terminated with `reason` and `exit_code`.
    pub fn terminated(reason: &str, exit_code: i32) -> Self {
        State::Terminated { reason: reason.into(), exit_code }
    }

    /// The Kubernetes representation, as of now (a terminated state without `startedAt`: the
    /// driver's own writes carry the run's start, see [`PodDriver::set_state`]).
    pub fn to_k8s(&self) -> ContainerState {
        self.at(&now())
    }

    fn at(&self, at: &Time) -> ContainerState {
        match self {
            State::Waiting { reason, message } => ContainerState {
                waiting: Some(ContainerStateWaiting { reason: Some(reason.clone()), message: message.clone() }),
                ..Default::default()
            },
            State::Running => ContainerState {
                running: Some(ContainerStateRunning { started_at: Some(at.clone()) }),
                ..Default::default()
            },
            State::Terminated { reason, exit_code } => {
                ContainerState { terminated: Some(terminated(reason, *exit_code, None, at)), ..Default::default() }
            }
        }
    }
}

fn terminated(reason: &str, exit_code: i32, started_at: Option<Time>, finished_at: &Time) -> ContainerStateTerminated {
    ContainerStateTerminated {
        reason: Some(reason.into()),
        exit_code,
        finished_at: Some(finished_at.clone()),
        started_at,
        ..Default::default()
    }
}

/// Drives the status of one Pod like a kubelet would.
#[derive(Clone)]
pub struct PodDriver {
    api: Api<Pod>,
    raw: Api<DynamicObject>,
    name: String,
}

impl std::fmt::Debug for PodDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PodDriver").field("name", &self.name).finish()
    }
}

// ---------------------------------------------------------------------------------------
// What the kubelet reads in the spec

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// A regular init container: runs to completion before the others.
    Init,
    /// An init container with `restartPolicy: Always`: a native sidecar.
    Sidecar,
    /// A container of `spec.containers`.
    Regular,
}

/// A `restartPolicyRules` entry (KEP-5307): `action` on exit codes `In`/`NotIn` `values`.
#[derive(Debug, Clone)]
struct RestartRule {
    action: String,
    not_in: bool,
    values: Vec<i32>,
}

#[derive(Debug)]
struct Declared {
    name: String,
    kind: Kind,
    startup_probe: bool,
    readiness_probe: bool,
    restart_policy: Option<String>,
    rules: Vec<RestartRule>,
}

/// The Pod as far as the kubelet's status follows from it.
#[derive(Debug)]
struct Facts {
    containers: Vec<Declared>,
    restart_policy: String,
    deleting: bool,
}

impl Facts {
    fn new(meta: &ObjectMeta, spec: &PodSpec, raw_spec: &Value) -> Self {
        let rules = |list: &str, name: &str| -> Vec<RestartRule> {
            let container = raw_spec[list].as_array().into_iter().flatten().find(|c| c["name"] == name);
            let rules = container.and_then(|c| c["restartPolicyRules"].as_array()).cloned().unwrap_or_default();
            rules
                .iter()
                .map(|r| RestartRule {
                    action: r["action"].as_str().unwrap_or_default().to_string(),
                    not_in: r["exitCodes"]["operator"] == "NotIn",
                    values: r["exitCodes"]["values"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_i64)
                        .filter_map(|v| i32::try_from(v).ok())
                        .collect(),
                })
                .collect()
        };
        let declared = |c: &k8s_openapi::api::core::v1::Container, kind: Kind, list: &str| Declared {
            name: c.name.clone(),
            kind,
            startup_probe: c.startup_probe.is_some(),
            readiness_probe: c.readiness_probe.is_some(),
            restart_policy: c.restart_policy.clone(),
            rules: rules(list, &c.name),
        };
        let mut containers: Vec<Declared> = spec
            .init_containers
            .iter()
            .flatten()
            .map(|c| {
                let kind = if c.restart_policy.as_deref() == Some("Always") { Kind::Sidecar } else { Kind::Init };
                declared(c, kind, "initContainers")
            })
            .collect();
        containers.extend(spec.containers.iter().map(|c| declared(c, Kind::Regular, "containers")));
        Facts {
            containers,
            restart_policy: spec.restart_policy.clone().unwrap_or_else(|| "Always".into()),
            deleting: meta.deletion_timestamp.is_some(),
        }
    }

    fn declared(&self, name: &str) -> Option<&Declared> {
        self.containers.iter().find(|d| d.name == name)
    }

    /// `podutil.ContainerShouldRestart`: the container's rules, then its own restart policy,
    /// then the Pod's.
    fn should_restart(&self, d: &Declared, exit_code: i32) -> bool {
        if let Some(policy) = &d.restart_policy {
            let matching = d.rules.iter().find(|r| r.values.contains(&exit_code) != r.not_in);
            if matching.is_some_and(|r| r.action == "Restart") {
                return true;
            }
            return match policy.as_str() {
                "Always" => true,
                "OnFailure" => exit_code != 0,
                _ => false,
            };
        }
        match self.restart_policy.as_str() {
            "Always" => true,
            "OnFailure" => exit_code != 0,
            _ => false,
        }
    }
}

// ---------------------------------------------------------------------------------------
// What the kubelet derives on every write

fn find<'a>(s: &'a PodStatus, name: &str) -> Option<&'a ContainerStatus> {
    s.init_container_statuses.iter().flatten().chain(s.container_statuses.iter().flatten()).find(|c| c.name == name)
}

fn find_mut<'a>(s: &'a mut PodStatus, name: &str) -> Option<&'a mut ContainerStatus> {
    s.init_container_statuses
        .iter_mut()
        .flatten()
        .chain(s.container_statuses.iter_mut().flatten())
        .find(|c| c.name == name)
}

fn running(c: &ContainerStatus) -> bool {
    c.state.as_ref().is_some_and(|s| s.running.is_some())
}

fn terminated_state(c: &ContainerStatus) -> Option<&ContainerStateTerminated> {
    c.state.as_ref().and_then(|s| s.terminated.as_ref())
}

fn last_terminated(c: &ContainerStatus) -> Option<&ContainerStateTerminated> {
    c.last_state.as_ref().and_then(|s| s.terminated.as_ref())
}

/// The kubelet's first status for a container: waiting, `PodInitializing` in a Pod with init
/// containers, `ContainerCreating` otherwise (recorded), not started, not ready; the lists in
/// the kubelet's order.
fn ensure_statuses(spec: &PodSpec, status: &mut PodStatus) {
    let reason = if spec.init_containers.as_ref().is_some_and(|l| !l.is_empty()) {
        "PodInitializing"
    } else {
        "ContainerCreating"
    };
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
                    state: Some(State::waiting(reason).to_k8s()),
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
    // The kubelet lists regular containers by name, init containers in the spec's order
    // (`SortedContainerStatuses`, `SortInitContainerStatuses`; recorded).
    if let Some(l) = status.container_statuses.as_mut() {
        l.sort_by(|a, b| a.name.cmp(&b.name));
    }
    if let Some(l) = status.init_container_statuses.as_mut() {
        let at = |name: &str| spec.init_containers.iter().flatten().position(|c| c.name == name);
        l.sort_by_key(|c| at(&c.name));
    }
}

/// `HasAnyRegularContainerStarted`: a regular container runs or ran.
fn any_regular_started(facts: &Facts, s: &PodStatus) -> bool {
    facts.containers.iter().filter(|d| d.kind == Kind::Regular).any(|d| {
        find(s, &d.name)
            .is_some_and(|c| c.state.as_ref().is_some_and(|st| st.running.is_some() || st.terminated.is_some()))
    })
}

/// The kubelet's `getPhase` (`kubelet_pods.go`, with `ContainerRestartRules` on, as in 1.37).
/// Every container has a status here (`ensure_statuses`), so the kubelet's count of unknown
/// ones is 0; a state with nothing in it counts as waiting, which gives `Pending` as unknown
/// would.
fn phase(facts: &Facts, s: &PodStatus, pod_is_terminal: bool) -> &'static str {
    let restartable = |d: &Declared, t: &ContainerStateTerminated| {
        facts.should_restart(d, t.exit_code) || t.reason.as_deref() == Some("RestartingAllContainers")
    };
    let (mut pending_init, mut pending_sidecars, mut failed_init) = (0, 0, 0);
    let (mut running_n, mut waiting, mut stopped, mut stopped_for_good, mut succeeded) = (0, 0, 0, 0, 0);
    for (d, c) in facts.containers.iter().filter_map(|d| Some((d, find(s, &d.name)?))) {
        let state = c.state.clone().unwrap_or_default();
        match d.kind {
            Kind::Init => match (&state.running, &state.terminated, &state.waiting, last_terminated(c)) {
                (Some(_), _, _, _) => pending_init += 1,
                (_, Some(t), _, _) | (_, _, Some(_), Some(t)) => {
                    if t.exit_code != 0 && !restartable(d, t) {
                        failed_init += 1;
                    }
                }
                _ => pending_init += 1,
            },
            Kind::Sidecar => match (&state.running, &state.terminated, &state.waiting) {
                (Some(_), _, _) => {
                    if c.started != Some(true) {
                        pending_sidecars += 1;
                    }
                    running_n += 1;
                }
                (_, Some(_), _) => {}
                (_, _, Some(_)) if last_terminated(c).is_some() => {}
                _ => {
                    pending_sidecars += 1;
                    waiting += 1;
                }
            },
            Kind::Regular => match (&state.running, &state.terminated, &state.waiting, last_terminated(c)) {
                (Some(_), _, _, _) => running_n += 1,
                (_, Some(t), _, _) => {
                    stopped += 1;
                    if !restartable(d, t) {
                        stopped_for_good += 1;
                    }
                    if t.exit_code == 0 {
                        succeeded += 1;
                    }
                }
                (_, _, Some(_), Some(t)) => {
                    stopped += 1;
                    if !restartable(d, t) {
                        stopped_for_good += 1;
                    }
                }
                _ => waiting += 1,
            },
        }
    }
    if failed_init > 0 {
        return "Failed";
    }
    if pending_init > 0 || (pending_sidecars > 0 && !any_regular_started(facts, s)) || waiting > 0 {
        return "Pending";
    }
    if running_n > 0 {
        return "Running";
    }
    if stopped > 0 {
        if pod_is_terminal || stopped == stopped_for_good {
            return if stopped == succeeded { "Succeeded" } else { "Failed" };
        }
        return "Running";
    }
    "Pending"
}

fn terminal(phase: Option<&str>) -> bool {
    matches!(phase, Some("Succeeded" | "Failed"))
}

/// A condition as the kubelet generates it: status and reason. No message: the operator
/// reads none and the recordings hold none (e2e/README.md).
type Generated = (bool, Option<&'static str>);

/// `GeneratePodInitializedCondition` (`pkg/kubelet/status/generate.go`): every sidecar
/// started and every regular init container completed, or a regular container ran.
fn initialized(facts: &Facts, s: &PodStatus, phase: &str) -> Generated {
    if phase == "Succeeded" {
        return (true, Some("PodCompleted"));
    }
    let incomplete = facts.containers.iter().any(|d| {
        find(s, &d.name).is_some_and(|c| match d.kind {
            Kind::Sidecar => c.started != Some(true),
            Kind::Init => !c.ready,
            Kind::Regular => false,
        })
    });
    if incomplete && !any_regular_started(facts, s) {
        (false, Some("ContainersNotInitialized"))
    } else {
        (true, None)
    }
}

/// `GenerateContainersReadyCondition`: every sidecar and regular container ready. It is also
/// `Ready`'s (`GeneratePodReadyCondition`): no test Pod has readiness gates.
fn containers_ready(facts: &Facts, s: &PodStatus, phase: &str) -> Generated {
    match phase {
        "Succeeded" => return (false, Some("PodCompleted")),
        "Failed" => return (false, Some("PodFailed")),
        _ => {}
    }
    let ready =
        facts.containers.iter().filter(|d| d.kind != Kind::Init).all(|d| find(s, &d.name).is_some_and(|c| c.ready));
    if ready {
        (true, None)
    } else {
        (false, Some("ContainersNotReady"))
    }
}

/// The conditions the kubelet owns, in the order it writes them (`generateAPIPodStatus`;
/// recorded: `PodReadyToStartContainers, Initialized, Ready, ContainersReady, PodScheduled`).
/// The conditions of other writers come first, in their order.
const KUBELET_ORDER: [&str; 8] = [
    "PodResizePending",
    "PodResizeInProgress",
    "PodReadyToStartContainers",
    "Initialized",
    "Ready",
    "ContainersReady",
    "PodScheduled",
    "AllContainersRestarting",
];

/// Sets a condition, keeping `lastTransitionTime` when the status is unchanged.
fn put_condition(conditions: &mut Vec<PodCondition>, type_: &str, generated: Generated, at: &Time) {
    let (status, reason) = generated;
    let value = if status { "True" } else { "False" };
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(c) => {
            if c.status != value {
                c.last_transition_time = Some(at.clone());
            }
            c.status = value.into();
            c.reason = reason.map(str::to_string);
        }
        None => conditions.push(PodCondition {
            type_: type_.into(),
            status: value.into(),
            reason: reason.map(str::to_string),
            last_transition_time: Some(at.clone()),
            ..Default::default()
        }),
    }
}

/// The probe manager's rules (`UpdatePodStatus`), on every status: a container that does not
/// run is neither started nor ready (except a regular init container that completed: ready);
/// one not started is not ready.
fn probe_invariants(facts: &Facts, s: &mut PodStatus) {
    for d in &facts.containers {
        if let Some(c) = find_mut(s, &d.name) {
            if !running(c) {
                c.started = Some(false);
                c.ready = d.kind == Kind::Init && terminated_state(c).is_some_and(|t| t.exit_code == 0);
            } else if c.started == Some(false) {
                c.ready = false;
            }
        }
    }
}

fn sort_conditions(conditions: &mut [PodCondition]) {
    let rank = |c: &PodCondition| KUBELET_ORDER.iter().position(|t| *t == c.type_).map_or(0, |i| i + 1);
    conditions.sort_by_key(rank);
}

/// What the kubelet writes beside the container statuses in a pod sync
/// (`generateAPIPodStatus`): the probe manager's rules, `startTime`, the phase and the
/// kubelet's conditions. A terminal phase reached while the Pod is not being deleted is held
/// back (`held` is true) when `hold_terminal` says so: the kubelet writes it in a status of
/// its own once it has stopped the sandbox (recorded: a Job's last container ends with
/// `PodReadyToStartContainers=False`, `Succeeded` follows in the next write).
fn sync(facts: &Facts, s: &mut PodStatus, at: &Time, hold_terminal: bool) -> bool {
    probe_invariants(facts, s);
    if s.start_time.is_none() {
        s.start_time = Some(at.clone());
    }
    let any_running =
        s.init_container_statuses.iter().flatten().chain(s.container_statuses.iter().flatten()).any(running);
    let was = s.phase.clone();
    let computed = if terminal(was.as_deref()) {
        was.clone().unwrap_or_default()
    } else {
        phase(facts, s, facts.deleting && !any_running).to_string()
    };
    let finished = terminal(Some(&computed));
    let held = finished && !terminal(was.as_deref()) && hold_terminal && !facts.deleting;
    s.phase = Some(if held { was.unwrap_or_else(|| "Pending".into()) } else { computed.clone() });

    let mut conditions = s.conditions.take().unwrap_or_default();
    // The sandbox: up while anything runs, torn down once the Pod is finished; otherwise as
    // it was (False until the test says it is up: `PodDriver::sandbox_ready`).
    let sandbox_was = conditions.iter().any(|c| c.type_ == "PodReadyToStartContainers" && c.status == "True");
    let sandbox = !finished && (any_running || sandbox_was);
    put_condition(&mut conditions, "PodReadyToStartContainers", (sandbox, None), at);
    put_condition(&mut conditions, "Initialized", initialized(facts, s, &computed), at);
    let containers = containers_ready(facts, s, &computed);
    put_condition(&mut conditions, "Ready", containers, at);
    put_condition(&mut conditions, "ContainersReady", containers, at);
    if !conditions.iter().any(|c| c.type_ == "PodScheduled") {
        put_condition(&mut conditions, "PodScheduled", (true, None), at);
    }
    sort_conditions(&mut conditions);
    s.conditions = Some(conditions);
    held
}

/// What a readiness probe result writes (`SetContainerReadiness`): the container's `ready`,
/// `Ready` and `ContainersReady`, nothing else (recorded: `Initialized` and the phase wait for
/// the next pod sync).
fn readiness(facts: &Facts, s: &mut PodStatus, at: &Time) {
    probe_invariants(facts, s);
    let phase = s.phase.clone().unwrap_or_else(|| "Pending".into());
    let mut conditions = s.conditions.take().unwrap_or_default();
    let containers = containers_ready(facts, s, &phase);
    put_condition(&mut conditions, "Ready", containers, at);
    put_condition(&mut conditions, "ContainersReady", containers, at);
    sort_conditions(&mut conditions);
    s.conditions = Some(conditions);
}

/// What a write derives besides what its step changes: which kind of kubelet write it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Derive {
    /// A pod sync (`generateAPIPodStatus`): everything; a terminal phase reached without a
    /// deletion waits for a write of its own ([`Derive::Final`]).
    Sync,
    /// The pod sync that writes the terminal phase a [`Derive::Sync`] held back.
    Final,
    /// A readiness probe result: `ready`, `Ready`, `ContainersReady`.
    Readiness,
    /// A startup probe result (`SetContainerStartup`): `started` alone; a pod sync follows
    /// (recorded: `Initialized=True` comes in the next write).
    Startup,
}

impl Derive {
    /// Derives into `s`; returns the kind of the kubelet's next write, when it makes one.
    fn apply(self, facts: &Facts, s: &mut PodStatus, at: &Time) -> Option<Derive> {
        match self {
            Derive::Sync => sync(facts, s, at, true).then_some(Derive::Final),
            Derive::Final => {
                sync(facts, s, at, false);
                None
            }
            Derive::Readiness => {
                readiness(facts, s, at);
                None
            }
            Derive::Startup => {
                probe_invariants(facts, s);
                Some(Derive::Sync)
            }
        }
    }
}

/// The start of the container's current or last run.
fn run_start(c: &ContainerStatus) -> Option<Time> {
    let state = c.state.as_ref()?;
    state.running.as_ref().and_then(|r| r.started_at.clone()).or(state.terminated.as_ref()?.started_at.clone())
}

/// A container moves to `state` the way the kubelet reports it.
fn transition(d: &Declared, c: &mut ContainerStatus, state: &State, at: &Time) {
    let current = c.state.clone().unwrap_or_default();
    match state {
        State::Running => {
            if current.running.is_some() {
                return;
            }
            // A new instance after an exit: the exit becomes `lastState`, the count goes up.
            if let Some(t) = current.terminated {
                c.last_state = Some(ContainerState { terminated: Some(t), ..Default::default() });
                c.restart_count += 1;
            } else if current.waiting.is_some() && last_terminated(c).is_some() {
                c.restart_count += 1;
            }
            c.state = Some(State::Running.at(at));
            c.started = Some(!d.startup_probe);
            c.ready = !d.startup_probe && !d.readiness_probe;
        }
        State::Terminated { reason, exit_code } => {
            let started_at = current.running.and_then(|r| r.started_at);
            c.state = Some(ContainerState {
                terminated: Some(terminated(reason, *exit_code, started_at, at)),
                ..Default::default()
            });
        }
        State::Waiting { reason, message } => {
            if let Some(t) = current.terminated {
                c.last_state = Some(ContainerState { terminated: Some(t), ..Default::default() });
            }
            c.state = Some(State::Waiting { reason: reason.clone(), message: message.clone() }.at(at));
        }
    }
}

/// One thing the kubelet does to a Pod's status (each [`PodDriver`] method but the raw ones).
#[derive(Debug, Clone)]
enum Step {
    /// The first status.
    Admit,
    /// `PodReadyToStartContainers=True`.
    SandboxReady,
    /// A container's new state.
    State(String, State),
    /// A readiness probe result.
    Ready(String, bool),
    /// A startup probe result.
    Started(String, bool),
    /// Killed and started again in one write.
    Restart { container: String, reason: String, exit_code: i32, ready: bool },
    /// Exited and waiting in `CrashLoopBackOff`, in one write.
    CrashLoop { container: String, reason: String, exit_code: i32 },
    /// The end of a termination: containers' states with how long ago they were reached.
    Stop(Vec<(String, State, Duration)>),
    /// Everything running and ready.
    RunAll,
}

impl Step {
    fn derive(&self) -> Derive {
        match self {
            Step::Ready(..) => Derive::Readiness,
            Step::Started(..) => Derive::Startup,
            _ => Derive::Sync,
        }
    }

    /// Applies the step; `Err` names a container the Pod does not have.
    fn apply(&self, facts: &Facts, s: &mut PodStatus, at: &Time) -> Result<(), String> {
        let mut one = |name: &str, f: &mut dyn FnMut(&Declared, &mut ContainerStatus)| {
            let d = facts.declared(name).ok_or_else(|| name.to_string())?;
            f(d, find_mut(s, name).ok_or_else(|| name.to_string())?);
            Ok::<(), String>(())
        };
        match self {
            Step::Admit => {}
            Step::SandboxReady => {
                put_condition(s.conditions.get_or_insert_with(Vec::new), "PodReadyToStartContainers", (true, None), at)
            }
            Step::State(name, state) => one(name, &mut |d, c| transition(d, c, state, at))?,
            Step::Ready(name, ready) => one(name, &mut |_, c| c.ready = *ready && running(c))?,
            Step::Started(name, started) => one(name, &mut |_, c| c.started = Some(*started && running(c)))?,
            Step::Restart { container, reason, exit_code, ready } => one(container, &mut |d, c| {
                c.last_state = Some(ContainerState {
                    terminated: Some(terminated(reason, *exit_code, run_start(c), at)),
                    ..Default::default()
                });
                c.restart_count += 1;
                c.state = Some(State::Running.at(at));
                c.started = Some(!d.startup_probe);
                c.ready = *ready && !d.startup_probe;
            })?,
            Step::CrashLoop { container, reason, exit_code } => one(container, &mut |d, c| {
                c.state = Some(ContainerState {
                    terminated: Some(terminated(reason, *exit_code, run_start(c), at)),
                    ..Default::default()
                });
                transition(d, c, &State::waiting("CrashLoopBackOff"), at);
            })?,
            Step::Stop(stops) => {
                for (name, state, ago) in stops {
                    let ago = jiff::SignedDuration::try_from(*ago).unwrap_or_default();
                    let finished = Time(at.0.checked_sub(ago).unwrap_or(at.0));
                    one(name, &mut |d, c| transition(d, c, state, &finished))?;
                }
                for d in &facts.containers {
                    if let Some(c) = find_mut(s, &d.name).filter(|c| running(c)) {
                        transition(d, c, &State::terminated("Completed", 0), at);
                    }
                }
            }
            Step::RunAll => {
                for d in &facts.containers {
                    let Some(c) = find_mut(s, &d.name) else { continue };
                    if d.kind == Kind::Init {
                        if terminated_state(c).is_none_or(|t| t.exit_code != 0) {
                            c.state = Some(ContainerState {
                                terminated: Some(terminated("Completed", 0, Some(at.clone()), at)),
                                ..Default::default()
                            });
                        }
                        continue;
                    }
                    transition(d, c, &State::Running, at);
                    c.started = Some(true);
                    c.ready = true;
                }
            }
        }
        Ok(())
    }
}

impl PodDriver {
    /// Driver for Pod `name` in `namespace`.
    pub fn new(client: Client, namespace: &str, name: &str) -> Self {
        Self {
            api: Api::namespaced(client.clone(), namespace),
            raw: Api::namespaced_with(client, namespace, &ApiResource::erase::<Pod>(&())),
            name: name.into(),
        }
    }

    /// The Pod's current state.
    pub async fn get(&self) -> Result<Pod> {
        Ok(self.api.get(&self.name).await?)
    }

    /// The Pod, and what the kubelet reads in its spec (including fields newer than the
    /// crate's Kubernetes types, such as `restartPolicyRules`).
    async fn read(&self) -> Result<(Pod, Facts)> {
        let raw = serde_json::to_value(self.raw.get(&self.name).await?).map_err(kube::Error::SerdeError)?;
        let pod: Pod = serde_json::from_value(raw.clone()).map_err(kube::Error::SerdeError)?;
        let facts = Facts::new(&pod.metadata, pod.spec.as_ref().unwrap_or(&PodSpec::default()), &raw["spec"]);
        Ok((pod, facts))
    }

    /// The kubelet's writes for one change: `f` changes the status read, `derive` says what
    /// the write derives, and the kubelet's follow-up writes come after (a held-back terminal
    /// phase, the pod sync after a startup probe result). Returns the Pod last written.
    async fn write<F>(&self, derive: Derive, mut f: F) -> Result<Pod>
    where
        F: FnMut(&Facts, &PodSpec, &mut PodStatus, &Time) -> Result<()>,
    {
        let (mut pod, mut next) = self.put(derive, &mut f, false).await?;
        while let Some(d) = next {
            (pod, next) = self.put(d, &mut |_: &Facts, _: &PodSpec, _: &mut PodStatus, _: &Time| Ok(()), true).await?;
        }
        Ok(pod)
    }

    /// One read-modify-write (`PUT /status` with the resourceVersion read), retried on 409
    /// Conflict; a follow-up that changes nothing is not written.
    async fn put<F>(&self, derive: Derive, f: &mut F, follow_up: bool) -> Result<(Pod, Option<Derive>)>
    where
        F: FnMut(&Facts, &PodSpec, &mut PodStatus, &Time) -> Result<()>,
    {
        for _ in 0..20 {
            let (mut pod, facts) = self.read().await?;
            let before = pod.status.clone();
            let at = now();
            let spec = pod.spec.clone().unwrap_or_default();
            let status = pod.status.get_or_insert_with(Default::default);
            ensure_statuses(&spec, status);
            f(&facts, &spec, status, &at)?;
            let next = derive.apply(&facts, status, &at);
            if follow_up && pod.status == before {
                return Ok((pod, next));
            }
            match self.api.replace_status(&self.name, &PostParams::default(), &pod).await {
                Ok(p) => return Ok((p, next)),
                Err(kube::Error::Api(s)) if s.code == 409 => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(KubeletError::Conflicts(self.name.clone()))
    }

    async fn step(&self, step: Step) -> Result<Pod> {
        let pod = self.name.clone();
        self.write(step.derive(), |facts, _, status, at| {
            step.apply(facts, status, at)
                .map_err(|container| KubeletError::NoSuchContainer { pod: pod.clone(), container })
        })
        .await
    }

    /// Read-modify-write of the Pod status (`PUT /status`), retried on 409 Conflict.
    /// Status entries for every container in the spec are created on first use (the
    /// kubelet's first status); after `f`, what the kubelet derives from the container
    /// statuses in a pod sync is written with them (see the module's documentation). A Pod
    /// that finishes (`Succeeded`, `Failed`) without being deleted gets its phase in a second
    /// write, as from the kubelet.
    pub async fn update<F>(&self, mut f: F) -> Result<Pod>
    where
        F: FnMut(&PodSpec, &mut PodStatus) -> Result<()>,
    {
        self.write(Derive::Sync, |_, spec, status, _| f(spec, status)).await
    }

    /// The kubelet's first status of the Pod: every container waiting (`PodInitializing` or
    /// `ContainerCreating`), phase `Pending`, `startTime`, and its conditions False but
    /// `Initialized` of a Pod without init containers.
    pub async fn admit(&self) -> Result<Pod> {
        self.step(Step::Admit).await
    }

    /// The sandbox is up (`PodReadyToStartContainers=True`), no container runs yet: the
    /// kubelet's second status (recorded 0.5–1 s after its first).
    pub async fn sandbox_ready(&self) -> Result<Pod> {
        self.step(Step::SandboxReady).await
    }

    /// Container `container` moves to `state`, in one write, as the kubelet reports it:
    /// - `Running`: started, and ready, unless the spec has a startup probe (not started yet,
    ///   see [`Self::set_started`]) or a readiness probe (not ready yet, [`Self::set_ready`]).
    ///   After an exit (terminated, or waiting with a `lastState`), a new instance: the exit
    ///   becomes `lastState.terminated` and `restartCount` goes up by one. Already running:
    ///   nothing changes.
    /// - `Terminated`: finished now, `startedAt` the run's start; not started, not ready (a
    ///   regular init container that completed is ready); `restartCount` unchanged.
    /// - `Waiting`: after an exit, the exit moves to `lastState`; `restartCount` unchanged.
    pub async fn set_state(&self, container: &str, state: State) -> Result<Pod> {
        self.step(Step::State(container.into(), state)).await
    }

    /// A readiness probe result: `ready` of a running, started container (the kubelet takes
    /// none from a container that does not run or has not started), with `Ready` and
    /// `ContainersReady` in the same write and nothing else.
    pub async fn set_ready(&self, container: &str, ready: bool) -> Result<Pod> {
        self.step(Step::Ready(container.into(), ready)).await
    }

    /// A startup probe result: `started` of a running container, alone in its write (not
    /// started: not ready); the pod sync that follows writes what it implies (`Initialized`).
    pub async fn set_started(&self, container: &str, started: bool) -> Result<Pod> {
        self.step(Step::Started(container.into(), started)).await
    }

    /// The container is killed and started again in one write, as the kubelet does when no
    /// back-off holds it (a failed liveness probe: `Error`, 137): `lastState.terminated` gets
    /// the exit (`startedAt` the run's start, finished now), `restartCount` goes up by one
    /// and a new run starts now — started unless the spec has a startup probe, `ready` as
    /// given once started.
    pub async fn restart(&self, container: &str, reason: &str, exit_code: i32, ready: bool) -> Result<Pod> {
        self.step(Step::Restart { container: container.into(), reason: reason.into(), exit_code, ready }).await
    }

    /// The container exits (`reason`, `exit_code`) and waits in `CrashLoopBackOff`, in one
    /// write, as the kubelet writes a liveness kill under back-off: the exit is
    /// `lastState.terminated`, `restartCount` unchanged (it goes up when the next run starts:
    /// `set_state(.., State::Running)`), not started, not ready.
    pub async fn crash_loop(&self, container: &str, reason: &str, exit_code: i32) -> Result<Pod> {
        self.step(Step::CrashLoop { container: container.into(), reason: reason.into(), exit_code }).await
    }

    /// The kubelet's one write at the end of a Pod's termination (it writes nothing while it
    /// stops the containers; recorded): each container of `stops` in its state reached `ago`
    /// before this write, every other still running one `Completed` (0) now; then the phase
    /// (`Succeeded`, or `Failed` if a regular container failed), the sandbox down. The kubelet
    /// then deletes the Pod with grace period 0 (the test's part).
    pub async fn stop(&self, stops: &[(&str, State, Duration)]) -> Result<Pod> {
        self.step(Step::Stop(stops.iter().map(|(n, s, ago)| (n.to_string(), s.clone(), *ago)).collect())).await
    }

    /// Sets a Pod condition in a pod sync (one the kubelet writes beside its own, such as
    /// `PodResizeInProgress`); `lastTransitionTime` changes only when the status changes.
    pub async fn set_condition(&self, type_: &str, status: bool, reason: Option<&str>) -> Result<Pod> {
        self.update(|_, s| {
            set_condition(s, type_, status, reason);
            Ok(())
        })
        .await
    }

    /// Makes the Pod fully running: regular init containers completed, every container and
    /// sidecar running, started and ready (probes passed), phase `Running`, every condition
    /// True.
    pub async fn run_all(&self) -> Result<Pod> {
        self.step(Step::RunAll).await
    }
}

/// What the kubelet writes beside the container statuses in a pod sync (see the module's
/// documentation), for a status written without the driver (into the simulator's state,
/// directly): one write, the terminal phase included.
pub fn derive_status(pod: &mut Pod) {
    let raw = serde_json::to_value(&pod.spec).unwrap_or_default();
    let spec = pod.spec.clone().unwrap_or_default();
    let facts = Facts::new(&pod.metadata, &spec, &raw);
    let status = pod.status.get_or_insert_with(Default::default);
    ensure_statuses(&spec, status);
    sync(&facts, status, &now(), false);
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

#[cfg(test)]
mod recorded;

#[cfg(test)]
mod tests {
    use super::*;

    /// The recordings hold one restart rule's exit (42, restarted); the other way, an exit
    /// the rules do not restart ends a `Never` container and fails the Pod.
    #[test]
    fn an_exit_no_rule_restarts_ends_a_never_container() {
        let spec = json!({"restartPolicy": "Never", "containers": [{"name": "train", "image": "b",
            "restartPolicy": "Never",
            "restartPolicyRules": [{"action": "Restart", "exitCodes": {"operator": "In", "values": [42]}}]}]});
        let typed: PodSpec = serde_json::from_value(spec.clone()).unwrap();
        let facts = Facts::new(&ObjectMeta::default(), &typed, &spec);
        let train = facts.declared("train").unwrap();
        let at = Time("2026-01-01T00:00:00Z".parse().unwrap());
        let mut s = PodStatus::default();
        ensure_statuses(&typed, &mut s);
        for (code, phase) in [(42, "Running"), (1, "Failed")] {
            transition(train, find_mut(&mut s, "train").unwrap(), &State::Running, &at);
            transition(train, find_mut(&mut s, "train").unwrap(), &State::terminated("Error", code), &at);
            assert!(!sync(&facts, &mut s, &at, false));
            assert_eq!(s.phase.as_deref(), Some(phase), "exit {code}");
        }
    }
}
