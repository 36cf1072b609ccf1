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
             "product": "linkerd", "identified_by": "missing", "pods": 0, "versions": {}, "requests": {}, "limits": {},
             "alerts": {"SidecarMissing": 1}},
            {"namespace": "shop", "workload_kind": "Deployment", "workload": "web", "container": "istio-proxy",
             "product": "istio", "identified_by": "native", "pods": 3, "versions": {"1.23.2": 1, "1.24.0": 2},
             "requests": {}, "limits": {}, "alerts": {"SidecarMisconfigured": 3}},
        ])
    );
    assert_eq!(
        run("inventory"),
        "NAMESPACE  WORKLOAD             SIDECAR        PRODUCT  PODS  VERSIONS            REQUESTS  LIMITS  ALERTS\n\
         payments   Deployment/checkout  linkerd-proxy  linkerd  0     -                   -         -       SidecarMissing×1\n\
         shop       Deployment/web       istio-proxy    istio    3     1.24.0×2, 1.23.2×1  -         -       SidecarMisconfigured×3\n\
         2 sidecars in 2 workloads\n"
    );
}

/// The sidecar tax per workload: three replicas of a native sidecar requesting 100m and 64Mi,
/// limited to 128Mi, one more that finished (it counts as a Pod, not in the sums); a legacy
/// sidecar whose CPU request is no quantity (no `cpu`, the rest summed).
#[test]
fn requests_and_limits_are_summed_over_live_pods() {
    let resources = serde_json::json!({"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"memory": "128Mi"}});
    let mut items: Vec<serde_json::Value> = ["a", "b", "c", "d"]
        .map(|i| {
            let mut pod = replica(&format!("web-7d9-{i}"), "docker.io/istio/proxyv2:1.24.0");
            pod["spec"]["initContainers"][0]["resources"] = resources.clone();
            pod
        })
        .into();
    items[3]["status"]["phase"] = serde_json::json!("Succeeded");
    let mut legacy = replica("api-5f6-a", "docker.io/istio/proxyv2:1.24.0");
    legacy["metadata"]["ownerReferences"][0]["name"] = serde_json::json!("api-5f6");
    legacy["metadata"]["labels"]["pod-template-hash"] = serde_json::json!("5f6");
    legacy["spec"] = serde_json::json!({"containers": [{"name": "app", "image": "shop/api:1"},
        {"name": "envoy", "image": "envoyproxy/envoy:v1.32.3",
         "resources": {"requests": {"cpu": "lots", "memory": "1Gi"}, "limits": {"cpu": "1500m", "memory": "1Gi"}}}]});
    items.push(legacy);
    let input = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items}).to_string();
    let run = |format: &str| {
        let args = ["-f", "-", "--now", "2025-06-03T10:30:00Z", "-o", format, "--fail-on", "none"];
        let out = SIDECAR_WATCH.run(&args, Some(input.as_bytes()));
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        text(&out.stdout)
    };
    let rows: Vec<serde_json::Value> = serde_json::from_str(&run("inventory-json")).expect("JSON");
    let tax: Vec<(String, serde_json::Value, serde_json::Value, serde_json::Value)> = rows
        .iter()
        .map(|r| {
            (
                format!("{}/{}", r["workload"], r["container"]),
                r["pods"].clone(),
                r["requests"].clone(),
                r["limits"].clone(),
            )
        })
        .collect();
    assert_eq!(
        tax,
        [
            (
                "\"api\"/\"envoy\"".to_string(),
                serde_json::json!(1),
                serde_json::json!({"memory": 1073741824}),
                serde_json::json!({"cpu": 1.5, "memory": 1073741824})
            ),
            (
                "\"web\"/\"istio-proxy\"".to_string(),
                serde_json::json!(4),
                serde_json::json!({"cpu": 0.3, "memory": 201326592}),
                serde_json::json!({"memory": 402653184})
            ),
        ]
    );
    assert_eq!(
        run("inventory"),
        "NAMESPACE  WORKLOAD        SIDECAR      PRODUCT  PODS  VERSIONS   REQUESTS                LIMITS                 ALERTS\n\
         shop       Deployment/api  envoy        envoy    1     v1.32.3×1  memory 1Gi              cpu 1500m, memory 1Gi  SidecarMisconfigured×1\n\
         shop       Deployment/web  istio-proxy  istio    4     1.24.0×4   cpu 300m, memory 192Mi  memory 384Mi           SidecarMisconfigured×4\n\
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

/// A workload name longer than any the API server admits (a hand-written manifest's) is
/// printed whole on its row but widens no column: the other rows are not padded to it.
#[test]
fn a_huge_name_is_printed_whole_but_pads_no_other_row() {
    let huge = "w".repeat(100_000);
    let mut items: Vec<serde_json::Value> =
        (0..50).map(|i| replica(&format!("web-7d9-{i}"), "proxyv2:1.24.0")).collect();
    let mut odd = replica("odd", "proxyv2:1.24.0");
    odd["metadata"]["ownerReferences"] = serde_json::json!([]);
    odd["metadata"]["name"] = huge.clone().into();
    items.push(odd);
    let input = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items}).to_string();
    let args = ["-f", "-", "--now", "2025-06-03T10:30:00Z", "-o", "inventory", "--fail-on", "none"];
    let out = SIDECAR_WATCH.run(&args, Some(input.as_bytes()));
    let table = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(table.contains(&format!("Pod/{huge}")), "printed whole");
    assert!(table.len() < huge.len() + 2_000, "{} bytes for 2 rows", table.len());
}
