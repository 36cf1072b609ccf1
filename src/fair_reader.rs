//! The one reader of workload objects, out of the loops that need them: the reconciler (the
//! object a `FailedCreate` Event names, [`crate::controller::create_failures`]; a candidate
//! blocked rollout's controller, [`crate::rollout_controller`]) and the Event publisher (a
//! Deployment's or CronJob's UID, [`crate::events`]) each hand it what to read ([`Lookup`]),
//! and the answers come back as [`Read`]s on a channel: the reconciler's join its inputs, in
//! their namespace's turn.
//!
//! Reads wait in a [`FairQueue`], one namespace's turn after another's, first reads before
//! periodic re-reads within a namespace. At most [`CONCURRENCY`] run at once and one per
//! namespace, so a namespace whose reads hang (each given up after [`READ_TIMEOUT`]) or that
//! asks for thousands holds one place, never the others'. A failed or timed-out read is
//! retried after 1 s, then 2 s; each failure, and each request dropped from a full queue,
//! counts in `sidecar_watch_limited_total` under the reader's `limit` label.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use kube::Client;
use parking_lot::Mutex;
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinSet;

use crate::fair_queue::{Fair, FairQueue, InNamespace, Rank};
use crate::metrics::Metrics;

/// Reads running at once, over every namespace.
pub(crate) const CONCURRENCY: usize = 4;
/// A read is given up after this long (then retried).
pub(crate) const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Attempts at one read before it is reported failed.
pub(crate) const ATTEMPTS: u32 = 3;
/// The wait before the first retry; it doubles with each.
const BACKOFF: Duration = Duration::from_secs(1);

/// Something to read from the API server, in one namespace.
/// Its namespace ([`InNamespace`]) is the one whose turn it takes.
pub(crate) trait Lookup: InNamespace + Clone + Send + Sync + 'static {
    /// What a read finds.
    type Found: Send + 'static;
    /// Reads it (one `get`, or a few in a row); `Err` says why it failed.
    fn read(&self, client: Client) -> impl Future<Output = Result<Self::Found, String>> + Send;
}

/// A lookup to read.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Request<L> {
    /// What to read.
    pub(crate) lookup: L,
    /// A periodic re-read (served after first reads).
    pub(crate) recheck: bool,
    /// Attempts made so far.
    attempt: u32,
}

impl<L> Request<L> {
    /// A first attempt at reading `lookup`.
    pub(crate) fn new(lookup: L, recheck: bool) -> Self {
        Request { lookup, recheck, attempt: 0 }
    }
}

impl<L: Lookup> InNamespace for Request<L> {
    fn namespace(&self) -> &str {
        self.lookup.namespace()
    }
}

impl<L: Lookup> Fair for Request<L> {
    fn rank(&self) -> Rank {
        if self.recheck {
            Rank::Deferred
        } else {
            Rank::Normal
        }
    }
}

/// What a read found, or why every attempt failed (the queue full, or the last error).
#[derive(Debug)]
pub(crate) struct Read<L: Lookup> {
    /// What was asked for.
    pub(crate) lookup: L,
    /// When the answered request was sent: what it found was so at least since then.
    pub(crate) sent_at: Timestamp,
    /// What was found.
    pub(crate) found: Result<L::Found, String>,
}

/// The handle on the reader task.
pub(crate) struct Reader<L> {
    queue: Arc<Mutex<FairQueue<Request<L>>>>,
    wake: Arc<Notify>,
    metrics: Metrics,
    limit: &'static str,
}

impl<L: Lookup> Reader<L> {
    /// Starts the reader task; it sends what it reads to `results` and ends when `results`
    /// closes. At most `capacity` requests wait; failures count under `limit`.
    pub(crate) fn spawn(
        client: Client,
        metrics: Metrics,
        limit: &'static str,
        capacity: usize,
        results: mpsc::Sender<Read<L>>,
    ) -> Reader<L> {
        let queue = Arc::new(Mutex::new(FairQueue::new(capacity)));
        let wake = Arc::new(Notify::new());
        let task = Task {
            client,
            queue: Arc::clone(&queue),
            wake: Arc::clone(&wake),
            metrics: metrics.clone(),
            limit,
            results,
            in_flight: HashMap::new(),
            running: 0,
            tasks: JoinSet::new(),
        };
        tokio::spawn(task.run());
        Reader { queue, wake, metrics, limit }
    }

