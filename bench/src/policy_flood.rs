//! A tenant who edits its own policies fast: [`TENANT`] holds `--flood-policies`
//! SidecarPolicies that all select its `--flood-pods` Pods, and edits them round-robin at
//! each of `--flood-edit-rates` (edits per second, a spec change each, as `kubectl apply`
//! would make). Meanwhile sidecars in other namespaces are OOM-killed one after the other:
//! the latency from each kill to its Event in the store is what the tenant costs everyone
//! else. Also the operator's CPU and RSS through the edits.
//!
//! The operator runs with `--max-policies-per-namespace` at the tenant's policy count (by
//! its environment variable, which older binaries ignore), so the phase measures the cost
//! of what a tenant may declare, not the limit.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use serde_json::{json, Value};
use sidecar_watch_harness::process;
use sidecar_watch_harness::sim::api::new_uid;
use sidecar_watch_harness::sim::Shared;

use super::args::Args;
use super::hostile::RECONCILE;
use super::latency::EventWatch;
use super::operator::{scrape_parsed, Operator};
use super::pods::PodFactory;
use super::preload::{create, put_pod, update_spec, SIDECAR_POLICIES};
use super::prom::{sample_quantile, Histogram};
use super::rates::DETECTION;

/// The tenant's namespace.
pub const TENANT: &str = "tenant";

/// The environment variable of `--max-policies-per-namespace`.
pub const LIMIT_ENV: &str = "SIDECAR_WATCH_MAX_POLICIES_PER_NAMESPACE";

/// One edit rate's results.
#[derive(Debug, Default, Clone)]
pub struct PolicyFlood {
    pub policies: usize,
    pub pods: usize,
    /// Edits per second asked for, made, and achieved.
    pub rate: u64,
    pub edits: u64,
    pub achieved: f64,
    /// OOM kills elsewhere, and the latency of each one's Event, in seconds (seen ones).
    pub samples: usize,
    pub event: Vec<f64>,
    /// Operator CPU during the edits, in cores.
    pub cpu_cores: f64,
    /// Settled RSS before the edits, RSS at their end.
    pub rss_before_kib: u64,
    pub rss_after_kib: u64,
    /// Seconds from the last edit to the next OOM kill's Event (the backlog draining).
    pub drain_s: Option<f64>,
    /// The operator's own view during the edits: watch event received → applied (every
    /// input), and the time each piece of work took.
    pub detection: Histogram,
    pub reconcile: Histogram,
}

fn policy_name(i: usize) -> String {
    format!("tenant-{i:04}")
}

/// The tenant's policy `i`: every Pod labelled `app=tenant`, with one rule's `for` set to
/// `for_secs` (what each edit changes).
fn policy(i: usize, for_secs: u64) -> Value {
    json!({
        "apiVersion": "sidecarwatch.io/v1alpha1", "kind": "SidecarPolicy",
        "metadata": {"name": policy_name(i), "namespace": TENANT},
        "spec": {"selector": {"matchLabels": {"app": "tenant"}},
                 "rules": {"crashLoop": {"for": format!("{for_secs}s")}}}
    })
}

