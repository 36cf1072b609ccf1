//! Throughput of the rule engine on a realistic Pod: `tests/fixtures/two-sidecars.yaml`
//! (a main container, a native istio-proxy sidecar and a legacy log-sidecar, with probes and a
//! full status, plus a plain init container), and the decoding of that Pod's JSON (full
//! `k8s_openapi` object against the operator's `SlimPod`), and one policy edit among 300
//! policies over 1,000 such Pods (`policy_edit`), and a status update of one of 1,000 Pods of
//! ten Deployments each running two versions of istio-proxy through the index, beside the
//! version bookkeeping alone (`workload_update`). Reported as Pods (edits) per second:
//!
//! ```text
//! cargo bench --bench engine -- --quick
//! ```

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;
use sidecar_watch::api::SlimPod;
use sidecar_watch::engine::{counted, SidecarVersions};
use sidecar_watch::engine::{evaluate, Around, CompiledPolicy, ObservedPod, PodHistory, PodView, PolicyRef};
use sidecar_watch::index::Writes;
use sidecar_watch::index::{Index, PolicyEntry};

const POD: &str = include_str!("../tests/fixtures/two-sidecars.yaml");
const NOW: &str = "2025-06-03T10:30:00Z";

fn bench(c: &mut Criterion) {
    let pod: Pod = serde_norway::from_str(POD).expect("the fixture parses");
    let json = serde_json::to_vec(&pod).expect("the fixture serializes");
    let slim: SlimPod = serde_json::from_slice(&json).expect("the fixture decodes slim");
    let view = PodView::from_pod(&slim);
    let policy = CompiledPolicy::builtin();
    let now: Timestamp = NOW.parse().expect("valid time");
    let observed = ObservedPod::new(view.clone(), now);
    let history = observed.history();
    assert_eq!(evaluate(&view, &policy, history, now, Around::default()).alerts.len(), 4, "the benchmark Pod alerts");

    let mut group = c.benchmark_group("engine");
    group.throughput(Throughput::Elements(1));
    group.bench_function("evaluate", |b| {
        b.iter(|| evaluate(black_box(&view), black_box(&policy), black_box(history), black_box(now), Around::default()))
    });
    group.bench_function("from_pod", |b| b.iter(|| PodView::from_pod(black_box(&slim))));
    // What a watch event costs before the view exists: the operator decodes `SlimPod`;
    // the full object is what a reflector of `Pod`s would decode.
    group.bench_function("decode_full_pod", |b| b.iter(|| serde_json::from_slice::<Pod>(black_box(&json))));
    group.bench_function("decode_slim_pod", |b| b.iter(|| serde_json::from_slice::<SlimPod>(black_box(&json))));
    // The Pod and its next state are copied outside the measured time (and the results
    // dropped outside it): what a watch event of the index costs, an observation and an
    // evaluation.
    group.bench_function("observe+evaluate", |b| {
        b.iter_batched(
            || (observed.clone(), view.clone()),
            |(mut observed, view)| {
                observed.observe(black_box(view), now);
                let evaluation = evaluate(observed.view(), &policy, observed.history(), now, Around::default());
                (observed, evaluation)
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
    flood(c, &policy, now);
    policy_edit(c, &json, now);
    workload_update(c, &json, now);
}

/// What `SidecarVersionDrift`'s per-workload counts add to a Pod's status update: the
/// index's whole update of one of 1,000 Pods in ten Deployments that each run two versions
/// of istio-proxy (so every Pod is compared with its workload's newest), beside the
/// counting alone (what the Pod adds before and after, and the newest it is compared with).
fn workload_update(c: &mut Criterion, json: &[u8], now: Timestamp) {
    const PODS: usize = 1000;
    let index = Index::new();
    let spec = serde_json::from_value(serde_json::json!({})).expect("spec");
    let all = PolicyEntry::new(CompiledPolicy::compile_cluster("all", &spec));
    index.apply_policy(PolicyRef::cluster("all"), all, now);
    let fixture = String::from_utf8_lossy(json).into_owned();
    let views: Vec<PodView> = (0..PODS)
        .map(|i| {
            let tag = if (i / 10) % 2 == 0 { "1.24.2" } else { "1.25.0" };
            let text = fixture.replace("proxyv2:1.24.2", &format!("proxyv2:{tag}"));
            let mut pod: serde_json::Value = serde_json::from_str(&text).expect("the fixture");
            pod["metadata"]["uid"] = serde_json::json!(format!("uid-{i}"));
            pod["metadata"]["name"] = serde_json::json!(format!("pod-{i}"));
            pod["metadata"]["ownerReferences"][0]["name"] = serde_json::json!(format!("w{}-84d6c7f9b", i % 10));
            PodView::from_pod(&serde_json::from_value::<SlimPod>(pod).expect("decodes"))
        })
        .collect();
    for view in &views {
        index.apply_pod(view.clone(), now);
    }
    let rollouts = SidecarVersions::of_pods(views.iter(), |p| p.containers.iter());
    let compared = rollouts.newest_of(&views[0]);
    assert!(
        compared.iter().any(|(c, _)| c.as_str() == "istio-proxy"),
        "istio-proxy runs two versions in each workload"
    );
    let mut group = c.benchmark_group("workload_update");
    group.throughput(Throughput::Elements(1));
    let mut next = 0;
    group.bench_function("index_apply_pod", |b| {
        b.iter(|| {
            next = (next + 1) % PODS;
            index.apply_pod(views[next].clone(), now)
        })
    });
    let mut rollouts = rollouts;
    group.bench_function("version_counts_alone", |b| {
        b.iter(|| {
            next = (next + 1) % PODS;
            let view = &views[next];
            let before = counted(view, view.containers.iter());
            let after = counted(view, view.containers.iter());
            rollouts.replace(&before, &after);
            rollouts.newest_of(black_box(view))
        })
    });
    group.finish();
}

/// A tenant's 300 SidecarPolicies over its 1,000 Pods (the fixture Pod under 1,000 UIDs),
/// every policy selecting every Pod: what one edit of one policy costs the reconciler. The
/// issue's figure: re-evaluating every policy of the namespace made it 300,000 evaluations.
fn policy_edit(c: &mut Criterion, json: &[u8], now: Timestamp) {
    const POLICIES: usize = 300;
    const PODS: usize = 1000;
    let index = Index::with_limits(32, POLICIES);
    let policy = |i: usize, for_: u64| {
        let spec = serde_json::json!({"rules": {"crashLoop": {"for": format!("{for_}s")}}});
        let policy = PolicyRef::namespaced("shop", format!("p{i:03}"));
        let parsed = serde_json::from_value(spec.clone()).expect("spec");
        (policy.clone(), PolicyEntry::new(CompiledPolicy::compile(policy, &parsed)))
    };
    for i in 0..POLICIES {
        let (p, e) = policy(i, 300);
        index.apply_policy(p, e, now);
    }
    let pod: serde_json::Value = serde_json::from_slice(json).expect("the fixture");
    for i in 0..PODS {
        let mut pod = pod.clone();
        pod["metadata"]["uid"] = serde_json::json!(format!("uid-{i}"));
        pod["metadata"]["name"] = serde_json::json!(format!("pod-{i}"));
        pod["metadata"]["namespace"] = serde_json::json!("shop");
        let slim: SlimPod = serde_json::from_value(pod).expect("decodes");
        index.apply_pod(PodView::from_pod(&slim), now);
    }
    assert_eq!(index.policy_stats()[&PolicyRef::namespaced("shop", "p000")].matched_pods, PODS as u32);
    let mut edit = 0u64;
    let mut group = c.benchmark_group("policy_edit");
    group.throughput(Throughput::Elements(1));
    group.bench_function("300_policies_1000_pods", |b| {
        b.iter(|| {
            edit += 1;
            let (p, e) = policy(edit as usize % POLICIES, 301 + edit % 600);
            index.apply_policy(p, e, now)
        })
    });
    group.finish();
}

/// A hostile tenant's Pod: 5,000 legacy `s{i}-sidecar` containers (each declaring a port of
/// its own and port 9000, which every other declares too, and a liveness probe on the next
/// one's port), the whole update path from JSON to evaluation. Only
/// the first `--max-sidecars-per-pod` (32) are evaluated, so what grows with the Pod is the
/// decoding and the view, both linear; reported per container beside the 3-container Pod.
fn flood(c: &mut Criterion, policy: &CompiledPolicy, now: Timestamp) {
    const CONTAINERS: usize = 5000;
    let containers: Vec<serde_json::Value> = (0..CONTAINERS)
        .map(|i| {
            serde_json::json!({"name": format!("s{i}-sidecar"), "image": "busybox:1.36",
                "ports": [{"containerPort": 10000 + i, "name": format!("p{i}")}, {"containerPort": 9000}],
                "livenessProbe": {"httpGet": {"path": "/", "port": 10000 + (i + 1) % CONTAINERS}}})
        })
        .collect();
    let json = serde_json::to_vec(&serde_json::json!({
        "metadata": {"name": "flood", "namespace": "flood", "uid": "f"},
        "spec": {"containers": containers}
    }))
    .expect("serializes");
    let history = PodHistory::default();
    let mut group = c.benchmark_group("flood");
    group.throughput(Throughput::Elements(CONTAINERS as u64));
    group.bench_function("update_5000_containers", |b| {
        b.iter(|| {
            let slim: SlimPod = serde_json::from_slice(black_box(&json)).expect("decodes");
            let view = PodView::from_pod(&slim);
            evaluate(&view, policy, &history, now, Around::default())
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
