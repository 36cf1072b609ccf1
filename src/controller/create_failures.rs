//! The controllers' `FailedCreate` Events, read through a watch filtered on the reason by
//! the API server (never an unfiltered Events watch), as the conditions of the workloads
//! whose Pods a sidecar or its injector keeps from being created (`SidecarInjectionFailed`).
//!
//! An Event is a tenant's input: anyone who may create Events can write one. So an Event is
//! only believed about an object of its own namespace that exists with the UID it names,
//! and only the few whose message names a sidecar's cause ([`crate::injection_failure`], by
//! [`crate::engine::classify_failed_create`]) are kept; everything else is dropped at once.
//! The Events come through the common watch path ([`super::watch`]: the same `forward`, the
//! same `--initial-list` logic) as the kind [`FailedCreateEvents`], classified in the watch's
//! own task; the reconciler keeps them here ([`FailedCreates`]), hands the objects to read to
//! the one bounded reader of workload objects, fair per namespace ([`crate::fair_reader`]),
//! takes its answers in their namespace's turn like any change, and rereads on its one set of
//! timers. What a read found is kept per object (its UID included) and reused: an Event that
//! changes only its count or time costs no read, another Event about the same object one read
//! per [`RECHECK`] at most.
//!
//! The failure ends with the object that failed, not with whatever Pod appears: once the
//! object no longer needs Pods it cannot create ([`crate::injection_failure::needs_pods`]: its
//! replicas created, scaled to zero as after `rollout undo`, a Job finished) or is gone (or
//! made again, with another UID), the condition is cleared, though its Events still exist.
//! An Event about it is believed again only for a failure after that clear, and the `for`
//! clock then starts at that failure. The believed objects are read again every
//! [`RECHECK`], [`RECHECK_READS`] at most per round, taken in turn per namespace.
//!
//! What is remembered is bounded per namespace ([`MAX_EVENTS_PER_NAMESPACE`] Events) and in
//! all ([`MAX_EVENTS`]); every Event cut counts in
//! `sidecar_watch_limited_total{limit="failed-create-events"}`, every failed read in
//! `{limit="failed-create-reads"}`.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Event;
use tokio::time::Instant;

use super::queue::Op;
use crate::engine::{InjectionFailure, WorkloadId};
use crate::fair_queue::FairQueue;
use crate::fair_reader::{Read, Request};
use crate::index::shard::Shard;
use crate::index::{Condition, CreateFailures, NamespaceShares, Watched};
// The pure part, shared with `audit` so that both read an Event alike.
use crate::injection_failure::{condition_of, event_times, sidecar_failure, Involved, ReadObject};
use crate::metrics::Metrics;

/// Events remembered at most in all, a backstop behind [`MAX_EVENTS_PER_NAMESPACE`]; also
/// the reader's queue ([`READ_LIMIT`]).
pub(crate) const MAX_EVENTS: usize = 20_000;
/// Events remembered at most per namespace: past that, its new ones are dropped (and
/// counted); other namespaces keep theirs.
const MAX_EVENTS_PER_NAMESPACE: usize = 1_000;
/// The `limit` label of an Event cut here.
const LIMIT: &str = "failed-create-events";
/// The `limit` label of a failed read of an object an Event names, or one dropped.
pub(crate) const READ_LIMIT: &str = "failed-create-reads";
/// The API server's filter: only these Events are ever sent.
pub(crate) const FIELDS: &str = "reason=FailedCreate";
/// How often the objects of the failing workloads are read again, and how long a read of
/// an object serves a new Event about it: the alert ends with its object's own state, and
/// an Event outlives the object it is about (by up to an hour).
pub(crate) const RECHECK: Duration = Duration::from_secs(15);
/// Objects read again per [`RECHECK`] at most, taken in turn per namespace, the longest
/// unread first within one.
const RECHECK_READS: usize = 100;

/// The `FailedCreate` Events, as one more watched kind: forwarded like every other
/// ([`super::watch`]), kept by the reconciler in [`FailedCreates`].
#[derive(Debug)]
pub(crate) enum FailedCreateEvents {}

impl Watched for FailedCreateEvents {
    /// Boxed, like a policy entry: it keeps its times as a whole (mostly empty) `Event`
    /// value, far larger than the queued Pod change every other item of the queue is.
    type Object = Box<Told>;
    /// The Event's UID.
    type Key = String;
    /// The namespace listed, or every one.
    type Scope = Option<String>;
    fn key(told: &Box<Told>) -> String {
        told.uid.clone()
    }
    fn namespace(told: &Box<Told>) -> &str {
        &told.object.namespace
    }
}

