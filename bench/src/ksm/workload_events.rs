//! What `--workload-alerts` writes and times: core/v1 Events as the controllers and kubelets
//! write them (ordinary Normal ones, `FailedCreate` of causes that are no sidecar's, and
//! `FailedCreate` of Istio's injector being down about an existing ReplicaSet), the
//! Deployments and ReplicaSets those last ones name, and the time from such an Event to the
//! operator's `SidecarInjectionFailed` series firing and to its Warning Event.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use futures::{stream, StreamExt};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Event as CoreEvent;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, PostParams};
use kube::runtime::watcher;
use kube::Client;
use serde_json::{json, Value};
use tokio::task::JoinHandle;

use crate::operator::scrape;
use crate::pods;

/// The namespace of the workloads whose Events are timed, and of their policy.
pub const NAMESPACE: &str = "wl-bench";
/// The `pod-template-hash` of their ReplicaSets.
const HASH: &str = "5d8f7c9b4";
/// Requests in flight while Events are written in bulk.
const CONCURRENCY: usize = 32;

/// What the ReplicaSet controller records when Istio's webhook fails closed and istiod is
/// down: the message of tests/e2e_operator/injection_failed.rs (`Error creating: ` and
/// kube-apiserver's `failed calling webhook`).
const ISTIO_DOWN: &str = "Error creating: Internal error occurred: failed calling webhook \
    \"namespace.sidecar-injector.istio.io\": failed to call webhook: Post \
    \"https://istiod.istio-system.svc:443/inject?timeout=10s\": dial tcp 10.96.0.10:443: connect: connection refused";

/// `FailedCreate` messages whose cause is no sidecar's: a quota, another webhook.
const UNRELATED: [&str; 2] = [
    "Error creating: pods \"web-7d4b9c-x2kqp\" is forbidden: exceeded quota: compute-resources, requested: \
     limits.cpu=2, used: limits.cpu=20, limited: limits.cpu=20",
    "Error creating: admission webhook \"validate.kyverno.svc-fail\" denied the request: resource Pod/web was \
     blocked due to the following policies: require-requests-limits",
];

/// A core/v1 Event in `namespace` about `(kind, name, uid)` of that namespace, seen now.
fn event(namespace: &str, involved: (&str, &str, &str), reason: &str, type_: &str, message: &str) -> Result<CoreEvent> {
    let now = jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    let (kind, name, uid) = involved;
    let (api_version, component) = match kind {
        "Pod" => ("v1", "kubelet"),
        _ => ("apps/v1", "replicaset-controller"),
    };
    Ok(serde_json::from_value(json!({
        "metadata": {"generateName": format!("{name}."), "namespace": namespace},
        "involvedObject": {"apiVersion": api_version, "kind": kind, "name": name, "namespace": namespace, "uid": uid},
        "reason": reason, "type": type_, "message": message, "source": {"component": component},
        "firstTimestamp": now, "lastTimestamp": now, "count": 1,
    }))?)
}

/// The `i`th ordinary Event: what kubelets and the ReplicaSet controller write all day.
fn normal(i: usize) -> Result<CoreEvent> {
    let ns = pods::namespace(i % pods::NAMESPACES);
    let pod = format!("app-{}-7f9c8d-{:05}", i % 400, i);
    let uid = format!("0000{i:04x}-1111-4222-8333-{i:012x}");
    let (reason, message) = match i % 6 {
        0 => ("Scheduled", format!("Successfully assigned {ns}/{pod} to bench-node")),
        1 => ("Pulling", "Pulling image \"docker.io/istio/proxyv2:1.24.0\"".to_string()),
        2 => ("Pulled", "Container image \"docker.io/istio/proxyv2:1.24.0\" already present on machine".to_string()),
        3 => ("Created", "Created container: istio-proxy".to_string()),
        4 => ("Started", "Started container istio-proxy".to_string()),
        _ => ("Killing", "Stopping container app".to_string()),
    };
    event(&ns, ("Pod", &pod, &uid), reason, "Normal", &message)
}

