//! One container of a [`PodView`](super::pod::PodView): where it is declared, static facts
//! of its spec, and its status, extracted from a [`SlimContainer`] and its status.

use std::num::NonZeroU16;
use std::ops::Deref;
use std::sync::Arc;

use super::catalog::CatalogId;
use super::exit_rules::ExitVerdict;
use super::name::{Name, NamePool};
use super::stamp::Stamp;
use jiff::Timestamp;
use sidecar_watch_api::{SlimContainer, SlimContainerStatus, SlimTerminated};

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
    pub struct SpecFlags: u16 {
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
        /// Has a `preStop` hook that can act on the container (`exec` or `httpGet`), other than
        /// the drain hook its mesh's injector writes (see [`CatalogEntry::drain_hook`](crate::CatalogEntry::drain_hook)).
        const ACTING_PRE_STOP = 1 << 7;
        /// A resize of one of its resources restarts it (`resizePolicy` `RestartContainer`).
        const RESIZE_RESTARTS = 1 << 8;
        /// Declares a `restartPolicyRules` rule with action `RestartAllContainers`.
        const RESTARTS_POD = 1 << 9;
        /// A plain init container that runs while the Pod's traffic is already redirected to a
        /// native mesh proxy declared after it: it has no working network (`init-before-proxy`).
        const NO_NETWORK = 1 << 10;
        /// A catalog sidecar whose arguments or environment switch its own metrics off
        /// ([`Blindspot`](crate::catalog::Blindspot)).
        const METRICS_OFF = 1 << 11;
        /// A catalog sidecar that serves its metrics on a loopback address only.
        const METRICS_LOCAL = 1 << 12;
        /// A catalog sidecar whose arguments or environment switch its health endpoint off.
        const HEALTH_CHECK_OFF = 1 << 13;
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
    /// What the kubelet does after this exit (restart rules, the restart policies).
    pub verdict: ExitVerdict,
}

impl Termination {
    /// How the container's memory limit ended this run, if it did: `OOMKilled`, or a start
    /// the runtime could not complete under the limit, which the kubelet reports as
    /// `StartError` with exit code 128 and the runtime's message — a reason no rule keyed on
    /// `OOMKilled` sees.
    pub fn memory_end(&self) -> Option<MemoryEnd> {
        match self.reason.as_deref() {
            Some("OOMKilled") => Some(MemoryEnd::OomKilled),
            Some("StartError") if self.exit_code == 128 => {
                let message = self.message.as_deref().unwrap_or_default();
                if message.contains("OOM") || message.contains("out of memory") {
                    Some(MemoryEnd::KilledWhileStarting)
                } else if message.contains("unable to set memory limit") {
                    Some(MemoryEnd::BelowStartingUsage)
                } else {
                    None
                }
            }
            _ => None,
        }
    }
}

/// How a memory limit ended a container's run ([`Termination::memory_end`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemoryEnd {
    /// The kernel killed it while it ran (`OOMKilled`, exit code 137).
    OomKilled,
    /// The kernel killed the runtime's init while it started the container (cgroup v2; runc:
    /// "container init was OOM-killed (memory limit too low?)").
    KilledWhileStarting,
    /// The limit is below what the runtime's init already uses, so it could not be set (cgroup
    /// v1; runc: "unable to set memory limit to N (current usage: M, …)"; which limits fail
    /// so on this project's node: docs/benchmarks.md#figures-the-codes-comments-cite).
    BelowStartingUsage,
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

/// The status part of a container: the kubelet's `state`, `lastState.terminated`, `ready`,
/// `started` and `restartCount`, as plain fields (32 bytes; a [`ContainerView`] is 40).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContainerStatusView {
    /// The current state.
    state: ContainerState,
    /// `lastState.terminated`: how the previous run ended (boxed: most containers have none).
    pub last_termination: Option<Box<Termination>>,
    restart_count: u32,
    ready: bool,
    started: Option<bool>,
}

// Inside each `ContainerView` (docs/architecture.md#what-a-tracked-pod-is-made-of).
#[cfg(target_pointer_width = "64")]
const _: () = assert!(std::mem::size_of::<ContainerStatusView>() == 32);

