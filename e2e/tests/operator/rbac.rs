//! The RBAC the project ships against the calls the operator really makes: the simulator
//! logs every kind of request by user agent, and the operator's (`sidecar-watch/<version>`)
//! must be exactly what `src/rbac.rs` lists (and so what `config/rbac` and the chart grant,
//! which `tests/integration/rbac.rs` checks): no call without a grant, no grant unused.

use std::collections::BTreeSet;

use serde_json::json;
use sidecar_watch::rbac::{PolicyRule, CLUSTER_RULES, LEASE_RULES};

use sidecar_watch_e2e::harness::wait_until;
use sidecar_watch_e2e::sim::SimConfig;

use crate::support::*;

/// (group, resource, verb) triples of rules.
fn granted(rules: &[PolicyRule]) -> BTreeSet<(String, String, String)> {
    let mut out = BTreeSet::new();
    for rule in rules {
        for resource in rule.resources {
            for verb in rule.verbs {
                out.insert((rule.api_group.to_string(), resource.to_string(), verb.to_string()));
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_calls_exactly_what_rbac_grants() {
    // WatchList off: the paginated fall back is the path that calls `list`, which RBAC must
    // grant too; a streaming start alone never would.
    let c = Cluster::start_simulator("rbac", SimConfig { watch_list: false, ..SimConfig::default() }).await;
    let ns = c.ns.clone();
    // Every kind of work: leading (the Lease), an invalid policy (its status and Warning), a
    // valid one whose alert fires, resolves and fires again (an Event repeated into a
    // series), status writes, authorised scrapes, and a shutdown that releases the Lease.
    c.apply_policy("broken", json!({"sidecars": {"pattern": "envoy("}})).await;
    // Cluster-scoped (the simulator is this test's own, so the name cannot collide).
    let cluster_policy = json!({
        "apiVersion": "sidecarwatch.io/v1alpha1", "kind": "ClusterSidecarPolicy",
        "metadata": {"name": "platform"},
        "spec": {"selector": {"matchLabels": {"app": "none"}}},
    });
    c.apply(&cluster_policy.to_string()).await;
    c.apply_app_policy("mesh", "web", json!({"sidecarNotReady": {"for": "1s", "severity": "warning"}})).await;
    // /metrics as shipped: TLS, and Prometheus' token reviewed (TokenReview, SubjectAccessReview).
    {
        let mut reviews = c.sim().shared().reviews();
        reviews.add_token("prometheus-token", "system:serviceaccount:monitoring:prometheus", &[]);
        reviews.allow("system:serviceaccount:monitoring:prometheus", "/metrics");
    }
    let mut op = Operator::start_with_env(&c, "op-0", &[], &[("SIDECAR_WATCH_METRICS_SECURE", "true")]).await;
    op.token = Some("prometheus-token".into());
    let pod = c.create_pod(native_pod("web-1", "web", "app", "istio-proxy")).await;
    drive(&pod, &[("app", true), ("istio-proxy", false)]).await;
    let firing = AlertSeries { namespace: &ns, pod: "web-1", ..MESH_NOT_READY }.labels();
    op.wait_alerts("firing", vec![firing.clone()]).await;
    c.wait_events("web-1", "Warning", "SidecarContainerNotReady", 1).await;
    set_ready(&pod, "istio-proxy", true).await;
    c.wait_events("web-1", "Normal", "SidecarContainerNotReadyResolved", 1).await;
    set_ready(&pod, "istio-proxy", false).await;
    op.wait_alerts("firing again", vec![firing]).await;
    c.wait_events("web-1", "Warning", "SidecarContainerNotReady", 2).await;
    c.wait_status("broken", "InvalidSpec", |s| status_ready(s, "False", "InvalidSpec")).await;
    c.wait_events("broken", "Warning", "InvalidSpec", 1).await;
    wait_until(WAIT, "the cluster policy's status", || async {
        let calls = c.sim().shared().calls_by("sidecar-watch/");
        calls
            .iter()
            .find(|call| call.resource == "clustersidecarpolicies/status" && call.verb == "patch")
            .map(|_| ())
            .ok_or_else(|| format!("{calls:?}"))
    })
    .await
    .unwrap();
    op.terminate().await;

    let calls = c.sim().shared().calls_by("sidecar-watch/");
    let lease_calls: Vec<_> = calls.iter().filter(|call| call.resource == "leases").collect();
    assert!(lease_calls.iter().all(|call| call.namespaced), "Lease calls stay in a namespace: {lease_calls:?}");
    let made: BTreeSet<(String, String, String)> =
        calls.iter().map(|call| (call.group.clone(), call.resource.clone(), call.verb.clone())).collect();
    let mut grants = granted(CLUSTER_RULES);
    grants.extend(granted(LEASE_RULES));
    let missing: Vec<_> = made.difference(&grants).collect();
    let unused: Vec<_> = grants.difference(&made).collect();
    assert!(missing.is_empty(), "called without a grant in src/rbac.rs (a 403 on a real cluster): {missing:?}");
    assert!(unused.is_empty(), "granted in src/rbac.rs but never called (least privilege): {unused:?}");
}
