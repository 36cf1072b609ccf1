//! The real Prometheus: it scrapes the operator, evaluates the shipped rules
//! (`config/prometheus/prometheusrule.yaml`'s `.spec`: one alert per workload, sidecar
//! container and alert name), fires and resolves the alerts; and `promtool check metrics`
//! accepts what the operator exports.

use std::collections::BTreeMap;
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
    let scrape = op
        .wait_alerts(
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
    // One alert for the workload (a Pod without owner is its own), without the Pod and the
    // policy: the per-Pod detail stays in sidecar_alerts. The routing labels the operator puts
    // on its series (`product`, the namespace's `label_<key>`) are carried as they are.
    let mut want: BTreeMap<String, String> = [
        ("alertname", "SidecarContainerNotReady"),
        ("namespace", ns.as_str()),
        ("container", "istio-proxy"),
        ("severity", "critical"),
        ("workload_kind", "Pod"),
        ("workload", "web-1"),
        ("source", "sidecar-watch"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let series = scrape.alerts().into_iter().find(|l| l["alertname"] == "SidecarContainerNotReady").expect("series");
    want.extend(series.into_iter().filter(|(k, v)| (k == "product" || k.starts_with("label_")) && !v.is_empty()));
    let got: BTreeMap<String, String> = serde_json::from_value(firing["labels"].clone()).expect("string labels");
    assert_eq!(got, want, "labels of {firing}");
    let annotations: BTreeMap<String, String> =
        serde_json::from_value(firing["annotations"].clone()).expect("string annotations");
    let want_annotations: BTreeMap<String, String> = [
        ("summary", "Sidecar container not ready".to_string()),
        (
            "description",
            format!(
                "Sidecar istio-proxy has been not ready for longer than its policy's `for` duration in Pod {ns}/web-1."
            ),
        ),
        ("pods", "1".to_string()),
        ("example_pod", format!("{ns}/web-1")),
        (
            "runbook_url",
            "https://github.com/sidecar-watch/sidecar-watch/blob/main/docs/runbooks/SidecarContainerNotReady.md"
                .to_string(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(annotations, want_annotations, "annotations of {firing}");
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
    assert_eq!(main_ready["labels"]["workload"], "web-1", "{main_ready}");
    assert_eq!(main_ready["labels"].get("pod"), None, "{main_ready}");
    assert_eq!(main_ready["annotations"]["pods"], "1", "{main_ready}");

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
