//! Kubernetes Events (events.k8s.io/v1, reporting controller `sidecar-watch`).
//!
//! The reconciler hands [`Transition`]s to an [`EventSink`] without waiting; a publisher task
//! turns them into Events with the [`Recorder`] (which folds repeats into
//! a `series`). The publisher follows the [role](crate::leadership) itself: when this replica starts
//! to act as leader it reads the Events already in the cluster and the alerts firing in the
//! [`Index`], so an alert whose latest Event is its Warning was announced by an earlier
//! leader (or before a restart) and is not announced again, and a Warning whose alert has
//! cleared in the meantime gets its `Resolved` Event ([`announce`]). No control message
//! travels on the Event queue, so a full queue can never cost a leadership term its Events.
//!
//! # Why was no Event published for this alert?
//!
//! An alert's Event passes these stages in order; each is the only place that can drop or
//! fold it, and each drop is counted or logged where shown. One key names the alert at every
//! stage: [`AlertKey`](crate::engine::AlertKey) (rule, container, check) compares it between
//! evaluations (stage 1), and [`AnnounceKey`] (that key on one Pod under one policy) is what
//! stage 5 remembers and what a new leader reads back from the cluster's Events.
//!
//! | # | stage (code) | drops or folds | seen in |
//! |---|---|---|---|
//! | 1 | a transition exists ([`crate::index::Transition`]) | a pending alert, or one that fires and clears between two evaluations, has none: only crossing its `for` fires, only clearing after firing resolves | `sidecar_alerts{alertstate="pending"}` |
//! | 2 | the policy publishes Events ([`crate::controller::reconciler`]) | `spec.events: false` | the policy's spec |
//! | 3 | the queue ([`fair_queue`], [`EventSink::send`]) | full (4,096): the namespace holding the most loses its least severe, newest Event | `sidecar_watch_events_total{result="dropped"}`, a warning log naming the namespace |
//! | 4 | this replica leads (the publisher's [role](crate::leadership)) | a standby publishes nothing; the next leader's reconciliation (below) announces what still fires | `sidecar_watch_leader` |
//! | 5 | not yet announced ([`Announcer::should_publish`]) | a Warning whose alert already has a standing Warning (from this leader, an earlier one or before a restart); a `Resolved` without a standing Warning | nothing: by design |
//! | 6 | the object's budget ([`spam_filter`]) | past 25 Events per Pod (or policy), one per 5 minutes; the announcement is taken back, so a later leader announces it if it still fires | `sidecar_watch_events_total{result="dropped"}` |
//! | 7 | the recorder ([`Recorder`]) | a repeat within six minutes folds into the earlier Event's `series` (one object, `series.count` > 1); a failed create or patch | `sidecar_watch_events_total{result="error"}`, a warning log |
//!
//! Past stage 4 each transition is also counted on its Pod's workload ([`workload`]): the
//! first Pod to fire an alert makes one Warning on the workload object due (published once
//! the queue is drained, its UID read first for a Deployment, and for a CronJob through its
//! Job: `owners`), the last Pod to clear it one `Resolved`; stages 6 and 7 follow, with the
//! workload object's budget.
//!
//! When a replica starts to lead, [`announce`] reads the operator's Events: alerts firing now
//! without a standing Warning enter at stage 3; alerts whose Warning stands but that cleared
//! are resolved at once (stage 6 and 7 only). The Events must still exist: the API server
//! deletes them after `--event-ttl` (1 h by default), after which a still-firing alert is
//! announced once more. An invalid policy's `InvalidSpec` Event passes stages 4, 6 and 7,
//! once per policy generation.

mod announce;
pub mod note;
mod owners;
mod policy_objects;
pub mod recorder;
pub mod spam_filter;
pub mod workload;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event as K8sEvent;
use kube::api::{Api, ListParams};
use kube::runtime::events::{Event, EventType};
use kube::Client;

use crate::fair_queue;
use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::Notify;

pub use announce::{announced_from_events, AnnounceKey, Announcer, Reconciliation};
pub use note::{action, note};
pub(crate) use note::{field_path, reason};
pub use recorder::Recorder;

