//! The controllers' `FailedCreate` Events, read through a watch filtered on the reason by
//! the API server (never an unfiltered Events watch), as the conditions of the workloads
//! whose Pods a sidecar or its injector keeps from being created (`SidecarInjectionFailed`).
//!
//! An Event is a tenant's input: anyone who may create Events can write one. So an Event is
//! only believed about an object of its own namespace that exists with the UID it names,
//! and only the few whose message names a sidecar's cause ([`crate::injection_failure`], by
//! [`crate::engine::classify_failed_create`]) are kept; everything else is dropped at once.
//! The watch loop only classifies: the objects are read by the one bounded reader of workload
//! objects, fair per namespace ([`crate::fair_reader`]). What a read found is kept per object (its UID included) and
//! reused: an Event that changes only its count or time costs no read, another Event about
//! the same object one read per [`RECHECK`] at most.
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
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::time::Duration;

use futures::{Stream, StreamExt};
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Event;
use kube::runtime::watcher;
use kube::Client;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::queue::{Change, Op};
use crate::engine::{InjectionFailure, WorkloadId};
use crate::fair_queue::FairQueue;
use crate::fair_reader::{Read, Reader, Request};
use crate::index::shard::Shard;
use crate::index::{Condition, CreateFailures};
// The pure part, shared with `audit` so that both read an Event alike.
use crate::injection_failure::{condition_of, event_times, sidecar_failure, Involved, ReadObject};
use crate::metrics::Metrics;

/// Events remembered at most in all, a backstop behind [`MAX_EVENTS_PER_NAMESPACE`].
const MAX_EVENTS: usize = 20_000;
/// Events remembered at most per namespace: past that, its new ones are dropped (and
/// counted); other namespaces keep theirs.
const MAX_EVENTS_PER_NAMESPACE: usize = 1_000;
/// The `limit` label of an Event cut here.
const LIMIT: &str = "failed-create-events";
/// The `limit` label of a failed read of an object an Event names, or one dropped.
const READ_LIMIT: &str = "failed-create-reads";
/// The API server's filter: only these Events are ever sent.
pub(crate) const FIELDS: &str = "reason=FailedCreate";
/// How often the objects of the failing workloads are read again, and how long a read of
/// an object serves a new Event about it: the alert ends with its object's own state, and
/// an Event outlives the object it is about (by up to an hour).
const RECHECK: Duration = Duration::from_secs(15);
/// Objects read again per [`RECHECK`] at most, taken in turn per namespace, the longest
/// unread first within one.
const RECHECK_READS: usize = 100;

/// Follows the `FailedCreate` Events of `namespace` (`None`: every one) from `stream` and
/// sends the conditions they reveal to the reconciler until `tx` closes. `client` reads the
/// objects they name.
pub(crate) async fn watch(
    stream: impl Stream<Item = watcher::Event<Event>>,
    client: Client,
    namespace: Option<String>,
    shard: Shard,
    source: usize,
    tx: mpsc::Sender<Change>,
    metrics: Metrics,
) {
    futures::pin_mut!(stream);
    let (reads_tx, mut reads) = mpsc::channel(64);
    let reader = Reader::spawn(client, metrics.clone(), READ_LIMIT, MAX_EVENTS, reads_tx);
    let mut known = Known::new(shard);
    let mut recheck = tokio::time::interval(RECHECK);
    recheck.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let step = tokio::select! {
            event = stream.next() => match event {
                None => return,
                Some(event) => Step::Watched(event),
            },
            Some(read) = reads.recv() => Step::Read(read),
            _ = recheck.tick() => Step::Recheck,
        };
        // Taken once the step is here, not before the wait for it: a time from before the
        // wait would start a new failure's `for` clock up to one RECHECK early.
        let now = Timestamp::now();
        let mut ops = match step {
            Step::Watched(watcher::Event::Init) => {
                known.relisting = Some(HashSet::new());
                continue;
            }
            Step::Watched(watcher::Event::InitApply(event) | watcher::Event::Apply(event)) => {
                known.applied(&event, &metrics, now)
            }
            Step::Watched(watcher::Event::Delete(event)) => known.deleted(&event, now),
            Step::Watched(watcher::Event::InitDone) => known.relisted(&namespace, source, now),
            Step::Read(read) => known.read(read, now),
            Step::Recheck => {
                known.recheck();
                Vec::new()
            }
        };
        for request in std::mem::take(&mut known.to_read) {
            if let Some(dropped) = reader.request(request) {
                known.unrequest(&dropped.lookup);
            }
        }
        ops.extend(known.release_relist());
        for op in ops {
            if tx.send(Change::from(op)).await.is_err() {
                return;
            }
        }
    }
}

/// What woke the watch loop.
#[expect(clippy::large_enum_variant, reason = "one at a time, on the loop's stack, never stored")]
enum Step {
    Watched(watcher::Event<Event>),
    Read(Read<Involved>),
    Recheck,
}

