//! The compact view of a Pod that the engine evaluates.
//!
//! Extracted once per watch event from a [`SlimPod`] and kept instead of it: only
//! what the rules read, with the static spec checks reduced to flags, so the operator's memory
//! per tracked Pod stays small.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::catalog::{self, CatalogId};
use super::name::{Interner, LabelSet, Name};
use super::relations::{liveness_targets, port_conflicts, workload_of, Declared, LivenessTarget, Workload};
use super::stamp::Stamp;
use crate::api::SlimTerminated;
use crate::api::{SlimContainer, SlimContainerStatus, SlimPod};
use jiff::Timestamp;

/// Termination messages are kept only this long (they can be 4 KiB each in the API).
const MAX_MESSAGE_LEN: usize = 256;

/// Where a container is declared in the Pod spec.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ContainerKind {
    /// `spec.initContainers` without `restartPolicy: Always`: runs to completion first.
    Init,
    /// `spec.initContainers` with `restartPolicy: Always`: a native sidecar.
    RestartableInit,
    /// `spec.containers`.
    Regular,
}

bitflags::bitflags! {
    /// Static facts about a container's spec.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
    pub struct SpecFlags: u8 {
        const READINESS_PROBE = 1;
        const STARTUP_PROBE = 1 << 1;
        const LIVENESS_PROBE = 1 << 2;
        /// Declares resource requests or limits.
        const RESOURCES = 1 << 3;
        /// Its image has no tag and no digest, or the tag `latest`.
        const LATEST_IMAGE = 1 << 4;
        /// Declares a container port that another container of the Pod declares too.
        const PORT_CONFLICT = 1 << 5;
        /// Has a `postStart` hook: the kubelet waits for it before starting the next container.
        const POST_START = 1 << 6;
    }
}

/// How a container last ended (current or previous run).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Termination {
    /// `reason`, e.g. `OOMKilled`, `Error`, `Completed`.
    pub reason: Option<Name>,
    /// The process exit code.
    pub exit_code: i32,
    /// When the run started.
    pub started_at: Option<Stamp>,
    /// When the run ended.
    pub finished_at: Option<Stamp>,
    /// The termination message, truncated.
    pub message: Option<Box<str>>,
}

/// The current state of a container as the kubelet reports it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum ContainerState {
    /// Not running yet or between restarts; `reason` e.g. `CrashLoopBackOff`.
    Waiting {
        /// Why it waits.
        reason: Option<Name>,
    },
    /// Running since `started_at`.
    Running {
        /// When the current run started.
        started_at: Option<Stamp>,
    },
    /// Ended (boxed: rare, and the largest variant).
    Terminated(Box<Termination>),
    /// No state reported.
    #[default]
    Unknown,
}

/// The status part of a container.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContainerStatusView {
    /// The kubelet's `ready`.
    pub ready: bool,
    /// The kubelet's `started` (startup probe passed), when reported.
    pub started: Option<bool>,
    /// How often the container restarted.
    pub restart_count: u32,
    /// The current state.
    pub state: ContainerState,
    /// `lastState.terminated`: how the previous run ended (boxed: most containers have none).
    pub last_termination: Option<Box<Termination>>,
}

impl ContainerStatusView {
    /// When the current run started, if it is running.
    pub fn running_since(&self) -> Option<Timestamp> {
        self.run_start().map(Stamp::timestamp)
    }

    /// [`Self::running_since`] as stored, for what is stored beside it (the history).
    pub fn run_start(&self) -> Option<Stamp> {
        match self.state {
            ContainerState::Running { started_at } => started_at,
            _ => None,
        }
    }

    /// Whether the container is running.
    pub fn is_running(&self) -> bool {
        matches!(self.state, ContainerState::Running { .. })
    }

    /// Whether the container is terminated.
    pub fn terminated(&self) -> Option<&Termination> {
        match &self.state {
            ContainerState::Terminated(t) => Some(&**t),
            _ => None,
        }
    }

    /// The `waiting` reason, if waiting.
    pub fn waiting_reason(&self) -> Option<&str> {
        match &self.state {
            ContainerState::Waiting { reason } => reason.as_deref(),
            _ => None,
        }
    }

    /// The most recent termination: the current state if terminated, else `lastState`.
    pub fn latest_termination(&self) -> Option<&Termination> {
        self.terminated().or(self.last_termination.as_deref())
    }
}