/// The `i`th `FailedCreate` whose cause is not a sidecar's, about a ReplicaSet that does not
/// exist (the operator must drop it without reading anything).
fn unrelated(i: usize) -> Result<CoreEvent> {
    let ns = pods::namespace(i % pods::NAMESPACES);
    let rs = format!("web-{}-7d4b9c", i % 97);
    let uid = format!("2222{i:04x}-1111-4222-8333-{i:012x}");
    event(&ns, ("ReplicaSet", &rs, &uid), "FailedCreate", "Warning", UNRELATED[i % UNRELATED.len()])
}

/// Creates `event`, retrying what a busy server answers (429, 5xx).
async fn create(client: &Client, event: CoreEvent) -> Result<()> {
    let ns = event.metadata.namespace.clone().unwrap_or_default();
    let api: Api<CoreEvent> = Api::namespaced(client.clone(), &ns);
    for attempt in 1..=10u64 {
        match api.create(&PostParams::default(), &event).await {
            Ok(_) => return Ok(()),
            Err(kube::Error::Api(s)) if s.code == 429 || s.code >= 500 => {
                tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
            }
            Err(e) => return Err(e).context("creating an Event"),
        }
    }
    anyhow::bail!("an Event in {ns} still refused after 10 attempts")
}

/// Writes `normal` ordinary Events and `unrelated` `FailedCreate` of other causes, many at
/// a time; returns the seconds it took.
pub async fn write_background(client: &Client, normal_count: usize, unrelated_count: usize) -> Result<f64> {
    let started = Instant::now();
    let all = (0..normal_count).map(normal).chain((0..unrelated_count).map(unrelated));
    let mut results = stream::iter(all).map(|e| async move { create(client, e?).await }).buffer_unordered(CONCURRENCY);
    while let Some(r) = results.next().await {
        r?;
    }
    Ok(started.elapsed().as_secs_f64())
}

/// Writes ordinary Events at `rate`/s and one unrelated `FailedCreate` every 5 s, numbered
/// from `first`, until aborted; counts what it wrote.
pub fn write_steadily(client: Client, rate: u64, first: usize, written: Arc<Mutex<(u64, u64)>>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate.max(1) as f64));
        let per_unrelated = rate.max(1) * 5;
        for i in first.. {
            tick.tick().await;
            let is_unrelated = (i as u64).is_multiple_of(per_unrelated);
            let e = if is_unrelated { unrelated(i) } else { normal(i) };
            if let Ok(e) = e {
                if create(&client, e).await.is_ok() {
                    if let Ok(mut w) = written.lock() {
                        if is_unrelated {
                            w.1 += 1;
                        } else {
                            w.0 += 1;
                        }
                    }
                }
            }
        }
    })
}

/// A Deployment `name` and its ReplicaSet in [`NAMESPACE`] (no controller runs here: both
/// are written as the Deployment controller would); returns the ReplicaSet's name and UID.
pub async fn deployment(client: &Client, name: &str) -> Result<(String, String)> {
    let template = |labels: &Value| json!({"metadata": {"labels": labels}, "spec": {"containers": [{"name": "app", "image": "busybox"}]}});
    let app = json!({"app": name});
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"replicas": 2, "selector": {"matchLabels": app}, "template": template(&app)},
    }))?;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), NAMESPACE);
    let created = deployments.create(&PostParams::default(), &deployment).await?;
    let labels = json!({"app": name, "pod-template-hash": HASH});
    let rs_name = format!("{name}-{HASH}");
    let replica_set: ReplicaSet = serde_json::from_value(json!({
        "metadata": {"name": rs_name, "labels": labels, "ownerReferences": [{
            "apiVersion": "apps/v1", "kind": "Deployment", "name": name,
            "uid": created.metadata.uid.context("a Deployment's UID")?, "controller": true, "blockOwnerDeletion": true,
        }]},
        "spec": {"replicas": 2, "selector": {"matchLabels": labels}, "template": template(&labels)},
    }))?;
    let replica_sets: Api<ReplicaSet> = Api::namespaced(client.clone(), NAMESPACE);
    let created = replica_sets.create(&PostParams::default(), &replica_set).await?;
    Ok((rs_name, created.metadata.uid.context("a ReplicaSet's UID")?))
}

