//! Requests kube-apiserver never answers, as a peer that holds the connection open does: a
//! hung write about one namespace costs the operator at most `--request-timeout`, and every
//! other namespace still gets its Events and its policy's status.

use std::time::{Duration, Instant};

use http::Method;
use serde_json::json;
use sidecar_watch_harness::control_plane::Options;
use sidecar_watch_harness::env::wait_until;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_write_in_one_namespace_holds_up_no_other() {
    let (c, proxy) = Cluster::start_behind_fault_proxy("hangs", Options::default()).await;
    let ns = c.ns.clone();
    let tenant = format!("{ns}-b");
    c.env.create_namespace(&tenant).await.expect("tenant namespace");
    let rules = rules(json!({"sidecarNotReady": {"for": "1s", "severity": "warning"}}));
    let spec = json!({"selector": {"matchLabels": {"app": "web"}}, "rules": rules});
    c.apply_policy("mesh", spec.clone()).await;
    let tenant_policy = json!({"apiVersion": "sidecarwatch.io/v1alpha1", "kind": "SidecarPolicy",
        "metadata": {"name": "mesh", "namespace": tenant}, "spec": spec});
    c.apply_in(&tenant, &tenant_policy.to_string()).await;
    // Every write about the tenant's namespace hangs: its Events and its policy's status.
    let writes = format!("/namespaces/{tenant}/");
    proxy.hang(Method::POST, &writes);
    proxy.hang(Method::PATCH, &writes);
    let timeout = Duration::from_secs(2);
    let args = ["--namespace", &tenant, "--request-timeout", "2s", "--lease-duration", "40s"];
    let op = Operator::start(&c, "op-0", &[&args[..], &["--lease-renew-deadline", "30s"]].concat()).await;
    let pod = c.create_pod_in(&tenant, native_pod("stuck", "web", "app", "istio-proxy")).await;
    drive(&pod, &[("app", true), ("istio-proxy", false)]).await;
    wait_until(WAIT, "the tenant's Warning and status writes to hang", || async {
        match proxy.held() {
            n if n >= 2 => Ok(()),
            n => Err(n),
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", op.log()));

    // Another namespace's alert: its Warning and its status come though the tenant's writes
    // still hang, each cut after `--request-timeout`.
    let began = Instant::now();
    let pod = c.create_pod(native_pod("web-1", "web", "app", "istio-proxy")).await;
    drive(&pod, &[("app", true), ("istio-proxy", false)]).await;
    c.wait_events("web-1", "Warning", "SidecarContainerNotReady", 1).await;
    c.wait_status("mesh", "web-1 alerting", |s| status_counts(s, 1, 1, json!({"SidecarContainerNotReady": 1}), 0))
        .await;
    let took = began.elapsed();
    assert!(took < 10 * timeout, "took {took:?}\n{}", op.log());
    eprintln!("the other namespace's Warning and status came {took:?} after its Pod, beside hung writes");
    assert!(proxy.held() >= 2, "the tenant's writes were held");
}