/// One container: where it is declared, static spec facts, and its status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerView {
    /// The container name.
    pub name: Name,
    /// Where it is declared.
    pub kind: ContainerKind,
    /// Static spec facts.
    pub flags: SpecFlags,
    /// The built-in catalog's entry, when its name or image is a well-known sidecar's.
    pub catalog: Option<CatalogId>,
    /// The other container whose port this one's liveness probe targets, if any.
    pub liveness_target: Option<LivenessTarget>,
    /// Its status; `None` until the kubelet reports one.
    pub status: Option<ContainerStatusView>,
}

impl ContainerView {
    /// Whether the kubelet reports it ready.
    pub fn is_ready(&self) -> bool {
        self.status.as_ref().is_some_and(|s| s.ready)
    }

    /// Whether it is running.
    pub fn is_running(&self) -> bool {
        self.status.as_ref().is_some_and(ContainerStatusView::is_running)
    }
}

/// A Pod condition: its truth and when it last changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConditionView {
    /// `status == "True"`.
    pub status: bool,
    /// `lastTransitionTime`.
    pub since: Option<Stamp>,
}

/// Everything the rules read about one Pod.
///
/// Strings and lists are boxed slices, not `String`s and `Vec`s: a view is built once and
/// never grows, so a capacity field and spare capacity would be kept for nothing in every
/// tracked Pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodView {
    /// `metadata.uid`.
    pub uid: Box<str>,
    /// `metadata.namespace`.
    pub namespace: Name,
    /// `metadata.name`.
    pub name: Box<str>,
    /// `metadata.labels`, shared with every Pod that has the same ones.
    pub labels: LabelSet,
    /// Whether an owner reference is a `batch/v1` Job (or, for a template, the workload is a
    /// Job or CronJob).
    pub owned_by_job: bool,
    /// The workload that owns the Pod, shared by its replicas; `None` for a Pod without
    /// owner (see [`Self::workload`]).
    pub owner: Option<Arc<Workload>>,
    /// A Pod template of a workload manifest (`audit`), not a Pod: it has no status and no
    /// clocks, and its name is `<Kind>/<name>`.
    pub is_template: bool,
    /// `metadata.creationTimestamp`.
    pub created_at: Option<Stamp>,
    /// `status.startTime`: when the kubelet accepted the Pod.
    pub started_at: Option<Stamp>,
    /// `metadata.deletionTimestamp`: the Pod is terminating.
    pub deleting_since: Option<Stamp>,
    /// The `Ready` condition.
    pub ready_condition: Option<ConditionView>,
    /// Init containers first, in spec order, then regular containers.
    pub containers: Box<[ContainerView]>,
}

impl PodView {
    /// Extracts the view from a Pod with names of its own. Never fails: missing fields are
    /// absent in the view (a Pending Pod without status is still evaluated). For one-off views;
    /// many Pods share their names through [`Self::from_pod_in`].
    pub fn from_pod(pod: &SlimPod) -> PodView {
        Self::from_pod_in(pod, &mut Interner::default())
    }

    /// [`Self::from_pod`], sharing names and label sets with every view built through `names`.
    pub fn from_pod_in(pod: &SlimPod, names: &mut Interner) -> PodView {
        let meta = &pod.metadata;
        let (spec, status) = (&pod.spec, &pod.status);
        let init_statuses = statuses_by_name(&status.init_container_statuses);
        let regular_statuses = statuses_by_name(&status.container_statuses);

        let mut containers = Vec::with_capacity(spec.init_containers.len() + spec.containers.len());
        // The API server rejects two containers with one name; a hand-made dump may not. The
        // first keeps the name, so one container never yields two sets of alerts.
        // A set, not a scan: a hostile Pod may declare thousands of containers.
        let mut declared: Vec<&SlimContainer> = Vec::with_capacity(containers.capacity());
        let mut seen: HashSet<&str> = HashSet::with_capacity(containers.capacity());
        for (c, kind) in spec
            .init_containers
            .iter()
            .map(|c| (c, init_kind(c)))
            .chain(spec.containers.iter().map(|c| (c, ContainerKind::Regular)))
        {
            if !seen.insert(c.name.as_str()) {
                continue;
            }
            let statuses = if kind == ContainerKind::Regular { &regular_statuses } else { &init_statuses };
            containers.push(container_view(c, kind, statuses.get(c.name.as_str()), names));
            declared.push(c);
        }
        let facts: Vec<Declared> = declared
            .iter()
            .zip(&containers)
            .map(|(spec, view)| Declared {
                spec,
                runs_alongside: view.kind != ContainerKind::Init,
                catalog: view.catalog,
            })
            .collect();
        for (view, conflict) in containers.iter_mut().zip(port_conflicts(&facts)) {
            view.flags.set(SpecFlags::PORT_CONFLICT, conflict);
        }
        for (view, target) in containers.iter_mut().zip(liveness_targets(&facts)) {
            view.liveness_target = target;
        }

        let ready_condition = status.conditions.iter().find(|c| c.type_ == "Ready").map(|c| ConditionView {
            status: c.status == "True",
            since: c.last_transition_time.as_ref().map(|t| Stamp::new(t.0)),
        });

        PodView {
            uid: meta.uid.as_deref().unwrap_or_default().into(),
            namespace: names.name(meta.namespace.as_deref().unwrap_or_default()),
            name: meta.name.as_deref().unwrap_or_default().into(),
            labels: names.label_set(meta.labels.clone().unwrap_or_default()),
            owned_by_job: meta
                .owner_references
                .iter()
                .flatten()
                .any(|o| o.kind == "Job" && o.api_version.starts_with("batch/")),
            owner: workload_of(meta, names),
            is_template: false,
            created_at: meta.creation_timestamp.as_ref().map(|t| Stamp::new(t.0)),
            started_at: status.start_time.as_ref().map(|t| Stamp::new(t.0)),
            deleting_since: meta.deletion_timestamp.as_ref().map(|t| Stamp::new(t.0)),
            ready_condition,
            containers: containers.into_boxed_slice(),
        }
    }

