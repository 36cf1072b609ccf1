//! The seed scenarios played by real containers under the real kubelet: its probes, its
//! back-off, the kernel's OOM killer, the Job controller. Each expects the exact set of
//! Warning Events the operator publishes for them, and nothing more.

use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use kube::api::Api;
use serde_json::{json, Value};
use sidecar_watch_e2e::harness::wait_until;

use crate::support::{container, native, pod, probe, Scenario};

const MINUTE: Duration = Duration::from_secs(60);
const SETTLE: Duration = Duration::from_secs(10);

/// A sidecar whose readiness probe always fails, beside a ready main container: not ready,
/// main ready but sidecar not, and the main container started while it was not ready.
#[tokio::test(flavor = "multi_thread")]
async fn never_ready_sidecar() {
    let s = Scenario::start("node-never-ready").await;
    s.apply(pod(
        "web",
        vec![native("proxy", "sleep 3600", json!({"readinessProbe": probe("false")}))],
        vec![container("app", "sleep 3600", json!({}))],
    ))
    .await;
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
}

/// A sidecar that exits 1 after 5 s: the kubelet restarts it with its real back-off (10 s,
/// 20 s, 40 s…), so it waits in CrashLoopBackOff longer each time.
#[tokio::test(flavor = "multi_thread")]
async fn crash_looping_sidecar() {
    let s = Scenario::start("node-crash-loop").await;
    s.apply(pod(
        "web",
        vec![native("proxy", "sleep 5; exit 1", json!({}))],
        vec![container("app", "sleep 3600", json!({}))],
    ))
    .await;
    let proxy = "spec.initContainers{proxy}";
    s.expect_warnings(
        4 * MINUTE,
        SETTLE,
        &[
            ("SidecarCrashLooping", "web", proxy),
            ("SidecarRestartingFrequently", "web", proxy),
            ("SidecarContainerNotReady", "web", proxy),
            ("MainContainerReadyButSidecarNot", "web", proxy),
        ],
    )
    .await;
}

/// A sidecar that fills its 24 MiB memory limit once (the kernel kills it: OOMKilled, exit
/// 137), then runs: one OOM kill is reported, with its reason and exit code, and nothing else.
#[tokio::test(flavor = "multi_thread")]
async fn oom_killed_sidecar() {
    let s = Scenario::start("node-oom").await;
    // The marker survives the restart in an emptyDir; `tail /dev/zero` buffers one endless line.
    let script = "if [ ! -e /state/oomed ]; then touch /state/oomed; exec tail /dev/zero; fi; exec sleep 3600";
    let mut p = pod(
        "web",
        vec![native(
            "proxy",
            script,
            json!({"resources": {"limits": {"memory": "24Mi"}}, "volumeMounts": [{"name": "state", "mountPath": "/state"}]}),
        )],
        vec![container("app", "sleep 3600", json!({}))],
    );
    p["spec"]["volumes"] = json!([{"name": "state", "emptyDir": {}}]);
    s.apply(p).await;
    s.expect_warnings(2 * MINUTE, SETTLE, &[("SidecarOOMKilled", "web", "spec.initContainers{proxy}")]).await;
    let events = s.events().await;
    let oom = events.iter().find(|e| e.reason.as_deref() == Some("SidecarOOMKilled")).expect("the OOM Event");
    let note = oom.note.clone().unwrap_or_default();
    assert!(note.contains("OOMKilled") && note.contains("137"), "the note names the reason and exit code: {note}");
}

fn job(name: &str, init: Vec<Value>, containers: Vec<Value>) -> Value {
    let template = pod(name, init, containers);
    json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name},
        "spec": {"backoffLimit": 0, "template": {"spec": {
            "restartPolicy": "Never",
            "initContainers": template["spec"]["initContainers"],
            "containers": template["spec"]["containers"],
            "terminationGracePeriodSeconds": 2,
        }}},
    })
}

async fn job_pod(s: &Scenario, job: &str) -> String {
    wait_until(MINUTE, &format!("a Pod of Job {job}"), || async {
        let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(s.env.client.clone(), &s.ns);
        let list = pods.list(&kube::api::ListParams::default().labels(&format!("job-name={job}"))).await;
        list.ok()
            .and_then(|l| l.items.first().and_then(|p| p.metadata.name.clone()))
            .ok_or_else(|| "none yet".to_string())
    })
    .await
    .unwrap()
}

/// A Job whose log shipper is a regular container: the main container exits 0 after 2 s, the
/// shipper keeps running, and the Job never completes.
#[tokio::test(flavor = "multi_thread")]
async fn job_held_open_by_a_legacy_sidecar() {
    let s = Scenario::start("node-job-blocked").await;
    // The shipper first: the kubelet starts regular containers in order, so it is not the
    // one that starts later.
    s.apply(job(
        "report",
        vec![],
        vec![container("log-sidecar", "sleep 3600", json!({})), container("app", "sleep 2", json!({}))],
    ))
    .await;
    let pod = job_pod(&s, "report").await;
    s.expect_warnings(2 * MINUTE, SETTLE, &[("JobBlockedBySidecar", &pod, "spec.containers{log-sidecar}")]).await;
}

/// The fix: the same Job with a native sidecar completes; the kubelet stops the sidecar (exit
/// 137 or 143) after the main container, and nothing is reported.
#[tokio::test(flavor = "multi_thread")]
async fn job_with_a_native_sidecar_completes_without_findings() {
    let s = Scenario::start("node-job-native").await;
    s.apply(job(
        "report",
        vec![native("log-sidecar", "sleep 3600", json!({}))],
        vec![container("app", "sleep 2", json!({}))],
    ))
    .await;
    let jobs: Api<Job> = Api::namespaced(s.env.client.clone(), &s.ns);
    wait_until(2 * MINUTE, "Job report succeeded", || async {
        let job = jobs.get("report").await.map_err(|e| e.to_string())?;
        match job.status.and_then(|st| st.succeeded) {
            Some(1) => Ok(()),
            other => Err(format!("succeeded {other:?}; pods: {}", s.describe_pods().await)),
        }
    })
    .await
    .unwrap();
    s.expect_warnings(Duration::from_secs(5), SETTLE, &[]).await;
}
