//! The health rules on Pods as kubelet 1.34 and 1.37 write them for a native sidecar between
//! its runs and for one not started yet (replayed on the real node by
//! `tests/e2e_node/kubelet_states.rs`). Each Pod is JSON as the API serves it, evaluated with
//! no history (as `audit` and a restarted operator do) at 10:30:00.

use jiff::Timestamp;
use serde_json::{json, Value};

use crate::alert::{AlertName, AlertState};
use crate::history::PodHistory;
use crate::observed::ObservedPod;
use crate::pod::PodView;
use crate::policy::CompiledPolicy;
use crate::rules::{evaluate, Around};
use crate::PolicyRef;
use sidecar_watch_api::{PolicySpec, SlimPod};

fn t(hms: &str) -> String {
    format!("2025-06-03T{hms}Z")
}

fn now() -> Timestamp {
    t("10:30:00").parse().expect("a time")
}

fn policy() -> CompiledPolicy {
    let spec: PolicySpec = serde_norway::from_str("rules: {misconfiguration: {enabled: false}}").expect("a spec");
    CompiledPolicy::compile(PolicyRef::namespaced("shop", "test"), &spec).expect("compiles")
}

/// (alert, container, state, since) of every alert of `pod` at 10:30:00.
fn alerts(pod: &Value) -> Vec<(AlertName, String, AlertState, String)> {
    let view = PodView::from_pod(&serde_json::from_value::<SlimPod>(pod.clone()).expect("a Pod"));
    let evaluation = evaluate(&view, &policy(), &PodHistory::default(), now(), Around::default());
    evaluation
        .alerts
        .iter()
        .map(|a| (a.name, a.container.clone(), a.state, a.since.map(|s| s.to_string()).unwrap_or_default()))
        .collect()
}

fn message(pod: &Value, name: AlertName) -> String {
    let view = PodView::from_pod(&serde_json::from_value::<SlimPod>(pod.clone()).expect("a Pod"));
    let evaluation = evaluate(&view, &policy(), &PodHistory::default(), now(), Around::default());
    evaluation.alerts.into_iter().find(|a| a.name == name).map(|a| a.message).unwrap_or_default()
}

fn terminated(reason: &str, code: i32, from: &str, to: &str) -> Value {
    json!({"terminated": {"reason": reason, "exitCode": code, "startedAt": t(from), "finishedAt": t(to)}})
}

/// `shop/web-1`, started at 10:00:00, with a native sidecar `proxy` gated by a startup probe
/// and a main container `app` the kubelet has not started yet (it waits for the proxy).
fn crash_looping_proxy(phase: &str, proxy_state: Value, restarts: u32) -> Value {
    json!({
        "metadata": {"name": "web-1", "namespace": "shop", "uid": "u1", "creationTimestamp": t("10:00:00")},
        "spec": {"initContainers": [{"name": "proxy", "image": "shop/proxy:1", "restartPolicy": "Always",
                                     "startupProbe": {"exec": {"command": ["false"]}}}],
                 "containers": [{"name": "app", "image": "shop/web:1"}]},
        "status": {"phase": phase, "startTime": t("10:00:00"),
            "conditions": [{"type": "Ready", "status": "False", "lastTransitionTime": t("10:00:00")}],
            "initContainerStatuses": [{"name": "proxy", "ready": false, "started": false, "restartCount": restarts,
                "state": proxy_state, "lastState": terminated("Completed", 0, "10:28:00", "10:28:40")}],
            "containerStatuses": [{"name": "app", "ready": false, "restartCount": 0,
                "state": {"waiting": {"reason": "PodInitializing"}}}]}
    })
}

