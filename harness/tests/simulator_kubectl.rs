//! kubectl against both servers, as the operator suite uses it on the simulator: server-side
//! apply of CRDs and objects, `get -o json`, and `delete` waiting for a graceful Pod
//! termination. (The simulator serves no `Table`s: `kubectl get`'s columns are
//! kube-apiserver's, checked for the project's CRDs by `kubectl_policy_columns`.)

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{json, Value};
use sidecar_watch_harness::both_servers::{fixtures, namespace, Server};
use sidecar_watch_harness::env::wait_until;
use sidecar_watch_harness::kubelet::{test_pod, PodDriver, State};
use sidecar_watch_harness::on_both_servers;

on_both_servers!(kubectl_apply_get_delete);

async fn kubectl_apply_get_delete(server: Server) {
    let env = server.env().await;
    let ns = namespace(&env, "kubectl").await;
    let crd_file = fixtures().join("widgets-crd.yaml");
    let out =
        env.kubectl(["apply", "--server-side", "--force-conflicts", "-f", crd_file.to_str().unwrap()]).await.unwrap();
    assert!(
        out.contains("customresourcedefinition.apiextensions.k8s.io/widgets.e2e.sidecarwatch.io serverside-applied"),
        "{out}"
    );
    let widget = fixtures().join("widget.yaml");
    // kube-apiserver serves the kind once the CRD is Established, a moment after the apply.
    let out = wait_until(Duration::from_secs(30), "the widget applied", || async {
        env.kubectl(["apply", "--server-side", "-n", &ns, "-f", widget.to_str().unwrap()])
            .await
            .map_err(|e| e.to_string())
    })
    .await
    .unwrap();
    assert!(out.contains("widget.e2e.sidecarwatch.io/w1 serverside-applied"), "{out}");
    // re-applying is idempotent
    env.kubectl(["apply", "--server-side", "-n", &ns, "-f", widget.to_str().unwrap()]).await.unwrap();

    // status written by a "controller"
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("e2e.sidecarwatch.io", "v1alpha1", "Widget"),
        "widgets",
    );
    let api: Api<DynamicObject> = Api::namespaced_with(env.client.clone(), &ns, &ar);
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

    // -o json, by short name
    let v: Value =
        serde_json::from_str(&env.kubectl(["get", "wdg", "w1", "-n", &ns, "-o", "json"]).await.unwrap()).unwrap();
    assert_eq!(v["spec"]["selector"]["app"], "demo");
    assert_eq!(v["status"]["matchedPods"], 3);
    let list: Value =
        serde_json::from_str(&env.kubectl(["get", "widgets", "-n", &ns, "-o", "json"]).await.unwrap()).unwrap();
    assert_eq!(list["items"].as_array().unwrap().len(), 1);

    // delete waits for the graceful Pod termination
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), &ns);
    let pod: Pod = serde_json::from_value(test_pod("web", &[("app", "demo")], &["app"], &["proxy"])).unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    sidecar_watch_harness::kubelet::ensure_node(&env.client).await.unwrap();
    sidecar_watch_harness::kubelet::bind(&env.client, &ns, "web").await.unwrap();
    let driver = PodDriver::new(env.client.clone(), &ns, "web");
    driver.run_all().await.unwrap();
    let kubectl_delete = {
        let mut cmd = env.kubectl_command();
        cmd.args(["delete", "pod", "web", "-n", &ns, "--timeout=20s"]);
        tokio::spawn(async move { cmd.output().await })
    };
    wait_until(Duration::from_secs(10), "pod web terminating", || async {
        let p = pods.get("web").await.map_err(|e| e.to_string())?;
        p.metadata.deletion_timestamp.ok_or("no deletionTimestamp".to_string())
    })
    .await
    .unwrap();
    driver.set_state("app", State::terminated("Completed", 0)).await.unwrap();
    driver.set_state("proxy", State::terminated("Completed", 0)).await.unwrap();
    // Its kubelet deletes it once its containers are done.
    pods.delete("web", &kube::api::DeleteParams::default().grace_period(0)).await.unwrap();
    let out = kubectl_delete.await.unwrap().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("pod \"web\" deleted"));

    let out = env.kubectl(["delete", "wdg", "w1", "-n", &ns]).await.unwrap();
    assert!(out.contains("deleted"), "{out}");
    assert_eq!(env.kubectl(["get", "wdg", "-n", &ns, "-o", "name"]).await.unwrap().trim(), "");
}