/// Creates the tenant (namespace, policies first, then Pods from `factory`) and waits until
/// every policy matches every Pod.
pub async fn setup(args: &Args, shared: &Arc<Shared>, op: &Operator, factory: &PodFactory) -> Result<()> {
    let t0 = Instant::now();
    create(shared, "", "v1", "namespaces", None, json!({"metadata": {"name": TENANT}}))?;
    for i in 0..args.flood_policies {
        create(shared, "sidecarwatch.io", "v1alpha1", "sidecarpolicies", Some(TENANT), policy(i, 300))?;
    }
    for i in 0..args.flood_pods {
        let mut pod = factory.pod(i);
        let meta = &mut pod["metadata"];
        meta["namespace"] = json!(TENANT);
        meta["name"] = json!(format!("tenant-pod-{i:05}"));
        meta["uid"] = json!(new_uid());
        // Out of the cluster policies' reach (`logging` set, not `fluent-bit`).
        meta["labels"] = json!({"app": "tenant", "logging": "off"});
        put_pod(shared, pod);
    }
    let want = (args.flood_policies * args.flood_pods) as f64;
    let matching = [("policy_namespace", TENANT), ("state", "matched")];
    loop {
        let matched = scrape_parsed(op.port).await?.sum("sidecar_policy_pods", &matching);
        if matched >= want {
            break;
        }
        if t0.elapsed() > Duration::from_secs(600) {
            bail!("policy flood: {matched} of {want} (policy, Pod) pairs matched after 600 s");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    say!(
        "policy flood: {} policies × {} Pods in {TENANT} evaluated in {:.1} s",
        args.flood_policies,
        args.flood_pods,
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Edits policy `i` (one spec change, through the API's update: a new generation).
fn edit(shared: &Shared, i: usize, for_secs: u64) -> Result<()> {
    let spec = policy(i, for_secs)["spec"].clone();
    update_spec(shared, SIDECAR_POLICIES, Some(TENANT), &policy_name(i), spec)
}

/// Edits at `rate` per second until `stop`; returns (edits, seconds).
fn edit_loop(shared: Arc<Shared>, policies: usize, rate: u64, stop: Arc<std::sync::atomic::AtomicBool>) -> (u64, f64) {
    let t0 = Instant::now();
    let mut edits = 0u64;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let due = t0 + Duration::from_secs_f64(edits as f64 / rate.max(1) as f64);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        // Every edit a new value: 300 s, 301 s, … so that each one changes the spec.
        if edit(&shared, edits as usize % policies, 301 + edits % 600).is_err() {
            break;
        }
        edits += 1;
    }
    (edits, t0.elapsed().as_secs_f64())
}

/// One edit rate: edits for a second first, then OOM kills of `crash` (Pods in other
/// namespaces no other phase touches) one after the other while the edits go on; the last
/// of them once the edits are over, to time the drain.
pub async fn phase(
    args: &Args,
    shared: &Arc<Shared>,
    op: &Operator,
    rate: u64,
    crash: &[(String, String)],
) -> Result<PolicyFlood> {
    let mut f = PolicyFlood { policies: args.flood_policies, pods: args.flood_pods, rate, ..Default::default() };
    f.rss_before_kib = op.proc.settled_rss().await;
    let hz = process::clock_ticks_per_sec() as f64;
    let cpu0 = process::cpu_ticks(op.proc.pid).unwrap_or(0);
    let before = scrape_parsed(op.port).await?;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let editor = {
        let (shared, stop, policies) = (shared.clone(), stop.clone(), args.flood_policies);
        tokio::task::spawn_blocking(move || edit_loop(shared, policies, rate, stop))
    };
    let mut events = EventWatch::start(shared);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (sampled, drain) = crash.split_at(crash.len().saturating_sub(1));
    let mut misses = 0;
    for pod in sampled {
        f.samples += 1;
        match events.oom_kill(shared, pod, Duration::from_secs(10)).await {
            Some(latency) => f.event.push(latency),
            None => misses += 1,
        }
        // Three kills without an Event in 10 s each: the rest would only take longer.
        if misses == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (edits, secs) = editor.await?;
    f.cpu_cores = process::cpu_ticks(op.proc.pid).unwrap_or(0).saturating_sub(cpu0) as f64 / hz / secs.max(1e-9);
    f.rss_after_kib = op.proc.rss();
    let after = scrape_parsed(op.port).await?;
    f.detection = Histogram::of(&after, DETECTION).minus(&Histogram::of(&before, DETECTION));
    f.reconcile = Histogram::of(&after, RECONCILE).minus(&Histogram::of(&before, RECONCILE));
    (f.edits, f.achieved) = (edits, edits as f64 / secs.max(1e-9));
    // The edits are over: how long until the operator has worked through them.
    if let Some(pod) = drain.first() {
        f.drain_s = events.oom_kill(shared, pod, Duration::from_secs(300)).await;
    }
    say!(
        "policy flood at {rate}/s: {} edits ({:.0}/s); Event latency elsewhere p50 {} / p99 {} ms over {}/{} samples; operator {:.2} cores, RSS {} → {} MiB, input received → applied p99 {} ms, work p99 {} ms; drained {} s after the last edit",
        f.edits,
        f.achieved,
        super::fmt(sample_quantile(&f.event, 0.5), 1e3, 2),
        super::fmt(sample_quantile(&f.event, 0.99), 1e3, 2),
        f.event.len(),
        f.samples,
        f.cpu_cores,
        f.rss_before_kib / 1024,
        f.rss_after_kib / 1024,
        super::fmt(f.detection.quantile(0.99), 1e3, 2),
        super::fmt(f.reconcile.quantile(0.99), 1e3, 2),
        super::fmt(f.drain_s, 1.0, 2)
    );
    Ok(f)
}
