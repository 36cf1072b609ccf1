//! A Pod as the operator has observed it: the last state it saw with the history of the states
//! before ([`ObservedPod`]).
//!
//! The history records what a container was at the last observation only by reading it in the
//! view of that observation ([`PodHistory`]): a history read or updated beside another view
//! would count restarts and readiness flips that never happened. The two are kept together
//! here, and every new state goes through [`ObservedPod::observe`], which updates the history
//! from the view it replaces.

use jiff::Timestamp;

use super::history::{ContainerHistory, PodHistory};
use super::observation::Observation;
use super::pod::PodView;

/// The last state of a Pod the operator observed and its [`PodHistory`], which only ever
/// change together: [`Self::new`] is the first observation, [`Self::observe`] each later one.
/// It takes the room of its two fields and no more.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObservedPod {
    /// The state last observed.
    view: PodView,
    /// What the observations so far recorded, the last of them `view`.
    history: PodHistory,
}

impl ObservedPod {
    /// The first observation of a Pod: `view`, seen at `now`. Nothing earlier to compare it
    /// with, each container is first seen (its restarts so far have unknown times, and only a
    /// run not ready yet can still be timed), and nothing is reported: a start-up is timed
    /// only when a later observation sees the container become ready.
    pub fn new(view: PodView, now: Timestamp) -> Self {
        let mut history = PodHistory::default();
        let observations = history.observe(None, &view, now);
        debug_assert!(observations.is_empty(), "a first observation reports nothing: {observations:?}");
        ObservedPod { view, history }
    }

    /// Observes `view`, a newer state of the same Pod, at `now`: updates the history from the
    /// state last observed, which `view` then replaces. A view with other containers than the
    /// last (which the API server never lets a Pod have) is observed as a first one, keeping
    /// only the history's clocks.
    pub fn observe(&mut self, view: PodView, now: Timestamp) -> Vec<Observation> {
        let observations = self.history.observe(Some(&self.view), &view, now);
        self.view = view;
        observations
    }

    /// The state last observed.
    pub fn view(&self) -> &PodView {
        &self.view
    }

    /// What the observations recorded: what [`crate::evaluate`] takes beside [`Self::view`].
    pub fn history(&self) -> &PodHistory {
        &self.history
    }

    /// The history of the container named `name` in the state last observed, if any.
    pub fn container(&self, name: &str) -> Option<&ContainerHistory> {
        self.history.container(&self.view, name)
    }

    /// Keeps exactly the clocks of the conditions that hold now ([`PodHistory::set_clocks`]).
    pub fn set_clocks(&mut self, holding: impl IntoIterator<Item = (&'static str, String)>, now: Timestamp) {
        self.history.set_clocks(holding, now);
    }

    /// Adds the clocks of conditions that hold now and keeps every other
    /// ([`PodHistory::add_clocks`]).
    pub fn add_clocks(&mut self, holding: impl IntoIterator<Item = (&'static str, String)>, now: Timestamp) {
        self.history.add_clocks(holding, now);
    }
}

// One per tracked Pod, inside the index's `TrackedPod`
// (docs/architecture.md#what-a-tracked-pod-is-made-of): the view and the history side by
// side, not a byte more.
#[cfg(target_pointer_width = "64")]
const _: () =
    assert!(std::mem::size_of::<ObservedPod>() == std::mem::size_of::<PodView>() + std::mem::size_of::<PodHistory>());
