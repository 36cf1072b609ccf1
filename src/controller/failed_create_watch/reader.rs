//! The one reader of the objects that `FailedCreate` Events name, out of the Events watch
//! loop: the loop only classifies Events and hands this reader what to read; the reads come
//! back as [`Read`]s on a channel the loop selects on.
//!
//! Reads wait in a [`FairQueue`], one namespace's turn after another's, new Events' objects
//! before the periodic re-reads within a namespace. At most [`CONCURRENCY`] run at once and
//! one per namespace, so a namespace whose reads hang (each given up after
//! [`READ_TIMEOUT`]) holds one place, never the others'. A failed or timed-out read is
//! retried after 1 s, then 2 s; each failure, and each request dropped from a full queue,
//! counts in `sidecar_watch_limited_total{limit="failed-create-reads"}`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use kube::Client;
use parking_lot::Mutex;
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinSet;

use crate::fair_queue::{Fair, FairQueue, Rank};
use crate::injection_failure::{read_involved, Involved, ReadObject};
use crate::metrics::Metrics;

/// Reads running at once, over every namespace.
pub(super) const CONCURRENCY: usize = 4;
/// A read of an object is given up after this long (then retried).
pub(super) const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Attempts at one read before it is reported failed (the next re-read round asks again).
pub(super) const ATTEMPTS: u32 = 3;
/// The wait before the first retry; it doubles with each.
const BACKOFF: Duration = Duration::from_secs(1);
/// The `limit` label of a failed read or a dropped request.
pub(super) const LIMIT: &str = "failed-create-reads";

/// An object to read.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Request {
    /// The object, as an Event names it.
    pub(super) involved: Involved,
    /// A periodic re-read of an object already read (served after new Events' objects).
    pub(super) recheck: bool,
    /// Attempts made so far.
    attempt: u32,
}

impl Request {
    /// A first attempt at reading `involved`.
    pub(super) fn new(involved: Involved, recheck: bool) -> Self {
        Request { involved, recheck, attempt: 0 }
    }
}

impl Fair for Request {
    fn namespace(&self) -> &str {
        &self.involved.namespace
    }
    fn rank(&self) -> Rank {
        if self.recheck {
            Rank::Deferred
        } else {
            Rank::Normal
        }
    }
}

/// What a read found: the object (`None`: gone, or another UID than the Event's), or `Err`
/// when every attempt failed.
#[derive(Debug)]
pub(super) struct Read {
    /// The object asked for.
    pub(super) involved: Involved,
    /// When the answered request was sent: what it found was so at least since then.
    pub(super) sent_at: Timestamp,
    /// What was read.
    pub(super) object: Result<Option<ReadObject>, ()>,
}

/// The watch loop's handle on the reader task.
pub(super) struct Reader {
    queue: Arc<Mutex<FairQueue<Request>>>,
    wake: Arc<Notify>,
    metrics: Metrics,
}

impl Reader {
    /// Starts the reader task; it sends what it reads to `results` and ends when `results`
    /// closes. At most `capacity` requests wait.
    pub(super) fn spawn(client: Client, metrics: Metrics, capacity: usize, results: mpsc::Sender<Read>) -> Reader {
        let queue = Arc::new(Mutex::new(FairQueue::new(capacity)));
        let wake = Arc::new(Notify::new());
        let task = Task {
            client,
            queue: Arc::clone(&queue),
            wake: Arc::clone(&wake),
            metrics: metrics.clone(),
            results,
            in_flight: HashMap::new(),
            running: 0,
            tasks: JoinSet::new(),
        };
        tokio::spawn(task.run());
        Reader { queue, wake, metrics }
    }

    /// Queues a read without waiting; returns the request dropped to make room (the
    /// newest of the namespace holding the most, maybe this one), counted.
    pub(super) fn request(&self, request: Request) -> Option<Request> {
        let dropped = self.queue.lock().push(request);
        self.wake.notify_one();
        if dropped.is_some() {
            self.metrics.limited.with_label_values(&[LIMIT]).inc();
        }
        dropped
    }
}

/// How a spawned piece of work ended.
enum Finished {
    /// A read attempt, when it was sent, and its result (`Err`: failed or timed out).
    Attempt(Request, Timestamp, Result<Option<ReadObject>, ()>),
    /// A retry's wait is over.
    Retry(Request),
}

struct Task {
    client: Client,
    queue: Arc<Mutex<FairQueue<Request>>>,
    wake: Arc<Notify>,
    metrics: Metrics,
    results: mpsc::Sender<Read>,
    /// Reads running per namespace (at most one each).
    in_flight: HashMap<String, usize>,
    running: usize,
    tasks: JoinSet<Finished>,
}

impl Task {
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
                        self.metrics.limited.with_label_values(&[LIMIT]).inc();
                        // Reported failed: the next re-read round asks again.
                        let read = Read { involved: dropped.involved, sent_at: Timestamp::now(), object: Err(()) };
                        if self.results.send(read).await.is_err() {
                            return;
                        }
                    }
                }
                Finished::Attempt(mut request, sent_at, object) => {
                    self.running -= 1;
                    if let Some(n) = self.in_flight.get_mut(&request.involved.namespace) {
                        *n -= 1;
                        if *n == 0 {
                            self.in_flight.remove(&request.involved.namespace);
                        }
                    }
                    if object.is_err() {
                        self.metrics.limited.with_label_values(&[LIMIT]).inc();
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
                    if self.results.send(Read { involved: request.involved, sent_at, object }).await.is_err() {
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
            *self.in_flight.entry(request.involved.namespace.clone()).or_default() += 1;
            self.running += 1;
            let client = self.client.clone();
            self.tasks.spawn(async move {
                let sent_at = Timestamp::now();
                let object = match tokio::time::timeout(READ_TIMEOUT, read_involved(&client, &request.involved)).await
                {
                    Ok(Ok(object)) => Ok(object),
                    Ok(Err(e)) => {
                        tracing::debug!(object = %request.involved.name, error = %e, "reading the object of a FailedCreate Event failed");
                        Err(())
                    }
                    Err(_) => Err(()),
                };
                Finished::Attempt(request, sent_at, object)
            });
        }
    }
}

#[cfg(test)]
mod tests;
