//! Policies: an invalid one is reported (status, Event) and does not stop the others;
//! `kubectl get scp` shows the printer columns; the shipped samples apply with kubectl and
//! the cluster policy follows namespace labels.

use std::time::Duration;

use serde_json::json;
use sidecar_watch_harness::env::wait_until;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_policy_is_reported_and_others_keep_evaluating() {
    let c = Cluster::start("invalid").await;
    let ns = c.ns.clone();
    let good_rules = rules(json!({"sidecarNotReady": {"for": "1s", "severity": "warning"}}));
    c.apply_policy(
        "bad",
        json!({"selector": {"matchLabels": {"app": "web"}}, "sidecars": {"pattern": "envoy("}, "rules": good_rules}),
    )
    .await;
    c.apply_policy("good", json!({"selector": {"matchLabels": {"app": "web"}}, "rules": good_rules})).await;
    let op = Operator::start(&c, "op-0", &[]).await;
    let pod = c.create_pod(native_pod("web-1", "web", "app", "envoy")).await;
    drive(&pod, &[("app", true), ("envoy", false)]).await;

    let good_alert = AlertSeries {
        policy: "good",
        namespace: &ns,
        pod: "web-1",
        container: "envoy",
        product: "envoy",
        ..MESH_NOT_READY
    }
    .labels();
    op.wait_alerts("only the valid policy alerts", vec![good_alert.clone()]).await;
    let status = c
        .wait_status("bad", "InvalidSpec", |s| {
            status_ready(s, "False", "InvalidSpec")?;
            status_counts(s, 0, 0, json!({}), 0)
        })
        .await;
    let message =
        super::support::condition(&status, "Ready").unwrap()["message"].as_str().unwrap_or_default().to_string();
    assert!(message.contains("sidecars.pattern"), "the message names the field: {message}");
    c.wait_status("good", "evaluating", |s| {
        status_ready(s, "True", "Evaluating")?;
        status_counts(s, 1, 1, json!({"SidecarContainerNotReady": 1}), 0)
    })
    .await;

    let events = c.wait_events("bad", "Warning", "InvalidSpec", 1).await;
    let e = the_event(&events, "bad", "InvalidSpec");
    let regarding = e.regarding.as_ref().unwrap();
    assert_eq!(regarding.kind.as_deref(), Some("SidecarPolicy"), "{e:?}");
    assert_eq!(regarding.namespace.as_deref(), Some(ns.as_str()), "{e:?}");
    assert!(e.note.as_deref().unwrap_or_default().contains("sidecars.pattern"), "{e:?}");
    c.wait_events("web-1", "Warning", "SidecarContainerNotReady", 1).await;

    // Fixing the policy makes it evaluate.
    c.apply_policy(
        "bad",
        json!({"selector": {"matchLabels": {"app": "web"}}, "sidecars": {"pattern": "envoy"}, "rules": good_rules}),
    )
    .await;
    op.wait_alerts(
        "both policies alert",
        vec![
            good_alert,
            AlertSeries {
                policy: "bad",
                namespace: &ns,
                pod: "web-1",
                container: "envoy",
                product: "envoy",
                ..MESH_NOT_READY
            }
            .labels(),
        ],
    )
    .await;
    c.wait_status("bad", "fixed", |s| {
        status_ready(s, "True", "Evaluating")?;
        status_counts(s, 1, 1, json!({"SidecarContainerNotReady": 1}), 0)
    })
    .await;
    assert_eq!(c.event_count("bad", "Warning", "InvalidSpec").await, 1);

    // Deleted and created again with the invalid spec: another object (generation 1 again),
    // whose spec is announced and whose status is written as for any new policy.
    c.delete_policy("bad").await;
    let bad =
        json!({"selector": {"matchLabels": {"app": "web"}}, "sidecars": {"pattern": "envoy("}, "rules": good_rules});
    c.apply_policy("bad", bad).await;
    c.wait_status("bad", "InvalidSpec again", |s| status_ready(s, "False", "InvalidSpec")).await;
    c.wait_events("bad", "Warning", "InvalidSpec", 2).await;
}

