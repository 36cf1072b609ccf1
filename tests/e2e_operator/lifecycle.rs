//! Lifecycle: Pod deleted, Pod relabelled out of scope, policy selector changed, policy
//! deleted → series and status follow, with no stale series.

use serde_json::json;

use crate::support::*;

fn pod_series_of(s: &Scrape, pod: &str) -> Vec<String> {
    s.pod_series().into_iter().filter(|l| l.contains(&format!("\"pod\": \"{pod}\""))).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn series_and_status_follow_pods_and_policies() {
    let c = Cluster::start("lifecycle").await;
    let ns = c.ns.clone();
    let spec = |app: &str| {
        json!({
            "selector": {"matchLabels": {"app": app}},
            "rules": rules(json!({"sidecarNotReady": {"for": "1s", "severity": "warning"}})),
        })
    };
    c.apply_policy("mesh", spec("web")).await;
    let op = Operator::start(&c, "op-0", &[]).await;
    let firing = |pod: &str| AlertSeries { namespace: &ns, pod, ..MESH_NOT_READY }.labels();
    for (name, ready) in [("a", false), ("b", false), ("c", true)] {
        let pod = c.create_pod(native_pod(name, "web", "app", "istio-proxy")).await;
        drive(&pod, &[("app", true), ("istio-proxy", ready)]).await;
    }
    let s = op.wait_alerts("a and b firing", vec![firing("a"), firing("b")]).await;
    for pod in ["a", "b", "c"] {
        assert_eq!(s.find("sidecar_container_ready", &[("pod", pod)]).len(), 1, "{}", s.text);
        assert_eq!(s.find("sidecar_container_restarts_total", &[("pod", pod)]).len(), 1, "{}", s.text);
    }
    c.wait_status("mesh", "3 matched, 2 alerting", |s| {
        status_counts(s, 3, 2, json!({"SidecarContainerNotReady": 2}), 0)
    })
    .await;

    // Pod deleted.
    c.delete_pod_now("a").await;
    let s = op
        .wait_scrape("a gone", |s| {
            let left = pod_series_of(s, "a");
            if left.is_empty() && s.alerts() == vec![firing("b")] {
                Ok(())
            } else {
                Err(format!("{left:?} {:?}", s.alerts()))
            }
        })
        .await;
    assert_eq!(s.value("sidecar_policy_pods", &[("policy", "mesh"), ("state", "matched")]), Some(2.0));
    c.wait_status("mesh", "a deleted", |s| status_counts(s, 2, 1, json!({"SidecarContainerNotReady": 1}), 0)).await;

    // Pod relabelled out of scope.
    c.label_pod("b", json!({"app": "other"})).await;
    let s = op
        .wait_scrape("b out of scope", |s| {
            let left = pod_series_of(s, "b");
            if left.is_empty() && s.alerts().is_empty() {
                Ok(())
            } else {
                Err(format!("{left:?} {:?}", s.alerts()))
            }
        })
        .await;
    assert_eq!(s.value("sidecar_policy_pods", &[("policy", "mesh"), ("state", "matched")]), Some(1.0));
    assert_eq!(s.value("sidecar_policy_pods", &[("policy", "mesh"), ("state", "alerting")]), Some(0.0));
    c.wait_status("mesh", "b unselected", |s| status_counts(s, 1, 0, json!({}), 0)).await;

    // Selector changed: b is selected again (its sidecar has not been ready for long), c not.
    c.apply_policy("mesh", spec("other")).await;
    op.wait_scrape("selector changed", |s| {
        let c_left = pod_series_of(s, "c");
        if c_left.is_empty()
            && s.alerts() == vec![firing("b")]
            && s.find("sidecar_container_ready", &[("pod", "b")]).len() == 1
        {
            Ok(())
        } else {
            Err(format!("{c_left:?} {:?}", s.alerts()))
        }
    })
    .await;
    let status = c
        .wait_status("mesh", "selector changed", |s| {
            status_counts(s, 1, 1, json!({"SidecarContainerNotReady": 1}), 0)?;
            status_ready(s, "True", "Evaluating")
        })
        .await;
    let generation = c.policy("mesh").await["metadata"]["generation"].clone();
    assert_eq!(status["observedGeneration"], generation, "{status}");

    // Policy deleted: no series of its own left, nor of the Pods it selected.
    c.delete_policy("mesh").await;
    op.wait_scrape("policy gone", |s| {
        let left: Vec<String> = s.pod_series();
        if left.is_empty() {
            Ok(())
        } else {
            Err(format!("{left:?}"))
        }
    })
    .await;
}

/// Every flag from its environment variable: two namespaces watched (and a third not), JSON
/// logs, the metrics address, identity, lease namespace and status interval.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flags_from_the_environment_with_two_namespaces_and_json_logs() {
    let c = Cluster::start("env").await;
    let (ns_a, ns_b, ns_c) = (c.ns.clone(), format!("{}-b", c.ns), format!("{}-c", c.ns));
    for ns in [&ns_b, &ns_c] {
        c.env.create_namespace(ns).await.expect("namespace");
    }
    let policy = |ns: &str| {
        json!({
            "apiVersion": "sidecarwatch.io/v1alpha1", "kind": "SidecarPolicy",
            "metadata": {"name": "mesh", "namespace": ns},
            "spec": {"rules": rules(json!({"sidecarNotReady": {"for": "1s", "severity": "warning"}}))},
        })
        .to_string()
    };
    for ns in [&ns_a, &ns_b, &ns_c] {
        c.apply_in(ns, &policy(ns)).await;
    }
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let namespaces = format!("{ns_a},{ns_b}");
    let vars = [
        ("SIDECAR_WATCH_METRICS_ADDR", addr.as_str()),
        ("SIDECAR_WATCH_NAMESPACES", namespaces.as_str()),
        ("SIDECAR_WATCH_LEASE_NAMESPACE", ns_a.as_str()),
        ("SIDECAR_WATCH_IDENTITY", "env-op"),
        ("SIDECAR_WATCH_STATUS_INTERVAL", "1s"),
        ("SIDECAR_WATCH_LOG_FORMAT", "json"),
    ];
    let op = Operator::spawn(&c, "env-op", port, &[], &vars).await;
    for ns in [&ns_a, &ns_b, &ns_c] {
        let pod = c.create_pod_in(ns, native_pod("web-1", "web", "app", "istio-proxy")).await;
        drive(&pod, &[("app", true), ("istio-proxy", false)]).await;
    }
    let firing = |ns: &str| AlertSeries { namespace: ns, pod: "web-1", ..MESH_NOT_READY }.labels();
    let scrape = op.wait_alerts("the two watched namespaces alert", vec![firing(&ns_a), firing(&ns_b)]).await;
    assert_eq!(scrape.value("sidecar_watch_pods_tracked", &[]), Some(2.0), "the third namespace is not watched");

    let log = op.log();
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty(), "the operator logged nothing");
    for line in &lines {
        let entry: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
        assert!(entry.get("level").is_some() && entry.get("ts").is_some() && entry.get("msg").is_some(), "{line}");
        assert!(entry.get("fields").is_none(), "fields are flat: {line}");
    }
    assert!(log.contains("\"identity\":\"env-op\""), "the identity came from the environment:\n{log}");
    assert!(
        log.contains(&format!("\"namespaces\":[\"{ns_a}\",\"{ns_b}\"]")),
        "the watched namespaces are logged as a JSON array:\n{log}"
    );
}
