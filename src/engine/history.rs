//! What the operator has observed of a Pod over time, beyond what one Pod object says.
//!
//! The API keeps only the latest state of each container. The controller feeds every new
//! [`PodView`] to [`PodHistory::observe`], which records readiness flips, first-ready times
//! and restart increments with their times. `audit` evaluates with an empty history, so
//! every rule must also work from the API's timestamps alone.

use jiff::Timestamp;

use super::exit_rules::ExitVerdict;
use super::kubelet;
use super::name::Name;
use super::pod::{ContainerKind, PodConditions, PodView, SpecFlags};
use super::stamp::Stamp;

/// Restart times kept per container; older restarts are treated as "at Pod start", which
/// only makes them leave the counting window sooner.
pub const MAX_RECORDED_RESTARTS: usize = 32;

bitflags::bitflags! {
    /// What one observation of a container leaves for the next (see [`kubelet`]).
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
    pub struct HistoryMarks: u8 {
        /// The Pod had `PodResizeInProgress` and a resize restarts this container: its next
        /// restart is the resize's. The kubelet clears the condition in the same status that
        /// shows the restart, so only an earlier observation can tell.
        const RESIZE_PENDING = 1;
        /// Its exit matched its `RestartAllContainers` rule: the in-place Pod restart that
        /// follows is its own doing, not something done to it.
        const TRIGGERED_POD_RESTART = 1 << 1;
        /// The kubelet made its most recent restart itself.
        const LAST_BY_KUBELET = 1 << 2;
        /// Start order (see [`Self::START_ORDER`]): in its current run, before the operator saw it
        /// ready, one Pod status showed it running and not ready while another container of
        /// `spec.containers` was running.
        const UNREADY_BESIDE_RUNNING = 1 << 3;
        /// Start order: a container of `spec.containers` whose current run was running in a
        /// Pod status that showed a native sidecar's run running, not ready, and never seen
        /// ready before.
        const RAN_BESIDE_UNREADY_NATIVE = 1 << 4;
        /// Start order: the same, beside another container of `spec.containers`.
        const RAN_BESIDE_UNREADY_REGULAR = 1 << 5;
    }
}

impl HistoryMarks {
    /// The marks that record start order. They hold for the container's run (cleared when
    /// it changes) and outlive the sidecar's readiness, which is the point: the Pod keeps
    /// only the latest state.
    ///
    /// The kubelet records start order in single Pod statuses: a main container running
    /// while a sidecar's run, not ready yet, is running and not ready. The history does not
    /// know which containers a policy calls sidecars, so each side keeps its half, the
    /// not-ready run ([`Self::UNREADY_BESIDE_RUNNING`]) and the container that ran beside it
    /// ([`Self::RAN_BESIDE_UNREADY_NATIVE`] beside a native sidecar's,
    /// [`Self::RAN_BESIDE_UNREADY_REGULAR`] beside another regular container's), and the rule
    /// pairs them. Halves from two different statuses pair only when two containers of the
    /// sidecar's kind each had such a start-up. No clock of the operator's is kept: when it
    /// saw a status says nothing about when the kubelet started a container or found it ready.
    pub const START_ORDER: HistoryMarks = HistoryMarks::UNREADY_BESIDE_RUNNING
        .union(HistoryMarks::RAN_BESIDE_UNREADY_NATIVE)
        .union(HistoryMarks::RAN_BESIDE_UNREADY_REGULAR);
}

/// Observed history of one container (by name).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContainerHistory {
    /// The container name.
    pub name: Name,
    /// `restartCount` at the last observation.
    pub restart_count: u32,
    /// How many of the restarts the kubelet made itself (in-place Pod restarts of another
    /// container's doing, resizes, restarts during termination): not the container's failures.
    /// Packs beside `restart_count` and `ready`, so the history stays 64 bytes.
    pub restarts_by_kubelet: u16,
    /// What the last observation left for the next.
    pub marks: HistoryMarks,
    /// Times of restarts observed after the first observation, oldest first.
    pub restarts: Box<[Timestamp]>,
    /// `ready` at the last observation.
    pub ready: bool,
    /// When the operator saw `ready` change last (not set by the first observation).
    pub ready_changed_at: Option<Stamp>,
    /// `startedAt` of the run the operator watched from its start (before it was ready).
    pub watched_run_started_at: Option<Stamp>,
    /// When the operator saw that run become ready. The operator's clock, not the kubelet's:
    /// it times start-ups for the metrics and says the run was seen ready, and is never
    /// compared with a kubelet timestamp (a status write can report `ready` well after the
    /// kubelet acted on it).
    pub first_ready_at: Option<Stamp>,
    /// `startedAt` of the run seen at the last observation (`None` when it was not running),
    /// so that a run seen already ready is not mistaken for a new one when it turns unready.
    pub run_started_at: Option<Stamp>,
}

