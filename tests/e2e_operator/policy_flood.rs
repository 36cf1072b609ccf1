//! What one tenant's policies cannot do to another namespace: a tenant editing its many
//! policies over its many Pods does not delay another namespace's alerts; and what no
//! tenant can declare: a policy beyond the CRD's size bounds.
//!
//! The flood here is 100 policies × 300 Pods (the benchmark's is 300 × 1,000): enough that
//! evaluating every policy of the namespace again on each edit, as the operator once did,
//! takes far longer than the 50 ms between two edits of a debug build, so the other
//! namespace's Event would come seconds late; small enough to create through the API in
//! a few seconds. Everything is created through the API (kube client), so the test runs
//! unchanged against a real kube-apiserver.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use serde_json::json;
use sidecar_watch_harness::env::wait_until;

use crate::limits::crash_loop;
use crate::support::*;

const POLICIES: usize = 100;
const PODS: usize = 300;
const EDITS_PER_SECOND: u64 = 20;
/// How late the other namespace's Warning may come. Not a latency target (the benchmark's
/// p99 is milliseconds: docs/benchmarks.md, "300 policies edited"), but the line between
/// taking turns with the tenant and queueing behind the up to 160 edits of the flood's first
/// 8 s; a debug build on 2 cores shared with another test came 7.2 s late once (CI,
/// 2026-11-27), so a bound of 2 s failed without any queueing.
const NOT_QUEUED_BEHIND_THE_FLOOD: Duration = Duration::from_secs(15);

fn tenant_policy(namespace: &str, i: usize) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "sidecarwatch.io/v1alpha1", "kind": "SidecarPolicy",
        "metadata": {"name": format!("p{i:03}"), "namespace": namespace},
        "spec": {"selector": {"matchLabels": {"app": "tenant"}}, "rules": {"crashLoop": {"for": "300s"}}}
    }))
    .expect("policy")
}

/// Edits the tenant's policies round-robin at [`EDITS_PER_SECOND`] (a spec change each,
/// as `kubectl apply` of a new version makes) until `stop`; counts the edits made.
async fn edit_policies(api: Api<DynamicObject>, stop: Arc<AtomicBool>, edits: Arc<AtomicU64>) {
    let t0 = Instant::now();
    let mut n: u64 = 0;
    while !stop.load(Ordering::Relaxed) {
        let due = t0 + Duration::from_millis(n * 1000 / EDITS_PER_SECOND);
        tokio::time::sleep_until(due.into()).await;
        let name = format!("p{:03}", n as usize % POLICIES);
        let patch = Patch::Merge(json!({"spec": {"rules": {"crashLoop": {"for": format!("{}s", 301 + n % 600)}}}}));
        api.patch(&name, &PatchParams::default(), &patch).await.expect("policy edited");
        n += 1;
        edits.store(n, Ordering::Relaxed);
    }
}

