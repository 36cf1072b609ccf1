//! `SidecarMissing` on a real node: a namespace labelled for Istio's injection where no
//! injector runs — exactly what a webhook that fails open leaves behind — so its Pods start
//! without `istio-proxy`. The operator reports the Pod that lacks it, at once, and not its
//! neighbours that opted out or that the injector never injects (`hostNetwork`).

use std::time::Duration;

use serde_json::json;
use sidecar_watch_harness::env::wait_until;

use crate::support::{container, pod, Scenario, MINUTE};

#[tokio::test(flavor = "multi_thread")]
async fn a_pod_without_the_proxy_its_namespace_asks_for_is_reported_at_once() {
    let s = Scenario::start("node-missing").await;
    s.env.kubectl(["label", "namespace", s.ns.as_str(), "istio-injection=enabled"]).await.expect("labelled");
    let app = || vec![container("app", "exec sleep 3600", json!({}))];
    s.apply(pod("plain", vec![], app())).await;
    let mut opted_out = pod("opted-out", vec![], app());
    opted_out["metadata"]["labels"] = json!({"sidecar.istio.io/inject": "false"});
    s.apply(opted_out).await;
    let mut host = pod("host", vec![], app());
    host["spec"]["hostNetwork"] = json!(true);
    s.apply(host).await;
    // Only the plain Pod; no fieldPath: the container does not exist.
    s.expect_warnings(MINUTE, Duration::from_secs(10), &[("SidecarMissing", "plain", "")]).await;
    let event = s
        .events()
        .await
        .into_iter()
        .find(|e| e.reason.as_deref() == Some("SidecarMissing"))
        .expect("the SidecarMissing Event");
    assert_eq!(event.action.as_deref(), Some("istio-proxy"), "the action names the missing container");
    let note = event.note.unwrap_or_default();
    let expected = format!(
        "Pod {ns}/plain runs no istio-proxy (Istio), which the label istio-injection=\"enabled\" on namespace {ns} asks for",
        ns = s.ns
    );
    assert!(note.starts_with(&expected), "{note}");
    assert!(note.contains("create the Pod again"), "a bare Pod's advice: {note}");

    // The label taken away, nothing asks for the proxy any more: the alert resolves.
    s.env.kubectl(["label", "namespace", s.ns.as_str(), "istio-injection-"]).await.expect("unlabelled");
    wait_until(MINUTE, "SidecarMissingResolved", || async {
        let events = s.events().await;
        match events.iter().any(|e| e.reason.as_deref() == Some("SidecarMissingResolved")) {
            true => Ok(()),
            false => Err(format!("{:?}", events.iter().map(|e| e.reason.clone()).collect::<Vec<_>>())),
        }
    })
    .await
    .expect("resolved");
}
