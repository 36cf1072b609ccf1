//! kubectl 1.32 against the simulator: server-side apply of CRDs and objects, get (Table
//! output with printer columns), -o json, -w, describe, delete.

mod sim_common;

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{json, Value};
use sidecar_watch_e2e::harness::{wait_until, TestEnv};
use sidecar_watch_e2e::kubelet::{test_pod, PodDriver, State};
use sim_common::{fixtures, sim_env};
use tokio::io::{AsyncBufReadExt, BufReader};

fn widgets(env: &TestEnv, kind: &str, plural: &str) -> ApiResource {
    let _ = env;
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("e2e.sidecarwatch.io", "v1alpha1", kind), plural)
}

fn header_and_rows(out: &str) -> (Vec<String>, Vec<Vec<String>>) {
    let mut lines = out.lines().map(|l| l.split_whitespace().map(str::to_string).collect::<Vec<_>>());
    let header = lines.next().unwrap_or_default();
    (header, lines.collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_apply_get_describe_delete() {
    let env = sim_env().await;
    let crd_file = fixtures().join("widgets-crd.yaml");
    let out = env.kubectl(["apply", "--server-side", "-f", crd_file.to_str().unwrap()]).await.unwrap();
    assert!(out.contains("widgets.e2e.sidecarwatch.io serverside-applied"), "{out}");
    let out =
        env.kubectl(["apply", "--server-side", "-f", fixtures().join("widget.yaml").to_str().unwrap()]).await.unwrap();
    assert!(out.contains("widget.e2e.sidecarwatch.io/w1 serverside-applied"), "{out}");
    // re-applying is idempotent
    env.kubectl(["apply", "--server-side", "-f", fixtures().join("widget.yaml").to_str().unwrap()]).await.unwrap();

    // status written by a "controller"
    let ar = widgets(&env, "Widget", "widgets");
    let api: Api<DynamicObject> = Api::namespaced_with(env.client.clone(), "default", &ar);
    api.patch_status(
        "w1",
        &PatchParams::apply("controller"),
        &Patch::Apply(json!({
            "apiVersion": "e2e.sidecarwatch.io/v1alpha1", "kind": "Widget", "metadata": {"name": "w1"},
            "status": {"matchedPods": 3, "conditions": [{"type": "Ready", "status": "True"}]}
        })),
    )
    .await
    .unwrap();

    let (header, rows) = header_and_rows(&env.kubectl(["get", "wdg"]).await.unwrap());
    assert_eq!(header, ["NAME", "MATCHED", "READY", "AGE"]);
    assert_eq!(&rows[0][..3], ["w1", "3", "True"]);
    assert!(rows[0][3].ends_with('s') || rows[0][3].ends_with('m'), "{rows:?}");
    let (header, rows) = header_and_rows(&env.kubectl(["get", "widgets", "-A"]).await.unwrap());
    assert_eq!(header, ["NAMESPACE", "NAME", "MATCHED", "READY", "AGE"]);
    assert_eq!(&rows[0][..4], ["default", "w1", "3", "True"]);

    // cluster-scoped kind with no status yet: missing values are null cells, printed empty
    let cw = env.dir().join("cw.yaml");
    std::fs::write(
        &cw,
        "apiVersion: e2e.sidecarwatch.io/v1alpha1\nkind: ClusterWidget\nmetadata:\n  name: global\nspec: {}\n",
    )
    .unwrap();
    env.kubectl(["apply", "--server-side", "-f", cw.to_str().unwrap()]).await.unwrap();
    let (header, rows) = header_and_rows(&env.kubectl(["get", "cwdg"]).await.unwrap());
    assert_eq!(header, ["NAME", "MATCHED", "READY", "AGE"]);
    assert_eq!(rows[0].len(), 2, "{rows:?}");
    assert_eq!(rows[0][0], "global");

    // -o json
    let v: Value = serde_json::from_str(&env.kubectl(["get", "wdg", "w1", "-o", "json"]).await.unwrap()).unwrap();
    assert_eq!(v["spec"]["selector"]["app"], "demo");
    assert_eq!(v["status"]["matchedPods"], 3);
    let list: Value =
        serde_json::from_str(&env.kubectl(["get", "widgets", "-A", "-o", "json"]).await.unwrap()).unwrap();
    assert_eq!(list["items"].as_array().unwrap().len(), 1);

    // describe shows the object and its events (written through events.k8s.io/v1)
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), "default");
    let pod: Pod = serde_json::from_value(test_pod("web", &[("app", "demo")], &["app"], &["proxy"])).unwrap();
    let pod = pods.create(&PostParams::default(), &pod).await.unwrap();
    sidecar_watch_e2e::kubelet::ensure_node(&env.client).await.unwrap();
    sidecar_watch_e2e::kubelet::bind(&env.client, "default", "web").await.unwrap();
    let ev_ar = ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("events.k8s.io", "v1", "Event"), "events");
    let events: Api<DynamicObject> = Api::namespaced_with(env.client.clone(), "default", &ev_ar);
    let ev: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "events.k8s.io/v1", "kind": "Event",
        "metadata": {"name": "web.1"},
        "eventTime": "2024-01-01T00:00:00.000000Z",
        "reportingController": "sidecar-watch", "reportingInstance": "sidecar-watch-0",
        "action": "Observe", "reason": "SidecarCrashLooping", "type": "Warning",
        "note": "sidecar proxy is crash looping",
        "regarding": {"apiVersion": "v1", "kind": "Pod", "name": "web", "namespace": "default", "uid": pod.metadata.uid}
    }))
    .unwrap();
    events.create(&PostParams::default(), &ev).await.unwrap();
    let d = env.kubectl(["describe", "pod", "web"]).await.unwrap();
    assert!(d.contains("SidecarCrashLooping") && d.contains("sidecar proxy is crash looping"), "{d}");
    let d = env.kubectl(["describe", "wdg", "w1"]).await.unwrap();
    assert!(d.contains("Matched Pods:  3"), "{d}");

    // pods table with a native sidecar
    let driver = PodDriver::new(env.client.clone(), "default", "web");
    driver.run_all().await.unwrap();
    let (header, rows) = header_and_rows(&env.kubectl(["get", "pods"]).await.unwrap());
    assert_eq!(header, ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]);
    assert_eq!(&rows[0][..4], ["web", "2/2", "Running", "0"]);

    // delete waits for the graceful Pod termination
    let kubectl_delete = {
        let mut cmd = env.kubectl_command();
        cmd.args(["delete", "pod", "web", "--timeout=20s"]);
        tokio::spawn(async move { cmd.output().await })
    };
    wait_until(Duration::from_secs(10), "pod web terminating", || async {
        let p = pods.get("web").await.map_err(|e| e.to_string())?;
        p.metadata.deletion_timestamp.ok_or("no deletionTimestamp".to_string())
    })
    .await
    .unwrap();
    let (_, rows) = header_and_rows(&env.kubectl(["get", "pods"]).await.unwrap());
    assert_eq!(rows[0][2], "Terminating");
    driver.set_state("app", State::terminated("Completed", 0)).await.unwrap();
    driver.set_state("proxy", State::terminated("Completed", 0)).await.unwrap();
    // Its kubelet deletes it once its containers are done.
    pods.delete("web", &kube::api::DeleteParams::default().grace_period(0)).await.unwrap();
    let out = kubectl_delete.await.unwrap().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("pod \"web\" deleted"));

    let out = env.kubectl(["delete", "wdg", "w1"]).await.unwrap();
    assert!(out.contains("deleted"), "{out}");
    assert_eq!(env.kubectl(["get", "wdg"]).await.unwrap().trim(), "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_get_watch() {
    let env = sim_env().await;
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), "default");
    let pod: Pod = serde_json::from_value(test_pod("first", &[], &["app"], &[])).unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();

    let mut child = env
        .kubectl_command()
        .args(["get", "pods", "-w", "--request-timeout=30s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let sink = lines.clone();
    let stdout = child.stdout.take().unwrap();
    tokio::spawn(async move {
        let mut r = BufReader::new(stdout).lines();
        while let Ok(Some(l)) = r.next_line().await {
            sink.lock().unwrap().push(l);
        }
    });
    let seen = |needle: &'static str| {
        let lines = lines.clone();
        async move {
            let l = lines.lock().unwrap().clone();
            if l.iter().any(|x| x.contains(needle)) {
                Ok(())
            } else {
                Err(l)
            }
        }
    };
    wait_until(Duration::from_secs(15), "initial row", || seen("first")).await.unwrap();
    let pod: Pod = serde_json::from_value(test_pod("second", &[], &["app"], &[])).unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    wait_until(Duration::from_secs(15), "watched ADDED row", || seen("second")).await.unwrap();
    PodDriver::new(env.client.clone(), "default", "second").run_all().await.unwrap();
    wait_until(Duration::from_secs(15), "watched MODIFIED row", || seen("Running")).await.unwrap();
    let header = lines.lock().unwrap()[0].clone();
    assert!(header.starts_with("NAME") && header.contains("READY"), "{header}");
    child.kill().await.unwrap();
}