/// A policy deleted while its alert fires, then created again under its name: the new
/// object's alert is its own, announced with a Warning of its own; and a policy deleted for
/// good leaves nothing remembered of its alerts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_created_again_under_its_name_announces_its_alerts() {
    let c = Cluster::start("recreated").await;
    let enabled = json!({"sidecarNotReady": {"for": "1s", "severity": "warning"}});
    c.apply_app_policy("mesh", "web", enabled.clone()).await;
    let op = Operator::start(&c, "op-0", &[]).await;
    let pod = c.create_pod(native_pod("web-1", "web", "app", "istio-proxy")).await;
    drive(&pod, &[("app", true), ("istio-proxy", false)]).await;
    let firing = AlertSeries { namespace: &c.ns, pod: "web-1", ..MESH_NOT_READY }.labels();
    op.wait_alerts("web-1 firing", vec![firing.clone()]).await;
    c.wait_events("web-1", "Warning", "SidecarContainerNotReady", 1).await;
    c.delete_policy("mesh").await;
    op.wait_alerts("nothing without the policy", Vec::new()).await;
    c.apply_app_policy("mesh", "web", enabled).await;
    op.wait_alerts("web-1 firing under the new policy", vec![firing]).await;
    c.wait_events("web-1", "Warning", "SidecarContainerNotReady", 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_get_scp_prints_matched_alerting_ready() {
    let c = Cluster::start("kubectl").await;
    let r = rules(json!({"sidecarNotReady": {"for": "1s", "severity": "warning"}}));
    c.apply_policy("web", json!({"selector": {"matchLabels": {"tier": "web"}}, "rules": r})).await;
    c.apply_policy("all", json!({"rules": r})).await;
    c.apply_policy("broken", json!({"sidecars": {"pattern": "[a-"}, "rules": r})).await;
    let op = Operator::start(&c, "op-0", &[]).await;
    for (name, tier, ready) in [("w1", "web", false), ("w2", "web", true), ("d1", "db", true)] {
        let pod = c
            .create_pod(sidecar_watch_harness::kubelet::test_pod(name, &[("tier", tier)], &["app"], &["istio-proxy"]))
            .await;
        drive(&pod, &[("app", true), ("istio-proxy", ready)]).await;
    }
    let _ = op;
    let expected = vec![
        vec!["all", "3", "1", "True", "Evaluating"],
        vec!["broken", "0", "0", "False", "InvalidSpec"],
        vec!["web", "2", "1", "True", "Evaluating"],
    ];
    let ns = c.ns.clone();
    wait_until(Duration::from_secs(30), "kubectl get scp", || async {
        let out = c.env.kubectl(["get", "scp", "-n", &ns]).await.map_err(|e| e.to_string())?;
        let mut lines = out.lines().map(|l| l.split_whitespace().collect::<Vec<_>>());
        let header = lines.next().unwrap_or_default();
        if header != ["NAME", "MATCHED", "ALERTING", "READY", "REASON", "AGE"] {
            return Err(out);
        }
        let mut rows: Vec<Vec<&str>> = lines.map(|l| l[..l.len().min(5)].to_vec()).collect();
        rows.sort();
        if rows == expected {
            Ok(())
        } else {
            Err(out)
        }
    })
    .await
    .unwrap();
    let wide =
        c.env.kubectl(["get", "sidecarpolicies.sidecarwatch.io", "broken", "-n", &ns, "-o", "json"]).await.unwrap();
    let v: serde_json::Value = serde_json::from_str(&wide).unwrap();
    let message =
        super::support::condition(&v["status"], "Ready").unwrap()["message"].as_str().unwrap_or("").to_string();
    assert!(message.contains("sidecars.pattern"), "{message}");
}

/// The shipped samples (`config/samples`, rendered by `kubectl kustomize`) applied with
/// `kubectl`: the namespaced ones select the Pods their selectors name, and the
/// ClusterSidecarPolicy follows its namespace selector as namespace labels change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shipped_samples_apply_and_cluster_policy_follows_namespace_labels() {
    // A control plane of its own: every operator on a shared server writes the status of every
    // cluster policy (with its own namespaces' counts), so printed counts would race.
    let c = Cluster::start_own_control_plane("samples", Default::default()).await;
    let ns = c.ns.clone();
    let samples = concat!(env!("CARGO_MANIFEST_DIR"), "/config/samples");
    let rendered = c.env.kubectl(["kustomize", samples]).await.expect("kubectl kustomize config/samples");
    let mut cluster_policy = String::new();
    let mut docs = Vec::new();
    for doc in serde_norway::Deserializer::from_str(&rendered) {
        let mut doc: serde_json::Value = serde::Deserialize::deserialize(doc).expect("rendered YAML");
        match doc["kind"].as_str() {
            // Into the test's namespace, so that tests (and clusters) do not collide.
            Some("SidecarPolicy") => doc["metadata"]["namespace"] = json!(ns),
            Some("ClusterSidecarPolicy") => {
                // Cluster-scoped: a name of its own, and only this test's namespace in scope.
                cluster_policy = format!("{}-{ns}", doc["metadata"]["name"].as_str().expect("name"));
                doc["metadata"]["name"] = json!(cluster_policy);
                doc["spec"]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"] = json!(ns);
            }
            // The samples' own namespaces (shop, payments, batch) and Pods: this test uses its
            // own namespace and Pod.
            Some("Namespace" | "Pod") => continue,
            other => panic!("unexpected kind in config/samples: {other:?}"),
        }
        docs.push(serde_norway::to_string(&doc).expect("YAML"));
    }
    assert_eq!(docs.len(), 4, "{rendered}");
    let out = c.apply(&docs.join("---\n")).await;
    assert!(
        out.contains(&format!("clustersidecarpolicy.sidecarwatch.io/{cluster_policy} serverside-applied")),
        "{out}"
    );

    let op = Operator::start(&c, "op-0", &[]).await;
    let pod = c
        .create_pod(sidecar_watch_harness::kubelet::test_pod("web-1", &[("app", "web")], &["app"], &["istio-proxy"]))
        .await;
    drive(&pod, &[("app", true), ("istio-proxy", false)]).await;

    let matched = |policy: &str, policy_ns: &str, want: f64| {
        let (policy, policy_ns) = (policy.to_string(), policy_ns.to_string());
        let op = &op;
        async move {
            let what = format!("sidecar_policy_pods{{policy={policy:?},state=\"matched\"}} == {want}");
            wait_until(WAIT, &what, || async {
                let scrape = op.scrape().await?;
                let value = scrape
                    .value(
                        "sidecar_policy_pods",
                        &[("policy", &policy), ("policy_namespace", &policy_ns), ("state", "matched")],
                    )
                    .unwrap_or(0.0);
                if value == want {
                    Ok(())
                } else {
                    Err(format!("{value}"))
                }
            })
            .await
            .unwrap();
        }
    };
    // istio-mesh selects app=web, log-shipper every Pod, linkerd-mesh only part-of=payments.
    matched("istio-mesh", &ns, 1.0).await;
    matched("log-shipper", &ns, 1.0).await;
    matched("linkerd-mesh", &ns, 0.0).await;
    matched(&cluster_policy, "", 0.0).await;

    // The namespace opts in: the cluster policy re-evaluates it and selects the Pod.
    c.env.kubectl(["label", "namespace", &ns, "sidecarwatch.io/platform=true"]).await.expect("namespace labelled");
    matched(&cluster_policy, "", 1.0).await;
    let expected_table = |matched: &'static str| {
        let (c, cluster_policy) = (&c, cluster_policy.clone());
        async move {
            wait_until(WAIT, &format!("kubectl get cscp {cluster_policy}: MATCHED {matched}"), || async {
                let out = c.env.kubectl(["get", "cscp", &cluster_policy]).await.map_err(|e| e.to_string())?;
                let rows: Vec<Vec<&str>> = out.lines().map(|l| l.split_whitespace().collect()).collect();
                match rows.as_slice() {
                    [header, row]
                        if header[..] == ["NAME", "MATCHED", "ALERTING", "READY", "REASON", "AGE"]
                            && row[1] == matched
                            && row[4] == "Evaluating" =>
                    {
                        Ok(())
                    }
                    _ => Err(out),
                }
            })
            .await
            .unwrap();
        }
    };
    expected_table("1").await;

    // And opts out again.
    c.env.kubectl(["label", "namespace", &ns, "sidecarwatch.io/platform-"]).await.expect("label removed");
    matched(&cluster_policy, "", 0.0).await;
    expected_table("0").await;
    c.env.kubectl(["delete", "cscp", &cluster_policy, "--wait=false"]).await.expect("cluster policy deleted");
}