    /// The view of a workload's Pod template (`spec.template` of a Deployment, a Job…) for
    /// `audit`: named `<Kind>/<name>`, owned by that workload, without status or clocks.
    pub fn from_template(template: &SlimPod, kind: &str, name: &str) -> PodView {
        let mut view = PodView::from_pod(template);
        view.name = format!("{kind}/{name}").into();
        view.uid = format!("{kind}/{}/{name}", view.namespace).into();
        view.owner = Some(Arc::new(Workload { kind: Name::new(kind), name: Name::new(name) }));
        view.owned_by_job = matches!(kind, "Job" | "CronJob");
        view.is_template = true;
        (view.created_at, view.started_at, view.deleting_since, view.ready_condition) = (None, None, None, None);
        for c in &mut view.containers {
            c.status = None;
        }
        view
    }

    /// The workload's kind and name: the owner, or `Pod` and the Pod's own name.
    pub fn workload(&self) -> (&str, &str) {
        match &self.owner {
            Some(w) => (w.kind.as_str(), w.name.as_str()),
            None => ("Pod", &self.name),
        }
    }

    /// When the Pod began running containers (`status.startTime`, else creation).
    pub fn start_time(&self) -> Option<Timestamp> {
        self.started_at.or(self.created_at).map(Stamp::timestamp)
    }

