//! Kubernetes features the operator reads from the kubelet, on the real one: a KEP-5307
//! container restart rule, and `PodReadyToStartContainers` (KEP-3085) while a Pod's sandbox
//! cannot be created.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use serde_json::json;
use sidecar_watch_harness::env::wait_until;

use crate::support::{container, job, job_pod, native, pod, probe, Scenario, MINUTE};

const SETTLE: Duration = Duration::from_secs(10);

/// KEP-5307 on the real kubelet: in a Job (`restartPolicy: Never`) the main container's own
/// rule restarts it on exit code 42. Its first run exits 42 (the kubelet starts it again: it
/// is not finished, and a container-level `restartPolicy` does not make it a sidecar), its
/// second exits 0 after 3 s; only then is the Job held open by the legacy log shipper, and the
/// `for` counts from that second exit.
#[tokio::test(flavor = "multi_thread")]
async fn a_restart_rule_keeps_the_main_container_unfinished() {
    let s = Scenario::start("node-restart-rule").await;
    let script = "if [ ! -e /state/once ]; then touch /state/once; exit 42; fi; sleep 3; exit 0";
    let app = container(
        "app",
        script,
        json!({
            "restartPolicy": "Never",
            "restartPolicyRules": [{"action": "Restart", "exitCodes": {"operator": "In", "values": [42]}}],
            "volumeMounts": [{"name": "state", "mountPath": "/state"}],
        }),
    );
    let mut j = job("report", vec![], vec![container("log-sidecar", "exec sleep 3600", json!({})), app]);
    j["spec"]["template"]["spec"]["volumes"] = json!([{"name": "state", "emptyDir": {}}]);
    s.apply(j).await;
    let pod = job_pod(&s, "report").await;
    // The Pod's Warning, and one on its Job (the workload's first firing Pod).
    let expected = [
        ("JobBlockedBySidecar", pod.as_str(), "spec.containers{log-sidecar}"),
        ("JobBlockedBySidecar", "report", "spec.template.spec.containers{log-sidecar}"),
    ];
    s.expect_warnings(2 * MINUTE, SETTLE, &expected).await;
    let app = s.container_status(&pod, "app").await;
    assert_eq!(app.restart_count, 1, "the kubelet restarted it once, for exit code 42");
    let finished = app.state.and_then(|st| st.terminated).and_then(|t| t.finished_at);
    let seconds = s.time_to_alert("JobBlockedBySidecar", &pod, &finished.expect("finishedAt").0).await;
    assert!((9.0..=15.0).contains(&seconds), "10 s for from the final exit: {seconds:.2} s");
}

/// The RuntimeClass whose handler containerd does not have: every Pod of it stays without a
/// sandbox (`FailedCreatePodSandBox`), as on a node whose CNI or runtime is broken.
const MISSING_HANDLER: &str = "sidecar-watch-test-missing-handler";

/// KEP-3085 on the real kubelet: a Pod whose sandbox cannot be created has
/// `PodReadyToStartContainers=False` and its sidecar never runs; that is the node's failure,
/// not the sidecar's, so nothing is reported for it, while a Pod beside it whose sidecar's
/// readiness probe fails is reported as usual (both wait out the same 30 s `for`).
#[tokio::test(flavor = "multi_thread")]
async fn a_pod_without_a_sandbox_is_not_a_sidecar_failure() {
    let s = Scenario::start("node-no-sandbox").await;
    let class = json!({"apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass",
        "metadata": {"name": MISSING_HANDLER}, "handler": "missing"});
    s.env.kubectl_apply(&class.to_string()).await.expect("RuntimeClass");
    let sidecar = || native("proxy", "sleep 3600", json!({"readinessProbe": probe("false")}));
    let mut stuck = pod("stuck", vec![sidecar()], vec![container("app", "sleep 3600", json!({}))]);
    stuck["spec"]["runtimeClassName"] = json!(MISSING_HANDLER);
    s.apply(stuck).await;
    s.apply(pod("web", vec![sidecar()], vec![container("app", "sleep 3600", json!({}))])).await;

    let pods: Api<Pod> = Api::namespaced(s.env.client.clone(), &s.ns);
    wait_until(MINUTE, "PodReadyToStartContainers=False on the stuck Pod", || async {
        let p = pods.get("stuck").await.map_err(|e| e.to_string())?;
        let conditions = p.status.and_then(|st| st.conditions).unwrap_or_default();
        let sandbox = conditions.iter().find(|c| c.type_ == "PodReadyToStartContainers");
        match sandbox {
            Some(c) if c.status == "False" => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await
    .unwrap();
    let proxy = "spec.initContainers{proxy}";
    s.expect_warnings(
        2 * MINUTE,
        SETTLE,
        &[
            ("SidecarContainerNotReady", "web", proxy),
            ("MainContainerReadyButSidecarNot", "web", proxy),
            ("MainStartedBeforeSidecarReady", "web", proxy),
        ],
    )
    .await;
    let stuck = s.container_status("stuck", "proxy").await;
    assert!(stuck.state.and_then(|st| st.running).is_none(), "the stuck Pod's sidecar never ran");
}