/// Cells of a kubectl table line: columns are separated by at least two spaces (a header like
/// `LAST EVALUATED` has one inside).
fn cells(line: &str) -> Vec<String> {
    line.split("  ").map(str::trim).filter(|c| !c.is_empty()).map(str::to_string).collect()
}

/// The project's own CRDs (`crds/`): `kubectl get scp` shows Reason; `-o wide` adds the
/// priority-1 columns Pending and Last Evaluated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_policy_columns() {
    let env = sim_env().await;
    let crds = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../crds");
    env.install_crds(&crds).await.unwrap();
    let policy = |kind: &str, name: &str| {
        let path = env.dir().join(format!("{name}.yaml"));
        let namespace = if kind == "SidecarPolicy" { "  namespace: default\n" } else { "" };
        std::fs::write(
            &path,
            format!("apiVersion: sidecarwatch.io/v1alpha1\nkind: {kind}\nmetadata:\n  name: {name}\n{namespace}spec: {{}}\n"),
        )
        .unwrap();
        path
    };
    for (kind, name) in [("SidecarPolicy", "mesh"), ("SidecarPolicy", "broken"), ("ClusterSidecarPolicy", "platform")] {
        env.kubectl(["apply", "--server-side", "-f", policy(kind, name).to_str().unwrap()]).await.unwrap();
    }
    let evaluated = (jiff::Timestamp::now() - jiff::SignedDuration::from_secs(300)).to_string();
    let status = |kind: &str, name: &str, status: Value| {
        let plural = if kind == "SidecarPolicy" { "sidecarpolicies" } else { "clustersidecarpolicies" };
        let ar = ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("sidecarwatch.io", "v1alpha1", kind), plural);
        let api: Api<DynamicObject> = if kind == "SidecarPolicy" {
            Api::namespaced_with(env.client.clone(), "default", &ar)
        } else {
            Api::all_with(env.client.clone(), &ar)
        };
        let body = json!({"apiVersion": "sidecarwatch.io/v1alpha1", "kind": kind, "metadata": {"name": name}, "status": status});
        let name = name.to_string();
        async move { api.patch_status(&name, &PatchParams::apply("sidecar-watch"), &Patch::Apply(body)).await.unwrap() }
    };
    let ready = |s: &str, reason: &str| json!([{"type": "Ready", "status": s, "reason": reason, "message": "", "lastTransitionTime": "2024-01-01T00:00:00Z"}]);
    status(
        "SidecarPolicy",
        "mesh",
        json!({"matchedPods": 3, "alertingPods": 1, "pendingAlerts": 2,
        "lastEvaluationTime": evaluated, "conditions": ready("True", "Evaluating")}),
    )
    .await;
    status("SidecarPolicy", "broken", json!({"conditions": ready("False", "InvalidSpec")})).await;
    status(
        "ClusterSidecarPolicy",
        "platform",
        json!({"matchedPods": 40, "alertingPods": 0, "pendingAlerts": 0,
        "lastEvaluationTime": evaluated, "conditions": ready("True", "Evaluating")}),
    )
    .await;

    let out = env.kubectl(["get", "scp"]).await.unwrap();
    let lines: Vec<Vec<String>> = out.lines().map(cells).collect();
    assert_eq!(lines[0], ["NAME", "MATCHED", "ALERTING", "READY", "REASON", "AGE"], "{out}");
    // sorted by name: broken has no counts yet (empty cells), only its condition
    assert_eq!(lines[1][..3], ["broken", "False", "InvalidSpec"], "{out}");
    assert_eq!(lines[1].len(), 4, "no counts, no pending, only the age: {out}");
    assert_eq!(lines[2][..5], ["mesh", "3", "1", "True", "Evaluating"], "{out}");

    let out = env.kubectl(["get", "scp", "-o", "wide"]).await.unwrap();
    let lines: Vec<Vec<String>> = out.lines().map(cells).collect();
    assert_eq!(
        lines[0],
        ["NAME", "MATCHED", "ALERTING", "READY", "REASON", "PENDING", "LAST EVALUATED", "AGE"],
        "{out}"
    );
    assert_eq!(lines[2][..6], ["mesh", "3", "1", "True", "Evaluating", "2"], "{out}");
    // Five minutes ago, give or take the seconds a loaded machine takes to get here.
    assert!(lines[2][6].starts_with("5m"), "{out}");

    let out = env.kubectl(["get", "cscp", "-o", "wide"]).await.unwrap();
    let lines: Vec<Vec<String>> = out.lines().map(cells).collect();
    assert_eq!(
        lines[0],
        ["NAME", "MATCHED", "ALERTING", "READY", "REASON", "PENDING", "LAST EVALUATED", "AGE"],
        "{out}"
    );
    assert_eq!(lines[1][..6], ["platform", "40", "0", "True", "Evaluating", "0"], "{out}");
    assert!(lines[1][6].starts_with("5m"), "{out}");
}
