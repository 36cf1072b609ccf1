//! The compact view of a Pod that the engine evaluates.
//!
//! Extracted once per watch event from a [`SlimPod`] and kept instead of it: only
//! what the rules read, with the static spec checks reduced to flags, so the operator's memory
//! per tracked Pod stays small.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::container::{container_parts, init_kind};
pub(crate) use super::container::{ContainerKind, ContainerStatusView, ContainerView, SpecFlags, Termination};
use super::interner::Interner;
use super::name::{LabelSet, Name, PodGroup};
use super::relations::{
    inits_without_network, liveness_targets, owner_of, port_conflicts, workload_of, Declared, Workload,
};
use super::stamp::Stamp;
use super::uid::PodUid;
use super::workload::WorkloadId;
use jiff::Timestamp;
use sidecar_watch_api::{SlimContainer, SlimContainerStatus, SlimPod};

bitflags::bitflags! {
    /// Pod conditions that change how the rules read the containers (one byte: it packs
    /// beside the other small fields of [`PodView`]).
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
    pub struct PodConditions: u8 {
        /// `PodReadyToStartContainers=False` (KEP-3085, GA 1.37): the sandbox or its network
        /// is not ready, so no container can run yet, whatever it is.
        const SANDBOX_NOT_READY = 1;
        /// `AllContainersRestarting=True` (KEP-5532): the kubelet is killing and removing every
        /// container to start the Pod again in place.
        const ALL_CONTAINERS_RESTARTING = 1 << 1;
        /// `PodResizeInProgress` (KEP-1287): the kubelet is applying a resize, which restarts
        /// containers whose `resizePolicy` says `RestartContainer`.
        const RESIZE_IN_PROGRESS = 1 << 2;
        /// `status.phase` is `Succeeded` or `Failed` (a condition in all but name): the kubelet
        /// starts none of the Pod's containers again, sidecars included.
        const FINISHED = 1 << 3;
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

/// Set in [`PodView`]'s `name_at` when the UID is kept as the 16 bytes of a UUID.
const UID_AS_BYTES: u32 = 1 << 31;

/// Everything the rules read about one Pod.
///
/// Strings and lists are boxed slices, not `String`s and `Vec`s: a view is built once and
/// never grows, so a capacity field and spare capacity would be kept for nothing in every
/// tracked Pod. The UID and the name share one allocation, what replicas share is one
/// pointer ([`PodGroup`]), the Pod's own times are 8-byte [`Stamp`]s like every other
/// instant kept, and the `Ready` condition is kept as two fields that pack beside the flags
/// (its size, pinned below, and a tracked Pod's: docs/architecture.md#what-a-tracked-pod-is-made-of).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodView {
    /// `metadata.uid` followed by `metadata.name` (see [`Self::uid`], [`Self::name`]): the
    /// UID as 16 bytes when it is a canonical UUID ([`PodUid`]), else as text.
    ids: Box<[u8]>,
    /// Where the name starts in `ids`, with [`UID_AS_BYTES`] set when the UID is 16 bytes.
    name_at: u32,
    /// Namespace, labels and owner, shared with the Pod's replicas (see [`Self::namespace`],
    /// [`Self::labels`], [`Self::owner`], [`Self::owned_by_job`]).
    group: Arc<PodGroup>,
    /// A Pod template of a workload manifest (`audit`), not a Pod: it has no status and no
    /// clocks, and its name is `<Kind>/<name>`.
    pub is_template: bool,
    /// `metadata.creationTimestamp`.
    pub created_at: Option<Stamp>,
    /// `status.startTime`: when the kubelet accepted the Pod.
    pub started_at: Option<Stamp>,
    /// `metadata.deletionTimestamp`: the Pod is terminating.
    pub deleting_since: Option<Stamp>,
    /// The conditions of newer Kubernetes releases the rules read.
    pub conditions: PodConditions,
    /// The `Ready` condition's status (see [`Self::ready_condition`]).
    ready_status: Option<bool>,
    /// The `Ready` condition's `lastTransitionTime`.
    ready_since: Option<Stamp>,
    /// Init containers first, in spec order, then regular containers.
    pub containers: Box<[ContainerView]>,
}

// One per tracked Pod, inside `TrackedPod` (docs/architecture.md#what-a-tracked-pod-is-made-of).
#[cfg(target_pointer_width = "64")]
const _: () = assert!(std::mem::size_of::<PodView>() == 80);

impl PodView {
    /// A Pod `uid`/`name` with nothing else known: no namespace, labels, owner, clocks or
    /// containers (for views built field by field).
    pub fn new(uid: &str, name: &str) -> PodView {
        let mut view = PodView {
            ids: Box::default(),
            name_at: 0,
            group: Arc::default(),
            is_template: false,
            created_at: None,
            started_at: None,
            deleting_since: None,
            conditions: PodConditions::empty(),
            ready_status: None,
            ready_since: None,
            containers: Box::default(),
        };
        view.set_ids(uid, name);
        view
    }

    /// `metadata.uid`.
    pub fn uid(&self) -> PodUid<'_> {
        let end = self.name_start();
        match self.ids.get(..end) {
            Some(bytes) if self.name_at & UID_AS_BYTES != 0 => {
                uuid::Uuid::from_slice(bytes).map_or(PodUid::Text(""), PodUid::Uuid)
            }
            Some(text) => PodUid::Text(std::str::from_utf8(text).unwrap_or_default()),
            None => PodUid::Text(""),
        }
    }

    /// `metadata.name`.
    pub fn name(&self) -> &str {
        // Checked again on each call (a few nanoseconds for a name) rather than trusted: it
        // was a `&str` when it was stored, so this never fails.
        self.ids.get(self.name_start()..).and_then(|name| std::str::from_utf8(name).ok()).unwrap_or_default()
    }

    fn name_start(&self) -> usize {
        (self.name_at & !UID_AS_BYTES) as usize
    }

    /// Sets the UID and the name.
    pub fn set_ids(&mut self, uid: &str, name: &str) {
        let ids = match PodUid::parse(uid) {
            PodUid::Uuid(uuid) => {
                self.name_at = uuid.as_bytes().len() as u32 | UID_AS_BYTES;
                [&uuid.as_bytes()[..], name.as_bytes()].concat()
            }
            PodUid::Text(text) => {
                // A UID of 2 GiB cannot come through the API: past that it is cut.
                let text = sidecar_watch_api::byte_prefix(text, (UID_AS_BYTES - 1) as usize);
                self.name_at = u32::try_from(text.len()).unwrap_or(0);
                [text.as_bytes(), name.as_bytes()].concat()
            }
        };
        self.ids = ids.into_boxed_slice();
    }

    /// The `Ready` condition.
    pub fn ready_condition(&self) -> Option<ConditionView> {
        self.ready_status.map(|status| ConditionView { status, since: self.ready_since })
    }

    /// Whether the Pod's `Ready` condition turned False after `started`: the Pod was Ready,
    /// every container with it, at some point after then, so a container running since
    /// `started` was ready once in that run.
    pub fn ready_lost_after(&self, started: Timestamp) -> bool {
        self.ready_condition()
            .filter(|c| !c.status)
            .and_then(|c| c.since)
            .is_some_and(|not_ready_since| not_ready_since.timestamp() > started)
    }

    /// Sets the `Ready` condition.
    pub fn set_ready_condition(&mut self, condition: Option<ConditionView>) {
        self.ready_status = condition.map(|c| c.status);
        self.ready_since = condition.and_then(|c| c.since);
    }

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

        let mut parts = Vec::with_capacity(spec.init_containers.len() + spec.containers.len());
        // The API server rejects two containers with one name; a hand-made dump may not. The
        // first keeps the name, so one container never yields two sets of alerts.
        // A set, not a scan: a hostile Pod may declare thousands of containers.
        let mut declared: Vec<&SlimContainer> = Vec::with_capacity(parts.capacity());
        let mut seen: HashSet<&str> = HashSet::with_capacity(parts.capacity());
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
            let restart_policy = spec.restart_policy.as_deref();
            parts.push(container_parts(c, kind, statuses.get(c.name.as_str()), restart_policy, names.names()));
            declared.push(c);
        }
        let facts: Vec<Declared> = declared
            .iter()
            .zip(&parts)
            .map(|(container, (parts, _))| Declared {
                spec: container,
                kind: parts.kind,
                runs_alongside: parts.kind != ContainerKind::Init,
                catalog: parts.catalog,
                run_as_user: container.security_context.run_as_user.or(spec.security_context.run_as_user),
            })
            .collect();
        let (conflicts, targets) = (port_conflicts(&facts), liveness_targets(&facts));
        let blackholed = inits_without_network(&facts);
        let mut containers = Vec::with_capacity(parts.len());
        for ((((mut spec, status), conflict), target), blackholed) in
            parts.into_iter().zip(conflicts).zip(targets).zip(blackholed)
        {
            spec.flags.set(SpecFlags::PORT_CONFLICT, conflict);
            spec.flags.set(SpecFlags::NO_NETWORK, blackholed);
            spec.liveness_target = target;
            containers.push(ContainerView::with_spec(names.container_spec(&spec), status));
        }

        let ready_condition = status.conditions.iter().find(|c| c.type_ == "Ready").map(|c| ConditionView {
            status: c.status == "True",
            since: c.last_transition_time.as_ref().map(|t| Stamp::new(t.0)),
        });
        let mut conditions = PodConditions::empty();
        if matches!(status.phase.as_deref(), Some("Succeeded" | "Failed")) {
            conditions.insert(PodConditions::FINISHED);
        }
        for c in &status.conditions {
            match (c.type_.as_str(), c.status.as_str()) {
                ("PodReadyToStartContainers", "False") => conditions.insert(PodConditions::SANDBOX_NOT_READY),
                ("AllContainersRestarting", "True") => conditions.insert(PodConditions::ALL_CONTAINERS_RESTARTING),
                ("PodResizeInProgress", "True") => conditions.insert(PodConditions::RESIZE_IN_PROGRESS),
                _ => {}
            }
        }

        let mut view = PodView {
            created_at: meta.creation_timestamp.as_ref().map(|t| Stamp::new(t.0)),
            started_at: status.start_time.as_ref().map(|t| Stamp::new(t.0)),
            deleting_since: meta.deletion_timestamp.as_ref().map(|t| Stamp::new(t.0)),
            conditions,
            containers: containers.into_boxed_slice(),
            ..PodView::new(meta.uid.as_deref().unwrap_or_default(), meta.name.as_deref().unwrap_or_default())
        };
        view.set_ready_condition(ready_condition);
        let group = PodGroup {
            namespace: names.name(meta.namespace.as_deref().unwrap_or_default()),
            labels: names.label_set(meta.labels.clone().unwrap_or_default()),
            injection_annotations: names
                .label_set(meta.annotations.as_ref().map(sidecar_watch_api::injection_annotations).unwrap_or_default()),
            host_network: spec.host_network,
            owner: workload_of(meta, names),
            owner_uid: owner_of(meta).map(|o| names.name(&o.uid)).filter(|uid| !uid.as_str().is_empty()),
            owned_by_job: meta
                .owner_references
                .iter()
                .flatten()
                .any(|o| o.kind == "Job" && o.api_version.starts_with("batch/")),
            runs_to_completion: matches!(spec.restart_policy.as_deref(), Some("Never" | "OnFailure")),
        };
        view.group = names.pod_group(group);
        view
    }

    /// `metadata.namespace`.
    pub fn namespace(&self) -> &Name {
        &self.group.namespace
    }

    /// `metadata.labels`, shared with every Pod that has the same ones.
    pub fn labels(&self) -> &LabelSet {
        &self.group.labels
    }

    /// The annotations injectors read (see [`crate::injection`]).
    pub fn injection_annotations(&self) -> &LabelSet {
        &self.group.injection_annotations
    }

    /// `spec.hostNetwork`.
    pub fn host_network(&self) -> bool {
        self.group.host_network
    }

    /// Whether the Pod's phase is `Succeeded` or `Failed`.
    pub fn finished(&self) -> bool {
        self.conditions.contains(PodConditions::FINISHED)
    }

    /// Whether the Pod runs, or is about to: a real Pod (not a template) that neither
    /// finished nor is being deleted. What every per-workload count (rollouts, the version
    /// drift, missing injections, the sidecar tax) counts.
    pub fn is_live(&self) -> bool {
        !self.is_template && !self.finished() && self.deleting_since.is_none()
    }

    /// The workload that owns the Pod, shared by its replicas; `None` for a Pod without
    /// owner (see [`Self::workload`]).
    pub fn owner(&self) -> Option<&Arc<Workload>> {
        self.group.owner.as_ref()
    }

    /// The UID of the owner reference the workload was read from (a Deployment's Pod: its
    /// ReplicaSet's); `None` for a Pod without owner or a template.
    pub fn owner_uid(&self) -> Option<&str> {
        self.group.owner_uid.as_ref().map(Name::as_str)
    }

    /// Whether an owner reference is a `batch/v1` Job (or, for a template, the workload is a
    /// Job or CronJob).
    pub fn owned_by_job(&self) -> bool {
        self.group.owned_by_job
    }

    /// Whether the Pod runs to completion (`restartPolicy` `Never` or `OnFailure`).
    pub fn runs_to_completion(&self) -> bool {
        self.group.runs_to_completion
    }

    /// The group the view shares with its replicas, to change (copied first if shared).
    pub fn group_mut(&mut self) -> &mut PodGroup {
        Arc::make_mut(&mut self.group)
    }

    /// The view of a workload's Pod template (`spec.template` of a Deployment, a Job…) for
    /// `audit`: named `<Kind>/<name>`, owned by that workload, without status or clocks.
    pub fn from_template(template: &SlimPod, kind: &str, name: &str) -> PodView {
        let mut view = PodView::from_pod(template);
        view.set_ids(&format!("{kind}/{}/{name}", view.namespace()), &format!("{kind}/{name}"));
        let group = view.group_mut();
        group.owner = Some(Arc::new(Workload { kind: Name::from(kind), name: Name::from(name) }));
        group.owned_by_job = matches!(kind, "Job" | "CronJob");
        view.is_template = true;
        (view.created_at, view.started_at, view.deleting_since) = (None, None, None);
        view.conditions = PodConditions::empty();
        view.set_ready_condition(None);
        for c in &mut view.containers {
            c.set_status(None);
        }
        view
    }

    /// The workload's kind and name: the owner, or `Pod` and the Pod's own name.
    pub fn workload(&self) -> (&str, &str) {
        match self.owner() {
            Some(w) => (w.kind.as_str(), w.name.as_str()),
            None => ("Pod", self.name()),
        }
    }

    /// The Pod's workload, typed ([`PodView::workload`]).
    pub fn workload_id(&self) -> WorkloadId {
        let (kind, name) = self.workload();
        WorkloadId::new(self.namespace(), kind, name)
    }

    /// When the Pod began running containers (`status.startTime`, else creation).
    pub fn start_time(&self) -> Option<Timestamp> {
        self.started_at.or(self.created_at).map(Stamp::timestamp)
    }

    /// `namespace/name`, for messages.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace(), self.name())
    }
}