    /// Queues a read without waiting; returns the request dropped to make room (the
    /// newest of the namespace holding the most, maybe this one), counted.
    pub(crate) fn request(&self, request: Request<L>) -> Option<Request<L>> {
        let dropped = self.queue.lock().push(request);
        self.wake.notify_one();
        if dropped.is_some() {
            self.metrics.limited.with_label_values(&[self.limit]).inc();
        }
        dropped
    }
}

/// How a spawned piece of work ended.
enum Finished<L: Lookup> {
    /// A read attempt, when it was sent, and its result.
    Attempt(Request<L>, Timestamp, Result<L::Found, String>),
    /// A retry's wait is over.
    Retry(Request<L>),
}

struct Task<L: Lookup> {
    client: Client,
    queue: Arc<Mutex<FairQueue<Request<L>>>>,
    wake: Arc<Notify>,
    metrics: Metrics,
    limit: &'static str,
    results: mpsc::Sender<Read<L>>,
    /// Reads running per namespace (at most one each).
    in_flight: HashMap<String, usize>,
    running: usize,
    tasks: JoinSet<Finished<L>>,
}

impl<L: Lookup> Task<L> {
    async fn run(mut self) {
        loop {
            self.start_reads();
            let finished = tokio::select! {
                _ = self.results.closed() => return,
                _ = self.wake.notified() => continue,
                Some(Ok(finished)) = self.tasks.join_next(), if !self.tasks.is_empty() => finished,
            };
            match finished {
                Finished::Retry(request) => {
                    let dropped = self.queue.lock().push(request);
                    if let Some(dropped) = dropped {
                        self.metrics.limited.with_label_values(&[self.limit]).inc();
                        let found = Err("the read queue is full".to_string());
                        let read = Read { lookup: dropped.lookup, sent_at: Timestamp::now(), found };
                        if self.results.send(read).await.is_err() {
                            return;
                        }
                    }
                }
                Finished::Attempt(mut request, sent_at, found) => {
                    self.running -= 1;
                    if let Some(n) = self.in_flight.get_mut(request.lookup.namespace()) {
                        *n -= 1;
                        if *n == 0 {
                            self.in_flight.remove(request.lookup.namespace());
                        }
                    }
                    if let Err(error) = &found {
                        tracing::debug!(namespace = request.lookup.namespace(), %error, limit = self.limit, "a read failed");
                        self.metrics.limited.with_label_values(&[self.limit]).inc();
                        request.attempt += 1;
                        if request.attempt < ATTEMPTS {
                            let wait = BACKOFF * 2u32.pow(request.attempt - 1);
                            self.tasks.spawn(async move {
                                tokio::time::sleep(wait).await;
                                Finished::Retry(request)
                            });
                            continue;
                        }
                    }
                    if self.results.send(Read { lookup: request.lookup, sent_at, found }).await.is_err() {
                        return;
                    }
                }
            }
        }
    }

    /// Starts queued reads while places are free, one namespace's turn after another's,
    /// passing over a namespace that has a read running.
    fn start_reads(&mut self) {
        while self.running < CONCURRENCY {
            let in_flight = &self.in_flight;
            let Some(request) = self.queue.lock().pop_where(|ns| !in_flight.contains_key(ns)) else { return };
            *self.in_flight.entry(request.lookup.namespace().to_string()).or_default() += 1;
            self.running += 1;
            let client = self.client.clone();
            self.tasks.spawn(async move {
                let sent_at = Timestamp::now();
                let found = match tokio::time::timeout(READ_TIMEOUT, request.lookup.read(client)).await {
                    Ok(found) => found,
                    Err(_) => Err(format!("no answer within {READ_TIMEOUT:?}")),
                };
                Finished::Attempt(request, sent_at, found)
            });
        }
    }
}

#[cfg(test)]
mod tests;
