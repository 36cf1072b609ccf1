//! One Event per workload: which (policy, workload, alert) fire on how many Pods, so that the
//! workload object gets one Warning when its first Pod fires an alert and one `Resolved` when
//! its last Pod clears it, however many Pods fire in between.
//!
//! Only what fires is remembered (a healthy workload costs nothing), at most
//! [`MAX_KEYS_PER_NAMESPACE`] keys per namespace and [`MAX_KEYS`] in all: past that a
//! namespace's new workloads get Pod Events only, counted in
//! `sidecar_watch_limited_total{limit="workload-events"}`; another namespace's keep theirs.

use std::collections::{HashMap, HashSet};

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event as K8sEvent;

use super::announce::{alert_of_event, latest_per_key};
use crate::engine::{AlertKey, ContainerKind, PodUid, PodUidBuf, PolicyRef, WorkloadId, WorkloadKind};
use crate::index::{NamespaceShares, Transition};

/// (policy, workload, alert) keys remembered at most: a key and one Pod's UID each, so the
/// cap bounds what tenants' many failing workloads can make the Event path hold.
pub const MAX_KEYS: usize = 20_000;
/// Keys one namespace may hold: a tenant's many failing workloads (or forged policies) use up
/// its own share, never the others'.
pub const MAX_KEYS_PER_NAMESPACE: usize = 1_000;

/// One alert on one workload under one policy: one Warning (and its `Resolved`) per key. The
/// same key is made when the Warning is published ([`WorkloadKey::of`]) and when a new leader
/// reads it back ([`standing_from_events`]), through one constructor, so that a restart or a
/// failover finds the alert it announced whatever container it names.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct WorkloadKey {
    /// The policy that raised the alert.
    policy: PolicyRef,
    /// The workload.
    pub(crate) workload: WorkloadId,
    /// The alert (rule, container, check), as on each Pod; an alert on the workload itself is
    /// its rule alone, as the index keeps it (one per policy, rule and workload): the
    /// container it names is not in its Event's reference when the template does not declare
    /// it (an injected sidecar), and may change while it fires.
    alert: AlertKey<'static>,
}

impl WorkloadKey {
    /// The only way to a key: see [`WorkloadKey::alert`].
    fn new(policy: PolicyRef, workload: WorkloadId, alert: AlertKey<'static>) -> Self {
        let alert = if alert.name.on_workload() {
            AlertKey { name: alert.name, container: "".into(), check: None }
        } else {
            alert
        };
        WorkloadKey { policy, workload, alert }
    }

    /// The key of a transition's alert on its Pod's workload (or on the workload itself);
    /// `None` for a bare Pod or an owner kind that gets no Events.
    pub fn of(t: &Transition) -> Option<Self> {
        t.workload.kind.api_version()?;
        Some(Self::new((*t.policy).clone(), t.workload.clone(), t.alert.key().into_owned()))
    }

    /// The workload the key names.
    pub fn workload(&self) -> &WorkloadId {
        &self.workload
    }

    /// `Kind/namespace/name`: the spam filter's bucket for the workload object.
    pub fn object(&self) -> String {
        let WorkloadId { namespace, kind, name } = &self.workload;
        format!("{}/{namespace}/{name}", kind.as_str())
    }
}

/// A published workload Warning: the object it is about and the container it names, which
/// its `Resolved` names too.
#[derive(Clone, Debug, PartialEq)]
pub struct Announced {
    /// The workload object, as the Warning's `regarding`.
    pub object: ObjectReference,
    /// The container the Warning names (empty: none, or not known from its Event).
    pub container: String,
}