/// Latencies of the timed Events, in seconds.
#[derive(Debug, Default, Clone)]
pub struct Latency {
    pub samples: usize,
    /// Event written → the `sidecar_alerts` series firing (the end of the scrape that had it).
    pub series: Vec<f64>,
    /// Event written → the operator's Warning Event seen by a watch.
    pub event: Vec<f64>,
    /// The scrapes' own durations while polling.
    pub scrape: Vec<f64>,
    /// The `POST` of the Event alone.
    pub post: Vec<f64>,
}

/// First sightings of the operator's `SidecarInjectionFailed` Warnings in [`NAMESPACE`], by
/// the workload's name.
fn warnings(client: Client, seen: Arc<Mutex<HashMap<String, Instant>>>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let api: Api<Event> = Api::namespaced(client, NAMESPACE);
        let mut stream = watcher(api, watcher::Config::default()).boxed();
        while let Some(item) = stream.next().await {
            let at = Instant::now();
            let Ok(watcher::Event::Apply(e) | watcher::Event::InitApply(e)) = item else { continue };
            if e.reason.as_deref() == Some("SidecarInjectionFailed") && e.type_.as_deref() == Some("Warning") {
                let name = e.regarding.and_then(|r| r.name).unwrap_or_default();
                if let Ok(mut seen) = seen.lock() {
                    seen.entry(name).or_insert(at);
                }
            }
        }
    })
}

/// For each workload `(deployment, replica set, its uid)`, one after the other: writes the
/// ReplicaSet controller's `FailedCreate` of Istio's injector being down, and polls the
/// operator's `/metrics` on `port` until the workload's `SidecarInjectionFailed` series fires.
pub async fn time_alerts(client: &Client, port: u16, workloads: &[(String, String, String)]) -> Result<Latency> {
    let seen = Arc::new(Mutex::new(HashMap::new()));
    let watch = warnings(client.clone(), seen.clone());
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut out = Latency::default();
    for (name, rs, uid) in workloads {
        let want = [
            "sidecar_alerts{".to_string(),
            "alertname=\"SidecarInjectionFailed\"".to_string(),
            "alertstate=\"firing\"".to_string(),
            format!("workload=\"{name}\""),
        ];
        let e = event(NAMESPACE, ("ReplicaSet", rs, uid), "FailedCreate", "Warning", ISTIO_DOWN)?;
        let t0 = Instant::now();
        create(client, e).await?;
        out.post.push(t0.elapsed().as_secs_f64());
        let mut series = None;
        while series.is_none() && t0.elapsed() < Duration::from_secs(30) {
            let Ok(r) = scrape(port).await else { continue };
            out.scrape.push(r.elapsed.as_secs_f64());
            if r.body.lines().any(|l| want.iter().all(|w| l.contains(w.as_str()))) {
                series = Some(t0.elapsed().as_secs_f64());
            }
        }
        // The Warning follows the series by the Event recorder's own path: give it a moment.
        let deadline = Instant::now() + Duration::from_secs(10);
        let event_at = loop {
            let at = seen.lock().ok().and_then(|s| s.get(name).copied());
            if at.is_some() || Instant::now() > deadline {
                break at;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        say!(
            "latency {name}: series {:?} s, Warning {:?} s",
            series,
            event_at.map(|a| a.duration_since(t0).as_secs_f64())
        );
        out.samples += 1;
        out.series.extend(series);
        out.event.extend(event_at.map(|a| a.duration_since(t0).as_secs_f64()));
    }
    watch.abort();
    Ok(out)
}
