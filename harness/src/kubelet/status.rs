//! What the kubelet derives from the container statuses in each status it writes, ported
//! from kubelet 1.37: the phase (`getPhase`, `kubelet_pods.go`), its conditions in its
//! order (`pkg/kubelet/status/generate.go`, `generateAPIPodStatus`), `startTime`, the probe
//! manager's rules for `started` and `ready`, and which kind of write derives what
//! ([`Derive`]): checked against the real kubelet's writes by `recorded.rs`.

use k8s_openapi::api::core::v1::{ContainerStateTerminated, ContainerStatus, Pod, PodCondition, PodSpec, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::spec::{Declared, Facts, Kind};
use super::{now, State};

/// The status of container `name`, init or regular.
pub(super) fn find<'a>(s: &'a PodStatus, name: &str) -> Option<&'a ContainerStatus> {
    s.init_container_statuses.iter().flatten().chain(s.container_statuses.iter().flatten()).find(|c| c.name == name)
}

/// The status of container `name`, init or regular, to change.
pub(super) fn find_mut<'a>(s: &'a mut PodStatus, name: &str) -> Option<&'a mut ContainerStatus> {
    s.init_container_statuses
        .iter_mut()
        .flatten()
        .chain(s.container_statuses.iter_mut().flatten())
        .find(|c| c.name == name)
}

/// Whether the container runs.
pub(super) fn running(c: &ContainerStatus) -> bool {
    c.state.as_ref().is_some_and(|s| s.running.is_some())
}

/// The container's exit, while it is its state.
pub(super) fn terminated_state(c: &ContainerStatus) -> Option<&ContainerStateTerminated> {
    c.state.as_ref().and_then(|s| s.terminated.as_ref())
}

/// The container's previous exit (`lastState.terminated`).
pub(super) fn last_terminated(c: &ContainerStatus) -> Option<&ContainerStateTerminated> {
    c.last_state.as_ref().and_then(|s| s.terminated.as_ref())
}

/// The kubelet's first status for a container: waiting, `PodInitializing` in a Pod with init
/// containers, `ContainerCreating` otherwise (recorded), not started, not ready; the lists in
/// the kubelet's order.
pub(super) fn ensure_statuses(spec: &PodSpec, status: &mut PodStatus) {
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

/// Whether the phase is final: the kubelet never changes it again.
fn terminal(phase: Option<&str>) -> bool {
    matches!(phase, Some("Succeeded" | "Failed"))
}

/// A condition as the kubelet generates it: status and reason. No message: the operator
/// reads none and the recordings hold none (harness/README.md).
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

/// Sets a condition to (status, reason), keeping `lastTransitionTime` when the status is
/// unchanged.
pub(super) fn put_condition(conditions: &mut Vec<PodCondition>, type_: &str, to: (bool, Option<&str>), at: &Time) {
    let (status, reason) = to;
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

/// Puts the conditions in the kubelet's order ([`KUBELET_ORDER`]).
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
pub(super) fn sync(facts: &Facts, s: &mut PodStatus, at: &Time, hold_terminal: bool) -> bool {
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
pub(super) enum Derive {
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
    pub(super) fn apply(self, facts: &Facts, s: &mut PodStatus, at: &Time) -> Option<Derive> {
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

/// What the kubelet writes beside the container statuses in a pod sync (see the module's
/// documentation), for a status written without the driver (into the simulator's state,
/// directly): one write, the terminal phase included.
pub fn derive_status(pod: &mut Pod) {
    // The typed Pod has lost any `restartPolicyRules`: no Pod written this way has them.
    let raw = serde_json::to_value(&pod.spec).unwrap_or_default();
    let spec = pod.spec.clone().unwrap_or_default();
    let facts = Facts::new(&pod.metadata, &spec, &raw);
    let status = pod.status.get_or_insert_with(Default::default);
    ensure_statuses(&spec, status);
    sync(&facts, status, &now(), false);
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use serde_json::json;

    use super::*;
    use crate::kubelet::steps::transition;

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