#[test]
fn a_native_sidecar_down_between_runs_after_exiting_0_is_not_ready_and_crash_looping() {
    use AlertName::*;
    use AlertState::*;
    // Killed by its startup probe, it exited 0 on SIGTERM: kubelet 1.37 shows it terminated
    // for its whole back-off, never waiting in CrashLoopBackOff. From the Pod alone the six
    // restarts' times are unknown but the last.
    let down = crash_looping_proxy("Pending", terminated("Completed", 0, "10:29:00", "10:29:40"), 6);
    assert_eq!(
        alerts(&down),
        [
            (SidecarContainerNotReady, "proxy".into(), Firing, t("10:00:00")),
            (SidecarCrashLooping, "proxy".into(), Pending, t("10:28:40")),
        ]
    );
    assert_eq!(
        message(&down, SidecarContainerNotReady),
        "Sidecar proxy in Pod shop/web-1 is terminated (Completed, exit code 0) until the kubelet restarts it \
         but not ready for 30m; last terminated with reason Completed (exit code 0)"
    );
    // Running again, still not started: not ready since the Pod started, not since this run.
    let up = crash_looping_proxy("Pending", json!({"running": {"startedAt": t("10:29:50")}}), 7);
    assert_eq!(alerts(&up), [(SidecarContainerNotReady, "proxy".into(), Firing, t("10:00:00"))]);
}

/// One observation of [`watched_crash_loop`]: the instant, whether the sidecar ran, the alerts.
type Seen = (Timestamp, bool, Vec<(AlertName, AlertState)>);

/// The crash loop of [`crash_looping_proxy`] as the operator watches it: each run lasts 30 s
/// and exits 0, the kubelet's back-off doubles from 10 s; one observation at each start and
/// each exit, each evaluated then. Returns (instant, running, alerts).
fn watched_crash_loop() -> Vec<Seen> {
    let start: Timestamp = t("10:00:00").parse().expect("a time");
    let at = |secs: i64| start + jiff::SignedDuration::from_secs(secs);
    let hms = |ts: Timestamp| ts.strftime("%H:%M:%S").to_string();
    let mut observed: Option<ObservedPod> = None;
    let mut seen = Vec::new();
    let (mut run_start, mut back_off) = (1_i64, 10_i64);
    let mut last: Option<(i64, i64)> = None;
    for restarts in 0..12_u32 {
        let exit = run_start + 30;
        for (now, running) in [(run_start, true), (exit, false)] {
            let state = if running {
                json!({"running": {"startedAt": t(&hms(at(run_start)))}})
            } else {
                terminated("Completed", 0, &hms(at(run_start)), &hms(at(exit)))
            };
            let mut pod = crash_looping_proxy("Pending", state, restarts);
            match last {
                Some((from, to)) => {
                    pod["status"]["initContainerStatuses"][0]["lastState"] =
                        terminated("Completed", 0, &hms(at(from)), &hms(at(to)))
                }
                None => pod["status"]["initContainerStatuses"][0]["lastState"] = json!({}),
            }
            let view = PodView::from_pod(&serde_json::from_value::<SlimPod>(pod).expect("a Pod"));
            let pod = match observed.take() {
                Some(mut pod) => {
                    pod.observe(view, at(now));
                    observed.insert(pod)
                }
                None => observed.insert(ObservedPod::new(view, at(now))),
            };
            let evaluation = evaluate(pod.view(), &policy(), pod.history(), at(now), Around::default());
            seen.push((at(now), running, evaluation.alerts.iter().map(|a| (a.name, a.state)).collect()));
        }
        last = Some((run_start, exit));
        // The first exit is restarted at once; later ones after the back-off.
        run_start = exit + if restarts == 0 { 1 } else { back_off };
        if restarts > 0 {
            back_off = (back_off * 2).min(300);
        }
    }
    seen
}

#[test]
fn a_watched_crash_loop_of_a_sidecar_exiting_0_stays_reported_up_and_down() {
    let seen = watched_crash_loop();
    let five_minutes = seen[0].0 + jiff::SignedDuration::from_secs(5 * 60 + 31);
    for (now, running, alerts) in &seen {
        // Never ready from the Pod's start: fired once `for` (5m) has passed, whichever state.
        let not_ready = alerts.iter().find(|a| a.0 == AlertName::SidecarContainerNotReady).map(|a| a.1);
        let expected =
            if *now >= seen[0].0 + jiff::SignedDuration::from_secs(5 * 60) - jiff::SignedDuration::from_secs(1) {
                AlertState::Firing
            } else {
                AlertState::Pending
            };
        assert_eq!(not_ready, Some(expected), "at {now} (running: {running})");
        // From its second exit on, the loop is reported up and down alike, firing 5m after
        // its first restart.
        if *now >= seen[3].0 {
            let looping = alerts.iter().find(|a| a.0 == AlertName::SidecarCrashLooping).map(|a| a.1);
            assert!(looping.is_some(), "crash loop not reported at {now} (running: {running}): {alerts:?}");
            if *now >= five_minutes {
                assert_eq!(looping, Some(AlertState::Firing), "at {now}");
            }
        }
    }
}