/// A watched Event as the reconciler takes it: what it tells, or its deletion when it is
/// not (or no longer, its message edited) about a sidecar's failure. Parsed in the watch's
/// task, so that the reconciler never holds a whole Event.
pub(crate) fn event_op(event: Event, received: Instant) -> Option<Op<FailedCreateEvents>> {
    let Some(told) = Told::of(&event) else { return Some(event_deleted(event)) };
    Some(Op::Applied { object: Box::new(told), received })
}

/// A deleted Event, by UID.
fn event_deleted(event: Event) -> Op<FailedCreateEvents> {
    let namespace = event.metadata.namespace.unwrap_or_default();
    Op::Deleted { namespace, key: event.metadata.uid.unwrap_or_default() }
}

/// One Event believed to tell of a sidecar's failure.
#[derive(Debug)]
pub(crate) struct Told {
    /// The Event's UID.
    uid: String,
    /// The object it names.
    object: Involved,
    failure: InjectionFailure,
    /// A hash of its message: an update that changes only its count or time keeps it.
    message: u64,
    /// Its times only (`firstTimestamp`, `lastTimestamp`, `eventTime`, `series`).
    times: Event,
}

impl Told {
    /// What `event` tells, if it is about a sidecar's failure.
    fn of(event: &Event) -> Option<Told> {
        let (failure, object) = sidecar_failure(event)?;
        let message = {
            let mut hasher = DefaultHasher::new();
            event.message.hash(&mut hasher);
            hasher.finish()
        };
        let times = Event {
            first_timestamp: event.first_timestamp.clone(),
            last_timestamp: event.last_timestamp.clone(),
            event_time: event.event_time.clone(),
            series: event.series.clone(),
            ..Event::default()
        };
        Some(Told { uid: event.metadata.uid.clone().unwrap_or_default(), object, failure, message, times })
    }
}

/// What is known of one object the Events name.
#[derive(Default)]
struct Object {
    /// The Events that name it, by UID.
    events: HashSet<String>,
    /// What was read of it last.
    read: Option<ReadObject>,
    /// When it was read last (or found gone).
    read_at: Option<Instant>,
    /// A read is queued or running.
    requested: bool,
    /// It does not exist with the UID the Events name: never believed again.
    gone: bool,
    /// When a read last found it needing no Pods: Events up to then are not believed.
    cleared_at: Option<Timestamp>,
    /// The workload and condition the reconciler was last sent for it.
    believed: Option<(WorkloadId, Condition)>,
}

/// The Events that told of a sidecar's failure, by UID, and the objects they name: the
/// reconciler's, which hands it every watched Event, every read answered and every
/// [`RECHECK`], and applies what it returns as [`CreateFailures`] changes.
pub(crate) struct FailedCreates {
    shard: Shard,
    metrics: Metrics,
    events: HashMap<String, Told>,
    /// A place per remembered Event, in its object's namespace.
    shares: NamespaceShares,
    objects: HashMap<Involved, Object>,
    /// Objects to hand the reader.
    to_read: Vec<Request<Involved>>,
    /// Relists that ended (their scope, by the number of the watch that made them), each held
    /// until every object of its scope is read: readiness counts it, and what is judged after
    /// a restart must know every condition, or a standing Warning would look resolved. One
    /// per watch: with `--namespace a,b` each namespace's watch relists on its own.
    held_relists: BTreeMap<usize, Option<String>>,
}

impl FailedCreates {
    pub(crate) fn new(shard: Shard, metrics: Metrics) -> Self {
        FailedCreates {
            shard,
            metrics,
            events: HashMap::new(),
            shares: NamespaceShares::new(MAX_EVENTS_PER_NAMESPACE, MAX_EVENTS),
            objects: HashMap::new(),
            to_read: Vec::new(),
            held_relists: BTreeMap::new(),
        }
    }

    /// What a watched Event changes: the conditions to send, in order.
    pub(crate) fn take(&mut self, op: Op<FailedCreateEvents>, now: Timestamp) -> Vec<Op<CreateFailures>> {
        match op {
            Op::Applied { object, .. } => self.applied(*object, now),
            Op::Deleted { key, .. } => self.forget(&key, now),
            Op::Relisted { source, scope, seen } => self.relisted(scope, source, &seen, now),
        }
    }

    /// The reads asked for since the last call, for the reader.
    pub(crate) fn take_reads(&mut self) -> Vec<Request<Involved>> {
        std::mem::take(&mut self.to_read)
    }