/// One Event believed to tell of a sidecar's failure.
struct Told {
    /// The object it names.
    object: Involved,
    failure: InjectionFailure,
    /// A hash of its message: an update that changes only its count or time keeps it.
    message: u64,
    /// Its times only (`firstTimestamp`, `lastTimestamp`, `eventTime`, `series`).
    times: Event,
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

/// The Events that told of a sidecar's failure, by UID, and the objects they name.
struct Known {
    shard: Shard,
    events: HashMap<String, Told>,
    /// Events remembered per namespace.
    per_namespace: HashMap<String, usize>,
    objects: HashMap<Involved, Object>,
    /// The Events listed since the last `Init`, while a relist runs.
    relisting: Option<HashSet<String>>,
    /// Objects to hand the reader.
    to_read: Vec<Request<Involved>>,
    /// A relist that ended (its scope and this watch's number), held until every object it
    /// named is read: readiness counts it, and what is judged after a restart must know
    /// every condition, or a standing Warning would look resolved.
    held_relist: Option<(Option<String>, usize)>,
}

impl Known {
    fn new(shard: Shard) -> Self {
        Known {
            shard,
            events: HashMap::new(),
            per_namespace: HashMap::new(),
            objects: HashMap::new(),
            relisting: None,
            to_read: Vec::new(),
            held_relist: None,
        }
    }

    fn applied(&mut self, event: &Event, metrics: &Metrics, now: Timestamp) -> Vec<Op<CreateFailures>> {
        let uid = event.metadata.uid.clone().unwrap_or_default();
        if let Some(listed) = self.relisting.as_mut() {
            listed.insert(uid.clone());
        }
        let Some((failure, involved)) = sidecar_failure(event) else {
            // A message edited into something that is not ours any more.
            return self.deleted(event, now);
        };
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
        if let Some(told) = self.events.get_mut(&uid) {
            if told.object == involved && told.message == message {
                // Only its count or time changed: what was read of its object stands.
                told.times = times;
                return self.judge(&involved, now);
            }
        }
        let mut ops = self.forget(&uid, now);
        let in_namespace = self.per_namespace.get(&involved.namespace).copied().unwrap_or(0);
        if in_namespace >= MAX_EVENTS_PER_NAMESPACE || self.events.len() >= MAX_EVENTS {
            metrics.limited.with_label_values(&[LIMIT]).inc();
            return ops;
        }
        *self.per_namespace.entry(involved.namespace.clone()).or_default() += 1;
        let object = self.objects.entry(involved.clone()).or_default();
        object.events.insert(uid.clone());
        let stale = object.read_at.is_none_or(|at| at.elapsed() >= RECHECK);
        if stale && !object.requested && !object.gone {
            object.requested = true;
            self.to_read.push(Request::new(involved.clone(), false));
        }
        self.events.insert(uid, Told { object: involved.clone(), failure, message, times });
        ops.extend(self.judge(&involved, now));
        ops
    }

    fn deleted(&mut self, event: &Event, now: Timestamp) -> Vec<Op<CreateFailures>> {
        self.forget(event.metadata.uid.as_deref().unwrap_or_default(), now)
    }

    /// Forgets the Event `uid`, and its object with its last Event.
    fn forget(&mut self, uid: &str, now: Timestamp) -> Vec<Op<CreateFailures>> {
        let Some(told) = self.events.remove(uid) else { return Vec::new() };
        if let Some(n) = self.per_namespace.get_mut(&told.object.namespace) {
            *n -= 1;
            if *n == 0 {
                self.per_namespace.remove(&told.object.namespace);
            }
        }
        let Some(object) = self.objects.get_mut(&told.object) else { return Vec::new() };
        object.events.remove(uid);
        if !object.events.is_empty() {
            return self.judge(&told.object, now);
        }
        let believed = self.objects.remove(&told.object).and_then(|o| o.believed);
        believed.map(|(workload, _)| self.resolved(workload)).unwrap_or_default()
    }

    /// What a read found of an object: its state, then whether its Events are believed.
    fn read(&mut self, read: Read<Involved>, now: Timestamp) -> Vec<Op<CreateFailures>> {
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
    fn unrequest(&mut self, involved: &Involved) {
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
    fn recheck(&mut self) {
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

    /// `source`: this watch's number, so that its first list counts towards readiness.
    fn relisted(&mut self, namespace: &Option<String>, source: usize, now: Timestamp) -> Vec<Op<CreateFailures>> {
        let listed = self.relisting.take().unwrap_or_default();
        let vanished: Vec<String> = self.events.keys().filter(|uid| !listed.contains(*uid)).cloned().collect();
        for uid in vanished {
            // What they end, the relist below ends.
            self.forget(&uid, now);
        }
        self.held_relist = Some((namespace.clone(), source));
        self.release_relist()
    }

    /// The relist held by [`Self::relisted`], once no object waits for its first read (a
    /// read that failed every attempt no longer waits: its condition stays unknown).
    fn release_relist(&mut self) -> Vec<Op<CreateFailures>> {
        let waiting = self.objects.values().any(|o| o.requested && o.read.is_none() && !o.gone);
        if waiting {
            return Vec::new();
        }
        let Some((namespace, source)) = self.held_relist.take() else { return Vec::new() };
        let seen: HashSet<WorkloadId> =
            self.objects.values().filter_map(|o| o.believed.as_ref().map(|(w, _)| w.clone())).collect();
        vec![Op::Relisted { source, scope: namespace, seen }]
    }
}

#[cfg(test)]
mod tests;
