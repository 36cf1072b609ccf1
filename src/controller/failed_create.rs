//! The controllers' `FailedCreate` Events, read through a watch filtered on the reason by
//! the API server (never an unfiltered Events watch), as the conditions of the workloads
//! whose Pods a sidecar or its injector keeps from being created (`SidecarInjectionFailed`).
//!
//! An Event is a tenant's input: anyone who may create Events can write one. So an Event is
//! only believed about an object of its own namespace that exists with the UID it names,
//! and only the few whose message names a sidecar's cause ([`crate::failed_create`], by
//! [`crate::engine::classify_failed_create`]) cost a read of that object (bounded in time);
//! everything else is dropped at once. What is remembered here is bounded too, and every cut
//! is counted in `sidecar_watch_limited_total{limit="failed-create-events"}`.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Event;
use kube::api::Api;
use kube::runtime::{watcher, WatchStreamExt};
use kube::Client;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::queue::{Change, Op};
// The pure part, shared with `audit` so that both read an Event alike.
use crate::failed_create::{condition_of, read_involved, sidecar_failure, Involved};
use crate::index::shard::Shard;
use crate::index::{CreateFailures, WorkloadId};
use crate::metrics::Metrics;

/// Events remembered at most (each a UID and a workload): past that, new ones are dropped.
const MAX_EVENTS: usize = 20_000;
/// A read of the object an Event names is given up after this long.
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// The `limit` label of what is cut here.
const LIMIT: &str = "failed-create-events";
/// The watch never lists more than this per page: Events are many in a busy cluster.
const PAGE: u32 = 500;
/// How often the objects of the failing workloads are read again: the alert must not outlive
/// its workload, and an Event outlives the object it is about (by up to an hour).
const RECHECK: Duration = Duration::from_secs(15);
/// Objects read again per [`RECHECK`] at most, the longest unread first.
const RECHECK_READS: usize = 100;

/// Watches the `FailedCreate` Events of `namespace` (`None`: every one) and sends the
/// conditions they reveal to the reconciler until `tx` closes.
pub(crate) async fn watch(
    client: Client,
    namespace: Option<String>,
    shard: Shard,
    source: usize,
    tx: mpsc::Sender<Change>,
    metrics: Metrics,
) {
    let events: Api<Event> = match &namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let config = watcher::Config::default().fields("reason=FailedCreate").page_size(PAGE);
    let stream = watcher(events, config).default_backoff();
    futures::pin_mut!(stream);
    let mut known = Known::default();
    let mut recheck = tokio::time::interval(RECHECK);
    recheck.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let ops = tokio::select! {
            event = stream.next() => match event {
                None => return,
                Some(Ok(watcher::Event::Init)) => {
                    known.relisting = Some(HashSet::new());
                    continue;
                }
                Some(Ok(watcher::Event::InitApply(event) | watcher::Event::Apply(event))) => {
                    known.applied(&client, event, shard, &metrics).await
                }
                Some(Ok(watcher::Event::Delete(event))) => known.deleted(&event),
                Some(Ok(watcher::Event::InitDone)) => known.relisted(&namespace, source),
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "FailedCreate Events watch failed; retrying");
                    metrics.watch_restarts.inc();
                    continue;
                }
            },
            _ = recheck.tick() => known.recheck(&client).await,
        };
        for op in ops {
            if tx.send(Change::from(op)).await.is_err() {
                return;
            }
        }
    }
}

/// The Events that told of a sidecar's failure, by UID, with their workload.
#[derive(Default)]
struct Known {
    events: HashMap<String, WorkloadId>,
    /// The object the latest Event of each failing workload names, and when it was read.
    objects: HashMap<WorkloadId, (Involved, Instant)>,
    /// The Events listed since the last `Init`, while a relist runs.
    relisting: Option<HashSet<String>>,
}