fn statuses_by_name(list: &[SlimContainerStatus]) -> HashMap<&str, &SlimContainerStatus> {
    list.iter().map(|s| (s.name.as_str(), s)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replicas_share_their_group_until_one_is_changed() {
        let replica = |uid: &str| {
            serde_json::from_value::<SlimPod>(serde_json::json!({
                "metadata": {"name": format!("web-{uid}"), "namespace": "shop", "uid": uid,
                    "labels": {"app": "web"},
                    "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-1", "uid": "r"}]},
                "spec": {"containers": [{"name": "app"}]}
            }))
            .expect("a Pod")
        };
        let mut names = Interner::default();
        let (a, mut b) =
            (PodView::from_pod_in(&replica("a"), &mut names), PodView::from_pod_in(&replica("b"), &mut names));
        assert!(Arc::ptr_eq(&a.group, &b.group));
        assert_eq!((a.namespace().as_str(), a.workload()), ("shop", ("ReplicaSet", "web-1")));
        // The owner's UID, for the workload's Events, is shared with the group.
        assert_eq!((a.owner_uid(), b.owner_uid()), (Some("r"), Some("r")));
        b.group_mut().owned_by_job = true;
        assert!(b.owned_by_job() && !a.owned_by_job());
        assert_eq!(b.labels(), a.labels());
    }

    #[test]
    fn uid_and_name_come_back_apart_from_their_one_string() {
        let mut view = PodView::new("6f1c2d3e-0001-4b5a-9c8d-000000000001", "checkout-84d6c7f9b-vx5jn");
        assert_eq!(view.uid(), "6f1c2d3e-0001-4b5a-9c8d-000000000001");
        assert_eq!(view.name(), "checkout-84d6c7f9b-vx5jn");
        view.set_ids("", "naïve");
        assert_eq!((view.uid().to_string(), view.name()), (String::new(), "naïve"));
        view.set_ids("Job/shop/é", "");
        assert_eq!((view.uid().to_string(), view.name()), ("Job/shop/é".to_string(), ""));
        // A UUID kept as its 16 bytes beside a name that is not ASCII.
        view.set_ids("6f1c2d3e-0001-4b5a-9c8d-00000000000f", "naïve");
        assert!(matches!(view.uid(), PodUid::Uuid(_)));
        assert_eq!((view.uid().to_string().as_str(), view.name()), ("6f1c2d3e-0001-4b5a-9c8d-00000000000f", "naïve"));
        let condition = ConditionView { status: false, since: Some(Stamp::new(Timestamp::UNIX_EPOCH)) };
        view.set_ready_condition(Some(condition));
        assert_eq!(view.ready_condition(), Some(condition));
        view.set_ready_condition(None);
        assert_eq!(view.ready_condition(), None);
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
}
