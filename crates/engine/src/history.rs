//! What the operator has observed of a Pod over time, beyond what one Pod object says.
//!
//! The API keeps only the latest state of each container. Every new Pod view goes, with the
//! one before it, to [`PodHistory::observe`](crate::PodHistory::observe) (crates/engine/src/observation.rs), which records readiness flips,
//! first-ready times and restart increments with their times here. The only way in is
//! [`ObservedPod::observe`](crate::ObservedPod::observe): an `ObservedPod` keeps the history
//! with the view it last observed, so that no caller can pair them wrongly. `audit` evaluates
//! with an empty history, so every rule must also work from the API's timestamps alone.

use jiff::Timestamp;
use thin_vec::ThinVec;

use super::container::ContainerStatusView;
use super::pod::PodView;
use super::stamp::Stamp;

/// Restart times kept per container; older restarts are treated as "at Pod start", which
/// only makes them leave the counting window sooner.
pub const MAX_RECORDED_RESTARTS: usize = 32;

bitflags::bitflags! {
    /// What one observation of a container leaves for the next (see `restart_causes.rs`).
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
        /// The operator saw the run it watched from its start (`watched_run_started_at`)
        /// become ready: its start-up was timed, and it is no longer in an unready start.
        /// Held until another run is watched.
        const WATCHED_RUN_SEEN_READY = 1 << 6;
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

/// Observed history of one container, beyond what the Pod's current state says: what it was
/// at the last observation is that state itself (kept beside the history, in an
/// [`ObservedPod`](crate::ObservedPod)), so only what no single state holds is kept here, in
/// 32 bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContainerHistory {
    /// The container's position in the Pod's `containers` ([`PodView::containers`](crate::PodView::containers)), which
    /// never changes for a Pod: the API server keeps a Pod's containers as they were created.
    pub at: u32,
    /// How many of the restarts the kubelet made itself (in-place Pod restarts of another
    /// container's doing, resizes, restarts during termination): not the container's failures.
    pub restarts_by_kubelet: u16,
    /// What the last observation left for the next.
    pub marks: HistoryMarks,
    /// Times of restarts observed after the first observation, oldest first. A thin vector:
    /// 8 bytes and no allocation for the container that never restarted (most of them),
    /// where a boxed slice takes 16.
    pub restarts: ThinVec<Stamp>,
    /// When the operator saw `ready` change last (not set by the first observation).
    pub ready_changed_at: Option<Stamp>,
    /// `startedAt` of the run the operator watched from its start (before it was ready);
    /// [`HistoryMarks::WATCHED_RUN_SEEN_READY`] says whether it was seen ready since. Only
    /// that is kept of the moment, not the operator's clock: it is never compared with a
    /// kubelet timestamp (a status write can report `ready` well after the kubelet acted on
    /// it), and the start-up it times is reported when it is seen.
    pub watched_run_started_at: Option<Stamp>,
}

// One per container of every tracked Pod (docs/architecture.md#what-a-tracked-pod-is-made-of).
#[cfg(target_pointer_width = "64")]
const _: () = assert!(std::mem::size_of::<ContainerHistory>() == 32);

/// Observed history of one Pod, plus the "first seen" clocks of conditions whose start the
/// API does not record. Lists are boxed slices (no capacity kept per tracked Pod): they
/// change only when a container is first seen or a condition starts or ends.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodHistory {
    /// Per-container history: one for each container that is not a plain init container and
    /// had a status in the last observed state, in the order of `at`.
    pub containers: Box<[ContainerHistory]>,
    /// When the operator last observed the Pod.
    pub observed_at: Option<Stamp>,
    /// Conditions without an API timestamp: (alert name, container) → first seen. `None`
    /// when none holds, as for most Pods: a thin pointer takes 8 bytes, a boxed slice 16.
    pub clocks: Option<Box<Clocks>>,
}

/// First-seen clocks: (alert name, container, first seen).
pub(crate) type Clocks = Vec<(&'static str, String, Timestamp)>;

impl ContainerHistory {
    /// Whether the container, in `status` (the state last observed), is running a run that
    /// was not ready yet as far as the operator can tell: watched from its start (or first
    /// seen not ready with nothing in the Pod saying it was ready once) and never seen ready.
    pub fn unready_start(&self, status: &ContainerStatusView) -> bool {
        let run = status.run_start();
        run.is_some() && !status.ready() && self.watched_run_started_at == run && !self.watched_run_seen_ready()
    }

    /// Whether the run watched from its start was seen ready.
    pub fn watched_run_seen_ready(&self) -> bool {
        self.marks.contains(HistoryMarks::WATCHED_RUN_SEEN_READY)
    }
}

impl PodHistory {
    /// The history of the container at `at` in the Pod's `containers`, if any.
    pub fn container_at(&self, at: usize) -> Option<&ContainerHistory> {
        let at = u32::try_from(at).ok()?;
        self.containers.binary_search_by_key(&at, |c| c.at).ok().map(|i| &self.containers[i])
    }

    /// The history of the container named `name` in `pod`, which must be the state last
    /// observed: [`ObservedPod::container`](crate::ObservedPod::container) pairs them.
    pub(crate) fn container(&self, pod: &PodView, name: &str) -> Option<&ContainerHistory> {
        self.container_at(pod.containers.iter().position(|c| c.name == name)?)
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
}