use crate::api::Lenient;
use crate::engine::PolicyRef;
use crate::index::{Index, Transition, TransitionKind};
use crate::leadership::RoleReceiver;
use crate::metrics::{Metrics, Undecodables};
use crate::paging::for_each_page;

/// The `reportingController` of every Event the operator publishes.
const REPORTING_CONTROLLER: &str = "sidecar-watch";
/// Events waiting for the publisher; beyond this the namespace holding the most loses one
/// ([`fair_queue`]), counted as dropped.
const QUEUE: usize = 4096;
/// How often the publisher forgets the announcements of Pods the index no longer tracks, and
/// the Events past their series window.
const FORGET_GONE_PODS: Duration = Duration::from_secs(30);

/// An Event to publish.
#[derive(Debug)]
pub(crate) enum EventCommand {
    /// An alert fired or resolved.
    Transition(Transition),
    /// A policy is invalid (Warning `InvalidSpec` on the policy, once per generation).
    InvalidPolicy {
        policy: PolicyRef,
        uid: Option<String>,
        generation: Option<i64>,
        /// What is wrong, naming the field.
        message: String,
    },
}

impl fair_queue::InNamespace for EventCommand {
    fn namespace(&self) -> &str {
        match self {
            EventCommand::Transition(t) => &t.namespace,
            EventCommand::InvalidPolicy { policy, .. } => policy.namespace.as_deref().unwrap_or(""),
        }
    }
}

impl fair_queue::Fair for EventCommand {
    /// The alert's severity: critical first, info dropped first.
    fn rank(&self) -> fair_queue::Rank {
        let severity = match self {
            EventCommand::Transition(t) => t.alert.severity,
            EventCommand::InvalidPolicy { .. } => crate::api::Severity::Warning,
        };
        match severity {
            crate::api::Severity::Critical => fair_queue::Rank::Urgent,
            crate::api::Severity::Warning => fair_queue::Rank::Normal,
            crate::api::Severity::Info => fair_queue::Rank::Deferred,
        }
    }
}

impl EventCommand {
    fn reason(&self) -> String {
        match self {
            EventCommand::Transition(t) => reason(t),
            EventCommand::InvalidPolicy { .. } => "InvalidSpec".into(),
        }
    }
}

/// The queue between the sinks and the publisher.
struct Queue {
    items: Mutex<fair_queue::FairQueue<EventCommand>>,
    /// Woken on every push, and when the last sink goes.
    ready: Notify,
    /// Every sink is gone: the publisher drains what is queued and ends.
    closed: AtomicBool,
}

impl Queue {
    /// Queues `command`; counts and logs what a full queue drops.
    fn push(&self, command: EventCommand, metrics: &Metrics) {
        let dropped = self.items.lock().push(command);
        self.ready.notify_one();
        if let Some(dropped) = dropped {
            let reason = dropped.reason();
            metrics.events.with_label_values(&[&reason, "dropped"]).inc();
            let namespace = fair_queue::InNamespace::namespace(&dropped).to_string();
            tracing::warn!(%reason, %namespace, "event queue full, Event dropped");
        }
    }

    fn is_empty(&self) -> bool {
        self.items.lock().is_empty()
    }

    fn pop(&self) -> Option<EventCommand> {
        self.items.lock().pop()
    }

    /// The next Event, or `None` once every sink is gone and nothing is left.
    async fn next(&self) -> Option<EventCommand> {
        loop {
            if let Some(command) = self.pop() {
                return Some(command);
            }
            if self.closed.load(Ordering::Acquire) {
                // A push may have raced the close: look once more.
                return self.pop();
            }
            // One consumer: a push before this wait leaves a permit, so none is missed.
            self.ready.notified().await;
        }
    }
}

/// Closes the queue when the last sink is dropped.
struct OpenSinks(Arc<Queue>);

impl Drop for OpenSinks {
    fn drop(&mut self) {
        self.0.closed.store(true, Ordering::Release);
        self.0.ready.notify_one();
    }
}