#[test]
fn a_native_sidecar_in_its_back_off_after_a_failure_is_crash_looping_before_the_kubelet_says_so() {
    // Exited 1 at 10:29:55: the kubelet shows terminated(1/Error) for 10-14 s before
    // CrashLoopBackOff.
    let pod = crash_looping_proxy("Running", terminated("Error", 1, "10:29:45", "10:29:55"), 6);
    let names: Vec<AlertName> = alerts(&pod).into_iter().map(|a| a.0).collect();
    assert!(names.contains(&AlertName::SidecarCrashLooping), "{names:?}");
    assert!(names.contains(&AlertName::SidecarContainerNotReady), "{names:?}");
}

#[test]
fn a_terminated_sidecar_of_a_finished_or_deleting_pod_is_not_awaiting_a_restart() {
    let stopped = || crash_looping_proxy("Failed", terminated("Completed", 0, "10:29:00", "10:29:40"), 6);
    // Failed (evicted, deadline exceeded), or deleting: no longer down between runs.
    let names = |pod: &Value| alerts(pod).into_iter().map(|a| a.0).collect::<Vec<_>>();
    assert_eq!(names(&stopped()), []);
    let mut deleting = crash_looping_proxy("Running", terminated("Completed", 0, "10:29:00", "10:29:40"), 6);
    deleting["metadata"]["deletionTimestamp"] = json!(t("10:29:30"));
    assert_eq!(names(&deleting), []);
}

#[test]
fn native_sidecars_stopped_after_a_bare_pods_main_container_finished_are_no_finding() {
    // restartPolicy Never, no owner, phase not yet Succeeded: the kubelet stopped the sidecar
    // because the main container completed (KEP-753).
    let pod = json!({
        "metadata": {"name": "task", "namespace": "ci", "uid": "u2"},
        "spec": {"restartPolicy": "Never",
                 "initContainers": [{"name": "proxy", "image": "shop/proxy:1", "restartPolicy": "Always"}],
                 "containers": [{"name": "step", "image": "ci/step:1"}]},
        "status": {"phase": "Running", "startTime": t("10:00:00"),
            "initContainerStatuses": [{"name": "proxy", "ready": false, "restartCount": 0,
                "state": terminated("Error", 143, "10:00:01", "10:20:01")}],
            "containerStatuses": [{"name": "step", "ready": false, "restartCount": 0,
                "state": terminated("Completed", 0, "10:00:02", "10:20:00")}]}
    });
    assert_eq!(alerts(&pod), []);
}

/// `shop/migrate-1`, started at 10:00:00: a plain init container `migrate`, then the native
/// sidecar `sidecar-2`, then `app`.
fn behind_init_step(migrate: Value, sidecar: Value) -> Value {
    json!({
        "metadata": {"name": "migrate-1", "namespace": "shop", "uid": "u3"},
        "spec": {"initContainers": [{"name": "migrate", "image": "shop/migrate:1"},
                                    {"name": "sidecar-2", "image": "shop/proxy:1", "restartPolicy": "Always",
                                     "readinessProbe": {"exec": {"command": ["true"]}}}],
                 "containers": [{"name": "app", "image": "shop/web:1"}]},
        "status": {"phase": "Pending", "startTime": t("10:00:00"),
            "conditions": [{"type": "Ready", "status": "False", "lastTransitionTime": t("10:00:00")}],
            "initContainerStatuses": [
                {"name": "migrate", "ready": false, "restartCount": 0, "state": migrate},
                {"name": "sidecar-2", "ready": false, "started": false, "restartCount": 0, "state": sidecar}],
            "containerStatuses": [{"name": "app", "ready": false, "restartCount": 0,
                "state": {"waiting": {"reason": "PodInitializing"}}}]}
    })
}

