//! End-to-end alert latency: an OOM kill of a sidecar, timed to a bare kube-rs watch, to the
//! alert on `/metrics` and to the Event object in the simulator's store ([`EventWatch`],
//! read in-process: no HTTP between the store and the clock).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, WatchEvent, WatchParams};
use serde_json::Value;
use sidecar_watch_harness::sim::api::now_string;
use sidecar_watch_harness::sim::store::EventType;
use sidecar_watch_harness::sim::Shared;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::task::JoinHandle;

use super::operator::scrape;
use super::pods::{self, MESH_SIDECAR};
use super::preload::write_pod;
use super::prom::sample_quantile;

/// The reason of the Event and the alert an OOM kill raises at once.
pub const OOM_ALERT: &str = "SidecarOOMKilled";

/// Latencies of the end-to-end phase, in seconds, one per sample that was seen.
#[derive(Debug, Default, Clone)]
pub struct E2e {
    pub samples: usize,
    pub watch: Vec<f64>,
    pub metrics: Vec<f64>,
    pub event: Vec<f64>,
    /// Every `/metrics` scrape made while polling, in ms.
    pub scrape_ms: Vec<f64>,
}

/// Events created in the simulator's store, as (involved Pod, reason, when seen).
pub struct EventWatch {
    rx: UnboundedReceiver<(String, String, Instant)>,
    task: JoinHandle<()>,
}

impl EventWatch {
    /// Subscribes to the store now.
    pub fn start(shared: &Shared) -> Self {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let mut sub = shared.state().store.subscribe();
        let task = tokio::spawn(async move {
            loop {
                match sub.recv().await {
                    Ok(ev) if ev.key.1 == "events" && ev.kind == EventType::Added => {
                        let at = Instant::now();
                        let event = ev.object.value();
                        let text = |p: &str| event.pointer(p).and_then(Value::as_str).unwrap_or("").to_string();
                        if tx.send((text("/regarding/name"), text("/reason"), at)).is_err() {
                            return;
                        }
                    }
                    Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(_) => return,
                }
            }
        });
        EventWatch { rx, task }
    }

    /// Forgets what was seen so far.
    pub fn clear(&mut self) {
        while self.rx.try_recv().is_ok() {}
    }

    /// When an Event `reason` for Pod `pod` was seen since the last call, if it was.
    pub fn seen(&mut self, pod: &str, reason: &str) -> Option<Instant> {
        let mut found = None;
        while let Ok((p, r, at)) = self.rx.try_recv() {
            if p == pod && r == reason && found.is_none() {
                found = Some(at);
            }
        }
        found
    }

    /// Writes an OOM kill of `pod`'s mesh sidecar and waits up to `timeout` for its Event;
    /// returns the latency in seconds.
    pub async fn oom_kill(&mut self, shared: &Shared, pod: &(String, String), timeout: Duration) -> Option<f64> {
        self.clear();
        let t0 = Instant::now();
        write_pod(shared, &pod.0, &pod.1, |p| pods::restart(p, MESH_SIDECAR, "OOMKilled", 137, true, &now_string()));
        while t0.elapsed() < timeout {
            if let Some(at) = self.seen(&pod.1, OOM_ALERT) {
                return Some(at.duration_since(t0).as_secs_f64());
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        None
    }
}

impl Drop for EventWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// OOM kills of `pods` one after the other: latency to a bare kube-rs watch, to the Event in
/// the store and to the alert on `/metrics` (polled).
pub async fn oom_e2e(shared: &Arc<Shared>, kubeconfig: &Path, port: u16, pods: &[(String, String)]) -> Result<E2e> {
    let client = sidecar_watch_harness::env::client_from(kubeconfig).await?;
    let api: Api<Pod> = Api::all(client);
    let rv = shared.resource_version().to_string();
    let stream = api.watch(&WatchParams::default().timeout(290), &rv).await?;
    let (wtx, mut wrx) = tokio::sync::mpsc::unbounded_channel::<(String, Instant)>();
    let watch_task = tokio::spawn(async move {
        futures::pin_mut!(stream);
        while let Some(ev) = stream.next().await {
            if let Ok(WatchEvent::Modified(p)) = ev {
                let _ = wtx.send((p.metadata.name.unwrap_or_default(), Instant::now()));
            }
        }
    });
    let mut events = EventWatch::start(shared);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut e2e = E2e::default();
    for (ns, name) in pods {
        while wrx.try_recv().is_ok() {}
        events.clear();
        let t0 = Instant::now();
        write_pod(shared, ns, name, |p| pods::restart(p, MESH_SIDECAR, "OOMKilled", 137, true, &now_string()));
        let pod_part = format!("pod=\"{name}\"");
        let alert_part = format!("alertname=\"{OOM_ALERT}\"");
        let (mut watch_at, mut event_at, mut metric_at) = (None, None, None);
        while t0.elapsed() < Duration::from_secs(15)
            && (watch_at.is_none() || event_at.is_none() || metric_at.is_none())
        {
            if metric_at.is_none() {
                if let Ok(r) = scrape(port).await {
                    e2e.scrape_ms.push(r.elapsed.as_secs_f64() * 1e3);
                    if r.body.lines().any(|l| l.contains(&alert_part) && l.contains(&pod_part)) {
                        metric_at = Some(t0.elapsed().as_secs_f64());
                    }
                }
            } else {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            while let Ok((pod, at)) = wrx.try_recv() {
                if &pod == name && watch_at.is_none() {
                    watch_at = Some(at.duration_since(t0).as_secs_f64());
                }
            }
            if event_at.is_none() {
                event_at = events.seen(name, OOM_ALERT).map(|at| at.duration_since(t0).as_secs_f64());
            }
        }
        e2e.samples += 1;
        e2e.watch.extend(watch_at);
        e2e.event.extend(event_at);
        e2e.metrics.extend(metric_at);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    watch_task.abort();
    let q = |v: &[f64], p| super::fmt(sample_quantile(v, p), 1e3, 2);
    say!(
        "e2e over {} samples: watch p50 {} ms / p99 {} ms; metrics p50 {} / p99 {} ms; Event p50 {} / p99 {} ms (seen {}/{}/{})",
        e2e.samples,
        q(&e2e.watch, 0.5),
        q(&e2e.watch, 0.99),
        q(&e2e.metrics, 0.5),
        q(&e2e.metrics, 0.99),
        q(&e2e.event, 0.5),
        q(&e2e.event, 0.99),
        e2e.watch.len(),
        e2e.metrics.len(),
        e2e.event.len()
    );
    Ok(e2e)
}
