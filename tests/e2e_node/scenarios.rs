//! The seed scenarios played by real containers under the real kubelet: its probes, its
//! back-off, the kernel's OOM killer, the Job controller. Each expects the exact set of
//! Warning Events the operator publishes for them, and nothing more.

use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use kube::api::Api;
use serde_json::json;
use sidecar_watch_harness::env::wait_until;

use crate::support::{container, job, job_pod, native, pod, probe, Scenario, MINUTE};

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
    // Not ready since it started: the alert comes the policy's 30 s `for` after the kubelet's
    // startedAt (a second's resolution), plus the time to see it.
    let started = s.container_status("web", "proxy").await.state.and_then(|st| st.running).and_then(|r| r.started_at);
    let seconds = s.time_to_alert("SidecarContainerNotReady", "web", &started.expect("startedAt").0).await;
    assert!((29.0..=35.0).contains(&seconds), "30 s for: {seconds:.2} s");
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
    let killed =
        s.container_status("web", "proxy").await.last_state.and_then(|st| st.terminated).and_then(|t| t.finished_at);
    let seconds = s.time_to_alert("SidecarOOMKilled", "web", &killed.expect("finishedAt").0).await;
    assert!((-1.0..=5.0).contains(&seconds), "no `for`: {seconds:.2} s");
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
    // The Pod's Warning, and one on its Job (the workload's first firing Pod).
    let expected = [
        ("JobBlockedBySidecar", pod.as_str(), "spec.containers{log-sidecar}"),
        ("JobBlockedBySidecar", "report", "spec.template.spec.containers{log-sidecar}"),
    ];
    s.expect_warnings(2 * MINUTE, SETTLE, &expected).await;
    let finished = s.container_status(&pod, "app").await.state.and_then(|st| st.terminated).and_then(|t| t.finished_at);
    let seconds = s.time_to_alert("JobBlockedBySidecar", &pod, &finished.expect("finishedAt").0).await;
    assert!((9.0..=15.0).contains(&seconds), "10 s for: {seconds:.2} s");
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

/// A sidecar whose liveness probe always fails: the kubelet kills it (exit 137) and starts it
/// again under the same back-off as a crash, so it is reported as restarting and crash
/// looping, and not ready while it waits.
#[tokio::test(flavor = "multi_thread")]
async fn liveness_failing_sidecar() {
    let s = Scenario::start("node-liveness").await;
    let mut liveness = probe("false");
    liveness["failureThreshold"] = json!(1);
    s.apply(pod(
        "web",
        vec![native("proxy", "exec sleep 3600", json!({"livenessProbe": liveness}))],
        vec![container("app", "exec sleep 3600", json!({}))],
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

/// A sidecar whose readiness flips every 5 s (its probe reads the clock): each unready spell
/// is shorter than the policy's 30 s `for`, so nothing fires; the startup probe keeps start
/// order out of it.
#[tokio::test(flavor = "multi_thread")]
async fn flapping_readiness_fires_nothing_shorter_than_its_for() {
    let s = Scenario::start("node-flapping").await;
    let flapping = probe("test $(( $(date +%s) / 5 % 2 )) = 0");
    s.apply(pod(
        "web",
        vec![native("proxy", "exec sleep 3600", json!({"startupProbe": probe("true"), "readinessProbe": flapping}))],
        vec![container("app", "exec sleep 3600", json!({}))],
    ))
    .await;
    s.expect_warnings(Duration::from_secs(5), Duration::from_secs(60), &[]).await;
}

/// What a container does on SIGTERM: stop at once, or finish 5 s of work first.
const STOPS_AT_ONCE: &str = "trap 'exit 0' TERM; while true; do sleep 1; done";
const DRAINS_FOR_5S: &str = "trap 'sleep 5; exit 0' TERM; while true; do sleep 1; done";

/// Deleting a Pod whose legacy sidecar stops at once on SIGTERM while the app drains for 5 s:
/// the kubelet signals every regular container together, so the sidecar is gone while the app
/// still works. The same Pod with a native sidecar: the kubelet stops the app first, then the
/// sidecar (KEP-753), and nothing is reported.
#[tokio::test(flavor = "multi_thread")]
async fn stop_order_on_deletion() {
    let s = Scenario::start("node-stop-order").await;
    let mut legacy = pod(
        "legacy",
        vec![],
        // The sidecar first: the kubelet starts regular containers in order.
        vec![container("log-sidecar", STOPS_AT_ONCE, json!({})), container("app", DRAINS_FOR_5S, json!({}))],
    );
    legacy["spec"]["terminationGracePeriodSeconds"] = json!(20);
    let mut native_pod = pod(
        "native",
        vec![native("log-sidecar", STOPS_AT_ONCE, json!({}))],
        vec![container("app", DRAINS_FOR_5S, json!({}))],
    );
    native_pod["spec"]["terminationGracePeriodSeconds"] = json!(20);
    s.apply(legacy).await;
    s.apply(native_pod).await;
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(s.env.client.clone(), &s.ns);
    wait_until(MINUTE, "both Pods running", || async {
        let list = pods.list(&kube::api::ListParams::default()).await.map_err(|e| e.to_string())?;
        let running = list.items.iter().filter(|p| {
            p.status.as_ref().and_then(|st| st.container_statuses.as_ref()).is_some_and(|cs| cs.iter().all(|c| c.ready))
        });
        if running.count() == 2 {
            Ok(())
        } else {
            Err(s.describe_pods().await)
        }
    })
    .await
    .unwrap();
    for name in ["legacy", "native"] {
        pods.delete(name, &Default::default()).await.expect("deleted");
    }
    s.expect_warnings(MINUTE, SETTLE, &[("SidecarStoppedBeforeMain", "legacy", "spec.containers{log-sidecar}")]).await;
}
