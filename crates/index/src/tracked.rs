//! What the index keeps per Pod: the compact view last observed with its history (an
//! [`ObservedPod`]), and per policy the alerts of the last evaluation without their messages.

use std::borrow::Cow;
use std::sync::Arc;

use jiff::Timestamp;
use sidecar_watch_api::Severity;
use sidecar_watch_engine::CatalogId;
use sidecar_watch_engine::{
    Alert, AlertKey, AlertName, AlertState, Check, CompiledPolicy, ContainerView, Identified, Observation, ObservedPod,
    PodHistory, PodView, PolicyRef, SidecarType, Stamp,
};

/// An active alert as the index keeps it: everything but the message, which is most of an
/// alert's memory and is rebuilt by evaluating again when it is needed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredAlert {
    /// Which rule.
    pub name: AlertName,
    /// Its severity.
    pub severity: Severity,
    /// Which container, present or absent, by position rather than by name.
    pub container: AlertContainer,
    /// The failed check, for `SidecarMisconfigured`.
    pub check: Option<Check>,
    /// Pending or firing.
    pub state: AlertState,
    /// Since when the condition holds.
    pub since: Option<Stamp>,
}

// One per alert of every tracked Pod (docs/architecture.md#what-a-tracked-pod-is-made-of).
#[cfg(target_pointer_width = "64")]
const _: () = assert!(std::mem::size_of::<StoredAlert>() == 16);

/// The container a stored alert is about, in 4 bytes: its name is read from the Pod's view,
/// the catalog, or the policy that raised the alert, never kept per alert.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AlertContainer {
    /// A Pod-level check.
    Pod,
    /// The container at this index of the Pod's `view.containers`.
    Present(u16),
    /// A catalog sidecar the Pod lacks (`SidecarMissing`), named by the entry's first name.
    AbsentFromCatalog(CatalogId),
    /// The entry at this index of the raising policy's `spec.sidecars.required`, which the
    /// Pod lacks (`SidecarMissing`).
    AbsentRequired(u16),
}

const _: () = assert!(std::mem::size_of::<AlertContainer>() == 4);

impl AlertContainer {
    /// Where `alert`'s container is, present in `view` or absent; `sidecars` (the evaluated
    /// ones) are looked at first, so that a Pod with thousands of containers does not cost a
    /// scan of them all per alert.
    fn of(view: &PodView, sidecars: &[(usize, Identified)], policy: &CompiledPolicy, alert: &Alert) -> Self {
        if alert.name == AlertName::SidecarMissing {
            // The two names the rule gives an absent sidecar: a catalog entry's first name, or
            // an entry of the policy's `spec.sidecars.required` as written.
            let catalog = CatalogId::by_first_name(&alert.container).map(AlertContainer::AbsentFromCatalog);
            let required = || {
                let i = policy.required_sidecars().iter().position(|r| *r == alert.container)?;
                u16::try_from(i).ok().map(AlertContainer::AbsentRequired)
            };
            return catalog.or_else(required).unwrap_or(AlertContainer::Pod);
        }
        if alert.container.is_empty() {
            return AlertContainer::Pod;
        }
        sidecars
            .iter()
            .map(|(i, _)| *i)
            .find(|i| view.containers.get(*i).is_some_and(|c| c.name == alert.container))
            .or_else(|| view.containers.iter().position(|c| c.name == alert.container))
            .and_then(|i| u16::try_from(i).ok())
            .map_or(AlertContainer::Pod, AlertContainer::Present)
    }

    /// The container's name ("" for Pod-level checks): `view` is the Pod's view and `policy`
    /// the policy the alert was stored with.
    pub fn name<'a>(self, view: &'a PodView, policy: &'a CompiledPolicy) -> &'a str {
        match self {
            AlertContainer::Pod => "",
            AlertContainer::Present(i) => view.containers.get(usize::from(i)).map_or("", |c| c.name.as_str()),
            AlertContainer::AbsentFromCatalog(id) => id.entry().names[0],
            AlertContainer::AbsentRequired(i) => {
                policy.required_sidecars().get(usize::from(i)).map_or("", String::as_str)
            }
        }
    }

