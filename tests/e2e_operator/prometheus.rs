//! The real Prometheus: it scrapes the operator, evaluates the shipped rules
//! (`config/prometheus/prometheusrule.yaml`'s `.spec`), fires and resolves the alerts; and
//! `promtool check metrics` accepts what the operator exports.

use std::process::Stdio;

use serde_json::json;
use sidecar_watch_harness::env::wait_until;
use sidecar_watch_harness::prometheus::Prometheus;
use tokio::io::AsyncWriteExt;

use crate::support::*;

/// `promtool check metrics` on a scrape: (success, output).
async fn promtool_check_metrics(text: &str) -> (bool, String) {
    let mut child = tokio::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("promtool (apt-get install -y prometheus)");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(text.as_bytes()).await.unwrap();
    drop(stdin);
    let out = child.wait_with_output().await.unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_fires_and_resolves_the_shipped_alerts() {
    let c = Cluster::start("prom").await;
    let ns = c.ns.clone();
    c.apply_app_policy(
        "mesh",
        "web",
        json!({
            "sidecarNotReady": {"for": "2s", "severity": "critical"},
            "mainReadySidecarNotReady": {"for": "2s", "severity": "warning"},
        }),
    )
    .await;
    let rule_file = shipped_rules(c.env.dir());
    let target = |op: &Operator| format!("127.0.0.1:{}", op.port);
    // /metrics as shipped: HTTPS and Prometheus' bearer token (its ServiceAccount's, bound to
    // the shipped metrics-reader role), reviewed by TokenReview and SubjectAccessReview.
    let tokens = sidecar_watch_harness::install::scrape_tokens(&c.env, &c.ns).await.expect("scrape tokens");
    let mut op = Operator::start_with_env(&c, "op-0", &[], &[("SIDECAR_WATCH_METRICS_SECURE", "true")]).await;
    op.token = Some(tokens.reader.clone());
    let token_file = c.env.dir().join("prometheus-token");
    std::fs::write(&token_file, &tokens.reader).unwrap();
    let prom = Prometheus::start_secure(&rule_file, &target(&op), &token_file).await.expect("prometheus started");

    let pod = c.create_pod(native_pod("web-1", "web", "app", "istio-proxy")).await;
    drive(&pod, &[("app", true), ("istio-proxy", false)]).await;
    op.wait_alerts(
        "firing",
        vec![
            AlertSeries { severity: Severity::Critical, namespace: &ns, pod: "web-1", ..MESH_NOT_READY }.labels(),
            AlertSeries {
                alert: AlertName::MainContainerReadyButSidecarNot,
                namespace: &ns,
                pod: "web-1",
                ..MESH_NOT_READY
            }
            .labels(),
        ],
    )
    .await;

    // Everything the operator exports passes promtool's checks.
    let text = op.metrics_text().await.unwrap();
    let (ok, output) = promtool_check_metrics(&text).await;
    assert!(ok, "promtool check metrics failed:\n{output}\n--- metrics ---\n{text}");

    let firing = wait_until(WAIT, "Prometheus fires SidecarContainerNotReady", || async {
        let alerts = prom.alerts().await.map_err(|e| e.to_string())?;
        alerts
            .iter()
            .find(|a| a["labels"]["alertname"] == "SidecarContainerNotReady" && a["state"] == "firing")
            .cloned()
            .ok_or_else(|| format!("{alerts:?}"))
    })
    .await
    .unwrap();
    let labels = &firing["labels"];
    for (k, v) in [
        ("namespace", ns.as_str()),
        ("pod", "web-1"),
        ("container", "istio-proxy"),
        ("severity", "critical"),
        ("policy", "mesh"),
        ("policy_namespace", ns.as_str()),
        ("source", "sidecar-watch"),
    ] {
        assert_eq!(labels[k], v, "label {k} of {firing}");
    }
    let description = firing["annotations"]["description"].as_str().unwrap_or_default();
    assert!(description.contains(&format!("{ns}/web-1")) && description.contains("istio-proxy"), "{description}");
    // Exactly these two sidecar alerts fire (the operator's own alerts need minutes of `for`).
    let names = wait_until(WAIT, "Prometheus fires both alerts", || async {
        let mut names = prom.firing_alerts().await.map_err(|e| e.to_string())?;
        names.sort();
        if names == ["MainContainerReadyButSidecarNot", "SidecarContainerNotReady"] {
            Ok(names)
        } else {
            Err(format!("{names:?}"))
        }
    })
    .await
    .unwrap();
    let main_ready = prom.alerts().await.unwrap();
    let main_ready = main_ready.iter().find(|a| a["labels"]["alertname"] == names[0]).expect("alert").clone();
    assert_eq!(main_ready["labels"]["severity"], "warning", "{main_ready}");
    assert_eq!(main_ready["labels"]["container"], "istio-proxy", "{main_ready}");

    set_ready(&pod, "istio-proxy", true).await;
    op.wait_alerts("resolved", vec![]).await;
    wait_until(WAIT, "Prometheus resolves both alerts", || async {
        let alerts = prom.alerts().await.map_err(|e| e.to_string())?;
        if !alerts.iter().any(|a| names.iter().any(|n| a["labels"]["alertname"] == n.as_str())) {
            Ok(())
        } else {
            Err(format!("{alerts:?}"))
        }
    })
    .await
    .unwrap();
    let up = prom.query("up{job=\"sidecar-watch\"}").await.unwrap();
    assert_eq!(up["result"][0]["value"][1], "1", "{up}");
}