/// Observed history of one Pod, plus the "first seen" clocks of conditions whose start the
/// API does not record. Lists are boxed slices (no capacity kept per tracked Pod): they
/// change only when a container is first seen or a condition starts or ends.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodHistory {
    /// Per-container history, in no particular order.
    pub containers: Box<[ContainerHistory]>,
    /// When the operator last observed the Pod.
    pub observed_at: Option<Stamp>,
    /// Conditions without an API timestamp: (alert name, container) → first seen. `None`
    /// when none holds, as for most Pods: a thin pointer takes 8 bytes, a boxed slice 16.
    pub clocks: Option<Box<Clocks>>,
}

/// First-seen clocks: (alert name, container, first seen).
pub type Clocks = Vec<(&'static str, String, Timestamp)>;

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

impl ContainerHistory {
    /// Whether, as the last observation left it, the container is running a run that was
    /// not ready yet as far as the operator can tell: watched from its start (or first seen
    /// not ready with nothing in the Pod saying it was ready once) and never seen ready.
    pub fn unready_start(&self) -> bool {
        self.run_started_at.is_some()
            && !self.ready
            && self.watched_run_started_at == self.run_started_at
            && self.first_ready_at.is_none()
    }
}

impl PodHistory {
    /// The history of a container, if any.
    pub fn container(&self, name: &str) -> Option<&ContainerHistory> {
        self.containers.iter().find(|c| c.name == name)
    }

    /// The first-seen time of a condition without API timestamps.
    pub fn clock(&self, alert: &str, container: &str) -> Option<Timestamp> {
        self.clocks.iter().flat_map(|c| c.iter()).find(|(a, c, _)| *a == alert && c == container).map(|(_, _, t)| *t)
    }

    /// Keeps exactly the clocks of the conditions that hold now, starting new ones at `now`.
    pub fn set_clocks(&mut self, holding: impl IntoIterator<Item = (&'static str, String)>, now: Timestamp) {
        let previous = self.clocks.take().map(|c| *c).unwrap_or_default();
        let mut clocks = Clocks::new();
        for (alert, container) in holding {
            if clocks.iter().any(|(a, c, _)| *a == alert && *c == container) {
                continue;
            }
            let since = previous.iter().find(|(a, c, _)| *a == alert && *c == container).map_or(now, |(_, _, t)| *t);
            clocks.push((alert, container, since));
        }
        if !clocks.is_empty() {
            clocks.shrink_to_fit();
            self.clocks = Some(Box::new(clocks));
        }
    }

    /// Adds the clocks of conditions that hold now (new ones start at `now`) and keeps every
    /// other: what an evaluation under one policy does, as it cannot tell whether the
    /// conditions another policy clocked still hold. The next [`Self::set_clocks`] (an
    /// evaluation under every policy, on the Pod's next change or timer) drops those that
    /// do not.
    pub fn add_clocks(&mut self, holding: impl IntoIterator<Item = (&'static str, String)>, now: Timestamp) {
        let mut clocks = self.clocks.take().map(|c| *c).unwrap_or_default();
        for (alert, container) in holding {
            if !clocks.iter().any(|(a, c, _)| *a == alert && *c == container) {
                clocks.push((alert, container, now));
            }
        }
        if !clocks.is_empty() {
            clocks.shrink_to_fit();
            self.clocks = Some(Box::new(clocks));
        }
    }

    /// Records a new state of the Pod observed at `now`.
    pub fn observe(&mut self, pod: &PodView, now: Timestamp) -> Vec<Observation> {
        let previous_observation = self.observed_at.map_or(now, Stamp::timestamp);
        let mut observations = Vec::new();
        // Grown here when a container is first seen, boxed again (shrunk to fit) at the end.
        let mut containers = std::mem::take(&mut self.containers).into_vec();
        let mut trigger = kubelet::RestartTrigger::new(pod);
        let mut order = OrderTally::default();
        // Plain init containers are neither sidecars nor main containers: no rule reads them.
        for (at, view) in pod.containers.iter().enumerate().filter(|(_, c)| c.kind != ContainerKind::Init) {
            let Some(status) = &view.status else { continue };
            let running_since = status.run_start();
            let index = match containers.iter().position(|c| c.name == view.name) {
                Some(i) => i,
                None => {
                    // First sight: restarts so far have unknown times; a run that is not
                    // ready yet can still be timed until it becomes ready, unless the Pod's
                    // Ready condition says it was ready once (the operator came in mid-run:
                    // a restart or a relist while the sidecar was briefly unready; timing it
                    // would report a start-up as long as the run and a false
                    // MainStartedBeforeSidecarReady). Only the last restart's cause can be
                    // read from the Pod.
                    let watched_run_started_at =
                        running_since.filter(|started| !status.ready && !pod.ready_lost_after(started.timestamp()));
                    let last_by_kubelet =
                        kubelet::last_restart_by_kubelet(&mut trigger, at, view, status, HistoryMarks::empty())
                            .is_some();
                    let mut history = ContainerHistory {
                        name: view.name.clone(),
                        restart_count: status.restart_count,
                        restarts_by_kubelet: u16::from(last_by_kubelet),
                        marks: HistoryMarks::empty(),
                        restarts: Box::default(),
                        ready: status.ready,
                        ready_changed_at: None,
                        watched_run_started_at,
                        first_ready_at: None,
                        run_started_at: running_since,
                    };
                    history.marks = next_marks(pod, view, status, last_by_kubelet);
                    order.count(view.kind, &history);
                    containers.push(history);
                    continue;
                }
            };
            let history = &mut containers[index];

            let mut last_by_kubelet = history.marks.contains(HistoryMarks::LAST_BY_KUBELET);
            if status.restart_count > history.restart_count {
                // Only the newest MAX_RECORDED_RESTARTS can be kept, so never loop over more.
                let added = (status.restart_count - history.restart_count).min(MAX_RECORDED_RESTARTS as u32);
                // The newest restart's cause is in the Pod (and in what the last observation
                // marked); earlier ones in the same gap are taken as the container's own.
                last_by_kubelet =
                    kubelet::last_restart_by_kubelet(&mut trigger, at, view, status, history.marks).is_some();
                let own = if last_by_kubelet {
                    history.restarts_by_kubelet = history.restarts_by_kubelet.saturating_add(1);
                    added - 1
                } else {
                    added
                };
                let last_finish = status.latest_termination().and_then(|t| t.finished_at).map(Stamp::timestamp);
                let mut restarts = std::mem::take(&mut history.restarts).into_vec();
                for i in 0..own {
                    // The newest own restart is the last termination; earlier ones in the same
                    // gap happened some time after the previous observation.
                    let newest = i + 1 == own && !last_by_kubelet;
                    let at = if newest { last_finish.unwrap_or(now) } else { previous_observation };
                    restarts.push(at);
                }
                restarts.sort();
                let excess = restarts.len().saturating_sub(MAX_RECORDED_RESTARTS);
                restarts.drain(..excess);
                history.restarts = restarts.into_boxed_slice();
            }
            history.restart_count = status.restart_count;
            let order_marks = history.marks.intersection(HistoryMarks::START_ORDER);
            history.marks = next_marks(pod, view, status, last_by_kubelet);

            // A new run that is not ready yet is one whose startup we can time. A run already
            // seen (ready) that turns unready is not new: its start-up is long over.
            if let Some(started) = running_since {
                let new_run = history.run_started_at != Some(started);
                if new_run && history.watched_run_started_at != Some(started) && !status.ready {
                    history.watched_run_started_at = Some(started);
                    history.first_ready_at = None;
                }
            }
            // The start-order marks hold for the run they were seen in.
            if history.run_started_at == running_since {
                history.marks.insert(order_marks);
            }
            history.run_started_at = running_since;
            if status.ready != history.ready {
                history.ready = status.ready;
                history.ready_changed_at = Some(Stamp::new(now));
                if status.ready && history.first_ready_at.is_none() {
                    if let Some(started) = history.watched_run_started_at.filter(|s| running_since == Some(*s)) {
                        history.first_ready_at = Some(Stamp::new(now));
                        let seconds = now.duration_since(started.timestamp()).as_secs_f64().max(0.0);
                        observations.push(Observation::StartedUp { container: view.name.to_string(), seconds });
                    }
                }
            }
            order.count(view.kind, history);
        }
        order.mark(pod, &mut containers);
        // Forget containers the Pod no longer has (they cannot come back under the same Pod).
        containers.retain(|h| pod.containers.iter().any(|c| c.name == h.name));
        self.containers = containers.into_boxed_slice();
        self.observed_at = Some(Stamp::new(now));
        observations
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
    fn count(&mut self, kind: ContainerKind, history: &ContainerHistory) {
        let unready = history.unready_start();
        match kind {
            ContainerKind::Regular => {
                self.running_regular += usize::from(history.run_started_at.is_some());
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
        for view in pod.containers.iter().filter(|c| c.kind != ContainerKind::Init && c.status.is_some()) {
            let Some(history) = containers.iter_mut().find(|h| h.name == view.name) else { continue };
            let unready = history.unready_start();
            let regular = view.kind == ContainerKind::Regular;
            let running = history.run_started_at.is_some();
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
    view: &super::pod::ContainerView,
    status: &super::pod::ContainerStatusView,
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

#[cfg(test)]
mod tests {
    #[test]
    fn the_start_order_marks_keep_a_container_history_at_64_bytes() {
        assert_eq!(std::mem::size_of::<super::ContainerHistory>(), 64);
    }
}