/// The reconciler's handle: never blocks.
#[derive(Clone)]
pub(crate) struct EventSink {
    queue: Arc<Queue>,
    _open: Arc<OpenSinks>,
    metrics: Metrics,
}

impl EventSink {
    /// Queues an Event, fairly per namespace; when the queue is full the namespace holding
    /// the most loses its least severe Event (counted as `result="dropped"`).
    pub(crate) fn send(&self, command: EventCommand) {
        self.queue.push(command, &self.metrics);
    }
}

/// Starts the publisher task; returns the sink the reconciler uses and the task, which ends
/// once every sink is dropped and the queued Events are published.
pub(crate) fn spawn_publisher(
    client: Client,
    instance: String,
    metrics: Metrics,
    index: Arc<Index>,
    role: RoleReceiver,
) -> (EventSink, tokio::task::JoinHandle<()>) {
    let queue = Arc::new(Queue {
        items: Mutex::new(fair_queue::FairQueue::new(QUEUE)),
        ready: Notify::new(),
        closed: AtomicBool::new(false),
    });
    let sink = EventSink { queue: queue.clone(), _open: Arc::new(OpenSinks(queue.clone())), metrics: metrics.clone() };
    let recorder = Recorder::new(client.clone(), REPORTING_CONTROLLER, instance);
    let publisher = Publisher {
        owners: owners::Owners::new(client.clone(), metrics.clone()),
        workloads: Default::default(),
        due: Default::default(),
        client,
        recorder,
        metrics,
        index,
        announcer: None,
        leading: false,
        invalid_announced: HashMap::new(),
        policy_objects: Default::default(),
        nothing_queued: true,
        spam: Default::default(),
    };
    (sink, tokio::spawn(publisher.run(queue, role)))
}

struct Publisher {
    client: Client,
    recorder: Recorder,
    metrics: Metrics,
    index: Arc<Index>,
    /// `Some` while this replica acts as leader and has read the cluster's Events.
    announcer: Option<Announcer>,
    /// Whether this replica leads (synced or not): invalid policies are reported from the
    /// start, they do not wait for the Pods.
    leading: bool,
    /// The UID and generation of each invalid policy already announced; a policy deleted
    /// meanwhile is forgotten at the next sweep, so a tenant's short-lived policies do not pile up.
    invalid_announced: HashMap<PolicyRef, (Option<String>, Option<i64>)>,
    /// The object each policy of a remembered alert named when it was remembered.
    policy_objects: policy_objects::PolicyObjects,
    /// Whether the queue held nothing more when the command being handled was taken.
    nothing_queued: bool,
    /// Events per regarding object.
    spam: spam_filter::SpamFilter,
    /// The alerts firing per workload, while this replica acts as leader.
    workloads: workload::WorkloadAlerts,
    /// Workload Warnings to publish, with when they became due.
    due: std::collections::VecDeque<(workload::WorkloadKey, tokio::time::Instant)>,
    /// Deployment UIDs, for their workload Events.
    owners: owners::Owners,
}

impl Publisher {
    async fn run(mut self, queue: Arc<Queue>, mut role: RoleReceiver) {
        let mut forget = tokio::time::interval(FORGET_GONE_PODS);
        forget.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut role_open = true;
        loop {
            tokio::select! {
                biased;
                changed = role.changed(), if role_open => {
                    // Writers gone (shutdown): keep the last role and drain the queue.
                    role_open = changed.is_ok();
                    let now = *role.borrow_and_update();
                    self.leading = now.leader;
                    match (now.acts(), self.announcer.is_some()) {
                        (true, false) => self.lead(&queue).await,
                        (false, true) => {
                            self.announcer = None;
                            self.workloads = Default::default();
                            self.policy_objects = Default::default();
                            self.due.clear();
                        }
                        _ => {}
                    }
                }
                command = queue.next() => {
                    let Some(command) = command else { break };
                    self.nothing_queued = queue.is_empty();
                    self.handle(command).await;
                    if self.workloads_due(queue.is_empty()) {
                        self.publish_due().await;
                    }
                }
                Some(read) = self.owners.answers.recv() => self.owner_answered(read.lookup, read.found.and_then(|f| f)).await,
                _ = tokio::time::sleep(workload::publish::BATCH), if !self.due.is_empty() => {
                    // Due Warnings waiting on nothing but a drained queue.
                    self.publish_due().await;
                }
                _ = forget.tick() => {
                    self.recorder.forget_expired(Timestamp::now());
                    let policies = self.index.policies();
                    self.invalid_announced.retain(|p, (uid, _)| policies.get(p).is_some_and(|e| e.uid == *uid));
                    self.forget_stale_policies(&policies, queue.is_empty());
                    let index = &self.index;
                    if let Some(announcer) = self.announcer.as_mut() {
                        announcer.forget_untracked(|uid| index.contains_pod(uid));
                        self.forget_gone_workload_pods().await;
                    }
                }
            }
        }
    }

