//! Status updates through the real API server at a steady rate, as kubelets send them:
//! readiness flips of healthy Pods' `istio-proxy`, each undone a second later (both count).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::Client;
use sidecar_watch_harness::kubelet::NODE_NAME;
use tokio::sync::Semaphore;

use super::cluster::patch_status;
use crate::pods::{self, PodFactory, MESH_SIDECAR};

/// What one update phase did.
#[derive(Debug, Default, Clone)]
pub struct Updates {
    pub writes: u64,
    /// Writes per second achieved.
    pub achieved: f64,
    pub errors: u64,
    /// The first error, for the log.
    pub first_error: Option<String>,
    pub secs: f64,
}

/// Requests in flight at most: at 100/s and a few ms per `PATCH`, a handful are enough;
/// the bound keeps a slow server from piling up work in the generator.
const IN_FLIGHT: usize = 32;

fn now_stamp() -> String {
    jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// The factory Pod `i`'s status with `istio-proxy` ready or not (conditions following).
fn status_of(factory: &PodFactory, i: usize, ready: bool) -> serde_json::Value {
    let mut pod = factory.pod(i);
    pods::set_ready(&mut pod, MESH_SIDECAR, ready, &now_stamp());
    pod["spec"]["nodeName"] = serde_json::json!(NODE_NAME);
    pod["status"].take()
}

/// One status write, counted.
fn write(
    client: &Client,
    ns: String,
    name: String,
    status: serde_json::Value,
    writes: &Arc<AtomicU64>,
    errors: &Arc<AtomicU64>,
    first_error: &Arc<std::sync::Mutex<Option<String>>>,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let (client, writes, errors, first_error) = (client.clone(), writes.clone(), errors.clone(), first_error.clone());
    async move {
        match patch_status(&client, &ns, &name, &status).await {
            Ok(()) => {
                writes.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                errors.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut first) = first_error.lock() {
                    first.get_or_insert_with(|| e.to_string());
                }
            }
        }
    }
}

/// Flips `targets` (factory index, namespace, name) round-robin at `rate` writes/s for `secs`.
pub async fn run(
    client: &Client,
    factory: &PodFactory,
    targets: &[(usize, String, String)],
    rate: u64,
    secs: f64,
) -> Updates {
    let started = Instant::now();
    let end = started + Duration::from_secs_f64(secs);
    let writes = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let first_error = Arc::new(std::sync::Mutex::new(None::<String>));
    let permits = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut undo: std::collections::VecDeque<(Instant, usize)> = Default::default();
    let mut cursor = 0usize;
    let mut sent = 0u64;
    let mut tasks = tokio::task::JoinSet::new();
    let interval = Duration::from_secs_f64(1.0 / rate.max(1) as f64);
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    while Instant::now() < end && !targets.is_empty() {
        tick.tick().await;
        let now = Instant::now();
        let (t, ready) = match undo.front() {
            Some((due, t)) if *due <= now => {
                let t = *t;
                undo.pop_front();
                (t, true)
            }
            _ => {
                let t = cursor % targets.len();
                cursor += 1;
                undo.push_back((now + Duration::from_secs(1), t));
                (t, false)
            }
        };
        let (i, ns, name) = targets[t].clone();
        let status = status_of(factory, i, ready);
        let Ok(permit) = permits.clone().acquire_owned().await else { break };
        sent += 1;
        let write = write(client, ns, name, status, &writes, &errors, &first_error);
        tasks.spawn(async move {
            write.await;
            drop(permit);
        });
    }
    let secs = started.elapsed().as_secs_f64();
    // The flips still pending are undone (and counted): every Pod ends healthy.
    for (_, t) in undo {
        let (i, ns, name) = targets[t].clone();
        let status = status_of(factory, i, true);
        tasks.spawn(write(client, ns, name, status, &writes, &errors, &first_error));
    }
    while tasks.join_next().await.is_some() {}
    Updates {
        writes: writes.load(Ordering::Relaxed),
        achieved: sent as f64 / secs,
        errors: errors.load(Ordering::Relaxed),
        first_error: first_error.lock().ok().and_then(|e| e.clone()),
        secs,
    }
}
