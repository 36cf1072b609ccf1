//! Kubelet states the rules once misread, replayed by real containers (after Kubernetes' own
//! `test/e2e_node/container_lifecycle_test.go`): a native sidecar between its runs, and one the
//! kubelet has not started yet.
//!
//! - A sidecar that handles SIGTERM and exits 0, killed again and again by its startup probe:
//!   the kubelet shows it `terminated (0/Completed)` for its whole back-off, never
//!   `CrashLoopBackOff`. It is not ready and crash looping through every back-off: neither
//!   alert resolves while it is down.
//! - A sidecar declared after a plain init container waits in `PodInitializing` until that
//!   container finishes: not started by design, so nothing is reported while a 45 s init step
//!   runs, nor while an init step crash loops.
//! - A sidecar whose memory limit is too low for the runtime to start it: `StartError`, never
//!   `OOMKilled`, and an OOM alert all the same.

use std::time::Duration;

use serde_json::json;
use sidecar_watch_harness::env::wait_until;

use crate::support::{container, native, pod, probe, Scenario, MINUTE};

/// Stops at once on SIGTERM with exit 0, as Envoy, Fluent Bit and the mesh proxies do.
const CLEAN_EXIT: &str = "trap 'exit 0' TERM; while true; do sleep 1; done";

#[tokio::test(flavor = "multi_thread")]
async fn a_sidecar_exiting_0_stays_not_ready_and_crash_looping_through_its_back_off() {
    let s = Scenario::start("node-exit-zero").await;
    let mut startup = probe("false");
    startup["failureThreshold"] = json!(1);
    s.apply(pod(
        "web",
        vec![native("proxy", CLEAN_EXIT, json!({"startupProbe": startup}))],
        vec![container("app", "exec sleep 3600", json!({}))],
    ))
    .await;
    let proxy = "spec.initContainers{proxy}";
    s.expect_warnings(
        3 * MINUTE,
        Duration::from_secs(5),
        &[
            ("SidecarContainerNotReady", "web", proxy),
            ("SidecarCrashLooping", "web", proxy),
            ("SidecarRestartingFrequently", "web", proxy),
        ],
    )
    .await;
    // What the kubelet showed: the exits are 0/Completed and no back-off is ever a wait. The
    // latest exit is the current state during a back-off, else `lastState` (kubelet 1.34.12
    // drops `lastState` in a second write of each back-off; 1.37.2 keeps it).
    let status = s.container_status("web", "proxy").await;
    let current = status.state.clone().and_then(|st| st.terminated);
    let last = current.or(status.last_state.clone().and_then(|st| st.terminated)).expect("a previous run");
    assert_eq!((last.exit_code, last.reason.as_deref()), (0, Some("Completed")));
    // Two more back-offs (40 s and 80 s by now): neither alert resolves while the sidecar is
    // down between runs.
    let restarts = status.restart_count;
    wait_until(3 * MINUTE, "two more restarts", || async {
        let now = s.container_status("web", "proxy").await;
        let waiting = now.state.as_ref().and_then(|st| st.waiting.as_ref()).and_then(|w| w.reason.clone());
        assert_ne!(waiting.as_deref(), Some("CrashLoopBackOff"), "kubelet wrote CrashLoopBackOff for an exit 0");
        if now.restart_count >= restarts + 2 {
            Ok(())
        } else {
            Err(format!("{} restarts", now.restart_count))
        }
    })
    .await
    .unwrap();
    let resolved: Vec<String> =
        s.events().await.into_iter().filter_map(|e| e.reason).filter(|r| r.ends_with("Resolved")).collect();
    assert_eq!(resolved, Vec::<String>::new(), "nothing resolves during the crash loop");
    // Never ready since the Pod started: the 30 s `for` runs from there, not from a run.
    let started = s.pod_start_time("web").await;
    let seconds = s.time_to_alert("SidecarContainerNotReady", "web", &started).await;
    assert!((29.0..=36.0).contains(&seconds), "30 s for from the Pod's start: {seconds:.2} s");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sidecar_behind_an_init_step_is_not_blamed_for_waiting() {
    let s = Scenario::start("node-init-step").await;
    // Healthy and gated: the kubelet starts `app` once the sidecar has started.
    let ready = json!({"startupProbe": probe("true"), "readinessProbe": probe("true")});
    let plain = |name: &str, script: &str| container(name, script, json!({}));
    s.apply(pod(
        "migrate",
        vec![plain("migrate", "sleep 45"), native("sidecar-2", "exec sleep 3600", ready.clone())],
        vec![container("app", "exec sleep 3600", json!({}))],
    ))
    .await;
    s.apply(pod(
        "broken-migrate",
        vec![plain("migrate", "sleep 2; exit 1"), native("sidecar-2", "exec sleep 3600", ready)],
        vec![container("app", "exec sleep 3600", json!({}))],
    ))
    .await;
    // The 45 s step is longer than the 30 s `for`; the broken one crash loops all along.
    wait_until(2 * MINUTE, "migrate's app running", || async {
        let app = s.container_status("migrate", "app").await;
        app.state.and_then(|st| st.running).map(|_| ()).ok_or_else(|| "not yet".to_string())
    })
    .await
    .unwrap();
    s.expect_warnings(Duration::from_secs(5), Duration::from_secs(15), &[]).await;
    let waiting = s.container_status("broken-migrate", "sidecar-2").await;
    let reason = waiting.state.and_then(|st| st.waiting).and_then(|w| w.reason);
    assert_eq!(reason.as_deref(), Some("PodInitializing"), "the sidecar behind the broken step never started");
}

/// A native sidecar whose memory limit is below what the runtime needs to start it. On this
/// node (cgroup v1, runc 1.1.5) runc cannot set a 2 MiB limit under its own init's 2.1 MB and
/// the kubelet reports `StartError` (exit 128, "unable to set memory limit to 2097152 (current
/// usage: …)"); on cgroup v2 runc's init is OOM-killed instead ("container init was OOM-killed
/// (memory limit too low?)", GoogleCloudPlatform/gcs-fuse-csi-driver#314, a unit test of the
/// engine). Either way no `OOMKilled` is ever shown, and either way it is the memory limit.
#[tokio::test(flavor = "multi_thread")]
async fn a_sidecar_whose_memory_limit_stops_its_start_is_reported_as_such() {
    let s = Scenario::start("node-start-oom").await;
    let limits = json!({"resources": {"limits": {"memory": "2Mi"}, "requests": {"memory": "2Mi"}}});
    let sidecar = native("proxy", "exec sleep 3600", limits);
    s.apply(pod("web", vec![sidecar], vec![container("app", "sleep 3600", json!({}))])).await;
    let proxy = "spec.initContainers{proxy}";
    let expected = [
        ("SidecarOOMKilled", "web", proxy),
        ("SidecarCrashLooping", "web", proxy),
        ("SidecarContainerNotReady", "web", proxy),
        ("SidecarRestartingFrequently", "web", proxy),
    ];
    s.expect_warnings(3 * MINUTE, Duration::from_secs(10), &expected).await;
    let status = s.container_status("web", "proxy").await;
    let ended = status.last_state.and_then(|st| st.terminated).expect("the last start failed");
    assert_eq!((ended.reason.as_deref(), ended.exit_code), (Some("StartError"), 128));
    let said = ended.message.unwrap_or_default();
    assert!(said.contains("unable to set memory limit to 2097152"), "{said}");
    let events = s.events().await;
    let oom = events.iter().find(|e| e.reason.as_deref() == Some("SidecarOOMKilled")).expect("the OOM Event");
    let note = oom.note.clone().unwrap_or_default();
    let expected = format!(
        "Sidecar proxy in Pod {}/web could not start: its memory limit is below what the runtime uses to start it (reason StartError: failed to create containerd task",
        s.ns
    );
    assert!(note.starts_with(&expected), "{note}");
}
