//! The reconciler: the one task that changes the index. It applies watch changes through
//! [`IndexResource`], whatever their kind, re-evaluates Pods and workloads exactly when a
//! pending alert would fire (the engine's next-change time, not a poll), on one set of
//! [`Timers`], and hands alert transitions to the Event publisher. Changes and due timers
//! are served fairly per namespace ([`super::queue`]).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::time::{delay_queue, DelayQueue};

use futures::FutureExt;

use super::create_failures::{self, FailedCreates};
use super::queue::{Change, Op, Pending};
use crate::engine::{ControllerRollout, PodUidBuf, WorkloadId};
use crate::events::{EventCommand, EventSink};
use crate::fair_reader::{Reader, Request};
use crate::index::shard::Shard;
use crate::index::{CreateFailures, Index, IndexResource, Outcome, RolloutRead, Watched};
use crate::injection_failure::Involved;
use crate::leadership::{self, RoleSender};
use crate::metrics::Metrics;

/// What a timer re-evaluates: one Pod, or the alerts on workloads (their `for` clocks and
/// the rollouts marked for judgement, [`Index::workloads_due`]); or the end of the wait for
/// the first judgement's controller reads ([`FIRST_READS_WAIT`]); or the next round of reads
/// of the objects `FailedCreate` Events name ([`create_failures::RECHECK`]).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Subject {
    Pod(PodUidBuf),
    Workloads,
    FirstReads,
    FailedCreateRecheck,
}

/// How long readiness waits for the controllers the first rollout judgement asked about: each
/// read gives up after 3 attempts of 10 s, but a slow API server with many candidates must not
/// keep a replica unready; past this, the rollouts not heard of yet are judged by their Pods.
pub(crate) const FIRST_READS_WAIT: Duration = Duration::from_secs(30);

/// The reads readiness waits for, and until when.
type FirstReads = Option<(HashSet<WorkloadId>, Timestamp)>;

/// Pending re-evaluations: one per [`Subject`] (its latest schedule), on tokio-util's timer
/// wheel.
///
/// Measured against the hand-written heap with compaction it replaces: the same order, far
/// below the per-update budget, and nothing to compact by hand
/// (docs/benchmarks.md#figures-the-codes-comments-cite).
#[derive(Default)]
struct Timers {
    queue: DelayQueue<Subject>,
    /// Each scheduled subject's timer and the instant it stands for.
    scheduled: HashMap<Subject, (delay_queue::Key, Timestamp)>,
}

/// The timer wheel refuses deadlines past ~2 years; a clock that far (a hostile timestamp)
/// is looked at again after this instead, and rescheduled by that evaluation.
const MAX_WAIT: Duration = Duration::from_secs(365 * 24 * 3600);

impl Timers {
    fn schedule(&mut self, subject: Subject, at: Timestamp) {
        let wait = Duration::try_from(Timestamp::now().duration_until(at)).unwrap_or_default().min(MAX_WAIT);
        match self.scheduled.get_mut(&subject) {
            Some((_, scheduled)) if *scheduled == at => {}
            Some((key, scheduled)) => {
                *scheduled = at;
                self.queue.reset(key, wait);
            }
            None => {
                let key = self.queue.insert(subject.clone(), wait);
                self.scheduled.insert(subject, (key, at));
            }
        }
    }

    /// Schedules `subject` at `at` unless it is scheduled earlier already.
    fn schedule_by(&mut self, subject: Subject, at: Timestamp) {
        if self.scheduled.get(&subject).is_none_or(|(_, scheduled)| *scheduled > at) {
            self.schedule(subject, at);
        }
    }

    /// The next subject whose timer is due, with the instant it was scheduled for.
    async fn due(&mut self) -> Option<(Subject, Timestamp)> {
        let expired = std::future::poll_fn(|cx| self.queue.poll_expired(cx)).await?;
        let subject = expired.into_inner();
        let (_, at) = self.scheduled.remove(&subject)?;
        Some((subject, at))
    }

    fn is_empty(&self) -> bool {
        self.scheduled.is_empty()
    }

    fn forget(&mut self, subject: &Subject) {
        if let Some((key, _)) = self.scheduled.remove(subject) {
            self.queue.remove(&key);
        }
    }
}

/// What the reconciler's loop keeps from one piece of work to the next.
struct State {
    timers: Timers,
    /// The watches whose first list was applied: a relist of one must not stand in for
    /// another's first list.
    lists_done: HashSet<usize>,
    /// The rollout controllers the first judgement asked for: ready once all answered.
    first_reads: FirstReads,
    /// The `FailedCreate` Events and the objects they name.
    creates: FailedCreates,
}

