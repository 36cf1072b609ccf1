//! Kubernetes Events (events.k8s.io/v1, reporting controller `sidecar-watch`).
//!
//! The reconciler hands [`Transition`]s to a [`EventSink`] without waiting; a publisher task
//! turns them into Events with kube-runtime's `Recorder` (which folds repeats into a
//! `series`). The publisher remembers what it announced per (Pod, container, alert, policy),
//! and when this replica becomes the leader it first reads the Events already in the
//! cluster: an alert whose latest Event is its Warning was announced by an earlier leader
//! (or before a restart) and is not announced again, and a Warning whose alert has cleared
//! in the meantime gets its `Resolved` Event.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event as K8sEvent;
use kube::api::{Api, ListParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::Client;
use tokio::sync::mpsc;

use crate::controller::index::{Transition, TransitionKind};
use crate::engine::{AlertName, Check, ContainerKind, PolicyRef};
use crate::metrics::Metrics;

/// The `reportingController` of every Event the operator publishes.
pub const REPORTING_CONTROLLER: &str = "sidecar-watch";
/// Events are at most this long (the API's limit is 1 kB).
const MAX_NOTE: usize = 1000;
/// Transitions waiting for the publisher; beyond this they are dropped and counted.
const QUEUE: usize = 4096;

/// What the publisher is asked to do.
#[derive(Debug)]
pub enum EventCommand {
    /// An alert fired or resolved.
    Transition(Transition),
    /// This replica became the leader: reconcile with the Events in the cluster. Carries
    /// every firing alert and the UIDs of every tracked Pod.
    Lead {
        /// Every alert firing now.
        firing: Vec<Transition>,
        /// Tracked Pods, so that Warnings of Pods that are gone are left alone.
        pods: HashSet<String>,
    },
    /// These Pods are gone: forget what was announced about them.
    PodsGone(HashSet<String>),
    /// A policy is invalid (Warning `InvalidSpec` on the policy, once per generation).
    InvalidPolicy {
        /// The policy.
        policy: PolicyRef,
        /// Its UID.
        uid: Option<String>,
        /// Its generation.
        generation: Option<i64>,
        /// What is wrong.
        message: String,
    },
}

/// The reconciler's handle: never blocks.
#[derive(Clone)]
pub struct EventSink {
    tx: mpsc::Sender<EventCommand>,
    metrics: Metrics,
}

impl EventSink {
    /// Queues a command; a full queue drops it (counted as `result="dropped"`).
    pub fn send(&self, command: EventCommand) {
        let reason = match &command {
            EventCommand::Transition(t) => reason(t),
            EventCommand::Lead { .. } | EventCommand::PodsGone(_) => String::new(),
            EventCommand::InvalidPolicy { .. } => "InvalidSpec".into(),
        };
        if self.tx.try_send(command).is_err() {
            self.metrics.events.with_label_values(&[&reason, "dropped"]).inc();
            tracing::warn!(%reason, "event queue full, Event dropped");
        }
    }
}

/// What identifies an announced alert.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct AnnounceKey {
    /// The Pod's UID.
    pub pod_uid: String,
    /// The container.
    pub container: String,
    /// The alert name.
    pub alert: String,
    /// The failed check (`SidecarMisconfigured` only), else empty.
    pub check: String,
    /// The policy's namespace ("" for cluster policies).
    pub policy_namespace: String,
    /// The policy's name.
    pub policy: String,
}

impl AnnounceKey {
    fn of(t: &Transition) -> Self {
        AnnounceKey {
            pod_uid: t.pod_uid.clone(),
            container: t.alert.container.clone(),
            alert: t.alert.name.as_str().to_string(),
            check: t.alert.check.map(|c| c.as_str().to_string()).unwrap_or_default(),
            policy_namespace: t.policy.namespace.clone().unwrap_or_default(),
            policy: t.policy.name.clone(),
        }
    }
}

/// The Event reason of a transition: the alert name, or `<alert>Resolved`.
pub fn reason(t: &Transition) -> String {
    match t.kind {
        TransitionKind::Fired => t.alert.name.as_str().to_string(),
        TransitionKind::Resolved => format!("{}Resolved", t.alert.name.as_str()),
    }
}

/// The Event action: the failed check for `SidecarMisconfigured` (so that two checks on one
/// container are two Events, not one series), else `Alert` or `Resolve`.
pub fn action(t: &Transition) -> String {
    match (t.alert.check, t.kind) {
        (Some(check), _) => check.as_str().to_string(),
        (None, TransitionKind::Fired) => "Alert".into(),
        (None, TransitionKind::Resolved) => "Resolve".into(),
    }
}