#[test]
fn a_sidecar_the_kubelet_has_not_started_yet_is_not_blamed() {
    let waiting = json!({"waiting": {"reason": "PodInitializing"}});
    // A 30-minute migration: the init step is running, or crash looping.
    let running = json!({"running": {"startedAt": t("10:00:01")}});
    assert_eq!(alerts(&behind_init_step(running, waiting.clone())), []);
    let mut looping = behind_init_step(json!({"waiting": {"reason": "CrashLoopBackOff"}}), waiting);
    looping["status"]["initContainerStatuses"][0]["restartCount"] = json!(9);
    assert_eq!(alerts(&looping), []);
}

#[test]
fn a_first_sidecar_left_waiting_in_a_ready_sandbox_is_reported() {
    // Nothing is declared before it: nothing holds it back.
    let mut pod = behind_init_step(json!({"running": {"startedAt": t("10:00:01")}}), json!({}));
    let init = pod["spec"]["initContainers"].as_array_mut().expect("init containers");
    init.remove(0);
    pod["status"]["initContainerStatuses"] = json!([{"name": "sidecar-2", "ready": false, "restartCount": 0,
        "state": {"waiting": {"reason": "PodInitializing"}}}]);
    assert_eq!(
        alerts(&pod),
        [(AlertName::SidecarContainerNotReady, "sidecar-2".into(), AlertState::Firing, t("10:00:00"))]
    );
}

#[test]
fn a_sidecar_started_after_an_init_step_is_not_ready_since_the_kubelet_could_start_it() {
    // The migration ended at 10:27:00; the sidecar started at 10:27:01 and is not ready.
    let pod = behind_init_step(
        terminated("Completed", 0, "10:00:01", "10:27:00"),
        json!({"running": {"startedAt": t("10:27:01")}}),
    );
    assert_eq!(
        alerts(&pod),
        [(AlertName::SidecarContainerNotReady, "sidecar-2".into(), AlertState::Pending, t("10:27:01"))]
    );
}

#[test]
fn an_oom_kill_while_the_container_started_is_an_oom_kill() {
    let runc = "failed to create containerd task: failed to create shim task: OCI runtime create failed: runc \
                create failed: unable to start container process: container init was OOM-killed (memory limit too \
                low?): unknown";
    let started = |reason: &str, code: i32, text: &str| {
        let mut pod = crash_looping_proxy("Running", json!({"running": {"startedAt": t("10:29:50")}}), 1);
        pod["status"]["initContainerStatuses"][0]["lastState"] =
            json!({"terminated": {"reason": reason, "exitCode": code, "message": text, "finishedAt": t("10:29:40")}});
        pod
    };
    let oom = |pod: &Value| alerts(pod).into_iter().filter(|a| a.0 == AlertName::SidecarOomKilled).count();
    assert_eq!(oom(&started("StartError", 128, runc)), 1);
    assert_eq!(
        message(&started("StartError", 128, runc), AlertName::SidecarOomKilled),
        format!(
            "Sidecar proxy in Pod shop/web-1 was killed by its memory limit while it started (reason StartError: \
             {runc}) 20s ago (exit code 128); raise its memory limit or find the leak"
        )
    );
    // cgroup v1: a limit below what runc's init already uses cannot be set (recorded on this
    // project's node, tests/e2e_node/kubelet_states.rs).
    let below = "failed to create containerd task: failed to create shim task: OCI runtime create failed: runc \
                 create failed: unable to start container process: error during container init: error setting \
                 cgroup config for procHooks process: unable to set memory limit to 2097152 (current usage: \
                 2170880, peak usage: 2248704): unknown";
    assert_eq!(
        message(&started("StartError", 128, below), AlertName::SidecarOomKilled),
        format!(
            "Sidecar proxy in Pod shop/web-1 could not start: its memory limit is below what the runtime uses to \
             start it (reason StartError: {}…) 20s ago (exit code 128); raise its memory limit or find the leak",
            &below[..256]
        )
    );
    // Another start failure, or another exit code, is not an OOM kill.
    assert_eq!(oom(&started("StartError", 128, "exec: \"envoy\": executable file not found in $PATH")), 0);
    assert_eq!(oom(&started("StartError", 1, runc)), 0);
    assert_eq!(oom(&started("Error", 128, runc)), 0);
}