impl ContainerStatusView {
    /// A status in `state`, without a previous termination.
    pub fn new(ready: bool, started: Option<bool>, restart_count: u32, state: ContainerState) -> Self {
        ContainerStatusView { state, last_termination: None, restart_count, ready, started }
    }

    /// The kubelet's `ready`.
    pub fn ready(&self) -> bool {
        self.ready
    }

    /// The kubelet's `started` (startup probe passed), when reported.
    pub fn started(&self) -> Option<bool> {
        self.started
    }

    /// How often the container restarted.
    pub fn restart_count(&self) -> u32 {
        self.restart_count
    }

    /// Sets `started`.
    pub fn set_started(&mut self, started: Option<bool>) {
        self.started = started;
    }

    /// Sets the restart count.
    pub fn set_restart_count(&mut self, restart_count: u32) {
        self.restart_count = restart_count;
    }

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

    /// Whether the container is waiting.
    pub fn is_waiting(&self) -> bool {
        matches!(self.state, ContainerState::Waiting { .. })
    }

    /// Whether the container is terminated.
    pub fn terminated(&self) -> Option<&Termination> {
        match &self.state {
            ContainerState::Terminated(t) => Some(&**t),
            _ => None,
        }
    }

    /// The current termination, to change it (tests build statuses field by field).
    pub fn terminated_mut(&mut self) -> Option<&mut Termination> {
        match &mut self.state {
            ContainerState::Terminated(t) => Some(&mut **t),
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

/// What a container's spec says, shared by every Pod with the same container (replicas of
/// a workload): 24 bytes, held by each view through one pointer.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ContainerSpec {
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
    /// Its image's version: the tag, else the digest, else `latest` ([`image_version`](extract::image_version));
    /// `None` without an image.
    pub version: Option<Name>,
    /// Its `cpu` and `memory` requests and limits; `None` when it declares none of them.
    /// Boxed: most specs of a cluster's sidecars share one, and a spec is per distinct
    /// container, not per Pod.
    pub resources: Option<Box<ContainerResources>>,
}

// One per distinct container (replicas share it) (docs/architecture.md#what-a-tracked-pod-is-made-of).
#[cfg(target_pointer_width = "64")]
const _: () = assert!(std::mem::size_of::<ContainerSpec>() == 32);

/// A container's `cpu` (millicores) and `memory` (bytes) requests and limits, each `None`
/// when not declared or not a quantity.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ContainerResources {
    /// `resources.requests`.
    pub requests: ResourceAmounts,
    /// `resources.limits`.
    pub limits: ResourceAmounts,
}

impl ContainerResources {
    /// Adds `times` containers of `other` (a workload's sidecar tax, summed over its live
    /// Pods): an amount only `other` declares starts at 0, one it lacks stays as it was;
    /// saturating, so that a hostile spec cannot wrap a sum.
    pub fn add_times(&mut self, other: &ContainerResources, times: u32) {
        for (sums, amounts) in [(&mut self.requests, &other.requests), (&mut self.limits, &other.limits)] {
            for (sum, amount) in
                [(&mut sums.cpu_millis, amounts.cpu_millis), (&mut sums.memory_bytes, amounts.memory_bytes)]
            {
                if let Some(amount) = amount {
                    *sum = Some(sum.unwrap_or(0).saturating_add(amount.saturating_mul(u64::from(times))));
                }
            }
        }
    }
}

/// `cpu` and `memory` of one `requests` or `limits` map.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ResourceAmounts {
    /// `cpu` in millicores, rounded up.
    pub cpu_millis: Option<u64>,
    /// `memory` in bytes, rounded up.
    pub memory_bytes: Option<u64>,
}

impl ResourceAmounts {
    /// The amounts of a `requests` or `limits` map as the API decoded it.
    pub fn from_list(list: &sidecar_watch_api::SlimResourceList) -> Self {
        ResourceAmounts {
            cpu_millis: list.cpu.as_deref().and_then(|q| quantity::parse_quantity(q, 3)),
            memory_bytes: list.memory.as_deref().and_then(|q| quantity::parse_quantity(q, 0)),
        }
    }

    fn is_empty(&self) -> bool {
        self.cpu_millis.is_none() && self.memory_bytes.is_none()
    }
}