/// The `fieldPath` of a container in an ObjectReference, as the kubelet writes it.
pub fn field_path(kind: Option<ContainerKind>, container: &str) -> Option<String> {
    match kind? {
        ContainerKind::Regular => Some(format!("spec.containers{{{container}}}")),
        _ => Some(format!("spec.initContainers{{{container}}}")),
    }
}

fn container_of(field_path: Option<&str>) -> String {
    field_path
        .and_then(|p| p.split_once('{'))
        .map(|(_, rest)| rest.trim_end_matches('}').to_string())
        .unwrap_or_default()
}

/// The Event note: the alert's message and the policy, within the API's size limit.
pub fn note(t: &Transition, now: Timestamp) -> String {
    let policy = &t.policy;
    let mut text = match t.kind {
        TransitionKind::Fired => format!("{} (policy {policy})", t.alert.message),
        TransitionKind::Resolved => {
            let held = t
                .alert
                .since
                .map(|s| {
                    let secs = u64::try_from(now.duration_since(s).as_secs()).unwrap_or(0);
                    format!(" after {}", crate::api::format_duration(std::time::Duration::from_secs(secs)))
                })
                .unwrap_or_default();
            format!(
                "{} on container {} of Pod {}/{} resolved{held} (policy {policy})",
                t.alert.name.as_str(),
                t.alert.container,
                t.namespace,
                t.pod
            )
        }
    };
    if text.len() > MAX_NOTE {
        let mut end = MAX_NOTE - 3;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

/// What the cluster's Events say was announced last: key → firing (true) or resolved.
pub fn announced_from_events(events: &[K8sEvent]) -> HashMap<AnnounceKey, bool> {
    let alert_names: HashSet<&str> = AlertName::ALL.iter().map(|a| a.as_str()).collect();
    let mut latest: HashMap<AnnounceKey, (Timestamp, bool)> = HashMap::new();
    for event in events.iter().filter(|e| e.reporting_controller.as_deref() == Some(REPORTING_CONTROLLER)) {
        let Some(regarding) = &event.regarding else { continue };
        let Some(reason) = event.reason.as_deref() else { continue };
        let (alert, firing) = match reason.strip_suffix("Resolved") {
            Some(alert) => (alert, false),
            None => (reason, true),
        };
        if !alert_names.contains(alert) || regarding.kind.as_deref() != Some("Pod") {
            continue;
        }
        let Some(related) = &event.related else { continue };
        let when = event
            .series
            .as_ref()
            .map(|s| s.last_observed_time.0)
            .or(event.event_time.as_ref().map(|t| t.0))
            .or(event.metadata.creation_timestamp.as_ref().map(|t| t.0))
            .unwrap_or(Timestamp::UNIX_EPOCH);
        let key = AnnounceKey {
            pod_uid: regarding.uid.clone().unwrap_or_default(),
            container: container_of(regarding.field_path.as_deref()),
            alert: alert.to_string(),
            check: if alert == AlertName::SidecarMisconfigured.as_str() {
                event.action.clone().unwrap_or_default()
            } else {
                String::new()
            },
            policy_namespace: related.namespace.clone().unwrap_or_default(),
            policy: related.name.clone().unwrap_or_default(),
        };
        match latest.get(&key) {
            Some((t, _)) if *t > when => {}
            _ => {
                latest.insert(key, (when, firing));
            }
        }
    }
    latest.into_iter().map(|(k, (_, firing))| (k, firing)).collect()
}

/// Decides which transitions to publish, given what was announced.
///
/// Only alerts announced as firing are remembered: a resolved or never-announced alert looks
/// the same, so the memory is bounded by what fires now, not by every alert ever seen.
#[derive(Debug, Default)]
pub struct Announcer {
    firing: HashSet<AnnounceKey>,
}

impl Announcer {
    /// Starts from what the cluster's Events say (`true`: the latest Event is the Warning).
    pub fn from_announced(announced: HashMap<AnnounceKey, bool>) -> Self {
        Self { firing: announced.into_iter().filter(|(_, firing)| *firing).map(|(key, _)| key).collect() }
    }

    /// Whether to publish `t`; records it as announced if so.
    pub fn should_publish(&mut self, t: &Transition) -> bool {
        let key = AnnounceKey::of(t);
        match t.kind {
            TransitionKind::Fired => self.firing.insert(key),
            TransitionKind::Resolved => self.firing.remove(&key),
        }
    }

    /// Forgets the announcements of Pods that are gone: nothing about them can change again.
    pub fn forget_pods(&mut self, uids: &HashSet<String>) {
        self.firing.retain(|k| !uids.contains(&k.pod_uid));
    }

    /// How many alerts are remembered as announced firing.
    pub fn len(&self) -> usize {
        self.firing.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.firing.is_empty()
    }

    /// Reconciles with the firing set after a (re)start: Fired for what is not announced,
    /// Resolved for announced Warnings of tracked Pods that no longer fire.
    pub fn reconcile(&mut self, firing: Vec<Transition>, pods: &HashSet<String>) -> Vec<Transition> {
        let firing_keys: HashSet<AnnounceKey> = firing.iter().map(AnnounceKey::of).collect();
        let mut out: Vec<Transition> = firing.into_iter().filter(|t| self.should_publish(t)).collect();
        let stale: Vec<AnnounceKey> =
            self.firing.iter().filter(|k| !firing_keys.contains(*k) && pods.contains(&k.pod_uid)).cloned().collect();
        for key in stale {
            self.firing.remove(&key);
            out.push(resolved_for(key));
        }
        // Announcements of Pods that are gone can never change again.
        self.firing.retain(|k| pods.contains(&k.pod_uid));
        out
    }
}

/// A Resolved transition rebuilt from an announcement (the Pod's names come from the Event).
fn resolved_for(key: AnnounceKey) -> Transition {
    let alert = AlertName::ALL.into_iter().find(|a| a.as_str() == key.alert).unwrap_or(AlertName::SidecarMisconfigured);
    let policy = if key.policy_namespace.is_empty() {
        PolicyRef::cluster(key.policy)
    } else {
        PolicyRef::namespaced(key.policy_namespace, key.policy)
    };
    Transition {
        kind: TransitionKind::Resolved,
        namespace: String::new(),
        pod: String::new(),
        pod_uid: key.pod_uid,
        container_kind: None,
        policy: Arc::new(policy),
        policy_events: true,
        alert: crate::engine::Alert {
            name: alert,
            severity: crate::api::Severity::Info,
            container: key.container,
            check: Check::from_label(&key.check),
            state: crate::engine::AlertState::Firing,
            since: None,
            message: String::new(),
        },
    }
}

/// Starts the publisher task; returns the sink the reconciler uses and the task, which ends
/// once every sink is dropped and the queued commands are published.
pub fn spawn_publisher(
    client: Client,
    instance: String,
    metrics: Metrics,
    pods: Arc<crate::controller::index::Index>,
) -> (EventSink, tokio::task::JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(QUEUE);
    let sink = EventSink { tx, metrics: metrics.clone() };
    let recorder =
        Recorders::new(&client, Reporter { controller: REPORTING_CONTROLLER.into(), instance: Some(instance) });
    (sink, tokio::spawn(publish_loop(client, recorder, metrics, rx, pods)))
}

/// kube-runtime's `Recorder` sweeps its whole cache of recent Events (six minutes' worth) on
/// every publish, so with one Recorder a burst of E Events (a node pool failing) costs O(E²).
/// Spreading Events over several Recorders by the object they regard keeps each cache small,
/// while a repeat of the same Event still meets its predecessor and is folded into its series.
struct Recorders(Vec<Recorder>);

/// How many Recorders the Events are spread over.
const RECORDER_CACHES: u32 = 64;

impl Recorders {
    fn new(client: &Client, reporter: Reporter) -> Self {
        Self((0..RECORDER_CACHES).map(|_| Recorder::new(client.clone(), reporter.clone())).collect())
    }

    /// Publishes `event` about `regarding` through the Recorder that owns that object.
    async fn publish(&self, event: &Event, regarding: &ObjectReference) -> Result<(), kube::Error> {
        let key = regarding.uid.as_deref().or(regarding.name.as_deref()).unwrap_or_default();
        let slot = crate::controller::shard::shard_of(key, RECORDER_CACHES) as usize;
        self.0[slot % self.0.len()].publish(event, regarding).await
    }
}

async fn publish_loop(
    client: Client,
    recorder: Recorders,
    metrics: Metrics,
    mut rx: mpsc::Receiver<EventCommand>,
    index: Arc<crate::controller::index::Index>,
) {
    // `None` until this replica leads and has read the cluster's Events.
    let mut announcer: Option<Announcer> = None;
    let mut invalid_announced: HashMap<PolicyRef, Option<i64>> = HashMap::new();
    while let Some(command) = rx.recv().await {
        crate::memory::note_activity();
        if !index.is_leader() {
            announcer = None;
            continue;
        }
        match command {
            EventCommand::Lead { firing, pods } => {
                let announced = match list_own_events(&client).await {
                    Ok(events) => announced_from_events(&events),
                    Err(e) => {
                        tracing::warn!(error = %e, "listing Events failed; alerts firing now are announced again");
                        HashMap::new()
                    }
                };
                let mut fresh = Announcer::from_announced(announced);
                let names = pod_names(&index);
                for mut t in fresh.reconcile(firing, &pods) {
                    if t.pod.is_empty() {
                        if let Some((ns, name, containers)) = names.get(&t.pod_uid) {
                            t.namespace = ns.clone();
                            t.pod = name.clone();
                            t.container_kind = containers.get(&t.alert.container).copied();
                        }
                    }
                    publish(&recorder, &metrics, &t).await;
                }
                announcer = Some(fresh);
            }
            EventCommand::PodsGone(uids) => {
                if let Some(announcer) = announcer.as_mut() {
                    announcer.forget_pods(&uids);
                }
            }
            EventCommand::Transition(t) => {
                let Some(announcer) = announcer.as_mut() else { continue };
                if announcer.should_publish(&t) {
                    publish(&recorder, &metrics, &t).await;
                }
            }
            EventCommand::InvalidPolicy { policy, uid, generation, message } => {
                if invalid_announced.get(&policy) == Some(&generation) {
                    continue;
                }
                invalid_announced.insert(policy.clone(), generation);
                let reference = policy_reference(&policy, uid);
                let event = Event {
                    type_: EventType::Warning,
                    reason: "InvalidSpec".into(),
                    note: Some(format!("{policy} is not evaluated: {message}")),
                    action: "Validate".into(),
                    secondary: None,
                };
                let result = recorder.publish(&event, &reference).await;
                record(&metrics, "InvalidSpec", result);
            }
        }
    }
}

/// Pod UID → (namespace, name, container kinds), to complete rebuilt Resolved Events.
type PodNames = HashMap<String, (String, String, HashMap<String, ContainerKind>)>;

fn pod_names(index: &crate::controller::index::Index) -> PodNames {
    let mut names = HashMap::new();
    index.for_each_pod(|p| {
        let containers = p.view.containers.iter().map(|c| (c.name.to_string(), c.kind)).collect();
        names.insert(p.view.uid.clone(), (p.view.namespace.to_string(), p.view.name.clone(), containers));
    });
    names
}

/// The Events this operator published: filtered by the API server on `reportingController`
/// where it supports that field selector, else listed whole and filtered here.
async fn list_own_events(client: &Client) -> Result<Vec<K8sEvent>, kube::Error> {
    let api: Api<K8sEvent> = Api::all(client.clone());
    let selected = ListParams::default().limit(500).fields(&format!("reportingController={REPORTING_CONTROLLER}"));
    match list_all(&api, &selected).await {
        Ok(events) => Ok(events),
        Err(e) => {
            tracing::debug!(error = %e, "Event list by reportingController refused; listing every Event");
            list_all(&api, &ListParams::default().limit(500)).await
        }
    }
}

async fn list_all(api: &Api<K8sEvent>, params: &ListParams) -> Result<Vec<K8sEvent>, kube::Error> {
    let mut events = Vec::new();
    let mut continue_token: Option<String> = None;
    loop {
        let mut page_params = params.clone();
        if let Some(token) = continue_token.take() {
            page_params = page_params.continue_token(&token);
        }
        let page = api.list(&page_params).await?;
        events
            .extend(page.items.into_iter().filter(|e| e.reporting_controller.as_deref() == Some(REPORTING_CONTROLLER)));
        match page.metadata.continue_ {
            Some(token) if !token.is_empty() => continue_token = Some(token),
            _ => break,
        }
    }
    Ok(events)
}

fn policy_reference(policy: &PolicyRef, uid: Option<String>) -> ObjectReference {
    ObjectReference {
        api_version: Some(format!("{}/{}", crate::api::GROUP, crate::api::VERSION)),
        kind: Some(policy.kind().into()),
        name: Some(policy.name.clone()),
        namespace: policy.namespace.clone(),
        uid,
        ..Default::default()
    }
}

async fn publish(recorder: &Recorders, metrics: &Metrics, t: &Transition) {
    let reason = reason(t);
    let pod = ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        name: Some(t.pod.clone()),
        namespace: Some(t.namespace.clone()),
        uid: Some(t.pod_uid.clone()),
        field_path: field_path(t.container_kind, &t.alert.container),
        ..Default::default()
    };
    let event = Event {
        type_: match t.kind {
            TransitionKind::Fired => EventType::Warning,
            TransitionKind::Resolved => EventType::Normal,
        },
        reason: reason.clone(),
        note: Some(note(t, Timestamp::now())),
        action: action(t),
        secondary: Some(policy_reference(&t.policy, None)),
    };
    let result = recorder.publish(&event, &pod).await;
    record(metrics, &reason, result);
}

fn record(metrics: &Metrics, reason: &str, result: Result<(), kube::Error>) {
    match result {
        Ok(()) => metrics.events.with_label_values(&[reason, "ok"]).inc(),
        Err(e) => {
            metrics.events.with_label_values(&[reason, "error"]).inc();
            tracing::warn!(%reason, error = %e, "publishing Event failed");
        }
    }
}
