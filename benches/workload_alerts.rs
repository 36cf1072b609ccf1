//! What the alerts on workloads cost the index, in process (issue 55's targets; figures in
//! docs/benchmarks.md, "What do the alerts on workloads cost?").
//!
//! On an index holding 30,000 of the full benchmark's Pods (`sidecar_watch_testkit::factory`,
//! with its two cluster policies):
//!
//! - a rollout judgement: `Index::revisit_workloads` with one workload marked (a Deployment whose
//!   new revision's `istio-proxy` never gets ready while the old revision runs), the one pass
//!   over the Pods that copies its Pods out, against a tick with nothing marked (the usual
//!   one) and a bare `for_each_pod` pass;
//! - one failing workload: the heap a `SidecarInjectionFailed` condition and its alerts ask
//!   for (1,000 workloads, 20 in each of 50 namespaces, averaged), and the time of one more
//!   `Writes::set_create_failure` with those 1,000 held (each evaluates every condition
//!   again).
//!
//! `cargo bench --bench workload_alerts`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};
use sidecar_watch::api::{ClusterPolicySpec, PolicySpec, SlimPod};
use sidecar_watch::engine::{AlertName, CompiledPolicy, PodView, PolicyRef, WorkloadId, WorkloadKind};
use sidecar_watch::index::Writes;
use sidecar_watch::index::{Condition, Index, PolicyEntry};
use sidecar_watch::memory::{heap_counts, CountingMimalloc};
use sidecar_watch_testkit::factory::{self, PodFactory};
use sidecar_watch_testkit::pod::{Container, PodBuilder};

/// The allocator the binary uses (src/main.rs), counting what is live.
#[global_allocator]
static GLOBAL: CountingMimalloc = CountingMimalloc;

const PODS: usize = 30_000;
const FAILING: usize = 1_000;

/// The full benchmark's cluster policies, as in benches/index_memory.rs.
fn mix_policies() -> Vec<(PolicyRef, CompiledPolicy)> {
    factory::policies()
        .into_iter()
        .map(|object| {
            let name = object["metadata"]["name"].as_str().expect("a name").to_string();
            let spec: ClusterPolicySpec = serde_json::from_value(object["spec"].clone()).expect("a spec");
            (PolicyRef::cluster(&name), CompiledPolicy::compile_cluster(&name, &spec).expect("valid policy"))
        })
        .collect()
}

/// Pod `name` of Deployment `web` in `shop` on revision `hash`, its native `istio-proxy`
/// ready or not (the shape of crates/index/src/rollouts_blocked/tests.rs).
fn web_pod(index: &Index, name: &str, hash: &str, created: &str, ready: bool) -> PodView {
    let pod = PodBuilder::new("shop", name)
        .uid(format!("u-{name}"))
        .created(created)
        .label("app", "web")
        .label("pod-template-hash", hash)
        .owner("ReplicaSet", &format!("web-{hash}"))
        .native_sidecar(Container::istio_proxy().ready(ready))
        .container(Container::new("app", "shop/web:1.0"));
    index.view_of(&pod.decode::<SlimPod>())
}

/// Median, 99th percentile and minimum of `times`, in µs.
fn summary(mut times: Vec<Duration>) -> String {
    times.sort();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let p99 = times[(times.len() * 99 / 100).min(times.len() - 1)];
    format!(
        "median {:.1} µs, p99 {:.1} µs, min {:.1} µs ({} runs)",
        us(times[times.len() / 2]),
        us(p99),
        us(times[0]),
        times.len()
    )
}

fn condition(i: usize, now: Timestamp) -> (WorkloadId, Condition) {
    let namespace = factory::namespace(i % factory::NAMESPACES);
    let name = format!("checkout-{i:04}");
    let labels: BTreeMap<String, String> =
        [("app".to_string(), name.clone()), ("pod-template-hash".to_string(), "5d8f7c9b4".to_string())].into();
    let workload = WorkloadId { namespace, kind: WorkloadKind::Deployment, name };
    let condition = Condition {
        container: "istio-proxy".into(),
        container_kind: None,
        catalog: None,
        since: now,
        latest: now,
        // As long as the controller's Istio message makes it (src/controller/create_failures.rs).
        message: format!(
            "{workload} cannot create Pods: the webhook namespace.sidecar-injector.istio.io of Istio could not be \
             called (connection refused). Fix: check that istiod is running and reachable from kube-apiserver."
        ),
        object_uid: Some(format!("6f1c2d3e-0000-4b5a-9c8d-{i:012x}")),
        template_labels: Some(labels),
    };
    (workload, condition)
}

