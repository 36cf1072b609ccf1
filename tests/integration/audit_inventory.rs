//! `audit -o inventory`: which workloads run which version of each sidecar, and which lack it.

use sidecar_watch_testkit::audit::text;

use crate::SIDECAR_WATCH;

/// A Deployment `web`'s Pod `name` in `shop`, with a native `istio-proxy` of `image`.
fn replica(name: &str, image: &str) -> serde_json::Value {
    serde_json::json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "shop", "uid": name, "creationTimestamp": "2025-06-03T10:00:00Z",
            "labels": {"pod-template-hash": "7d9"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-7d9", "uid": "r", "controller": true}]},
        "spec": {"initContainers": [{"name": "istio-proxy", "image": image, "restartPolicy": "Always"}],
                 "containers": [{"name": "app", "image": "shop/web:1"}]},
        "status": {"phase": "Running", "startTime": "2025-06-03T10:00:00Z"}})
}

#[test]
fn one_row_per_workload_and_sidecar_with_versions_counted() {
    let items = [
        replica("web-7d9-a", "docker.io/istio/proxyv2:1.24.0"),
        replica("web-7d9-b", "docker.io/istio/proxyv2:1.24.0"),
        replica("web-7d9-c", "docker.io/istio/proxyv2:1.23.2"),
    ];
    let input = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items}).to_string();
    let args = ["-f", "-", "-f", "tests/fixtures/missing-sidecar.yaml", "--now", "2025-06-03T10:30:00Z"];
    let run = |format: &str| {
        let out =
            SIDECAR_WATCH.run(&[&args[..], &["-o", format, "--fail-on", "none"]].concat(), Some(input.as_bytes()));
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        text(&out.stdout)
    };
    let rows: serde_json::Value = serde_json::from_str(&run("inventory-json")).expect("JSON");
    assert_eq!(
        rows,
        serde_json::json!([
            {"namespace": "payments", "workload_kind": "Deployment", "workload": "checkout", "container": "linkerd-proxy",
             "product": "linkerd", "identified_by": "missing", "pods": 0, "versions": {}, "alerts": {"SidecarMissing": 1}},
            {"namespace": "shop", "workload_kind": "Deployment", "workload": "web", "container": "istio-proxy",
             "product": "istio", "identified_by": "native", "pods": 3, "versions": {"1.23.2": 1, "1.24.0": 2},
             "alerts": {"SidecarMisconfigured": 3}},
        ])
    );
    assert_eq!(
        run("inventory"),
        "NAMESPACE  WORKLOAD             SIDECAR        PRODUCT  PODS  VERSIONS            ALERTS\n\
         payments   Deployment/checkout  linkerd-proxy  linkerd  0     -                   SidecarMissing×1\n\
         shop       Deployment/web       istio-proxy    istio    3     1.24.0×2, 1.23.2×1  SidecarMisconfigured×3\n\
         2 sidecars in 2 workloads\n"
    );
}

/// The workload half of `SidecarVersionDrift` from a dump: the Pod behind the workload's
/// newer Pods, pending within `for` of the first Pod on the newest version, firing after.
#[test]
fn a_pod_behind_its_workload_is_found_in_a_dump() {
    let mut newer = replica("web-7d9-b", "docker.io/istio/proxyv2:1.24.0");
    newer["metadata"]["creationTimestamp"] = serde_json::json!("2025-06-03T10:20:00Z");
    let items = [replica("web-7d9-a", "docker.io/istio/proxyv2:1.23.2"), newer];
    let input = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items}).to_string();
    let drift = |now: &str| {
        let args = ["-f", "-", "--now", now, "-o", "json", "--fail-on", "none"];
        let out = SIDECAR_WATCH.run(&args, Some(input.as_bytes()));
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        let findings: Vec<serde_json::Value> = serde_json::from_str(&text(&out.stdout)).expect("JSON");
        findings
            .into_iter()
            .filter(|f| f["alertname"] == "SidecarVersionDrift")
            .map(|f| (f["pod"].as_str().unwrap_or("").to_string(), f["state"].as_str().unwrap_or("").to_string()))
            .collect::<Vec<_>>()
    };
    assert_eq!(drift("2025-06-03T11:00:00Z"), [("web-7d9-a".to_string(), "pending".to_string())]);
    assert_eq!(drift("2025-06-03T11:20:00Z"), [("web-7d9-a".to_string(), "firing".to_string())]);
}