    /// The catalog entry of the container, if it is one: a present container's (found by
    /// name or image when the Pod was read), an absent catalog sidecar's, or the entry whose
    /// names hold the absent required sidecar's; `None` for Pod-level checks.
    pub fn catalog(self, view: &PodView, policy: &CompiledPolicy) -> Option<CatalogId> {
        match self {
            AlertContainer::Pod => None,
            AlertContainer::Present(i) => view.containers.get(usize::from(i)).and_then(|c| c.catalog),
            AlertContainer::AbsentFromCatalog(id) => Some(id),
            AlertContainer::AbsentRequired(i) => {
                let name = policy.required_sidecars().get(usize::from(i))?;
                CatalogId::recognise(name, None, false)
            }
        }
    }
}

impl StoredAlert {
    /// `alert`, raised by `policy` on the Pod `view`, as stored ([`AlertContainer::of`]).
    pub(super) fn new(
        view: &PodView,
        sidecars: &[(usize, Identified)],
        policy: &CompiledPolicy,
        alert: &Alert,
    ) -> Self {
        StoredAlert {
            name: alert.name,
            severity: alert.severity,
            container: AlertContainer::of(view, sidecars, policy, alert),
            check: alert.check,
            state: alert.state,
            since: alert.since.map(Stamp::new),
        }
    }

    /// What identifies the alert ([`Alert::key`]): `view` and `policy` are the Pod's view
    /// and the policy it was stored with.
    pub fn key<'a>(&self, view: &'a PodView, policy: &'a CompiledPolicy) -> AlertKey<'a> {
        AlertKey { name: self.name, container: Cow::Borrowed(self.container.name(view, policy)), check: self.check }
    }

    /// The alert without its message.
    pub(super) fn to_alert(&self, view: &PodView, policy: &CompiledPolicy) -> Alert {
        Alert {
            name: self.name,
            severity: self.severity,
            container: self.container.name(view, policy).to_string(),
            check: self.check,
            state: self.state,
            since: self.since.map(Stamp::timestamp),
            message: String::new(),
            identified_by: None,
        }
    }
}

/// The alerts one policy raised on one Pod.
#[derive(Clone, Debug)]
pub struct PolicyResult {
    /// The policy as it raised them (so that what its alerts refer to in it, such as an
    /// entry of `spec.sidecars.required`, stays what it was until the Pod is evaluated again).
    pub policy: Arc<CompiledPolicy>,
    /// Active alerts, sorted by key (a boxed slice: most results have none, and the rest
    /// keep no spare capacity).
    pub alerts: Box<[StoredAlert]>,
}

// One per Pod and selecting policy (docs/architecture.md#what-a-tracked-pod-is-made-of).
#[cfg(target_pointer_width = "64")]
const _: () = assert!(std::mem::size_of::<PolicyResult>() == 24);

impl PolicyResult {
    /// Which policy.
    pub fn policy_ref(&self) -> &PolicyRef {
        &self.policy.policy
    }

    /// Whether one of the alerts fires.
    pub fn is_firing(&self) -> bool {
        self.alerts.iter().any(|a| a.state == AlertState::Firing)
    }

    /// The name of `alert`'s container, one of this result's ("" for Pod-level checks);
    /// `view` is the Pod's.
    pub fn container_name<'a>(&'a self, alert: &StoredAlert, view: &'a PodView) -> &'a str {
        alert.container.name(view, &self.policy)
    }

    /// The catalog entry of `alert`'s container ([`AlertContainer::catalog`]), one of this
    /// result's; `view` is the Pod's.
    pub fn catalog_of(&self, alert: &StoredAlert, view: &PodView) -> Option<CatalogId> {
        alert.container.catalog(view, &self.policy)
    }
}

/// One tracked Pod, boxed. Its lists are boxed slices: they are replaced whole by each
/// evaluation, and a `Vec` would keep a capacity field and spare capacity (4 entries for 1)
/// per Pod.
#[derive(Clone, Debug)]
pub struct TrackedPod {
    /// The latest state with what the operator observed over time: the view and the history
    /// change only together ([`TrackedPod::observe`]).
    pub(crate) observed: ObservedPod,
    /// One entry per valid policy that selects the Pod.
    pub results: Box<[PolicyResult]>,
    /// Where the Pod's sidecars are in `view.containers`, under any selecting policy as the
    /// last evaluation found them (sorted; none allocated for a Pod without any).
    sidecars: Box<[u32]>,
}

// One per Pod, in mimalloc's 160-byte size class (docs/architecture.md#what-a-tracked-pod-is-made-of).
#[cfg(target_pointer_width = "64")]
const _: () = assert!(std::mem::size_of::<TrackedPod>() == 144);

impl TrackedPod {
    /// A Pod first observed as `observed`, with no results yet.
    pub(super) fn new(observed: ObservedPod) -> Self {
        TrackedPod { observed, results: Box::default(), sidecars: Box::default() }
    }