    /// `namespace/name`, for messages.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

fn init_kind(c: &SlimContainer) -> ContainerKind {
    if c.restart_policy.as_deref() == Some("Always") {
        ContainerKind::RestartableInit
    } else {
        ContainerKind::Init
    }
}

fn statuses_by_name(list: &[SlimContainerStatus]) -> HashMap<&str, &SlimContainerStatus> {
    list.iter().map(|s| (s.name.as_str(), s)).collect()
}

fn container_view(
    c: &SlimContainer,
    kind: ContainerKind,
    status: Option<&&SlimContainerStatus>,
    names: &mut Interner,
) -> ContainerView {
    let mut flags = SpecFlags::default();
    if c.readiness_probe.is_some() {
        flags.insert(SpecFlags::READINESS_PROBE);
    }
    if c.startup_probe.is_some() {
        flags.insert(SpecFlags::STARTUP_PROBE);
    }
    if c.liveness_probe.is_some() {
        flags.insert(SpecFlags::LIVENESS_PROBE);
    }
    if c.resources.requests.0 || c.resources.limits.0 {
        flags.insert(SpecFlags::RESOURCES);
    }
    if c.image.as_deref().is_some_and(is_latest_image) {
        flags.insert(SpecFlags::LATEST_IMAGE);
    }
    if c.lifecycle.post_start.is_some() {
        flags.insert(SpecFlags::POST_START);
    }
    ContainerView {
        name: names.name(&c.name),
        kind,
        flags,
        catalog: catalog::recognise(&c.name, c.image.as_deref(), c.command.0 || c.args.0),
        liveness_target: None,
        status: status.map(|s| status_view(s, names)),
    }
}

fn status_view(s: &SlimContainerStatus, names: &mut Interner) -> ContainerStatusView {
    let state = s.state.as_ref();
    let state = if let Some(w) = state.and_then(|st| st.waiting.as_ref()) {
        ContainerState::Waiting { reason: w.reason.as_deref().map(|r| names.name(r)) }
    } else if let Some(r) = state.and_then(|st| st.running.as_ref()) {
        ContainerState::Running { started_at: r.started_at.as_ref().map(|t| Stamp::new(t.0)) }
    } else if let Some(t) = state.and_then(|st| st.terminated.as_ref()) {
        ContainerState::Terminated(Box::new(termination(t, names)))
    } else {
        ContainerState::Unknown
    };
    ContainerStatusView {
        ready: s.ready,
        started: s.started,
        restart_count: u32::try_from(s.restart_count).unwrap_or(0),
        state,
        last_termination: s
            .last_state
            .as_ref()
            .and_then(|l| l.terminated.as_ref())
            .map(|t| Box::new(termination(t, names))),
    }
}

fn termination(t: &SlimTerminated, names: &mut Interner) -> Termination {
    Termination {
        reason: t.reason.as_deref().map(|r| names.name(r)),
        exit_code: t.exit_code,
        started_at: t.started_at.as_ref().map(|x| Stamp::new(x.0)),
        finished_at: t.finished_at.as_ref().map(|x| Stamp::new(x.0)),
        message: t
            .message
            .as_deref()
            .map(str::trim)
            .filter(|m| !m.is_empty())
            .map(|m| truncate(m, MAX_MESSAGE_LEN).into()),
    }
}

fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// An image runs "latest" when it has no digest and its tag is absent or `latest`.
pub fn is_latest_image(image: &str) -> bool {
    if image.contains('@') {
        return false;
    }
    // The tag follows the last ':' after the last '/' (a ':' before it is a registry port).
    let last_segment = image.rsplit('/').next().unwrap_or(image);
    match last_segment.rsplit_once(':') {
        Some((_, tag)) => tag == "latest",
        None => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latest_image_detection() {
        for (image, latest) in [
            ("envoy", true),
            ("envoyproxy/envoy:latest", true),
            ("envoyproxy/envoy:v1.30.1", false),
            ("registry:5000/envoy", true),
            ("registry:5000/envoy:1.2", false),
            ("envoy@sha256:abcd", false),
            ("gcr.io/istio-release/proxyv2:1.22.0", false),
        ] {
            assert_eq!(is_latest_image(image), latest, "{image}");
        }
    }

    /// A container for [`conflicting`]: (name, section, restartPolicy, [(port, protocol)]).
    type ContainerSpec<'a> = (&'a str, &'a str, Option<&'a str>, &'a [(i32, &'a str)]);

    /// Which containers get `PORT_CONFLICT`.
    fn conflicting(containers: &[ContainerSpec]) -> Vec<String> {
        let mut spec = serde_json::json!({"containers": [], "initContainers": []});
        for (name, section, restart_policy, ports) in containers {
            let ports: Vec<_> = ports
                .iter()
                .map(|(port, protocol)| serde_json::json!({"containerPort": port, "protocol": protocol}))
                .collect();
            let mut c = serde_json::json!({"name": name, "image": "x:1", "ports": ports});
            if let Some(policy) = restart_policy {
                c["restartPolicy"] = serde_json::json!(policy);
            }
            spec[*section].as_array_mut().expect("list").push(c);
        }
        let pod: SlimPod =
            serde_json::from_value(serde_json::json!({"metadata": {"name": "p"}, "spec": spec})).expect("a Pod");
        let view = PodView::from_pod(&pod);
        view.containers
            .iter()
            .filter(|c| c.flags.contains(SpecFlags::PORT_CONFLICT))
            .map(|c| c.name.to_string())
            .collect()
    }

    #[test]
    fn port_conflicts_need_the_same_port_and_protocol_in_containers_that_run_together() {
        let tcp: &[(i32, &str)] = &[(15000, "TCP")];
        let udp: &[(i32, &str)] = &[(15000, "UDP")];
        // A native sidecar and the main container on the same TCP port: both flagged.
        assert_eq!(
            conflicting(&[("proxy", "initContainers", Some("Always"), tcp), ("app", "containers", None, tcp)]),
            ["proxy", "app"]
        );
        // Same number, different protocol: no clash.
        assert!(conflicting(&[("proxy", "containers", None, tcp), ("app", "containers", None, udp)]).is_empty());
        // A plain init container has finished before the others start.
        assert!(conflicting(&[("setup", "initContainers", None, tcp), ("app", "containers", None, tcp)]).is_empty());
        // One container declaring a port twice (e.g. two names) is not a clash with itself.
        assert!(conflicting(&[("app", "containers", None, &[(8080, "TCP"), (8080, "TCP")])]).is_empty());
    }

    #[test]
    fn truncates_on_char_boundary() {
        assert_eq!(truncate("héllo", 2), "h…");
        assert_eq!(truncate("short", 10), "short");
    }
}