/// Everything the reconciler talks to.
pub(crate) struct Reconciler {
    pub(crate) index: Arc<Index>,
    pub(crate) metrics: Metrics,
    pub(crate) events: EventSink,
    /// How many initial lists must finish before the operator is ready.
    pub(crate) initial_lists: usize,
    /// Marked synced once the initial lists are applied.
    pub(crate) role: RoleSender,
    /// Wakes the status writer when policy counts may have changed.
    pub(crate) status_dirty: Arc<tokio::sync::Notify>,
    /// Reads the controllers of candidate blocked rollouts; answers come back as
    /// [`Change::Controller`].
    pub(crate) controllers: Reader<RolloutRead>,
    /// Reads the objects `FailedCreate` Events name; answers come back as
    /// [`Change::FailedCreateRead`].
    pub(crate) create_reads: Reader<Involved>,
    /// This replica's shard: the `FailedCreate` Events of other shards' workloads are not
    /// believed here.
    pub(crate) shard: Shard,
    /// How long readiness waits for the first judgement's controller reads
    /// ([`FIRST_READS_WAIT`]).
    pub(crate) first_reads_wait: Duration,
}

impl Reconciler {
    /// Runs until `inputs` closes or `shutdown` is cancelled. Changes and due timers wait in
    /// [`Pending`], served one namespace at a time; what has arrived is taken in before each
    /// piece of work, so a change in a quiet namespace is applied after at most one piece of
    /// each busier namespace.
    pub(crate) async fn run(self, mut inputs: mpsc::Receiver<Change>, shutdown: CancellationToken) {
        let mut state = State {
            timers: Timers::default(),
            lists_done: HashSet::new(),
            first_reads: None,
            creates: FailedCreates::new(self.shard, self.metrics.clone()),
        };
        let mut pending = Pending::default();
        let mut closed = false;
        loop {
            if shutdown.is_cancelled() {
                break;
            }
            if state.first_reads.as_ref().is_some_and(|(_, until)| Timestamp::now() >= *until) {
                let (unread, _) = state.first_reads.take().unwrap_or_default();
                tracing::warn!(unread = unread.len(), "rollout controllers not read in time; ready, their Pods decide");
                self.ready();
            }
            while pending.accepts() && !closed {
                match inputs.try_recv() {
                    Ok(input) => pending.push(input),
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => closed = true,
                }
            }
            while pending.accepts() && !state.timers.is_empty() {
                let Some(Some((subject, at))) = state.timers.due().now_or_never() else { break };
                self.on_due(subject, at, &mut pending, &mut state);
            }
            if let Some(change) = pending.pop() {
                self.work(change, &mut state);
                // Then every other task's turn: a task this one woke (the Event publisher)
                // waits in this worker's LIFO slot, which no other worker steals, so work
                // back to back (up to the coop budget) held the other namespace's Event
                // back under a policy flood (docs/benchmarks.md#figures-the-codes-comments-cite).
                tokio::task::yield_now().await;
                continue;
            }
            if closed {
                break;
            }
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                input = inputs.recv() => match input {
                    Some(input) => pending.push(input),
                    None => closed = true,
                },
                Some((subject, at)) = state.timers.due(), if !state.timers.is_empty() => {
                    self.on_due(subject, at, &mut pending, &mut state);
                }
            }
        }
    }

    /// A due Pod waits its namespace's turn; the workloads are evaluated at once (a few
    /// conditions, or one pass over the Pods for the marked rollouts).
    fn on_due(&self, subject: Subject, at: Timestamp, pending: &mut Pending, state: &mut State) {
        match subject {
            Subject::Pod(uid) => {
                // A Pod deleted meanwhile has nothing to evaluate.
                if let Some(namespace) = self.index.with_pod(uid.as_uid(), |p| p.view().namespace().to_string()) {
                    pending.push_timer(namespace, uid, at);
                }
            }
            // Only wakes the loop, which sees the wait is over.
            Subject::FirstReads => {}
            Subject::FailedCreateRecheck => {
                state.creates.recheck();
                self.request_create_reads(state);
            }
            Subject::Workloads => {
                // At least at the scheduled instant, whatever the timer's jitter.
                let outcome = self.index.revisit_workloads(Timestamp::now().max(at));
                self.finish(outcome, &mut state.timers);
            }
        }
    }

    fn work(&self, change: Change, state: &mut State) {
        let started = Instant::now();
        let now = Timestamp::now();
        let lists_before = state.lists_done.len();
        let mut became_ready = false;
        let (outcome, received) = match change {
            Change::Pod(op) => self.apply(op, now, &mut state.lists_done),
            Change::Policy(op) => self.apply(op, now, &mut state.lists_done),
            Change::Namespace(op) => self.apply(op, now, &mut state.lists_done),
            Change::FailedCreate(op) => {
                let received = match &op {
                    Op::Applied { received, .. } => Some(*received),
                    _ => None,
                };
                let ops = state.creates.take(op, now);
                (self.apply_create_failures(ops, state, now), received)
            }
            Change::FailedCreateRead(read) => {
                let ops = state.creates.read(read, now);
                (self.apply_create_failures(ops, state, now), None)
            }
            Change::Controller(read) => {
                let rollout = read.found.unwrap_or_else(|error| {
                    // Counted by the reader; the Pods decide meanwhile.
                    tracing::warn!(workload = %read.lookup.workload, %error, "could not read the controller of a rollout");
                    ControllerRollout::default()
                });
                let workload = read.lookup.workload;
                let last_awaited = state.first_reads.as_mut().is_some_and(|(a, _)| a.remove(&workload) && a.is_empty());
                self.index.set_rollout_controller(workload, rollout, now);
                if last_awaited {
                    // Judged with every answer before ready, not a batch later.
                    state.first_reads = None;
                    became_ready = true;
                    (self.index.revisit_workloads(now), None)
                } else {
                    (Outcome::default(), None)
                }
            }
            // Evaluate at least at the scheduled instant, whatever the timer's jitter.
            Change::Due { uid, at, .. } => (self.index.reevaluate(uid.as_uid(), now.max(at)), None),
        };
        self.finish(outcome, &mut state.timers);
        if became_ready {
            self.ready();
        }
        self.metrics.reconcile_duration.observe(started.elapsed().as_secs_f64());
        if let Some(received) = received {
            self.metrics.detection_latency.observe(received.elapsed().as_secs_f64());
        }
        if lists_before < self.initial_lists && state.lists_done.len() >= self.initial_lists {
            // The first judgement of the rollouts the listed Pods may block, and the reads of
            // their controllers, before the publisher reads what fires: else it would resolve a
            // standing Warning, and announce it again a moment later.
            let outcome = self.index.revisit_workloads(now);
            let awaited: HashSet<WorkloadId> = outcome.rollout_reads.iter().map(|r| r.workload.clone()).collect();
            self.finish(outcome, &mut state.timers);
            if awaited.is_empty() {
                self.ready();
            } else {
                let until = now + self.first_reads_wait;
                state.timers.schedule(Subject::FirstReads, until);
                state.first_reads = Some((awaited, until));
            }
        }
    }

    fn ready(&self) {
        leadership::set_synced(&self.role);
        tracing::info!(pods = self.index.pod_count(), "initial lists done; ready");
    }

    /// Applies one watch change to the index; returns what it did and when its watch event
    /// arrived (applied objects only).
    fn apply<K: Watched>(
        &self,
        op: Op<K>,
        now: Timestamp,
        lists_done: &mut HashSet<usize>,
    ) -> (Outcome, Option<Instant>)
    where
        Index: IndexResource<K>,
    {
        match op {
            Op::Applied { object, received } => (self.index.apply(object, now), Some(received)),
            Op::Deleted { key, .. } => (self.index.delete(&key, now), None),
            Op::Relisted { source, scope, seen } => {
                // Only the watches readiness waits for are counted (sources 0..initial_lists).
                if source < self.initial_lists {
                    lists_done.insert(source);
                }
                (self.index.relisted(&scope, &seen, now), None)
            }
        }
    }

    /// Applies the changes of workload conditions `creates` returned, with the relist it may
    /// have released, and hands the reader what it asks for.
    fn apply_create_failures(&self, mut ops: Vec<Op<CreateFailures>>, state: &mut State, now: Timestamp) -> Outcome {
        self.request_create_reads(state);
        ops.extend(state.creates.release_relist());
        let mut outcome = Outcome::default();
        for op in ops {
            outcome.merge(self.apply(op, now, &mut state.lists_done).0);
        }
        outcome
    }

    /// Hands the reader the objects `creates` wants read, and keeps their next round on the
    /// timers while any is known.
    fn request_create_reads(&self, state: &mut State) {
        for request in state.creates.take_reads() {
            if let Some(dropped) = self.create_reads.request(request) {
                state.creates.unrequest(&dropped.lookup);
            }
        }
        if !state.creates.is_empty() {
            let next = Timestamp::now() + create_failures::RECHECK;
            state.timers.schedule_by(Subject::FailedCreateRecheck, next);
        }
    }

    fn finish(&self, outcome: Outcome, timers: &mut Timers) {
        for invalid in outcome.invalid_policies {
            tracing::warn!(policy = %invalid.policy, error = %invalid.message, "invalid policy; not evaluated");
            let (policy, uid, generation, message) = (invalid.policy, invalid.uid, invalid.generation, invalid.message);
            self.events.send(EventCommand::InvalidPolicy { policy, uid, generation, message });
        }
        let limited = [
            ("sidecars-per-pod", outcome.limited_pods),
            ("workloads-per-namespace", outcome.limited_workloads),
            ("policies-per-namespace", outcome.limited_policies),
        ];
        // Only limits that cut something: a series at 0 would say the limit was met.
        for (limit, cuts) in limited.into_iter().filter(|(_, cuts)| *cuts > 0) {
            self.metrics.limited.with_label_values(&[limit]).inc_by(u64::from(cuts));
        }
        for (uid, at) in outcome.wakeups {
            match at {
                Some(at) => timers.schedule(Subject::Pod(uid), at),
                None => timers.forget(&Subject::Pod(uid)),
            }
        }
        for read in outcome.rollout_reads {
            let recheck = read.recheck;
            // Dropped from a full queue (counted): the Pods decide, as after a failed read.
            if let Some(dropped) = self.controllers.request(Request::new(read, recheck)) {
                let workload = dropped.lookup.workload;
                self.index.set_rollout_controller(workload, ControllerRollout::default(), Timestamp::now());
            }
        }
        for (uid, at) in outcome.wake_by {
            timers.schedule_by(Subject::Pod(uid), at);
        }
        // The earliest wins: a later answer (a rollout marked again) never postpones a
        // judgement already due, and an evaluation that is not needed any more finds nothing.
        if let Some(at) = self.index.workloads_due(Timestamp::now()) {
            timers.schedule_by(Subject::Workloads, at);
        }
        for (namespace, container, seconds) in outcome.startups {
            self.metrics.startup_seconds.with_label_values(&[&namespace, &container]).observe(seconds);
        }
        // Startup series whose name no tracked Pod runs any more: unique names (one per
        // rollout, say) would otherwise pile up until a restart.
        for (namespace, container) in self.index.take_gone_sidecar_names() {
            let _ = self.metrics.startup_seconds.remove_label_values(&[&namespace, &container]);
        }
        for transition in outcome.transitions {
            if transition.policy_events {
                self.events.send(EventCommand::Transition(transition));
            }
        }
        // Counts change without a transition too (a Pod selected, unselected or deleted, an
        // alert going pending): the writer debounces and skips policies whose status is
        // unchanged, so waking it on every change is cheap.
        self.status_dirty.notify_one();
    }
}