    /// The latest state.
    pub fn view(&self) -> &PodView {
        self.observed.view()
    }

    /// What the operator observed over time, up to [`Self::view`].
    pub fn history(&self) -> &PodHistory {
        self.observed.history()
    }

    /// The Pod's sidecar containers with their types, in container order.
    pub fn sidecar_containers(&self) -> impl Iterator<Item = (&ContainerView, SidecarType)> {
        let containers = &self.view().containers;
        self.sidecars
            .iter()
            .filter_map(|i| containers.get(usize::try_from(*i).ok()?))
            .filter_map(|c| Some((c, SidecarType::of(c.kind)?)))
    }

    /// Whether a selecting policy found a sidecar in the Pod.
    pub fn has_sidecars(&self) -> bool {
        self.sidecar_containers().next().is_some()
    }

    /// Whether exactly the containers at `sidecars` (sorted indices into `view.containers`)
    /// are the Pod's sidecars.
    pub(super) fn sidecars_are(&self, sidecars: &[usize]) -> bool {
        self.sidecars.iter().map(|i| usize::try_from(*i).ok()).eq(sidecars.iter().map(|i| Some(*i)))
    }

    /// Makes exactly the containers at `sidecars` (sorted indices into `view.containers`) the
    /// Pod's sidecars.
    pub(super) fn mark_sidecars(&mut self, sidecars: &[usize]) {
        self.sidecars = sidecars.iter().filter_map(|i| u32::try_from(*i).ok()).collect();
    }

    /// Observes `view`, a newer state of the same Pod, at `now` ([`ObservedPod::observe`]),
    /// keeping the sidecars it still has by the same name at the same place (a Pod's
    /// containers never change; a view that says otherwise loses those, and the next
    /// evaluation finds them again).
    pub(super) fn observe(&mut self, view: PodView, now: Timestamp) -> Vec<Observation> {
        let old = &self.observed.view().containers;
        let same = |i: &u32| {
            let i = usize::try_from(*i).ok();
            let old = i.and_then(|i| old.get(i));
            let new = i.and_then(|i| view.containers.get(i));
            old.zip(new).is_some_and(|(old, new)| old.name == new.name)
        };
        if !self.sidecars.iter().all(same) {
            self.sidecars = self.sidecars.iter().copied().filter(same).collect();
        }
        self.observed.observe(view, now)
    }

    /// The Pod's sidecar container names with its namespace.
    pub fn sidecar_names(&self) -> Vec<super::SidecarName> {
        self.sidecar_containers().map(|(c, _)| (self.view().namespace().clone(), c.name.clone())).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sidecar_watch_engine::ContainerKind;
    use sidecar_watch_engine::{ContainerSpec, SpecFlags};

    fn view_of(names: &[&str]) -> PodView {
        let mut view = PodView::new("6f1c2d3e-0001-4b5a-9c8d-000000000001", "web-0");
        view.containers = names
            .iter()
            .map(|name| {
                let spec = ContainerSpec {
                    name: (*name).into(),
                    kind: ContainerKind::Regular,
                    flags: SpecFlags::empty(),
                    catalog: None,
                    liveness_target: None,
                    version: None,
                    resources: None,
                };
                ContainerView::new(spec, None)
            })
            .collect();
        view
    }

    fn now() -> Timestamp {
        "2025-06-03T10:30:00Z".parse().expect("a time")
    }

    fn sidecars(pod: &TrackedPod) -> Vec<&str> {
        pod.sidecar_containers().map(|(c, _)| c.name.as_str()).collect()
    }

    #[test]
    fn sidecar_marks_outlive_a_new_view_only_where_the_containers_are_the_same() {
        let mut pod = TrackedPod::new(ObservedPod::new(view_of(&["app", "envoy", "log-shipper"]), now()));
        pod.mark_sidecars(&[1, 2]);
        assert!(pod.sidecars_are(&[1, 2]) && !pod.sidecars_are(&[1]));
        pod.observe(view_of(&["app", "envoy", "log-shipper"]), now());
        assert_eq!(sidecars(&pod), ["envoy", "log-shipper"]);
        // A view that says the containers changed (no real Pod does) keeps no mark it cannot
        // tie to the same container.
        pod.observe(view_of(&["app", "log-shipper"]), now());
        assert_eq!(sidecars(&pod), Vec::<&str>::new());
        pod.mark_sidecars(&[]);
        assert!(!pod.has_sidecars());
    }
}
