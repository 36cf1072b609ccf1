//! How each new state of a Pod updates what the operator remembers of it
//! ([`PodHistory::observe`](crate::PodHistory::observe), called by [`ObservedPod::observe`](crate::ObservedPod::observe)):
//! restart increments with their times and causes, readiness flips, start-up times, and the
//! marks one observation leaves for the next.

use jiff::Timestamp;
use thin_vec::ThinVec;

use super::exit_rules::ExitVerdict;
use super::history::{ContainerHistory, HistoryMarks, PodHistory, MAX_RECORDED_RESTARTS};
use super::pod::{ContainerKind, ContainerStatusView, ContainerView, PodConditions, PodView, SpecFlags};
use super::restart_causes::{last_restart_by_kubelet, RestartTrigger};
use super::stamp::Stamp;

/// Something the observation learned that metrics want to know.
#[derive(Clone, Debug, PartialEq)]
pub enum Observation {
    /// A container became ready for the first time in a run the operator saw start.
    StartedUp {
        /// The container.
        container: String,
        /// Seconds from `startedAt` to first ready.
        seconds: f64,
    },
}

impl PodHistory {
    /// Records `pod`, a new state of the Pod observed at `now`. `previous` is the state the
    /// last observation recorded (`None` for the first): what a container was then (its
    /// `restartCount`, readiness and run) is read there rather than kept twice. A `previous`
    /// with other containers than `pod` (which the API server never lets a Pod have) counts
    /// as none, and so does a history that was not observed from it. Only
    /// [`ObservedPod`](crate::ObservedPod), which keeps the history with the state it last
    /// observed, passes them.
    pub(crate) fn observe(&mut self, previous: Option<&PodView>, pod: &PodView, now: Timestamp) -> Vec<Observation> {
        let previous = previous.filter(|p| self.observed_at.is_some() && same_containers(p, pod));
        let previous_observation = self.observed_at.unwrap_or(Stamp::new(now));
        let mut observations = Vec::new();
        // Sized as the old list: a Pod's observed containers rarely change, so the list is
        // boxed at the end without a shrink.
        let mut containers = Vec::with_capacity(self.containers.len());
        let mut old = std::mem::take(&mut self.containers).into_vec().into_iter().peekable();
        let mut trigger = RestartTrigger::new(pod);
        let mut order = OrderTally::default();
        for (at, view, status) in observed_containers(pod) {
            let Ok(position) = u32::try_from(at) else { break };
            // Both lists run in container order: skip the histories of containers that have
            // no status now (they start again as first seen if one comes back).
            while old.next_if(|h| h.at < position).is_some() {}
            let last = previous.and_then(|p| p.containers.get(at)).and_then(|c| c.status());
            let kept = old.next_if(|h| h.at == position).filter(|_| last.is_some());
            let (Some(mut history), Some(last)) = (kept, last) else {
                let history = first_sight(pod, &mut trigger, (at, position), view, status);
                order.count(view.kind, &history, status);
                containers.push(history);
                continue;
            };

            let mut last_by_kubelet = history.marks.contains(HistoryMarks::LAST_BY_KUBELET);
            if status.restart_count() > last.restart_count() {
                // Only the newest MAX_RECORDED_RESTARTS can be kept, so never loop over more.
                let added = (status.restart_count() - last.restart_count()).min(MAX_RECORDED_RESTARTS as u32);
                // The newest restart's cause is in the Pod (and in what the last observation
                // marked); earlier ones in the same gap are taken as the container's own.
                last_by_kubelet = last_restart_by_kubelet(&mut trigger, at, view, status, history.marks).is_some();
                let own = if last_by_kubelet {
                    history.restarts_by_kubelet = history.restarts_by_kubelet.saturating_add(1);
                    added - 1
                } else {
                    added
                };
                let last_finish = status.latest_termination().and_then(|t| t.finished_at);
                let restarts = &mut history.restarts;
                for i in 0..own {
                    // The newest own restart is the last termination; earlier ones in the same
                    // gap happened some time after the previous observation.
                    let newest = i + 1 == own && !last_by_kubelet;
                    let at = if newest { last_finish.unwrap_or(Stamp::new(now)) } else { previous_observation };
                    restarts.push(at);
                }
                restarts.sort();
                let excess = restarts.len().saturating_sub(MAX_RECORDED_RESTARTS);
                restarts.drain(..excess);
                restarts.shrink_to_fit();
            }
            let order_marks = history.marks.intersection(HistoryMarks::START_ORDER);
            let seen_ready = history.marks.intersection(HistoryMarks::WATCHED_RUN_SEEN_READY);
            history.marks = next_marks(pod, view, status, last_by_kubelet).union(seen_ready);

            // A new run that is not ready yet is one whose startup we can time. A run already
            // seen (ready) that turns unready is not new: its start-up is long over.
            let running_since = status.run_start();
            if let Some(started) = running_since {
                let new_run = last.run_start() != Some(started);
                if new_run && history.watched_run_started_at != Some(started) && !status.ready() {
                    history.watched_run_started_at = Some(started);
                    history.marks.remove(HistoryMarks::WATCHED_RUN_SEEN_READY);
                }
            }
            // The start-order marks hold for the run they were seen in.
            if last.run_start() == running_since {
                history.marks.insert(order_marks);
            }
            if status.ready() != last.ready() {
                history.ready_changed_at = Some(Stamp::new(now));
                if status.ready() && !history.watched_run_seen_ready() {
                    if let Some(started) = history.watched_run_started_at.filter(|s| running_since == Some(*s)) {
                        history.marks.insert(HistoryMarks::WATCHED_RUN_SEEN_READY);
                        let seconds = now.duration_since(started.timestamp()).as_secs_f64().max(0.0);
                        observations.push(Observation::StartedUp { container: view.name.to_string(), seconds });
                    }
                }
            }
            order.count(view.kind, &history, status);
            containers.push(history);
        }
        order.mark(pod, &mut containers);
        self.containers = containers.into_boxed_slice();
        self.observed_at = Some(Stamp::new(now));
        observations
    }
}