/// What the CRD schema can express, the server itself refuses (kube-apiserver validating the
/// policy against `crds/`): a malformed duration, a zero threshold, an unknown severity, a
/// `sidecars` block that selects nothing, an unknown field under `kubectl --validate=strict`.
/// Each refusal names the field; nothing is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_refuses_what_the_schema_forbids() {
    let c = Cluster::start("schema").await;
    let cases = [
        ("bad-duration", json!({"rules": {"crashLoop": {"for": "5 minutes"}}}), "spec.rules.crashLoop.for"),
        ("zero-threshold", json!({"rules": {"restarts": {"threshold": 0}}}), "spec.rules.restarts.threshold"),
        ("unknown-severity", json!({"rules": {"oomKilled": {"severity": "page"}}}), "spec.rules.oomKilled.severity"),
        ("selects-nothing", json!({"sidecars": {"native": false, "catalog": false}}), "spec.sidecars"),
        ("unknown-field", json!({"rules": {"restarts": {"restartz": 3}}}), "restartz"),
    ];
    for (name, spec, field) in cases {
        let doc = json!({
            "apiVersion": "sidecarwatch.io/v1alpha1", "kind": "SidecarPolicy",
            "metadata": {"name": name, "namespace": c.ns}, "spec": spec,
        });
        let args = ["apply", "--server-side", "--validate=strict", "-n", &c.ns, "-f", "-"];
        let refused = c.env.kubectl_stdin(args, &serde_json::to_string(&doc).unwrap()).await;
        let message = match refused {
            Err(e) => e.to_string(),
            Ok(out) => panic!("{name}: the server accepted {doc}: {out}"),
        };
        assert!(message.contains(field), "{name}: the refusal names {field}: {message}");
        let stored = c.env.kubectl(["get", "scp", name, "-n", &c.ns, "--ignore-not-found", "-o", "name"]).await;
        assert_eq!(stored.expect("kubectl get"), "", "{name} was stored");
    }
    // The catalog alone selects sidecars: accepted (the schema's rule once forgot it).
    c.apply_policy("catalog-only", json!({"sidecars": {"native": false, "catalog": true}})).await;
}