/// A tenant with 100 policies over 300 Pods edits them at 20 edits/s; 8 s into the flood a
/// sidecar in another namespace starts crash-looping (its `for` is 1 s): the Warning comes
/// while the flood goes on, within [`NOT_QUEUED_BEHIND_THE_FLOOD`] of firing, and the
/// tenant's edits are all applied (each policy's status catches up with its generation).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_editing_its_policies_does_not_delay_another_namespace() {
    let c = Cluster::start("pflood").await;
    let shop = c.ns.clone();
    let tenant = format!("{shop}-tenant");
    c.env.create_namespace(&tenant).await.expect("namespace");
    c.apply_app_policy("mesh", "web", json!({"crashLoop": {"for": "1s", "severity": "critical"}})).await;
    let policies: Api<DynamicObject> = Api::namespaced_with(c.env.client.clone(), &tenant, &policy_resource());
    for i in 0..POLICIES {
        policies.create(&PostParams::default(), &tenant_policy(&tenant, i)).await.expect("policy created");
    }
    for i in 0..PODS {
        let pod = sidecar_watch_harness::kubelet::test_pod(
            &format!("t{i:03}"),
            &[("app", "tenant")],
            &["app"],
            &["istio-proxy"],
        );
        c.create_pod_in(&tenant, pod).await;
    }

    let op = Operator::start_watching(&c, "op", &[&shop, &tenant]).await;
    let want = (POLICIES * PODS) as f64;
    wait_until(Duration::from_secs(120), "every tenant policy matches every tenant Pod", || async {
        let matched =
            op.scrape().await?.sum("sidecar_policy_pods", &[("policy_namespace", &tenant), ("state", "matched")]);
        if matched == want {
            Ok(())
        } else {
            Err(format!("{matched} of {want} matched"))
        }
    })
    .await
    .unwrap();

    let (stop, edits) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)));
    let editor = tokio::spawn(edit_policies(policies.clone(), stop.clone(), edits.clone()));
    let flood_start = Instant::now();
    // Long enough for a backlog to build where there is one: 160 edits, each far longer than
    // the 50 ms between two where every policy of the namespace is evaluated again.
    tokio::time::sleep(Duration::from_secs(8)).await;

    let pod = c.create_pod(native_pod("web-1", "web", "app", "istio-proxy")).await;
    drive(&pod, &[("app", true), ("istio-proxy", false)]).await;
    crash_loop(&pod, "istio-proxy").await;
    let fires_at = Instant::now() + Duration::from_secs(1);
    let warned_at = wait_until(Duration::from_secs(30), "the shop Warning during the flood", || async {
        match c.event_count("web-1", "Warning", "SidecarCrashLooping").await {
            0 => Err("not yet"),
            _ => Ok(Instant::now()),
        }
    })
    .await
    .unwrap();
    stop.store(true, Ordering::Relaxed);
    editor.await.expect("editor");
    let (edited, secs) = (edits.load(Ordering::Relaxed), flood_start.elapsed().as_secs_f64());
    let late = warned_at.saturating_duration_since(fires_at);
    assert!(
        late <= NOT_QUEUED_BEHIND_THE_FLOOD,
        "the shop Warning came {late:?} after firing, during {edited} edits in {secs:.1} s"
    );
    assert!(edited as f64 >= 0.8 * EDITS_PER_SECOND as f64 * secs.min(4.0), "only {edited} edits in {secs:.1} s");

    // Every edit is applied: the last edited policy's status reports its generation.
    let last = format!("p{:03}", (edited as usize + POLICIES - 1) % POLICIES);
    let generation = policies.get(&last).await.expect("policy").metadata.generation.expect("generation");
    wait_until(Duration::from_secs(60), "the last edit applied", || async {
        let object = policies.get(&last).await.map_err(|e| e.to_string())?;
        let observed = object.data.pointer("/status/observedGeneration").and_then(|g| g.as_i64());
        if observed == Some(generation) {
            Ok(())
        } else {
            Err(format!("observedGeneration {observed:?}, generation {generation}"))
        }
    })
    .await
    .unwrap();
}

/// Beyond the CRD's bounds: kube-apiserver refuses the policy and names the field. (Where
/// no schema stops one, the operator marks it `InvalidSpec` naming the field and quoting at
/// most a prefix: `oversized_specs_name_the_field_and_quote_a_prefix`,
/// crates/engine/src/policy.rs.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_policies_are_refused_naming_the_field() {
    let c = Cluster::start("bounds").await;
    let op = Operator::start(&c, "op", &["--leader-elect=false"]).await;
    let api: Api<DynamicObject> = Api::namespaced_with(c.env.client.clone(), &c.ns, &policy_resource());
    let names: Vec<String> = (0..20_000).map(|i| format!("c{i}")).collect();
    let cases = [
        (
            "long-pattern",
            json!({"sidecars": {"pattern": format!("envoy({}", "a".repeat(98_298))}}),
            "spec.sidecars.pattern",
        ),
        ("many-names", json!({"sidecars": {"names": names}}), "spec.sidecars.names"),
    ];
    for (name, spec, field) in cases {
        let object: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "sidecarwatch.io/v1alpha1", "kind": "SidecarPolicy",
            "metadata": {"name": name, "namespace": c.ns}, "spec": spec
        }))
        .expect("policy");
        match api.create(&PostParams::default(), &object).await {
            Err(kube::Error::Api(status)) => {
                assert_eq!(status.code, 422, "{status:?}");
                assert!(status.message.contains(field), "{status:?}");
            }
            Err(other) => panic!("{name}: {other}"),
            Ok(_) => panic!("{name}: a server with the CRD's schema stored it"),
        }
    }
    assert!(!op.log().contains(&"a".repeat(100)), "a log line carries the pattern");
}