/// The containers a history is kept for, with their positions and statuses: plain init
/// containers are neither sidecars nor main containers (no rule reads them), and a container
/// without a status has nothing to observe.
fn observed_containers(pod: &PodView) -> impl Iterator<Item = (usize, &ContainerView, &ContainerStatusView)> {
    pod.containers
        .iter()
        .enumerate()
        .filter(|(_, c)| c.kind != ContainerKind::Init)
        .filter_map(|(at, c)| Some((at, c, c.status()?)))
}

/// Whether two states of a Pod have the same containers in the same places.
fn same_containers(a: &PodView, b: &PodView) -> bool {
    a.containers.len() == b.containers.len()
        && a.containers.iter().zip(b.containers.iter()).all(|(a, b)| a.name == b.name)
}

/// The history of a container first seen (at `at` in the Pod, `position` as stored): restarts
/// so far have unknown times; a run that is not ready yet can still be timed until it becomes
/// ready, unless the Pod's Ready condition says it was ready once (the operator came in
/// mid-run: a restart or a relist while the sidecar was briefly unready; timing it would
/// report a start-up as long as the run and a false MainStartedBeforeSidecarReady). Only the
/// last restart's cause can be read from the Pod.
fn first_sight(
    pod: &PodView,
    trigger: &mut RestartTrigger,
    (at, position): (usize, u32),
    view: &ContainerView,
    status: &ContainerStatusView,
) -> ContainerHistory {
    let watched_run_started_at =
        status.run_start().filter(|started| !status.ready() && !pod.ready_lost_after(started.timestamp()));
    let last_by_kubelet = last_restart_by_kubelet(trigger, at, view, status, HistoryMarks::empty()).is_some();
    ContainerHistory {
        at: position,
        restarts_by_kubelet: u16::from(last_by_kubelet),
        marks: next_marks(pod, view, status, last_by_kubelet),
        restarts: ThinVec::new(),
        ready_changed_at: None,
        watched_run_started_at,
    }
}

/// What one Pod status says about start order, counted while observing it.
#[derive(Default)]
struct OrderTally {
    /// Containers of `spec.containers` running.
    running_regular: usize,
    /// Native sidecars in an unready start ([`ContainerHistory::unready_start`]).
    unready_native: usize,
    /// Containers of `spec.containers` in an unready start.
    unready_regular: usize,
}

impl OrderTally {
    fn count(&mut self, kind: ContainerKind, history: &ContainerHistory, status: &ContainerStatusView) {
        let unready = history.unready_start(status);
        match kind {
            ContainerKind::Regular => {
                self.running_regular += usize::from(status.run_start().is_some());
                self.unready_regular += usize::from(unready);
            }
            ContainerKind::RestartableInit => self.unready_native += usize::from(unready),
            ContainerKind::Init => {}
        }
    }

    /// Sets the start-order marks this status shows: on each container in an unready start
    /// beside another running container of `spec.containers`, and on each of those running
    /// beside another container's unready start. Nothing to do (and no second pass) unless
    /// both exist, as in most statuses.
    fn mark(&self, pod: &PodView, containers: &mut [ContainerHistory]) {
        if self.running_regular == 0 || self.unready_native + self.unready_regular == 0 {
            return;
        }
        // `containers` holds one history per observed container, in the same order.
        for ((_, view, status), history) in observed_containers(pod).zip(containers.iter_mut()) {
            let unready = history.unready_start(status);
            let regular = view.kind == ContainerKind::Regular;
            let running = status.run_start().is_some();
            let others_running = self.running_regular.saturating_sub(usize::from(regular && running));
            if unready && others_running > 0 {
                history.marks.insert(HistoryMarks::UNREADY_BESIDE_RUNNING);
            }
            if regular && running {
                if self.unready_native > 0 {
                    history.marks.insert(HistoryMarks::RAN_BESIDE_UNREADY_NATIVE);
                }
                if self.unready_regular.saturating_sub(usize::from(unready)) > 0 {
                    history.marks.insert(HistoryMarks::RAN_BESIDE_UNREADY_REGULAR);
                }
            }
        }
    }
}

/// The marks one observation leaves for the next.
fn next_marks(
    pod: &PodView,
    view: &ContainerView,
    status: &ContainerStatusView,
    last_by_kubelet: bool,
) -> HistoryMarks {
    let mut marks = HistoryMarks::empty();
    marks.set(HistoryMarks::LAST_BY_KUBELET, last_by_kubelet);
    marks.set(
        HistoryMarks::RESIZE_PENDING,
        pod.conditions.contains(PodConditions::RESIZE_IN_PROGRESS) && view.flags.contains(SpecFlags::RESIZE_RESTARTS),
    );
    marks.set(
        HistoryMarks::TRIGGERED_POD_RESTART,
        status.terminated().is_some_and(|t| t.verdict.contains(ExitVerdict::RESTARTS_POD)),
    );
    marks
}
