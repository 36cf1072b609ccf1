//! Who restarted a container: its own exit, or the kubelet on its own, as Kubernetes 1.33–1.37
//! runs it, so that the rules tell a sidecar's own failures from the kubelet's deliberate
//! restarts. Every decision here mirrors a function of the kubelet (k8s.io/kubernetes v1.37.2)
//! or a KEP; the runbooks (`docs/runbooks/SidecarRestartingFrequently.md`) cite them for users.
//!
//! - **In-place Pod restart** (KEP-5532, `RestartAllContainersOnContainerExits`, beta 1.36): a
//!   rule with action `RestartAllContainers` that matches an exit makes the kubelet kill and
//!   remove every container (condition `AllContainersRestarting=True`), then start the Pod
//!   again from its first init container. Every container's `restartCount` goes up by one and
//!   its `lastState.terminated` becomes reason `RestartingAllContainers`, exit code 137, the
//!   exiting container's included (`kubelet_pods.go` `convertToAPIContainerStatuses`).
//! - **Sidecars restarted during Pod termination** (KEP-4438): a sidecar that exits before its
//!   turn while the Pod terminates is started again, and "each mid-termination restart
//!   increments the container's RestartCount" (the KEP's alpha limitations).
//! - **Resize** (KEP-1287): a resize of a resource whose `resizePolicy` is `RestartContainer`
//!   kills and starts the container (`computePodResizeAction`, "resize requires restart"), while
//!   the Pod has the condition `PodResizeInProgress`.

use super::container::{ContainerKind, ContainerStatusView, ContainerView};
use super::exit_rules::{ExitVerdict, RESTARTING_ALL_CONTAINERS};
use super::history::{ContainerHistory, HistoryMarks};
use super::pod::{PodConditions, PodView, SpecFlags};

/// Why the kubelet restarted a container itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum KubeletRestart {
    /// Another container's exit restarted every container of the Pod (KEP-5532).
    PodRestart,
    /// The sidecar exited while the Pod terminated and was started again (KEP-4438); its stop
    /// is reported by `SidecarStoppedBeforeMain`.
    DuringTermination,
    /// A resize with `RestartContainer` (KEP-1287).
    Resize,
}

/// The container whose exit restarted every container of the Pod (an index into
/// `pod.containers`): the one whose current exit matches its `RestartAllContainers` rule, else
/// the only container that declares such a rule (the kubelet restarts a Pod for no other
/// reason). `None` when neither tells.
pub(crate) fn pod_restart_trigger(pod: &PodView) -> Option<usize> {
    let exited = pod.containers.iter().position(|c| {
        c.status()
            .and_then(ContainerStatusView::terminated)
            .is_some_and(|t| t.verdict.contains(ExitVerdict::RESTARTS_POD))
    });
    exited.or_else(|| {
        let mut declaring =
            pod.containers.iter().enumerate().filter(|(_, c)| c.flags.contains(SpecFlags::RESTARTS_POD));
        match (declaring.next(), declaring.next()) {
            (Some((i, _)), None) => Some(i),
            _ => None,
        }
    })
}

/// [`pod_restart_trigger`] of one Pod state, found at most once: a history observation asks for
/// every container, and a hostile Pod may have thousands.
pub(crate) struct RestartTrigger<'a> {
    pod: &'a PodView,
    found: Option<Option<usize>>,
}

impl<'a> RestartTrigger<'a> {
    /// Not looked for yet.
    pub(crate) fn new(pod: &'a PodView) -> Self {
        RestartTrigger { pod, found: None }
    }

    /// The container whose exit restarted the Pod, when one tells.
    pub(crate) fn get(&mut self) -> Option<usize> {
        let pod = self.pod;
        *self.found.get_or_insert_with(|| pod_restart_trigger(pod))
    }
}

/// Whether the Pod has restarted all its containers in place: it is doing so now, or some
/// container's last run was ended by it.
pub(crate) fn pod_restarted(pod: &PodView) -> bool {
    pod.conditions.contains(PodConditions::ALL_CONTAINERS_RESTARTING)
        || pod.containers.iter().filter_map(|c| c.status()).any(ended_by_pod_restart)
}

/// Whether the container's current run began with an in-place restart of the whole Pod.
pub(crate) fn ended_by_pod_restart(status: &ContainerStatusView) -> bool {
    status.last_termination.as_ref().and_then(|t| t.reason.as_deref()) == Some(RESTARTING_ALL_CONTAINERS)
}

/// Whether the kubelet made the container's most recent restart itself, and why; `None` for the
/// container's own exit (or no restart at all). `marks` are what the operator saw before
/// (empty for `audit`): only it can tell a resize restart, as the kubelet clears
/// `PodResizeInProgress` in the same status that shows the restart.
pub(crate) fn last_restart_by_kubelet(
    trigger: &mut RestartTrigger,
    index: usize,
    container: &ContainerView,
    status: &ContainerStatusView,
    marks: HistoryMarks,
) -> Option<KubeletRestart> {
    if status.restart_count() == 0 {
        return None;
    }
    let pod = trigger.pod;
    if marks.contains(HistoryMarks::RESIZE_PENDING) {
        return Some(KubeletRestart::Resize);
    }
    let last = status.last_termination.as_deref()?;
    if last.reason.as_deref() == Some(RESTARTING_ALL_CONTAINERS) {
        let triggered = marks.contains(HistoryMarks::TRIGGERED_POD_RESTART) || trigger.get() == Some(index);
        return (!triggered).then_some(KubeletRestart::PodRestart);
    }
    let during_termination = container.kind == ContainerKind::RestartableInit
        && matches!((pod.deleting_since, last.finished_at), (Some(deleting), Some(finished)) if finished >= deleting);
    during_termination.then_some(KubeletRestart::DuringTermination)
}

/// A container's restarts, split into its own and the kubelet's.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct RestartTally {
    /// Restarts after the container's own exits.
    pub own: u32,
    /// Restarts the kubelet made itself (not counted by the restart rules).
    pub by_kubelet: u32,
    /// Why the kubelet made the most recent one, when it did.
    pub last_by_kubelet: Option<KubeletRestart>,
}

/// Splits a container's `restartCount`: what the operator observed (`history`) where it has, else
/// the classification of the last restart alone; earlier restarts of unknown cause are its own.
pub(crate) fn tally_restarts(
    pod: &PodView,
    index: usize,
    container: &ContainerView,
    status: &ContainerStatusView,
    history: Option<&ContainerHistory>,
) -> RestartTally {
    let marks = history.map_or(HistoryMarks::empty(), |h| h.marks);
    let last = last_restart_by_kubelet(&mut RestartTrigger::new(pod), index, container, status, marks);
    let by_kubelet = match history {
        Some(h) => u32::from(h.restarts_by_kubelet),
        None => u32::from(last.is_some()),
    }
    .min(status.restart_count());
    // The history decided the last restart when it saw it; trust that over a guess now.
    let last_by_kubelet = match history {
        Some(h) if h.marks.contains(HistoryMarks::LAST_BY_KUBELET) => last.or(Some(KubeletRestart::PodRestart)),
        Some(_) => None,
        None => last,
    };
    RestartTally { own: status.restart_count() - by_kubelet, by_kubelet, last_by_kubelet }
}