/// An alert firing on Pods of one workload.
#[derive(Debug)]
pub struct Firing {
    /// The Pods firing it, by UID; `None` is an alert on the workload itself, its own
    /// single member.
    pub pods: HashSet<Option<PodUidBuf>>,
    /// One of them, by name, for the note.
    pub example: String,
    /// That Pod's alert message.
    pub message: String,
    /// The container the alert names (as the latest transition that counted it says).
    pub container: String,
    /// The UID of the owner reference of the first Pod (a Deployment's: its ReplicaSet's; a
    /// CronJob's: its Job's).
    pub owner_uid: Option<String>,
    /// A CronJob's: the name of the first Pod's Job (its `batch.kubernetes.io/job-name`
    /// label), to read the CronJob through it.
    pub job: Option<String>,
    /// Where the container is declared, for the `fieldPath`.
    pub container_kind: Option<ContainerKind>,
    /// The workload object the Warning was published about: its `Resolved` goes there too.
    /// `None`: not announced (yet).
    pub announced: Option<ObjectReference>,
}

impl Firing {
    /// What its `Resolved` is about, if its Warning was published.
    fn into_announced(self) -> Option<Announced> {
        Some(Announced { object: self.announced?, container: self.container })
    }
}

/// What a transition asks of the workload's Events.
#[derive(Debug, PartialEq)]
pub enum Step {
    /// Nothing to publish.
    Nothing,
    /// The first Pod fires it: a Warning is due.
    Announce,
    /// The last Pod cleared an announced alert: its `Resolved` is due, about this object.
    Resolve(Announced),
    /// A new key past [`MAX_KEYS_PER_NAMESPACE`] or [`MAX_KEYS`]: not remembered.
    Limited,
}

/// The alerts firing per workload.
#[derive(Debug)]
pub struct WorkloadAlerts {
    firing: HashMap<WorkloadKey, Firing>,
    /// A place per key, in the key's namespace.
    shares: NamespaceShares,
}

impl Default for WorkloadAlerts {
    fn default() -> Self {
        Self::new(MAX_KEYS, MAX_KEYS_PER_NAMESPACE)
    }
}

impl WorkloadAlerts {
    /// Remembers at most `max_keys` keys, `max_per_namespace` of one namespace.
    pub fn new(max_keys: usize, max_per_namespace: usize) -> Self {
        WorkloadAlerts { firing: HashMap::new(), shares: NamespaceShares::new(max_per_namespace, max_keys) }
    }

    /// Pod `t` fires `key`'s alert (`owner_uid`: its owner reference's UID; `job`: its Job's
    /// name, for a CronJob's Pod).
    pub fn fired(&mut self, key: WorkloadKey, t: &Transition, owner_uid: Option<&str>, job: Option<&str>) -> Step {
        if let Some(firing) = self.firing.get_mut(&key) {
            firing.pods.insert(t.pod_uid.clone());
            if t.alert.name.on_workload() {
                // Its own alert again (a new leader's catch-up): the container it names now.
                firing.container.clone_from(&t.alert.container);
            }
            return Step::Nothing;
        }
        if !self.shares.take(&key.workload.namespace) {
            return Step::Limited;
        }
        let firing = Firing {
            pods: HashSet::from([t.pod_uid.clone()]),
            example: t.pod.clone(),
            message: t.alert.message.clone(),
            container: t.alert.container.clone(),
            owner_uid: owner_uid.map(str::to_string),
            job: job.map(str::to_string),
            container_kind: t.container_kind,
            announced: None,
        };
        self.firing.insert(key, firing);
        Step::Announce
    }

    /// Pod `pod_uid` no longer fires `key`'s alert.
    pub fn resolved(&mut self, key: &WorkloadKey, pod_uid: &Option<PodUidBuf>) -> Step {
        let Some(firing) = self.firing.get_mut(key) else { return Step::Nothing };
        firing.pods.remove(pod_uid);
        if !firing.pods.is_empty() {
            return Step::Nothing;
        }
        self.shares.give_back(&key.workload.namespace);
        match self.firing.remove(key).and_then(Firing::into_announced) {
            Some(announced) => Step::Resolve(announced),
            None => Step::Nothing,
        }
    }

