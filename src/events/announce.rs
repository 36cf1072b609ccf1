//! What was announced: which alerts' Warning Events stand, so that a restart or a failover
//! neither repeats nor loses an announcement.

use std::collections::{HashMap, HashSet};
use std::hash::Hash;

use jiff::Timestamp;
use k8s_openapi::api::events::v1::Event as K8sEvent;

use super::note::container_of;
use super::REPORTING_CONTROLLER;
use crate::engine::{AlertKey, AlertName, Check, PodUid, PodUidBuf, PolicyRef};
use crate::index::{Transition, TransitionKind};

/// What identifies an announced alert: one Warning Event (and its series) per key. It is
/// the alert's own key ([`AlertKey`]) on one Pod under one policy.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct AnnounceKey {
    /// The Pod's UID: a Pod of the same name made again is another Pod.
    pub(crate) pod_uid: PodUidBuf,
    /// The policy that raised the alert.
    pub(crate) policy: PolicyRef,
    /// The alert within that Pod and policy.
    pub alert: AlertKey<'static>,
}

impl AnnounceKey {
    /// The key of a transition on a Pod; `None` for an alert on a workload, whose Events
    /// are the workload's (`workload`), not announced per Pod.
    fn of(t: &Transition) -> Option<Self> {
        let pod_uid = t.pod_uid.clone()?;
        Some(AnnounceKey { pod_uid, policy: (*t.policy).clone(), alert: t.alert.key().into_owned() })
    }

    /// The key an Event of this operator stands for, or `None` for an Event that is not an
    /// alert announcement on a Pod (or names an alert or check this version does not know).
    fn from_event(event: &K8sEvent) -> Option<(Self, bool)> {
        let regarding = event.regarding.as_ref()?;
        if regarding.kind.as_deref() != Some("Pod") {
            return None;
        }
        let (alert, policy, firing) = alert_of_event(event)?;
        let pod_uid = PodUidBuf::parse(regarding.uid.as_deref().unwrap_or_default());
        Some((AnnounceKey { pod_uid, policy, alert }, firing))
    }
}

/// The alert, policy and direction (firing: true) an Event of this operator announces,
/// whatever object it is about; `None` for an Event that is not an alert announcement, or
/// names an alert or check this version does not know.
pub(super) fn alert_of_event(event: &K8sEvent) -> Option<(AlertKey<'static>, PolicyRef, bool)> {
    let regarding = event.regarding.as_ref()?;
    let reason = event.reason.as_deref()?;
    let (alert, firing) = match reason.strip_suffix("Resolved") {
        Some(alert) => (alert, false),
        None => (reason, true),
    };
    let alert = AlertName::ALL.into_iter().find(|a| a.as_str() == alert)?;
    let related = event.related.as_ref()?;
    let check = match alert {
        AlertName::SidecarMisconfigured => Some(Check::from_label(event.action.as_deref()?)?),
        _ => None,
    };
    let container = match alert {
        // Its container does not exist: the action names it (`note::action`).
        AlertName::SidecarMissing => event.action.clone().unwrap_or_default(),
        _ => container_of(regarding.field_path.as_deref()),
    };
    let policy_name = related.name.clone().unwrap_or_default();
    let policy = match related.namespace.clone().filter(|ns| !ns.is_empty()) {
        Some(ns) => PolicyRef::namespaced(ns, policy_name),
        None => PolicyRef::cluster(policy_name),
    };
    Some((AlertKey { name: alert, container: container.into(), check }, policy, firing))
}

/// When an Event was last observed: its series' last occurrence, else its own time, else
/// its object's creation; a new leader reads the newest Event of each alert by it.
fn last_seen(event: &K8sEvent) -> Timestamp {
    event
        .series
        .as_ref()
        .map(|s| s.last_observed_time.0)
        .or(event.event_time.as_ref().map(|t| t.0))
        .or(event.metadata.creation_timestamp.as_ref().map(|t| t.0))
        .unwrap_or(Timestamp::UNIX_EPOCH)
}

/// What the cluster's Events say was announced last: key → firing (true) or resolved.
pub fn announced_from_events(events: &[K8sEvent]) -> HashMap<AnnounceKey, bool> {
    latest_per_key(events, AnnounceKey::from_event)
}