impl ContainerResources {
    /// The resources of a container's `resources`; `None` when it declares no `cpu` or
    /// `memory` quantity.
    pub fn from_slim(resources: &sidecar_watch_api::SlimResources) -> Option<Box<Self>> {
        let read = ContainerResources {
            requests: ResourceAmounts::from_list(&resources.requests),
            limits: ResourceAmounts::from_list(&resources.limits),
        };
        (!read.requests.is_empty() || !read.limits.is_empty()).then(|| Box::new(read))
    }
}

/// One container: its spec (read through `Deref`: `view.name`, `view.kind`…) and its status.
///
/// 40 bytes: the spec is shared ([`ContainerSpec`]), so a view holds a pointer where the
/// spec's fields took 16 bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerView {
    spec: Arc<ContainerSpec>,
    /// `None` until the kubelet reports one, and always for a plain init container.
    status: Option<ContainerStatusView>,
}

// One per container of each tracked Pod (docs/architecture.md#what-a-tracked-pod-is-made-of).
#[cfg(target_pointer_width = "64")]
const _: () = assert!(std::mem::size_of::<ContainerView>() == 40);

impl Deref for ContainerView {
    type Target = ContainerSpec;
    fn deref(&self) -> &ContainerSpec {
        &self.spec
    }
}

impl ContainerView {
    /// A container with a spec of its own (views of many Pods share theirs, see
    /// [`Self::with_spec`] and [`Interner::container_spec`](crate::Interner::container_spec)) and `status`, `None` until the kubelet reports one, and always
    /// for a plain init container: no rule, history or metric reads those (they are neither
    /// sidecars nor main containers), and their finished run would cost a boxed termination
    /// per Pod.
    pub fn new(spec: ContainerSpec, status: Option<ContainerStatusView>) -> Self {
        Self::with_spec(Arc::new(spec), status)
    }

    /// [`Self::new`] with a spec that may be shared.
    pub fn with_spec(spec: Arc<ContainerSpec>, status: Option<ContainerStatusView>) -> Self {
        ContainerView { spec, status }
    }

    /// The spec as shared with other views of the same container: views built by one
    /// `Interner` that declare the same container hold one allocation.
    pub fn shared_spec(&self) -> &Arc<ContainerSpec> {
        &self.spec
    }

    /// Its status; `None` until the kubelet reports one, and always for a plain init
    /// container.
    pub fn status(&self) -> Option<&ContainerStatusView> {
        self.status.as_ref()
    }

    /// Replaces the status.
    pub fn set_status(&mut self, status: Option<ContainerStatusView>) {
        self.status = status;
    }

    /// The spec, to change (copied first if shared).
    pub fn spec_mut(&mut self) -> &mut ContainerSpec {
        Arc::make_mut(&mut self.spec)
    }

    /// Whether the kubelet reports it ready.
    pub fn is_ready(&self) -> bool {
        self.status().is_some_and(ContainerStatusView::ready)
    }

    /// Whether the container terminated with an exit the kubelet does not restart it for (its
    /// `restartPolicyRules`, its `restartPolicy`, or the Pod's): it is done for good.
    pub fn finished(&self) -> bool {
        self.status()
            .and_then(ContainerStatusView::terminated)
            .is_some_and(|t| !t.verdict.contains(ExitVerdict::RESTARTS))
    }

    /// Whether it is running.
    pub fn is_running(&self) -> bool {
        self.status().is_some_and(ContainerStatusView::is_running)
    }
}

/// Another container of the Pod that a liveness probe reaches. Four bytes as an `Option`
/// (the index is stored plus one), as every container of every tracked Pod has one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LivenessTarget {
    container_plus_one: NonZeroU16,
    /// The port probed.
    pub port: u16,
}

impl LivenessTarget {
    /// The probe reaches container `container` (an index into [`PodView::containers`](crate::PodView::containers)) on `port`.
    pub fn new(container: usize, port: u16) -> Option<Self> {
        let container_plus_one = NonZeroU16::new(u16::try_from(container).ok()?.checked_add(1)?)?;
        Some(LivenessTarget { container_plus_one, port })
    }

    /// Its index in [`PodView::containers`](crate::PodView::containers).
    pub fn container(self) -> usize {
        usize::from(self.container_plus_one.get() - 1)
    }
}

mod extract;
mod quantity;
pub use extract::is_latest_image;
pub(crate) use extract::{container_parts, init_kind};

#[cfg(test)]
mod tests;