/// Cells of a kubectl table line: columns are separated by at least two spaces (a header like
/// `LAST EVALUATED` has one inside).
fn cells(line: &str) -> Vec<String> {
    line.split("  ").map(str::trim).filter(|c| !c.is_empty()).map(str::to_string).collect()
}

/// The project's own CRDs (`crds/`) printed by kube-apiserver's Table conversion of their
/// printer columns: `kubectl get scp` shows Reason; `-o wide` adds the priority-1 columns
/// Pending and Last Evaluated. (kube-apiserver only: the simulator serves no Tables.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_policy_columns() {
    let env = Server::KubeApiserver.env().await;
    let ns = namespace(&env, "columns").await;
    let crds = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../crds");
    env.install_crds(&crds).await.unwrap();
    let platform = format!("{ns}-platform");
    let policy = |kind: &str, name: &str| {
        let namespace = if kind == "SidecarPolicy" { format!("  namespace: {ns}\n") } else { String::new() };
        format!(
            "apiVersion: sidecarwatch.io/v1alpha1\nkind: {kind}\nmetadata:\n  name: {name}\n{namespace}spec: {{}}\n"
        )
    };
    for (kind, name) in
        [("SidecarPolicy", "mesh"), ("SidecarPolicy", "broken"), ("ClusterSidecarPolicy", platform.as_str())]
    {
        env.kubectl_apply(&policy(kind, name)).await.unwrap();
    }
    let evaluated = (jiff::Timestamp::now() - jiff::SignedDuration::from_secs(300)).to_string();
    let status = |kind: &str, name: &str, status: Value| {
        let plural = if kind == "SidecarPolicy" { "sidecarpolicies" } else { "clustersidecarpolicies" };
        let ar = ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("sidecarwatch.io", "v1alpha1", kind), plural);
        let api: Api<DynamicObject> = if kind == "SidecarPolicy" {
            Api::namespaced_with(env.client.clone(), &ns, &ar)
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
        &platform,
        json!({"matchedPods": 40, "alertingPods": 0, "pendingAlerts": 0,
        "lastEvaluationTime": evaluated, "conditions": ready("True", "Evaluating")}),
    )
    .await;

    let out = env.kubectl(["get", "scp", "-n", &ns]).await.unwrap();
    let lines: Vec<Vec<String>> = out.lines().map(cells).collect();
    assert_eq!(lines[0], ["NAME", "MATCHED", "ALERTING", "READY", "REASON", "AGE"], "{out}");
    // sorted by name: broken has no counts of its own, the schema's defaults (0)
    assert_eq!(lines[1][..5], ["broken", "0", "0", "False", "InvalidSpec"], "{out}");
    assert_eq!(lines[2][..5], ["mesh", "3", "1", "True", "Evaluating"], "{out}");

    let out = env.kubectl(["get", "scp", "-n", &ns, "-o", "wide"]).await.unwrap();
    let lines: Vec<Vec<String>> = out.lines().map(cells).collect();
    assert_eq!(
        lines[0],
        ["NAME", "MATCHED", "ALERTING", "READY", "REASON", "PENDING", "LAST EVALUATED", "AGE"],
        "{out}"
    );
    assert_eq!(lines[2][..6], ["mesh", "3", "1", "True", "Evaluating", "2"], "{out}");
    // Five minutes ago, give or take the seconds a loaded machine takes to get here.
    assert!(lines[2][6].starts_with("5m"), "{out}");

    let out = env.kubectl(["get", "cscp", &platform, "-o", "wide"]).await.unwrap();
    let lines: Vec<Vec<String>> = out.lines().map(cells).collect();
    assert_eq!(
        lines[0],
        ["NAME", "MATCHED", "ALERTING", "READY", "REASON", "PENDING", "LAST EVALUATED", "AGE"],
        "{out}"
    );
    assert_eq!(lines[1][..6], [platform.as_str(), "40", "0", "True", "Evaluating", "0"], "{out}");
    assert!(lines[1][6].starts_with("5m"), "{out}");
}