    /// This replica now acts as leader: reconcile what the cluster's Events announce with what
    /// fires now, then publish transitions as they come.
    async fn lead(&mut self, queue: &Queue) {
        let (announced, standing) = match list_own_events(&self.client, &self.metrics).await {
            Ok(events) => (announced_from_events(&events), workload::standing_from_events(&events)),
            Err(e) => {
                tracing::warn!(error = %e, "listing Events failed; alerts firing now are announced again");
                (HashMap::new(), HashMap::new())
            }
        };
        let mut announcer = Announcer::from_announced(announced);
        let firing: Vec<Transition> =
            self.index.firing_now(Timestamp::now()).into_iter().filter(|t| t.policy_events).collect();
        self.lead_workloads(&firing, standing).await;
        let index = &self.index;
        let Reconciliation { fire, resolve } = announcer.reconcile(firing, |uid| index.contains_pod(uid));
        self.announcer = Some(announcer);
        self.note_remembered_policies();
        // The catch-up goes through the queue like any transition: fair per namespace and
        // limited per Pod, so a tenant with hundreds of firing alerts cannot hold up the rest.
        for t in fire {
            queue.push(EventCommand::Transition(t), &self.metrics);
        }
        for key in resolve {
            self.publish_resolution(&key).await;
        }
    }

    async fn handle(&mut self, command: EventCommand) {
        match command {
            EventCommand::Transition(t) => {
                if self.announcer.is_none() {
                    return;
                }
                if t.kind == TransitionKind::Fired {
                    self.note_policy(&t.policy);
                }
                // Counted whatever becomes of the Pod's own Event (announced already, over
                // its budget): the workload's Events count Pods, not Pod Events.
                self.count_on_workload(&t).await;
                // An alert on a workload (no Pod): its only Event is the workload's.
                let Some(uid) = t.pod_uid.as_ref().filter(|_| !t.pod.is_empty()) else { return };
                if !self.announcer.as_mut().is_some_and(|a| a.should_publish(&t)) {
                    return;
                }
                // The Event's `regarding.uid`, also the name of the Pod's budget.
                let uid = uid.to_string();
                let pod =
                    pod_reference(&t.namespace, &t.pod, uid.clone(), field_path(t.container_kind, &t.alert.container));
                let event = alert_event(&t.alert.key(), t.kind, note(&t, Timestamp::now()), &t.policy);
                if !self.publish_within_budget(&uid, event, &pod).await {
                    // Not published, so not announced: a later leader announces it if it
                    // still fires, and no `Resolved` follows a Warning that never was.
                    if let Some(announcer) = self.announcer.as_mut() {
                        announcer.undo(&t);
                    }
                }
            }
            EventCommand::InvalidPolicy { policy, uid, generation, message } => {
                let announced = (uid.clone(), generation);
                if !self.leading || self.invalid_announced.get(&policy) == Some(&announced) {
                    return;
                }
                let reference = policy_reference(&policy, uid);
                let event = Event {
                    type_: EventType::Warning,
                    reason: "InvalidSpec".into(),
                    note: Some(format!("{policy} is not evaluated: {message}")),
                    action: "Validate".into(),
                    secondary: None,
                };
                if self.publish_within_budget(&policy.to_string(), event, &reference).await {
                    self.invalid_announced.insert(policy, announced);
                }
            }
        }
    }