    /// Forgets the Pods that are gone (`tracked` is false for them); returns the announced
    /// keys whose last firing Pod went, with the object whose `Resolved` is due.
    pub fn forget_untracked(&mut self, mut tracked: impl FnMut(PodUid<'_>) -> bool) -> Vec<(WorkloadKey, Announced)> {
        let mut resolved = Vec::new();
        let shares = &mut self.shares;
        self.firing.retain(|key, firing| {
            // An alert on a workload stands for itself (no Pod UID): only its own
            // `Resolved` transition takes it away.
            firing.pods.retain(|uid| uid.as_ref().is_none_or(|uid| tracked(uid.as_uid())));
            if firing.pods.is_empty() {
                shares.give_back(&key.workload.namespace);
                if let Some(object) = firing.announced.take() {
                    resolved
                        .push((key.clone(), Announced { object, container: std::mem::take(&mut firing.container) }));
                }
                return false;
            }
            true
        });
        resolved
    }

    /// Forgets every key of `policy` (deleted, or another object now): like the alerts of
    /// its Pods, its workload alerts end without a `Resolved`.
    pub fn forget_policy(&mut self, policy: &PolicyRef) {
        let shares = &mut self.shares;
        self.firing.retain(|key, _| {
            let keep = key.policy != *policy;
            if !keep {
                shares.give_back(&key.workload.namespace);
            }
            keep
        });
    }

    /// The policies of the keys remembered.
    pub(crate) fn policies(&self) -> impl Iterator<Item = &PolicyRef> {
        self.firing.keys().map(|k| &k.policy)
    }

    /// The alert on `key`, while a Pod fires it.
    pub fn get(&self, key: &WorkloadKey) -> Option<&Firing> {
        self.firing.get(key)
    }

    /// Records that `key`'s Warning was published about `object` (`None`: taken back).
    pub fn set_announced(&mut self, key: &WorkloadKey, object: Option<ObjectReference>) {
        if let Some(firing) = self.firing.get_mut(key) {
            firing.announced = object;
        }
    }

    /// The keys firing now.
    pub fn keys(&self) -> impl Iterator<Item = &WorkloadKey> {
        self.firing.keys()
    }

    /// How many keys are remembered.
    pub fn len(&self) -> usize {
        self.firing.len()
    }

    /// Whether nothing fires.
    pub fn is_empty(&self) -> bool {
        self.firing.is_empty()
    }
}

/// The workload Warnings the cluster's Events say stand (their latest Event is the
/// Warning), with the object each is about: what a new leader must not announce again, and
/// must resolve if nothing fires it any more.
pub fn standing_from_events(events: &[K8sEvent]) -> HashMap<WorkloadKey, Announced> {
    let latest = latest_per_key(events, |event| {
        let regarding = event.regarding.as_ref()?;
        let kind = WorkloadKind::controller(regarding.kind.as_deref()?, regarding.api_version.as_deref())?;
        let (alert, policy, firing) = alert_of_event(event)?;
        let container = alert.container.to_string();
        let namespace = regarding.namespace.clone().unwrap_or_default();
        let workload = WorkloadId { namespace, kind, name: regarding.name.clone().unwrap_or_default() };
        let key = WorkloadKey::new(policy, workload, alert);
        Some((key, firing.then(|| Announced { object: regarding.clone(), container })))
    });
    latest.into_iter().filter_map(|(key, standing)| Some((key, standing?))).collect()
}

/// The `fieldPath` of a container in the Pod template of a workload of kind `workload`
/// (a CronJob keeps its template in its Job template); `None` for a kind without one.
pub fn workload_field_path(workload: &WorkloadKind, kind: Option<ContainerKind>, container: &str) -> Option<String> {
    let path = super::field_path(kind, container)?;
    let template = workload.template_pointer()?.trim_start_matches('/').replace('/', ".");
    Some(format!("{template}.{path}"))
}

pub(crate) mod publish;
#[cfg(test)]
mod restart_tests;
#[cfg(test)]
mod tests;