/// What the newest of this operator's Events for each key says (by [`last_seen`]), as
/// `read` gives an Event's key and value (`None`: not an Event of that key).
pub(super) fn latest_per_key<K: Eq + Hash, V>(
    events: &[K8sEvent],
    mut read: impl FnMut(&K8sEvent) -> Option<(K, V)>,
) -> HashMap<K, V> {
    let mut latest: HashMap<K, (Timestamp, V)> = HashMap::new();
    for event in events.iter().filter(|e| e.reporting_controller.as_deref() == Some(REPORTING_CONTROLLER)) {
        let Some((key, value)) = read(event) else { continue };
        let when = last_seen(event);
        if latest.get(&key).is_none_or(|(t, _)| *t <= when) {
            latest.insert(key, (when, value));
        }
    }
    latest.into_iter().map(|(key, (_, value))| (key, value)).collect()
}

/// Decides which transitions to publish, given what was announced.
///
/// Only alerts announced as firing are remembered: a resolved or never-announced alert looks
/// the same, so the memory is bounded by what fires now, not by every alert ever seen.
#[derive(Debug, Default)]
pub struct Announcer {
    firing: HashSet<AnnounceKey>,
}

/// What a new leader publishes after reading the cluster's Events.
#[derive(Debug, Default)]
pub struct Reconciliation {
    /// Alerts firing now that no standing Warning announces.
    pub fire: Vec<Transition>,
    /// Announced alerts of tracked Pods that cleared while nobody watched: their `Resolved`
    /// Event is due (the Pod's names and the container's kind come from the index).
    pub resolve: Vec<AnnounceKey>,
}

impl Announcer {
    /// Starts from what the cluster's Events say (`true`: the latest Event is the Warning).
    pub fn from_announced(announced: HashMap<AnnounceKey, bool>) -> Self {
        Self { firing: announced.into_iter().filter(|(_, firing)| *firing).map(|(key, _)| key).collect() }
    }

    /// Whether to publish `t`; records it as announced if so. Never an alert on a workload:
    /// its Event is the workload's.
    pub fn should_publish(&mut self, t: &Transition) -> bool {
        let Some(key) = AnnounceKey::of(t) else { return false };
        match t.kind {
            TransitionKind::Fired => self.firing.insert(key),
            TransitionKind::Resolved => self.firing.remove(&key),
        }
    }

    /// Takes back what [`Announcer::should_publish`] recorded for `t`, when it was not
    /// published after all.
    pub(crate) fn undo(&mut self, t: &Transition) {
        let Some(key) = AnnounceKey::of(t) else { return };
        match t.kind {
            TransitionKind::Fired => self.firing.remove(&key),
            TransitionKind::Resolved => self.firing.insert(key),
        };
    }

    /// Forgets the announcements of Pods that are gone (`tracked` is false for them):
    /// nothing about them can change again.
    pub fn forget_untracked(&mut self, mut tracked: impl FnMut(PodUid<'_>) -> bool) {
        self.firing.retain(|k| tracked(k.pod_uid.as_uid()));
    }

    /// Forgets the announcements of `policy`'s alerts: it was deleted, or names another
    /// object now. Like its Pods' alerts, which end without a transition, they get no
    /// `Resolved`.
    pub(crate) fn forget_policy(&mut self, policy: &PolicyRef) {
        self.firing.retain(|k| k.policy != *policy);
    }

    /// The policies of the alerts remembered as announced firing.
    pub(crate) fn policies(&self) -> impl Iterator<Item = &PolicyRef> {
        self.firing.iter().map(|k| &k.policy)
    }

    /// How many alerts are remembered as announced firing.
    pub fn len(&self) -> usize {
        self.firing.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.firing.is_empty()
    }

    /// Reconciles with the firing set after a (re)start: what to announce as firing, and
    /// which announced Warnings of tracked Pods (`tracked`) no longer fire.
    pub fn reconcile(
        &mut self,
        firing: Vec<Transition>,
        mut tracked: impl FnMut(PodUid<'_>) -> bool,
    ) -> Reconciliation {
        let firing_keys: HashSet<AnnounceKey> = firing.iter().filter_map(AnnounceKey::of).collect();
        // Recorded when published, like every transition; an alert on a workload goes on to
        // the workload's count.
        let fire =
            firing.into_iter().filter(|t| AnnounceKey::of(t).is_none_or(|key| !self.firing.contains(&key))).collect();
        // Announcements of Pods that are gone can never change again.
        self.firing.retain(|k| tracked(k.pod_uid.as_uid()));
        let resolve: Vec<AnnounceKey> = self.firing.iter().filter(|k| !firing_keys.contains(*k)).cloned().collect();
        for key in &resolve {
            self.firing.remove(key);
        }
        Reconciliation { fire, resolve }
    }
}