    /// Publishes `event` about `regarding` within the budget of the object `budget` names
    /// ([`spam_filter`]); past it, counts the Event dropped and returns false.
    async fn publish_within_budget(&mut self, budget: &str, event: Event, regarding: &ObjectReference) -> bool {
        let namespace = regarding.namespace.as_deref().unwrap_or_default();
        if !self.spam.allow(namespace, budget, tokio::time::Instant::now()) {
            self.metrics.events.with_label_values(&[&event.reason, "dropped"]).inc();
            return false;
        }
        let reason = &event.reason;
        match self.recorder.publish(&event, regarding, Timestamp::now()).await {
            Ok(()) => self.metrics.events.with_label_values(&[reason, "ok"]).inc(),
            Err(e) => {
                self.metrics.events.with_label_values(&[reason, "error"]).inc();
                tracing::warn!(%reason, error = %e, "publishing Event failed");
            }
        }
        true
    }

    /// The `Resolved` Event of an alert that cleared while no leader watched.
    async fn publish_resolution(&mut self, key: &AnnounceKey) {
        let Some((namespace, pod, kind)) = self.index.with_pod(key.pod_uid.as_uid(), |p| {
            let kind = p.view().containers.iter().find(|c| c.name == *key.alert.container).map(|c| c.kind);
            (p.view().namespace().to_string(), p.view().name().to_string(), kind)
        }) else {
            return;
        };
        let note = note::resolved_note(key.alert.name, &key.alert.container, &namespace, &pod, None, &key.policy);
        let event = alert_event(&key.alert, TransitionKind::Resolved, note, &key.policy);
        let uid = key.pod_uid.to_string();
        let regarding = pod_reference(&namespace, &pod, uid.clone(), field_path(kind, &key.alert.container));
        self.publish_within_budget(&uid, event, &regarding).await;
    }
}

/// The Event's reference to a Pod, with its UID as written for its budget.
fn pod_reference(namespace: &str, name: &str, uid: String, field_path: Option<String>) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        name: Some(name.to_string()),
        namespace: Some(namespace.to_string()),
        uid: Some(uid),
        field_path,
        ..Default::default()
    }
}

/// The Events this operator published: filtered by the API server on `reportingController`
/// where it supports that field selector, else listed whole and filtered here.
/// An Event nobody can decode (a tenant's, with a time past jiff's range) is skipped and
/// counted, never the list: a failed list would announce every firing alert again.
async fn list_own_events(client: &Client, metrics: &Metrics) -> Result<Vec<K8sEvent>, kube::Error> {
    let api: Api<Lenient<K8sEvent>> = Api::all(client.clone());
    let mut events = Vec::new();
    let mut undecodable = Undecodables::new("Event", metrics.clone());
    let mut own = |e: Lenient<K8sEvent>| match e {
        Lenient::Object(e) if e.reporting_controller.as_deref() == Some(REPORTING_CONTROLLER) => events.push(*e),
        Lenient::Object(_) => {}
        Lenient::Undecodable(bad) => undecodable.report(&bad),
    };
    let selected = ListParams::default().fields(&format!("reportingController={REPORTING_CONTROLLER}"));
    if let Err(e) = for_each_page(&api, &selected, &mut own).await {
        tracing::debug!(error = %e, "Event list by reportingController refused; listing every Event");
        for_each_page(&api, &ListParams::default(), &mut own).await?;
    }
    Ok(events)
}

/// The Event of `alert` firing (a Warning) or resolving, with `note`, about a Pod or workload
/// of `policy`.
fn alert_event(alert: &crate::engine::AlertKey<'_>, kind: TransitionKind, note: String, policy: &PolicyRef) -> Event {
    Event {
        type_: match kind {
            TransitionKind::Fired => EventType::Warning,
            TransitionKind::Resolved => EventType::Normal,
        },
        reason: note::reason_of(alert.name, kind),
        note: Some(note),
        action: note::action_of(alert, kind),
        secondary: Some(policy_reference(policy, None)),
    }
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