impl Known {
    async fn applied(
        &mut self,
        client: &Client,
        event: Event,
        shard: Shard,
        metrics: &Metrics,
    ) -> Vec<Op<CreateFailures>> {
        let uid = event.metadata.uid.clone().unwrap_or_default();
        if let Some(listed) = self.relisting.as_mut() {
            listed.insert(uid.clone());
        }
        let Some((failure, involved)) = sidecar_failure(&event) else {
            // A message edited into something that is not ours any more.
            return self.deleted(&event);
        };
        if !self.events.contains_key(&uid) && self.events.len() >= MAX_EVENTS {
            metrics.limited.with_label_values(&[LIMIT]).inc();
            return Vec::new();
        }
        let object = match tokio::time::timeout(READ_TIMEOUT, read_involved(client, &involved)).await {
            Ok(Ok(Some(object))) => object,
            // Gone, or not what the Event says it is (a forged UID): nothing to report.
            Ok(Ok(None)) => return self.deleted(&event),
            Ok(Err(e)) => {
                tracing::debug!(object = %involved.name, error = %e, "reading the object of a FailedCreate Event failed");
                return Vec::new();
            }
            Err(_) => return Vec::new(),
        };
        let condition = condition_of(&event, &failure, &object, Timestamp::now());
        let workload = object.workload;
        if !shard.owns(&workload.to_string()) {
            return Vec::new();
        }
        self.events.insert(uid, workload.clone());
        self.objects.insert(workload.clone(), (involved, Instant::now()));
        vec![Op::Applied { object: (workload, condition), received: Instant::now() }]
    }

    fn deleted(&mut self, event: &Event) -> Vec<Op<CreateFailures>> {
        let uid = event.metadata.uid.as_deref().unwrap_or_default();
        let Some(workload) = self.events.remove(uid) else { return Vec::new() };
        if self.events.values().any(|w| *w == workload) {
            return Vec::new();
        }
        self.objects.remove(&workload);
        vec![Op::Deleted { namespace: workload.namespace.clone(), key: workload }]
    }

    /// Reads the objects of the failing workloads again, the longest unread first: a
    /// workload whose object is gone (or was made again, with another UID) fails no more.
    async fn recheck(&mut self, client: &Client) -> Vec<Op<CreateFailures>> {
        let mut due: Vec<(WorkloadId, Involved, Instant)> =
            self.objects.iter().map(|(w, (o, at))| (w.clone(), o.clone(), *at)).collect();
        due.sort_by_key(|(_, _, at)| *at);
        let mut ops = Vec::new();
        for (workload, involved, _) in due.into_iter().take(RECHECK_READS) {
            match tokio::time::timeout(READ_TIMEOUT, read_involved(client, &involved)).await {
                Ok(Ok(Some(_))) => {
                    self.objects.insert(workload, (involved, Instant::now()));
                }
                Ok(Ok(None)) => ops.extend(self.gone(workload)),
                // Unknown: asked again at the next round.
                Ok(Err(_)) | Err(_) => {}
            }
        }
        ops
    }

    /// Forgets a workload whose object is gone, with every Event about it.
    fn gone(&mut self, workload: WorkloadId) -> Option<Op<CreateFailures>> {
        self.events.retain(|_, w| *w != workload);
        self.objects.remove(&workload)?;
        Some(Op::Deleted { namespace: workload.namespace.clone(), key: workload })
    }

    /// `source`: this watch's number, so that its first list counts towards readiness.
    fn relisted(&mut self, namespace: &Option<String>, source: usize) -> Vec<Op<CreateFailures>> {
        let listed = self.relisting.take().unwrap_or_default();
        self.events.retain(|uid, _| listed.contains(uid));
        let seen: HashSet<WorkloadId> = self.events.values().cloned().collect();
        self.objects.retain(|w, _| seen.contains(w));
        vec![Op::Relisted { source, scope: namespace.clone(), seen }]
    }
}

#[cfg(test)]
mod tests;