#[cfg(test)]
mod startup_tests;

#[cfg(test)]
mod failed_create_tests;

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(uid: &str) -> Subject {
        Subject::Pod(PodUidBuf::parse(uid))
    }

    fn in_secs(secs: i64) -> Timestamp {
        Timestamp::now() + jiff::SignedDuration::from_secs(secs)
    }

    #[tokio::test(start_paused = true)]
    async fn timers_keep_only_the_latest_schedule() {
        let mut timers = Timers::default();
        let (t0, t_half, t1) = (in_secs(30), in_secs(45), in_secs(60));
        timers.schedule(pod("a"), t1);
        timers.schedule(pod("a"), t0);
        timers.schedule(pod("b"), t1);
        timers.schedule_by(Subject::Workloads, t1);
        timers.schedule_by(Subject::Workloads, t_half);
        timers.schedule_by(Subject::Workloads, t1);
        assert_eq!(timers.due().await, Some((pod("a"), t0)));
        assert_eq!(timers.due().await, Some((Subject::Workloads, t_half)), "the earliest by-schedule stands");
        assert_eq!(timers.due().await, Some((pod("b"), t1)), "a's superseded t1 does not fire");
        assert!(timers.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn forgotten_and_far_timers_hold_nothing() {
        let mut timers = Timers::default();
        for pod in 0..10_000 {
            let uid = Subject::Pod(PodUidBuf::parse(&format!("flip-{pod}")));
            timers.schedule(uid.clone(), in_secs(300));
            timers.forget(&uid);
        }
        assert!(timers.is_empty() && timers.queue.is_empty());
        // The last instant there is (a hostile timestamp, clamped): accepted, looked at
        // again within MAX_WAIT.
        let far = Timestamp::MAX;
        timers.schedule(pod("far"), far);
        assert_eq!(timers.due().await, Some((pod("far"), far)));
    }
}
