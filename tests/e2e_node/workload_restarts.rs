//! The operator's own restarts while an alert on a workload fires, on the real node: the
//! leader SIGKILLed (its Pod deleted with no grace: no step down, no last write) and every
//! replica restarted by `kubectl rollout restart`. The alert is `SidecarInjectionFailed` on a
//! container the template does not declare (injected): the read-back of the standing Warning
//! must match it by rule, not by a container the Event's reference cannot name. Exactly one
//! Warning throughout, no `…Resolved` until the failure ends, then exactly one.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams};
use serde_json::json;

use crate::injection_failed::{
    closed_object_webhook, deployment, deployment_warnings, failed_create, firing, short_for, until_metrics,
};
use crate::support::{container, wait, Scenario, MINUTE, RELEASE_NAMESPACE};

/// The Lease holder's identity (the leading operator Pod's name).
async fn leader(leases: &Api<Lease>) -> String {
    let lease = leases.get("sidecar-watch").await.expect("the Lease");
    lease.spec.and_then(|s| s.holder_identity).unwrap_or_default()
}

/// (Warnings, Resolved) the operator published about Deployment `web` for the failure.
async fn web_events(s: &Scenario) -> (i32, i32) {
    let counts = s.event_counts().await;
    let count = |reason: &str| {
        counts.iter().filter(|((_, r, name, _), _)| r == reason && name == "web").map(|(_, n)| *n).sum::<i32>()
    };
    (count("SidecarInjectionFailed"), count("SidecarInjectionFailedResolved"))
}

#[tokio::test(flavor = "multi_thread")]
async fn leader_kills_and_restarts_neither_repeat_nor_resolve_a_workload_alert() {
    let s = Scenario::exclusive("node-workload-restarts").await;
    let configuration = closed_object_webhook(&s).await;
    let mut web = deployment("web", vec![], vec![container("app", "exec sleep 3600", json!({}))]);
    web["spec"]["template"]["metadata"]["labels"]["sidecar.istio.io/inject"] = json!("true");
    s.apply(web).await;
    short_for(&s).await;
    failed_create(&s, "web").await;
    until_metrics(&s, "SidecarInjectionFailed firing on Deployment web", |m| firing(m, &s, "web", "istio-proxy")).await;
    wait(MINUTE, "the Warning on Deployment web", || async {
        let warnings = deployment_warnings(&s).await;
        let want = ("SidecarInjectionFailed".to_string(), "web".to_string(), String::new());
        warnings.contains(&want).then_some(()).ok_or_else(|| format!("{warnings:?}"))
    })
    .await;
    assert_eq!(web_events(&s).await, (1, 0));

    // SIGKILL of the leader: its Pod deleted with no grace period.
    let leases: Api<Lease> = Api::namespaced(s.env.client.clone(), RELEASE_NAMESPACE);
    let killed = leader(&leases).await;
    let operators: Api<Pod> = Api::namespaced(s.env.client.clone(), RELEASE_NAMESPACE);
    operators
        .delete(&killed, &DeleteParams { grace_period_seconds: Some(0), ..Default::default() })
        .await
        .expect("killed");
    wait(2 * MINUTE, "another replica leads", || async {
        let now = leader(&leases).await;
        (!now.is_empty() && now != killed).then_some(()).ok_or_else(|| format!("holder {now:?}"))
    })
    .await;
    until_metrics(&s, "the new leader exports it firing", |m| firing(m, &s, "web", "istio-proxy")).await;
    tokio::time::sleep(Duration::from_secs(20)).await;
    assert_eq!(web_events(&s).await, (1, 0), "after the leader was killed: one Warning, no Resolved");

    // Every replica restarted, one after the other.
    let ns = RELEASE_NAMESPACE;
    s.env.kubectl(["-n", ns, "rollout", "restart", "deployment/sidecar-watch"]).await.expect("rollout restart");
    let status = ["-n", ns, "rollout", "status", "deployment/sidecar-watch", "--timeout=120s"];
    s.env.kubectl(status).await.expect("restarted");
    until_metrics(&s, "the restarted leader exports it firing", |m| firing(m, &s, "web", "istio-proxy")).await;
    tokio::time::sleep(Duration::from_secs(20)).await;
    assert_eq!(web_events(&s).await, (1, 0), "after every replica restarted: one Warning, no Resolved");

    // The failure ends: exactly one Resolved.
    s.env.kubectl(["delete", "mutatingwebhookconfiguration", configuration.as_str()]).await.expect("deleted");
    let ns = s.ns.as_str();
    // A change of the ReplicaSet requeues it without its back-off.
    s.env.kubectl(["-n", ns, "annotate", "rs", "-l", "app=web", "retry=now", "--overwrite"]).await.expect("annotated");
    s.env.kubectl(["-n", ns, "rollout", "status", "deployment/web", "--timeout=90s"]).await.expect("web's Pod made");
    wait(MINUTE, "one Resolved on Deployment web", || async {
        let events = web_events(&s).await;
        (events == (1, 1)).then_some(()).ok_or_else(|| format!("{events:?}"))
    })
    .await;
}
