//! `sidecar-watch-bench --against ksm --workload-alerts`: what the alerts on workloads cost
//! the real API server, and how fast one fires. On the real control plane with N Pods
//! (`--ksm-pods`, the first) and, among them, ordinary Events (`--wl-events`) and
//! `FailedCreate` Events of causes that are no sidecar's (`--wl-unrelated`):
//!
//! 1. the operator's start: what its `reason=FailedCreate` Events watch listed, beside what
//!    its Pods cost, from kube-apiserver's own `/metrics` (requests, their latency, bytes);
//! 2. one list of the Events filtered as the operator lists them, beside the unfiltered
//!    list a naive watch starts with (paginated as the operator pages), alternating;
//! 3. the steady state (`--wl-steady-seconds`) while ordinary Events keep coming
//!    (`--wl-event-rate`/s, one unrelated `FailedCreate` every 5 s): what the filtered watch
//!    received, beside an unfiltered watch open meanwhile;
//! 4. `--e2e-samples` `FailedCreate` Events of Istio's injector being down, each about a
//!    Deployment's ReplicaSet, timed to the `SidecarInjectionFailed` series firing
//!    (`rules.injectionFailed.for: 0s`) and to the operator's Warning Event.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Event as CoreEvent;
use kube::api::{Api, WatchEvent, WatchParams};
use kube::Client;
use sidecar_watch_harness::policy::rules;
use sidecar_watch_harness::process;

use super::cluster::Cluster;
use super::server::wait_quiet;
use super::workload_events::{self as events, Latency, NAMESPACE};
use crate::args::Args;
use crate::operator::Operator;
use crate::pods::PodFactory;
use crate::prom::{sample_quantile, Scrape};

/// kube-apiserver's families read (the rest of its page is skipped before parsing).
const FAMILIES: [&str; 7] = [
    "apiserver_request_total{",
    "apiserver_request_duration_seconds_sum{",
    "apiserver_request_duration_seconds_count{",
    "apiserver_response_sizes_sum{",
    "apiserver_watch_events_total{",
    "apiserver_watch_events_sizes_sum{",
    "apiserver_longrunning_requests{",
];

/// kube-apiserver's counters and the CPU of kube-apiserver and etcd at one moment.
struct Snap {
    at: Instant,
    metrics: Scrape,
    apiserver_ticks: u64,
    etcd_ticks: u64,
}

impl Snap {
    async fn take(cluster: &Cluster) -> Result<Self> {
        let request = http::Request::get("/metrics").body(Vec::new()).context("request")?;
        let text = cluster.client().request_text(request).await.context("kube-apiserver /metrics")?;
        let kept: String =
            text.lines().filter(|l| FAMILIES.iter().any(|f| l.starts_with(f))).flat_map(|l| [l, "\n"]).collect();
        Ok(Self {
            at: Instant::now(),
            metrics: Scrape::parse(&kept)?,
            apiserver_ticks: process::cpu_ticks(cluster.apiserver_pid).unwrap_or(0),
            etcd_ticks: process::cpu_ticks(cluster.etcd_pid).unwrap_or(0),
        })
    }
}

/// What one resource's requests cost between two snapshots (every client's).
#[derive(Debug, Default, Clone)]
struct Cost {
    lists: f64,
    /// Seconds kube-apiserver spent serving those lists, in all.
    list_secs: f64,
    list_bytes: f64,
    watches_ended: f64,
    watches_open: f64,
    watch_events: f64,
    watch_bytes: f64,
    gets: f64,
}

/// The cost of `resource` of API `group` (`""`: core).
fn cost(before: &Snap, after: &Snap, group: &str, resource: &str) -> Cost {
    let d = |name: &str, verb: Option<&str>| {
        let mut m = vec![("group", group), ("resource", resource)];
        m.extend(verb.map(|v| ("verb", v)));
        after.metrics.sum(name, &m) - before.metrics.sum(name, &m)
    };
    Cost {
        lists: d("apiserver_request_total", Some("LIST")),
        list_secs: d("apiserver_request_duration_seconds_sum", Some("LIST")),
        list_bytes: d("apiserver_response_sizes_sum", Some("LIST")),
        watches_ended: d("apiserver_request_total", Some("WATCH")),
        // `+ 0.0`: an empty float sum is -0.0, printed "-0".
        watches_open: after
            .metrics
            .sum("apiserver_longrunning_requests", &[("verb", "WATCH"), ("group", group), ("resource", resource)])
            + 0.0,
        watch_events: d("apiserver_watch_events_total", None),
        watch_bytes: d("apiserver_watch_events_sizes_sum", None),
        gets: d("apiserver_request_total", Some("GET")),
    }
}