    /// Whether no object is known: nothing to read again.
    pub(crate) fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }

    fn applied(&mut self, told: Told, now: Timestamp) -> Vec<Op<CreateFailures>> {
        let involved = told.object.clone();
        if let Some(known) = self.events.get_mut(&told.uid) {
            if known.object == involved && known.message == told.message {
                // Only its count or time changed: what was read of its object stands.
                known.times = told.times;
                return self.judge(&involved, now);
            }
        }
        let mut ops = self.forget(&told.uid, now);
        if !self.shares.take(&involved.namespace) {
            self.metrics.limited.with_label_values(&[LIMIT]).inc();
            return ops;
        }
        let object = self.objects.entry(involved.clone()).or_default();
        object.events.insert(told.uid.clone());
        let stale = object.read_at.is_none_or(|at| at.elapsed() >= RECHECK);
        if stale && !object.requested && !object.gone {
            object.requested = true;
            self.to_read.push(Request::new(involved.clone(), false));
        }
        self.events.insert(told.uid.clone(), told);
        ops.extend(self.judge(&involved, now));
        ops
    }

    /// Forgets the Event `uid`, and its object with its last Event.
    fn forget(&mut self, uid: &str, now: Timestamp) -> Vec<Op<CreateFailures>> {
        let Some(told) = self.events.remove(uid) else { return Vec::new() };
        self.shares.give_back(&told.object.namespace);
        let Some(object) = self.objects.get_mut(&told.object) else { return Vec::new() };
        object.events.remove(uid);
        if !object.events.is_empty() {
            return self.judge(&told.object, now);
        }
        let believed = self.objects.remove(&told.object).and_then(|o| o.believed);
        believed.map(|(workload, _)| self.resolved(workload)).unwrap_or_default()
    }

    /// What a read found of an object: its state, then whether its Events are believed.
    pub(crate) fn read(&mut self, read: Read<Involved>, now: Timestamp) -> Vec<Op<CreateFailures>> {
        // Forgotten meanwhile (its Events deleted): nothing to judge.
        let Some(object) = self.objects.get_mut(&read.lookup) else { return Vec::new() };
        object.requested = false;
        match read.found {
            Ok(Some(state)) => {
                if !state.needs_pods {
                    // As of the read, not of its answer: a failure in between is after it.
                    object.cleared_at = Some(read.sent_at.min(now));
                }
                object.read = Some(state);
            }
            // Gone, or not what the Event says it is (a forged UID): nothing to report.
            Ok(None) => {
                object.gone = true;
                object.read = None;
            }
            // Every attempt failed: asked again at the next round.
            Err(_) => return Vec::new(),
        }
        object.read_at = Some(Instant::now());
        self.judge(&read.lookup, now)
    }

    /// A read request dropped from the reader's full queue: asked again at the next round.
    pub(crate) fn unrequest(&mut self, involved: &Involved) {
        if let Some(object) = self.objects.get_mut(involved) {
            object.requested = false;
        }
    }

    /// Whether the Events about `key` are believed now, from what was read of it, and the
    /// change to send: a new or changed condition, or the end of the last one.
    fn judge(&mut self, key: &Involved, now: Timestamp) -> Vec<Op<CreateFailures>> {
        let Some(object) = self.objects.get(key) else { return Vec::new() };
        let fresh = self.believe(object, now);
        let Some(object) = self.objects.get_mut(key) else { return Vec::new() };
        let held = object.believed.take();
        object.believed = fresh.clone();
        let mut ops = Vec::new();
        if let Some((workload, condition)) = &held {
            if fresh.as_ref().is_some_and(|(w, _)| w == workload) {
                // Only a new count or time: the reconciler has all it needs.
                let mut unchanged = condition.clone();
                unchanged.latest = fresh.as_ref().map_or(unchanged.latest, |(_, c)| c.latest);
                if fresh.as_ref().is_some_and(|(_, c)| *c == unchanged) {
                    return ops;
                }
            } else {
                ops.extend(self.resolved(workload.clone()));
            }
        }
        if let Some((workload, condition)) = fresh {
            ops.push(Op::Applied { object: (workload, condition), received: Instant::now() });
        }
        ops
    }

    /// The condition `object`'s Events make, if any is believed: it exists as read, still
    /// needs Pods or failed again since the last clear, and this shard owns its workload.
    fn believe(&self, object: &Object, now: Timestamp) -> Option<(WorkloadId, Condition)> {
        let read = object.read.as_ref().filter(|_| !object.gone)?;
        if !self.shard.owns_workload(&read.workload) {
            return None;
        }
        let mut since: Option<Timestamp> = None;
        let mut newest: Option<(&Told, Timestamp)> = None;
        for told in object.events.iter().filter_map(|uid| self.events.get(uid)) {
            let (first, latest) = event_times(&told.times, now);
            if object.cleared_at.is_some_and(|cleared| latest <= cleared) {
                continue;
            }
            // After a clear the failure starts again at the Event's newest time.
            let start = if object.cleared_at.is_some() { latest } else { first };
            since = Some(since.map_or(start, |s| s.min(start)));
            if newest.is_none_or(|(_, l)| latest > l) {
                newest = Some((told, latest));
            }
        }
        let (told, _) = newest?;
        let mut condition = condition_of(&told.times, &told.failure, read, now);
        // The `for` clock runs from the first failure since the last clear, while believed.
        condition.since = match &object.believed {
            Some((_, held)) => held.since,
            None => since?,
        };
        Some((read.workload.clone(), condition))
    }

    /// The end of `workload`'s condition, unless another object still fails for it.
    fn resolved(&self, workload: WorkloadId) -> Vec<Op<CreateFailures>> {
        if self.objects.values().any(|o| o.believed.as_ref().is_some_and(|(w, _)| *w == workload)) {
            return Vec::new();
        }
        vec![Op::Deleted { namespace: workload.namespace.clone(), key: workload }]
    }

    /// Queues the next round of reads: the believed objects (their state may have ended the
    /// failure) and those not read yet (a failed read), in turn per namespace, the longest
    /// unread first within one, [`RECHECK_READS`] at most.
    pub(crate) fn recheck(&mut self) {
        let mut due: Vec<(&Involved, &Object)> = self
            .objects
            .iter()
            .filter(|(_, o)| !o.requested && !o.gone && (o.believed.is_some() || o.read.is_none()))
            .collect();
        due.sort_by_key(|(_, o)| o.read_at);
        let mut round = FairQueue::new(due.len());
        for (involved, object) in due {
            round.push(Request::new(involved.clone(), object.read.is_some()));
        }
        for request in std::iter::from_fn(|| round.pop()).take(RECHECK_READS) {
            if let Some(object) = self.objects.get_mut(&request.lookup) {
                object.requested = true;
            }
            self.to_read.push(request);
        }
    }

    /// `source`: this watch's number, so that its first list counts towards readiness. Only
    /// the Events of the relist's `namespace` (every namespace: `None`) that it did not list
    /// are forgotten: another namespace's watch did not list them.
    fn relisted(
        &mut self,
        namespace: Option<String>,
        source: usize,
        listed: &HashSet<String>,
        now: Timestamp,
    ) -> Vec<Op<CreateFailures>> {
        let in_scope = |ns: &str| namespace.as_deref().is_none_or(|scope| scope == ns);
        let vanished: Vec<String> = self
            .events
            .iter()
            .filter(|(uid, told)| in_scope(&told.object.namespace) && !listed.contains(*uid))
            .map(|(uid, _)| uid.clone())
            .collect();
        for uid in vanished {
            // What they end, the relist below ends.
            self.forget(&uid, now);
        }
        self.held_relists.insert(source, namespace);
        self.release_relist()
    }

    /// The relists held by [`Self::relisted`] whose scope has no object waiting for its first
    /// read any more (a read that failed every attempt no longer waits: its condition stays
    /// unknown).
    pub(crate) fn release_relist(&mut self) -> Vec<Op<CreateFailures>> {
        let waiting: Vec<&str> = self
            .objects
            .iter()
            .filter(|(_, o)| o.requested && o.read.is_none() && !o.gone)
            .map(|(involved, _)| involved.namespace.as_str())
            .collect();
        let released: Vec<(usize, Option<String>)> = self
            .held_relists
            .iter()
            .filter(|(_, scope)| !waiting.iter().any(|ns| scope.as_deref().is_none_or(|scope| scope == *ns)))
            .map(|(source, scope)| (*source, scope.clone()))
            .collect();
        if released.is_empty() {
            return Vec::new();
        }
        let seen: HashSet<WorkloadId> =
            self.objects.values().filter_map(|o| o.believed.as_ref().map(|(w, _)| w.clone())).collect();
        released
            .into_iter()
            .map(|(source, scope)| {
                self.held_relists.remove(&source);
                Op::Relisted { source, scope, seen: seen.clone() }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests;