fn main() {
    sidecar_watch::memory::disable_transparent_huge_pages().expect("prctl");
    let t0: Timestamp = "2026-11-27T10:00:00Z".parse().expect("a time");
    let index = Index::new();
    for (policy, compiled) in mix_policies() {
        index.apply_policy(policy, PolicyEntry::new(Ok(compiled)), t0);
    }
    let spec: PolicySpec = serde_json::from_value(serde_json::json!({
        "selector": {"matchLabels": {"app": "web"}},
        "rules": {"sidecarNotReady": {"for": "1m"}, "rolloutBlocked": {"for": "2m"}}
    }))
    .expect("spec");
    let mesh = PolicyRef::namespaced("shop", "mesh");
    index.apply_policy(mesh.clone(), PolicyEntry::new(CompiledPolicy::compile(mesh, &spec)), t0);
    let pods = PodFactory::new();
    for i in 0..PODS {
        let pod: SlimPod = serde_json::from_value(pods.pod(i)).expect("a Pod");
        index.apply_pod(index.view_of(&pod), t0);
    }
    let created = "2026-11-27T09:00:00Z";
    index.apply_pod(web_pod(&index, "web-a-1", "aaaa", created, true), t0);
    index.apply_pod(web_pod(&index, "web-a-2", "aaaa", created, true), t0);
    // The sync marked the workloads of the mix's Pods that fire a blocking alert: held until
    // this first tick, which the operator runs within a second.
    let held = heap_counts().expect("the counting allocator").asked;
    let started = Instant::now();
    index.revisit_workloads(t0);
    let elapsed = started.elapsed().as_secs_f64() * 1e3;
    let freed = held as f64 - heap_counts().expect("the counting allocator").asked as f64;
    println!(
        "{} Pods; the first tick (the marks of the sync): {elapsed:.1} ms, {freed:.0} B freed ({:.2} B per Pod)",
        index.pod_count(),
        freed / index.pod_count() as f64
    );
    let new_created = "2026-11-27T09:59:00Z";
    for name in ["web-b-1", "web-b-2"] {
        index.apply_pod(web_pod(&index, name, "bbbb", new_created, false), t0);
    }
    index.revisit_workloads(t0);

    let mut marked = Vec::new();
    let mut blocked = false;
    for i in 0..300 {
        let now = t0 + SignedDuration::from_secs(60 + i);
        // A status write of a new Pod (still not ready) marks the workload again.
        index.apply_pod(web_pod(&index, "web-b-1", "bbbb", new_created, false), now);
        let started = Instant::now();
        let outcome = index.revisit_workloads(now);
        marked.push(started.elapsed());
        blocked |= !outcome.transitions.is_empty();
    }
    let held = index.workload_condition(
        AlertName::RolloutBlockedBySidecar,
        &WorkloadId { namespace: "shop".into(), kind: WorkloadKind::Deployment, name: "web".into() },
    );
    println!(
        "revisit_workloads, one workload marked: {} (blocked: {}, transitions seen: {blocked})",
        summary(marked),
        held.is_some()
    );
    let mut idle = Vec::new();
    for i in 0..1_000 {
        let now = t0 + SignedDuration::from_secs(400 + i);
        let started = Instant::now();
        std::hint::black_box(index.revisit_workloads(now));
        idle.push(started.elapsed());
    }
    println!("revisit_workloads, nothing marked: {}", summary(idle));
    let mut passes = Vec::new();
    for _ in 0..100 {
        let started = Instant::now();
        let mut n = 0usize;
        index.for_each_pod(|p| n += std::hint::black_box(p.view().containers.len()));
        passes.push(started.elapsed());
        std::hint::black_box(n);
    }
    println!("a bare for_each_pod pass over the Pods: {}", summary(passes));

    let now = t0 + SignedDuration::from_secs(2_000);
    let mut setting = Vec::with_capacity(FAILING);
    // Each condition is built inside the measured span: its strings are part of its cost.
    let before = heap_counts().expect("the counting allocator");
    for i in 0..FAILING {
        let (workload, condition) = condition(i, now);
        let started = Instant::now();
        let outcome = index.set_create_failure(workload, Some(condition), now);
        setting.push(started.elapsed());
        assert_eq!(outcome.limited_workloads, 0, "under the limits");
    }
    let after = heap_counts().expect("the counting allocator");
    let mut alerts = 0;
    index.for_each_workload_alert(|a| alerts += usize::from(a.alert.name == AlertName::SidecarInjectionFailed));
    let per = |a: usize, b: usize| (b as f64 - a as f64) / FAILING as f64;
    println!(
        "{FAILING} failing workloads: {alerts} SidecarInjectionFailed alerts; per workload asked {:.0} B, size classes {:.0} B, {:.1} allocations",
        per(before.asked, after.asked),
        per(before.usable, after.usable),
        per(before.allocations, after.allocations)
    );
    let last = setting.split_off(FAILING - 100);
    println!("set_create_failure, the last 100 (about {FAILING} held): {}", summary(last));
}