fn cpu(before: &Snap, after: &Snap) -> (f64, f64) {
    let hz = process::clock_ticks_per_sec() as f64;
    (
        after.apiserver_ticks.saturating_sub(before.apiserver_ticks) as f64 / hz,
        after.etcd_ticks.saturating_sub(before.etcd_ticks) as f64 / hz,
    )
}

fn kib(bytes: f64) -> String {
    if bytes >= 1048576.0 {
        format!("{:.1} MiB", bytes / 1048576.0)
    } else {
        format!("{:.1} KiB", bytes / 1024.0)
    }
}

/// One list of every Event as a client pages it (`limit=500`), `selector` or none: requests,
/// items, bytes, seconds.
async fn list_events(client: &Client, selector: Option<&str>) -> Result<(usize, usize, usize, f64)> {
    let started = Instant::now();
    let (mut requests, mut items, mut bytes) = (0, 0, 0);
    let mut next: Option<String> = None;
    loop {
        let mut uri = "/api/v1/events?limit=500".to_string();
        if let Some(s) = selector {
            uri.push_str(&format!("&fieldSelector={}", s.replace('=', "%3D")));
        }
        if let Some(c) = &next {
            uri.push_str(&format!("&continue={c}"));
        }
        let text = client.request_text(http::Request::get(uri).body(Vec::new())?).await?;
        requests += 1;
        bytes += text.len();
        let page: serde_json::Value = serde_json::from_str(&text)?;
        items += page["items"].as_array().map_or(0, Vec::len);
        next = page["metadata"]["continue"].as_str().filter(|c| !c.is_empty()).map(str::to_string);
        if next.is_none() {
            return Ok((requests, items, bytes, started.elapsed().as_secs_f64()));
        }
    }
}

/// An unfiltered watch of every Event from now, counting what it receives: (events,
/// bookmarks, bytes as JSON).
fn naive_watch(client: Client, counts: Arc<Mutex<(u64, u64, u64)>>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let api: Api<CoreEvent> = Api::all(client);
        let Ok(list) = api.list_metadata(&kube::api::ListParams::default().limit(1)).await else { return };
        let rv = list.metadata.resource_version.unwrap_or_default();
        let Ok(stream) = api.watch(&WatchParams::default().timeout(290), &rv).await else { return };
        futures::pin_mut!(stream);
        while let Some(Ok(ev)) = stream.next().await {
            let Ok(mut c) = counts.lock() else { return };
            match ev {
                WatchEvent::Added(e) | WatchEvent::Modified(e) | WatchEvent::Deleted(e) => {
                    c.0 += 1;
                    c.2 += serde_json::to_vec(&e).map_or(0, |v| v.len()) as u64;
                }
                WatchEvent::Bookmark(_) => c.1 += 1,
                WatchEvent::Error(_) => {}
            }
        }
    })
}

fn quantiles(v: &[f64]) -> String {
    let q = |p| sample_quantile(v, p).map_or("–".into(), |x| format!("{:.0} ms", x * 1e3));
    format!("{} / {} / {} (n = {})", q(0.5), q(0.99), q(1.0), v.len())
}

