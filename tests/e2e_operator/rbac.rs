//! The RBAC the project ships against the calls the operator really makes, on kube-apiserver:
//! its audit log records every request, and the operator's (`sidecar-watch/<version>`,
//! running as the shipped ServiceAccount) must be exactly what `src/rbac.rs` lists (and so
//! what `config/rbac` and the chart grant, which `tests/integration/rbac.rs` checks): no call
//! without a grant, no grant unused, not one request refused.

use std::collections::BTreeSet;

use serde_json::json;
use sidecar_watch::rbac::{PolicyRule, CLUSTER_RULES, LEASE_RULES};

use sidecar_watch_harness::control_plane::{AuditLog, AuditedRequest, Options};
use sidecar_watch_harness::env::wait_until;
use sidecar_watch_harness::install::{self, OPERATOR_NAMESPACE, OPERATOR_SERVICE_ACCOUNT};

use crate::support::*;

/// The operator's user agent (`sidecar_watch::kubeconfig::USER_AGENT` without the version).
const OPERATOR: &str = "sidecar-watch/";

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

fn operator_requests(audit: &AuditLog) -> Vec<AuditedRequest> {
    audit.requests_by(OPERATOR).expect("kube-apiserver's audit log")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_calls_exactly_what_rbac_grants() {
    let audit = AuditLog::new().expect("an audit policy");
    // WatchList off: the paginated fall back is the path that calls `list`, which RBAC must
    // grant too; a streaming start alone never would.
    let options = Options { feature_gates: Some("WatchList=false".into()), apiserver_args: audit.apiserver_args() };
    let c = Cluster::start_own_control_plane("rbac", options).await;
    let ns = c.ns.clone();
    let tokens = install::scrape_tokens(&c.env, &ns).await.expect("scrape tokens");
    // Every kind of work: leading (the Lease), an invalid policy (its status and Warning), a
    // valid one whose alert fires, resolves and fires again (an Event repeated into a
    // series) on a Deployment's Pod (its workload Event reads the Deployment) and on a
    // CronJob's (its workload Event reads the Job and the CronJob), status
    // writes, authorised scrapes, and a shutdown that releases the Lease.
    c.apply_policy("broken", json!({"sidecars": {"pattern": "envoy("}})).await;
    // Cluster-scoped (the control plane is this test's own, so the name cannot collide).
    let cluster_policy = json!({
        "apiVersion": "sidecarwatch.io/v1alpha1", "kind": "ClusterSidecarPolicy",
        "metadata": {"name": "platform"},
        "spec": {"selector": {"matchLabels": {"app": "none"}}},
    });
    c.apply(&cluster_policy.to_string()).await;
    c.apply_app_policy("mesh", "web", json!({"sidecarNotReady": {"for": "1s", "severity": "warning"}})).await;
    // /metrics as shipped: TLS, and a token of a ServiceAccount bound to the shipped
    // metrics-reader role, reviewed with TokenReview and SubjectAccessReview.
    let mut op = Operator::start_with_env(&c, "op-0", &[], &[("SIDECAR_WATCH_METRICS_SECURE", "true")]).await;
    op.token = Some(tokens.reader.clone());
    // Owned by a Deployment's ReplicaSet: its workload Event reads the Deployment (`get`).
    let (_, owner) = crate::workload_events::deployment_with_replica_set(&c, "web").await;
    let pod = c.create_pod(crate::workload_events::replica_pod("web-1", "web", &owner)).await;
    drive(&pod, &[("app", true), ("istio-proxy", false)]).await;
    let firing = owned_by(AlertSeries { namespace: &ns, pod: "web-1", ..MESH_NOT_READY }.labels(), "Deployment", "web");
    op.wait_alerts("firing", vec![firing.clone()]).await;
    c.wait_events("web-1", "Warning", "SidecarContainerNotReady", 1).await;
    c.wait_events("web", "Warning", "SidecarContainerNotReady", 1).await;
    // A CronJob's Pod: its workload Event reads the Job, then the CronJob (`get` both).
    let (_, job, owner) = crate::cronjob_events::cronjob_with_job(&c, "nightly", "Forbid").await;
    let mut manifest = sidecar_watch_harness::kubelet::test_pod(
        "nightly-1",
        &[("app", "web"), ("batch.kubernetes.io/job-name", job.as_str())],
        &["app"],
        &["istio-proxy"],
    );
    manifest["metadata"]["ownerReferences"] = json!([owner]);
    let cron_pod = c.create_pod(manifest).await;
    drive(&cron_pod, &[("app", true), ("istio-proxy", false)]).await;
    c.wait_events("nightly", "Warning", "SidecarContainerNotReady", 1).await;
    set_ready(&cron_pod, "istio-proxy", true).await;
    c.wait_events("nightly", "Normal", "SidecarContainerNotReadyResolved", 1).await;
    set_ready(&pod, "istio-proxy", true).await;
    c.wait_events("web-1", "Normal", "SidecarContainerNotReadyResolved", 1).await;
    set_ready(&pod, "istio-proxy", false).await;
    op.wait_alerts("firing again", vec![firing]).await;
    c.wait_events("web-1", "Warning", "SidecarContainerNotReady", 2).await;
    c.wait_status("broken", "InvalidSpec", |s| status_ready(s, "False", "InvalidSpec")).await;
    c.wait_events("broken", "Warning", "InvalidSpec", 1).await;
    wait_until(WAIT, "the cluster policy's status", || async {
        let requests = operator_requests(&audit);
        requests
            .iter()
            .find(|r| r.resource == "clustersidecarpolicies/status" && r.verb == "patch")
            .map(|_| ())
            .ok_or_else(|| format!("{requests:?}"))
    })
    .await
    .unwrap();
    // The controllers' FailedCreate Events, one of each kind's: each object is read (`get`).
    crate::injection_failed::failing_workloads_of_every_kind(&c).await;
    let web_rs = format!("web-{}", crate::workload_events::HASH);
    crate::injection_failed::record_istio_down(&c, "ReplicaSet", &web_rs, owner["uid"].as_str().unwrap_or_default())
        .await;
    wait_until(WAIT, "every failing workload read", || async {
        let requests = operator_requests(&audit);
        let read: BTreeSet<&str> = requests.iter().filter(|r| r.verb == "get").map(|r| r.resource.as_str()).collect();
        let wanted = ["replicasets", "statefulsets", "daemonsets", "jobs", "cronjobs"];
        wanted.iter().all(|w| read.contains(w)).then_some(()).ok_or_else(|| format!("read {read:?}"))
    })
    .await
    .unwrap();
    op.terminate().await;

    let requests = operator_requests(&audit);
    let shown = || requests.iter().map(|r| format!("{} {}", r.verb, r.request_uri)).collect::<Vec<_>>().join("\n");
    assert!(!requests.is_empty(), "no request of the operator in the audit log");
    let account = format!("system:serviceaccount:{OPERATOR_NAMESPACE}:{OPERATOR_SERVICE_ACCOUNT}");
    let strangers: Vec<_> = requests.iter().filter(|r| r.user != account).collect();
    assert!(strangers.is_empty(), "requests not made as {account}: {strangers:?}");
    let refused: Vec<_> = requests.iter().filter(|r| r.code == Some(403)).collect();
    assert!(refused.is_empty(), "requests refused (403): {refused:?}");
    // One non-resource request, which the simulator never logged: `--initial-list auto`
    // reads `/version`. kube-apiserver's default ClusterRole `system:public-info-viewer`
    // grants it to every client, so `src/rbac.rs` need not (and without it `auto` asks for
    // streaming lists and falls back). Anything else, discovery included, would need a grant.
    let non_resource: BTreeSet<_> =
        requests.iter().filter(|r| r.resource.is_empty()).map(|r| format!("{} {}", r.verb, r.request_uri)).collect();
    assert_eq!(non_resource, BTreeSet::from(["get /version".to_string()]), "non-resource requests");
    // Core Events are only ever read filtered on the reason by the API server: never every
    // Event of a namespace (the Event publisher's own list is events.k8s.io's).
    let unfiltered: Vec<_> = requests
        .iter()
        .filter(|r| r.api_group.is_empty() && r.resource == "events")
        .filter(|r| !r.request_uri.contains("fieldSelector=reason%3DFailedCreate"))
        .collect();
    assert!(unfiltered.is_empty(), "core Events read without the reason selector: {unfiltered:?}");
    let lease_requests: Vec<_> = requests.iter().filter(|r| r.resource == "leases").collect();
    assert!(
        lease_requests.iter().all(|r| r.namespace.as_deref() == Some(ns.as_str())),
        "Lease calls stay in the Lease's namespace: {lease_requests:?}"
    );
    let made: BTreeSet<(String, String, String)> = requests
        .iter()
        .filter(|r| !r.resource.is_empty())
        .map(|r| (r.api_group.clone(), r.resource.clone(), r.verb.clone()))
        .collect();
    let mut grants = granted(CLUSTER_RULES);
    grants.extend(granted(LEASE_RULES));
    let missing: Vec<_> = made.difference(&grants).collect();
    let unused: Vec<_> = grants.difference(&made).collect();
    assert!(missing.is_empty(), "called without a grant in src/rbac.rs: {missing:?}\n{}", shown());
    assert!(unused.is_empty(), "granted in src/rbac.rs but never called (least privilege): {unused:?}\n{}", shown());
}