/// Runs the phases; returns the report (Markdown).
pub async fn run(args: &Args) -> Result<String> {
    let dir = args.workdir().join("workload-alerts");
    std::fs::create_dir_all(&dir)?;
    let mut cluster = Cluster::start(&dir).await?;
    let client = cluster.client().clone();
    let apiserver = cluster.env.control_plane().map(|c| c.info().versions.kube_api_server.clone()).unwrap_or_default();
    cluster.env.create_namespace(NAMESPACE).await?;
    let policy = serde_json::json!({
        "apiVersion": "sidecarwatch.io/v1alpha1", "kind": "SidecarPolicy",
        "metadata": {"name": "mesh", "namespace": NAMESPACE},
        "spec": {"rules": rules(serde_json::json!({"injectionFailed": {"for": "0s"}}))},
    });
    cluster.env.kubectl_apply(&serde_norway::to_string(&policy)?).await.context("the policy with for: 0s")?;
    let mut workloads = Vec::new();
    for i in 0..args.e2e_samples {
        let name = format!("lat-{i}");
        let (rs, uid) = events::deployment(&client, &name).await?;
        workloads.push((name, rs, uid));
    }
    let secs = events::write_background(&client, args.wl_events, args.wl_unrelated).await?;
    say!("wrote {} ordinary Events and {} unrelated FailedCreate in {secs:.0} s", args.wl_events, args.wl_unrelated);
    let n = args.ksm_pods[0];
    let creation = cluster.grow_to(&PodFactory::new(), n, args.create_concurrency).await?;
    say!("N={n}: {} Pods created in {:.0} s", creation.pods, creation.secs);

    let mut out = format!(
        "\n### The alerts on workloads, N = {} Pods, {} ordinary Events, {} unrelated `FailedCreate` (kube-apiserver {apiserver})\n",
        cluster.pods, args.wl_events, args.wl_unrelated
    );
    // 1. The operator's start.
    wait_quiet(cluster.apiserver_pid).await;
    let kubeconfig = cluster.operator_kubeconfig().await?;
    let before = Snap::take(&cluster).await?;
    let op = Operator::spawn(&args.operator(), &kubeconfig, &dir.join("operator.log"), &[])?;
    let deadline = Duration::from_secs(600);
    let ready = op.wait_ready(deadline).await?;
    let tracked = op.wait_tracked(cluster.pods, deadline).await?;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after = Snap::take(&cluster).await?;
    let pods = cost(&before, &after, "", "pods");
    let evs = cost(&before, &after, "", "events");
    let recorder = cost(&before, &after, "events.k8s.io", "events");
    let rs = cost(&before, &after, "apps", "replicasets");
    let (api_cpu, etcd_cpu) = cpu(&before, &after);
    say!("start: ready {ready:.2} s, tracked {tracked:.2} s; pods {pods:?}; events {evs:?}; events.k8s.io {recorder:?}; replicasets {rs:?}");
    out.push_str(&format!(
        "\n#### The operator's start (ready {ready:.2} s, every Pod tracked {tracked:.2} s, +5 s; kube-apiserver CPU {api_cpu:.2} s, etcd {etcd_cpu:.2} s)\n\n\
         | requests | Pods | core/v1 Events (the `reason=FailedCreate` watch) | events.k8s.io Events (the Event recorder's own) |\n|---|---:|---:|---:|\n\
         | LIST requests, kube-apiserver's time serving them | {:.0}, {:.3} s | {:.0}, {:.3} s | {:.0}, {:.3} s |\n\
         | LIST bytes | {} | {} | {} |\n| watches open at the end | {:.0} | {:.0} | {:.0} |\n\
         | watch events sent (bytes) | {:.0} ({}) | {:.0} ({}) | {:.0} ({}) |\n| GET of ReplicaSets | | {:.0} | |\n",
        pods.lists, pods.list_secs, evs.lists, evs.list_secs, recorder.lists, recorder.list_secs,
        kib(pods.list_bytes), kib(evs.list_bytes), kib(recorder.list_bytes),
        pods.watches_open, evs.watches_open, recorder.watches_open,
        pods.watch_events, kib(pods.watch_bytes), evs.watch_events, kib(evs.watch_bytes),
        recorder.watch_events, kib(recorder.watch_bytes), rs.gets
    ));

    // 2. The filtered list beside the unfiltered one, alternating.
    out.push_str("\n#### One list of the Events, as the operator pages it (`limit=500`), 5 runs each, alternating\n\n\
         | run | requests | items | bytes | client time | kube-apiserver time (its metrics) | kube-apiserver / etcd CPU |\n|---|---:|---:|---:|---:|---:|---:|\n");
    for round in 0..5 {
        for (what, selector) in [("`reason=FailedCreate`", Some("reason=FailedCreate")), ("unfiltered", None)] {
            let before = Snap::take(&cluster).await?;
            let (requests, items, bytes, secs) = list_events(&client, selector).await?;
            let after = Snap::take(&cluster).await?;
            let c = cost(&before, &after, "", "events");
            let (a, e) = cpu(&before, &after);
            say!(
                "list {what}: {requests} requests, {items} items, {bytes} B, {:.1} ms; server {:.1} ms",
                secs * 1e3,
                c.list_secs * 1e3
            );
            out.push_str(&format!(
                "| {what} #{} | {requests} | {items} | {} | {:.1} ms | {:.1} ms | {a:.2} / {e:.2} s |\n",
                round + 1,
                kib(bytes as f64),
                secs * 1e3,
                c.list_secs * 1e3
            ));
        }
    }

    // 3. The steady state.
    let written = Arc::new(Mutex::new((0u64, 0u64)));
    let naive_counts = Arc::new(Mutex::new((0u64, 0u64, 0u64)));
    let naive = naive_watch(client.clone(), naive_counts.clone());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = Snap::take(&cluster).await?;
    let writer = events::write_steadily(client.clone(), args.wl_event_rate, 1_000_000, written.clone());
    tokio::time::sleep(Duration::from_secs(args.wl_steady_seconds)).await;
    writer.abort();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = Snap::take(&cluster).await?;
    naive.abort();
    let evs = cost(&before, &after, "", "events");
    let pods = cost(&before, &after, "", "pods");
    let rs = cost(&before, &after, "apps", "replicasets");
    let (normal, unrelated) = written.lock().map(|w| *w).unwrap_or_default();
    let (naive_events, naive_bookmarks, naive_bytes) = naive_counts.lock().map(|c| *c).unwrap_or_default();
    let secs = after.at.duration_since(before.at).as_secs_f64();
    // Only the operator and the naive watch watch Events: the operator's share is the rest.
    let op_events = evs.watch_events - (naive_events + naive_bookmarks) as f64;
    let op_bytes = (evs.watch_bytes - naive_bytes as f64).max(0.0);
    say!("steady: events {evs:?}; pods {pods:?}; replicasets {rs:?}; naive {naive_events} + {naive_bookmarks} bookmarks, {naive_bytes} B");
    out.push_str(&format!(
        "\n#### At rest for {secs:.0} s, {normal} ordinary Events and {unrelated} unrelated `FailedCreate` written meanwhile\n\n\
         | | the operator's `reason=FailedCreate` watch | an unfiltered Events watch (naive) | the operator's Pod watch |\n|---|---:|---:|---:|\n\
         | watch events received (bookmarks included) | {op_events:.0} (~{}) | {} + {naive_bookmarks} bookmarks ({} as JSON) | {:.0} ({}) |\n\
         | new watch requests (watches that ended) | {:.0} events watches in all | | {:.0} |\n\
         | GET of ReplicaSets | {:.0} | | |\n",
        kib(op_bytes), naive_events, kib(naive_bytes as f64), pods.watch_events, kib(pods.watch_bytes),
        evs.watches_ended, pods.watches_ended, rs.gets
    ));

    // 4. Event → alert.
    let latency: Latency = events::time_alerts(&client, op.port, &workloads).await?;
    out.push_str(&format!(
        "\n#### `FailedCreate` (Istio's injector down) → alert, `injectionFailed.for: 0s`, {} samples: p50 / p99 / max\n\n\
         | | |\n|---|---:|\n| → `sidecar_alerts{{alertstate=\"firing\"}}` (end of the scrape that had it) | {} |\n\
         | → the operator's Warning Event seen by a watch | {} |\n| the `POST` of the Event alone | {} |\n\
         | one `/metrics` scrape while polling | {} |\n",
        latency.samples,
        quantiles(&latency.series),
        quantiles(&latency.event),
        quantiles(&latency.post),
        quantiles(&latency.scrape)
    ));
    op.proc.stop().await;
    Ok(out)
}
