//! The rules on Pods as Kubernetes 1.33–1.37 runs them: container restart rules (KEP-5307), the
//! in-place Pod restart (KEP-5532), sidecars restarted during termination (KEP-4438), resize
//! restarts (KEP-1287), `PodReadyToStartContainers` (KEP-3085), and the kubelet stopping a
//! Job's sidecars. Each Pod is written as the API serves it (JSON), decoded as the operator
//! decodes it, and evaluated at 10:30:00 on the fixtures' day.

use serde_json::{json, Value};
use sidecar_watch_api::SlimPod;
use sidecar_watch_engine::AlertName::{self, *};
use sidecar_watch_engine::AlertState::{self, *};
use sidecar_watch_engine::{evaluate, Around, CompiledPolicy, Evaluation, ObservedPod};
use sidecar_watch_testkit::engine::*;

/// `2025-06-03THH:MM:SSZ`.
fn t(hms: &str) -> String {
    format!("2025-06-03T{hms}Z")
}

/// A Pod `ml/train-1` created and started at 10:00:00, with `spec` and `status`; `job` makes a
/// Job its owner.
fn pod(job: bool, spec: Value, status: Value) -> Value {
    let mut metadata =
        json!({"name": "train-1", "namespace": "ml", "uid": "u-train-1", "creationTimestamp": t("10:00:00")});
    if job {
        metadata["ownerReferences"] =
            json!([{"apiVersion": "batch/v1", "kind": "Job", "name": "train", "uid": "j1", "controller": true}]);
    }
    let mut status = status;
    status["startTime"] = json!(t("10:00:00"));
    json!({"metadata": metadata, "spec": spec, "status": status})
}

/// (alert, container, state) of every alert.
fn brief(evaluation: &Evaluation) -> Vec<(AlertName, String, AlertState)> {
    evaluation.alerts.iter().map(|a| (a.name, a.container.clone(), a.state)).collect()
}

fn message(evaluation: &Evaluation, name: AlertName) -> String {
    evaluation.alerts.iter().find(|a| a.name == name).map(|a| a.message.clone()).unwrap_or_default()
}

/// Every rule but the static checks: what the kubelet's doings must not trigger.
fn runtime_rules() -> CompiledPolicy {
    policy("rules: {misconfiguration: {enabled: false}, jobBlocked: {for: 0s}, restarts: {threshold: 1}}")
}

fn running(hms: &str, ready: bool) -> Value {
    json!({"ready": ready, "started": true, "restartCount": 0, "state": {"running": {"startedAt": t(hms)}}})
}

fn terminated(reason: &str, code: i32, from: &str, to: &str) -> Value {
    json!({"terminated": {"reason": reason, "exitCode": code, "startedAt": t(from), "finishedAt": t(to)}})
}

fn status(name: &str, mut fields: Value) -> Value {
    fields["name"] = json!(name);
    fields
}

// ---- KEP-5307: container restart rules ----

/// A Job Pod (`restartPolicy: Never`) whose main container `train` exited with `code` at 10:20,
/// its rules restarting it on 42, and a legacy log shipper still running.
fn job_with_rules(code: i32, container_policy: &str) -> Value {
    pod(
        true,
        json!({"restartPolicy": "Never", "containers": [
            {"name": "train", "image": "ml/train:1", "restartPolicy": container_policy,
             "restartPolicyRules": [{"action": "Restart", "exitCodes": {"operator": "In", "values": [42]}}]},
            {"name": "log-sidecar", "image": "fluent/fluent-bit:3.0.4"}]}),
        json!({"containerStatuses": [
            status("train", json!({"ready": false, "restartCount": 0, "state": terminated("Error", code, "10:00:01", "10:20:00")})),
            status("log-sidecar", running("10:00:00", true))]}),
    )
}

#[test]
fn a_main_container_its_rules_restart_has_not_finished_its_job() {
    let policy = runtime_rules();
    for (code, container_policy, blocked) in [
        (42, "Never", false),    // the rule restarts it: the Job is not done
        (0, "Never", true),      // no rule matches, its own Never: done
        (1, "Never", true),      // a failure nothing restarts: done (the Job fails)
        (1, "OnFailure", false), // its own OnFailure restarts a failure
        (0, "OnFailure", true),  // and not a success
    ] {
        let evaluation = eval(&view(&job_with_rules(code, container_policy)), &policy, now());
        let expected = if blocked { vec![(JobBlockedBySidecar, "log-sidecar".to_string(), Firing)] } else { vec![] };
        assert_eq!(brief(&evaluation), expected, "exit {code} with restartPolicy {container_policy}");
    }
}

#[test]
fn a_container_level_restart_policy_never_makes_a_regular_container_a_sidecar() {
    // `restartPolicy: Always` on a regular container (KEP-5307) only restarts it; it is the app.
    let app = pod(
        false,
        json!({"containers": [{"name": "app", "image": "shop/web:1", "restartPolicy": "Always"}],
               "initContainers": [{"name": "proxy", "image": "shop/proxy:1", "restartPolicy": "Always"}]}),
        json!({"containerStatuses": [status("app", running("10:00:05", true))],
               "initContainerStatuses": [status("proxy", running("10:00:00", false))]}),
    );
    let view = view(&app);
    let builtin = CompiledPolicy::builtin();
    let sidecars: Vec<String> = builtin.sidecars(&view).map(|(_, c, _)| c.name.to_string()).collect();
    assert_eq!(sidecars, ["proxy"]);
    let evaluation = eval(&view, &policy("rules: {misconfiguration: {enabled: false}}"), now());
    assert!(message(&evaluation, MainContainerReadyButSidecarNot).contains("Main container app"));
}

// ---- KEP-4438: a sidecar restarted during Pod termination ----

/// A Pod deleted at 10:20:00 whose main container still runs; the native sidecar `proxy`
/// (restarted `restarts` times) last exited at `exited` and runs again since.
fn terminating_with_restarted_sidecar(exited: &str, restarts: u32) -> Value {
    let mut p = pod(
        false,
        json!({"initContainers": [{"name": "proxy", "image": "shop/proxy:1", "restartPolicy": "Always"}],
               "containers": [{"name": "app", "image": "shop/web:1"}]}),
        json!({"initContainerStatuses": [status("proxy", json!({"ready": true, "restartCount": restarts,
                   "state": {"running": {"startedAt": t("10:20:06")}},
                   "lastState": terminated("Error", 1, "10:00:00", exited)}))],
               "containerStatuses": [status("app", running("10:00:02", true))]}),
    );
    p["metadata"]["deletionTimestamp"] = json!(t("10:20:00"));
    p
}

#[test]
fn a_sidecar_the_kubelet_restarted_during_termination_stopped_before_main_and_did_not_crash() {
    let policy = runtime_rules();
    // Exited at or after the deletion: it stopped while the app ran; the restart is the kubelet's.
    for exited in ["10:20:00", "10:20:05"] {
        let evaluation = eval(&view(&terminating_with_restarted_sidecar(exited, 1)), &policy, now());
        assert_eq!(brief(&evaluation), [(SidecarStoppedBeforeMain, "proxy".to_string(), Firing)], "exited {exited}");
        assert_eq!(evaluation.alerts[0].since, Some(at(exited)), "exited {exited}");
        assert!(message(&evaluation, SidecarStoppedBeforeMain).contains("the kubelet started it again"));
    }
    // Exited a second before the deletion: an ordinary restart of a running Pod, counted.
    let evaluation = eval(&view(&terminating_with_restarted_sidecar("10:19:59", 1)), &policy, now());
    assert_eq!(brief(&evaluation), [(SidecarRestartingFrequently, "proxy".to_string(), Firing)]);
}

// ---- KEP-5532: RestartAllContainers ----

/// A Job Pod whose native sidecar `watcher` restarts the whole Pod when it exits with 88; the
/// other native sidecar `proxy` and the main container `train` are restarted with it.
fn restart_all_spec() -> Value {
    json!({"restartPolicy": "Never",
        "initContainers": [
            {"name": "proxy", "image": "shop/proxy:1", "restartPolicy": "Always", "startupProbe": {"tcpSocket": {"port": 15000}}},
            {"name": "watcher", "image": "ml/watcher:1", "restartPolicy": "Always",
             "restartPolicyRules": [{"action": "RestartAllContainers", "exitCodes": {"operator": "In", "values": [88]}}]}],
        "containers": [{"name": "train", "image": "ml/train:1"}]})
}

/// A container started again by the in-place Pod restart at `started` (its `restartCount` 1).
fn after_pod_restart(started: &str, ready: bool) -> Value {
    json!({"ready": ready, "started": true, "restartCount": 1, "state": {"running": {"startedAt": t(started)}},
           "lastState": {"terminated": {"reason": "RestartingAllContainers", "exitCode": 137,
                                        "message": "The container is removed because RestartAllContainers in place"}}})
}

/// The statuses after the in-place restart: proxy, watcher and train started again at 10:20:03,
/// :04 and :05; `ready` says whether proxy and train are ready yet (watcher is).
fn restarted_statuses(ready: bool) -> Value {
    json!({"initContainerStatuses": [status("proxy", after_pod_restart("10:20:03", ready)),
                                     status("watcher", after_pod_restart("10:20:04", true))],
           "containerStatuses": [status("train", after_pod_restart("10:20:05", ready))]})
}

#[test]
fn while_the_kubelet_restarts_every_container_nothing_is_finished_or_out_of_order() {
    let restarting = pod(
        true,
        restart_all_spec(),
        json!({"conditions": [{"type": "AllContainersRestarting", "status": "True", "lastTransitionTime": t("10:20:00"),
                               "reason": "RestartAllContainersStarted"}],
               "initContainerStatuses": [
                   status("proxy", running("10:00:00", true)),
                   status("watcher", json!({"ready": false, "restartCount": 0, "state": terminated("Error", 88, "10:00:02", "10:20:00")}))],
               "containerStatuses": [
                   status("train", json!({"ready": false, "restartCount": 0, "state": terminated("Error", 137, "10:00:05", "10:20:01")}))]}),
    );
    let evaluation = eval(&view(&restarting), &runtime_rules(), now());
    assert_eq!(brief(&evaluation), [], "{:#?}", evaluation.alerts);
}

#[test]
fn after_an_in_place_pod_restart_only_the_sidecar_whose_exit_did_it_counts_the_restart() {
    let mut statuses = restarted_statuses(true);
    statuses["conditions"] =
        json!([{"type": "AllContainersRestarting", "status": "False", "lastTransitionTime": t("10:20:02")}]);
    let restarted = pod(true, restart_all_spec(), statuses);
    let mut view = view(&restarted);
    // The restart's time is unknown without history: placed at the Pod's start, inside the window.
    view.started_at = Some(at("10:18:00").into());
    let evaluation = eval(&view, &runtime_rules(), now());
    assert_eq!(brief(&evaluation), [(SidecarRestartingFrequently, "watcher".to_string(), Firing)]);
    let text = message(&evaluation, SidecarRestartingFrequently);
    assert!(text.contains("RestartAllContainers, so each one restarted every container of the Pod"), "{text}");
    // The victims' restarts are the kubelet's: proxy is quiet even at threshold 1.
}

#[test]
fn restarted_main_containers_are_out_of_order_only_when_they_really_started_first() {
    // proxy with a readiness probe only: nothing makes the kubelet wait for it.
    let mut spec = restart_all_spec();
    spec["initContainers"][0]["readinessProbe"] = spec["initContainers"][0]["startupProbe"].take();
    let in_order = pod(true, spec.clone(), restarted_statuses(true));
    let order = policy("rules: {startupOrder: {}, restarts: {enabled: false}, misconfiguration: {enabled: false}}");
    assert_eq!(brief(&eval(&view(&in_order), &order, now())), []);

    // The operator saw the new run of proxy (10:20:03) not ready while train's new run
    // (10:20:05) was running: train really started first, and it stays reported once proxy is
    // ready.
    let starting = pod(true, spec.clone(), restarted_statuses(false));
    let ready = pod(true, spec, restarted_statuses(true));
    let mut history = ObservedPod::new(view(&starting), at("10:20:06"));
    history.observe(view(&ready), at("10:20:09"));
    let evaluation = evaluate(&view(&ready), &order, history.history(), now(), Around::default());
    assert_eq!(brief(&evaluation), [(MainStartedBeforeSidecarReady, "proxy".to_string(), Firing)]);
    let text = message(&evaluation, MainStartedBeforeSidecarReady);
    assert!(
        text.contains(
            "was reported not ready while train was running after the Pod restarted all its containers in place \
             (the exit of watcher did it)"
        ),
        "{text}"
    );

    // With its startupProbe the kubelet starts train only once proxy has started, after the
    // in-place restart as at first: the same statuses are no finding.
    let (starting, ready) = (
        pod(true, restart_all_spec(), restarted_statuses(false)),
        pod(true, restart_all_spec(), restarted_statuses(true)),
    );
    let (order, mut history) = (only("startupOrder", ""), ObservedPod::new(view(&starting), at("10:20:06")));
    assert_eq!(brief(&evaluate(&view(&starting), &order, history.history(), now(), Around::default())), []);
    history.observe(view(&ready), at("10:20:09"));
    assert_eq!(brief(&evaluate(&view(&ready), &order, history.history(), now(), Around::default())), []);
}

#[test]
fn the_operator_counts_the_kubelets_pod_restarts_apart_from_a_sidecars_own_exits() {
    // Two sidecars declare RestartAllContainers, so only what the operator saw tells which one
    // exited: watcher, with 88, at 10:20:00.
    let mut spec = restart_all_spec();
    spec["initContainers"][0]["restartPolicy"] = json!("Always");
    spec["initContainers"][0]["restartPolicyRules"] =
        json!([{"action": "RestartAllContainers", "exitCodes": {"operator": "In", "values": [99]}}]);
    let before = pod(
        true,
        spec.clone(),
        json!({"initContainerStatuses": [status("proxy", running("10:00:00", true)), status("watcher", running("10:00:02", true))],
               "containerStatuses": [status("train", running("10:00:05", true))]}),
    );
    let exiting = pod(
        true,
        spec.clone(),
        json!({"conditions": [{"type": "AllContainersRestarting", "status": "True", "lastTransitionTime": t("10:20:00")}],
               "initContainerStatuses": [status("proxy", running("10:00:00", true)),
                   status("watcher", json!({"ready": false, "restartCount": 0, "state": terminated("Error", 88, "10:00:02", "10:20:00")}))],
               "containerStatuses": [status("train", running("10:00:05", true))]}),
    );
    let after = pod(true, spec, restarted_statuses(true));
    let mut history = ObservedPod::new(view(&before), at("10:10:00"));
    history.observe(view(&exiting), at("10:20:00"));
    history.observe(view(&after), at("10:20:05"));
    let (proxy, watcher) = (history.container("proxy").unwrap(), history.container("watcher").unwrap());
    assert_eq!((proxy.restarts_by_kubelet, proxy.restarts.len()), (1, 0), "proxy was restarted with the Pod");
    assert_eq!((watcher.restarts_by_kubelet, watcher.restarts.len()), (0, 1), "watcher's own exit");
    let evaluation = evaluate(&view(&after), &runtime_rules(), history.history(), now(), Around::default());
    assert_eq!(brief(&evaluation), [(SidecarRestartingFrequently, "watcher".to_string(), Firing)]);
    assert_eq!(evaluation.alerts[0].since, Some(at("10:20:05")), "when the operator saw the restart");
}

// ---- KEP-1287: a resize that restarts the sidecar ----

/// A native sidecar whose memory resize restarts it; `restarts` so far, the last ending at
/// 10:20:00; the Pod resizing or not.
fn resizing(restarts: u32, resize_in_progress: bool, restart_policy: &str) -> Value {
    let mut conditions = json!([]);
    if resize_in_progress {
        conditions = json!([{"type": "PodResizeInProgress", "status": "True", "lastTransitionTime": t("10:19:50")}]);
    }
    let mut sidecar = running("10:20:01", true);
    sidecar["restartCount"] = json!(restarts);
    if restarts > 0 {
        sidecar["lastState"] = terminated("Error", 143, "10:00:00", "10:20:00");
    } else {
        sidecar["state"] = json!({"running": {"startedAt": t("10:00:00")}});
    }
    pod(
        false,
        json!({"initContainers": [{"name": "proxy", "image": "shop/proxy:1", "restartPolicy": "Always",
                   "resizePolicy": [{"resourceName": "memory", "restartPolicy": restart_policy}]}],
               "containers": [{"name": "app", "image": "shop/web:1"}]}),
        json!({"conditions": conditions, "initContainerStatuses": [status("proxy", sidecar)],
               "containerStatuses": [status("app", running("10:00:02", true))]}),
    )
}

#[test]
fn a_restart_to_apply_a_resize_is_not_counted_when_the_operator_saw_the_resize() {
    let policy = runtime_rules();
    for (restart_policy, counted) in [("RestartContainer", false), ("NotRequired", true)] {
        let mut history = ObservedPod::new(view(&resizing(0, false, restart_policy)), at("10:10:00"));
        history.observe(view(&resizing(0, true, restart_policy)), at("10:19:51"));
        let restarted = view(&resizing(1, false, restart_policy));
        history.observe(restarted.clone(), at("10:20:02"));
        let evaluation = evaluate(&restarted, &policy, history.history(), now(), Around::default());
        let expected = if counted { vec![(SidecarRestartingFrequently, "proxy".to_string(), Firing)] } else { vec![] };
        assert_eq!(brief(&evaluation), expected, "resizePolicy {restart_policy}");
    }
    // Without history (audit, or a restarted operator) nothing in the Pod tells a resize
    // restart: the kubelet clears PodResizeInProgress in the status that shows the restart.
    let evaluation = eval(&view(&resizing(1, false, "RestartContainer")), &policy, now());
    assert_eq!(brief(&evaluation), [(SidecarRestartingFrequently, "proxy".to_string(), Firing)]);
}

// ---- KEP-3085: PodReadyToStartContainers ----

#[test]
fn a_sidecar_waiting_for_the_pods_sandbox_is_not_reported_not_ready() {
    let waiting = |sandbox: &str| {
        pod(
            false,
            json!({"initContainers": [{"name": "proxy", "image": "shop/proxy:1", "restartPolicy": "Always"}],
                   "containers": [{"name": "app", "image": "shop/web:1"}]}),
            json!({"conditions": [{"type": "PodReadyToStartContainers", "status": sandbox, "lastTransitionTime": t("10:00:00")},
                                  {"type": "Ready", "status": "False", "lastTransitionTime": t("10:00:00")}],
                   "initContainerStatuses": [status("proxy", json!({"ready": false, "restartCount": 0,
                       "state": {"waiting": {"reason": "ContainerCreating"}}}))],
                   "containerStatuses": [status("app", json!({"ready": false, "restartCount": 0,
                       "state": {"waiting": {"reason": "PodInitializing"}}}))]}),
        )
    };
    let policy = policy("rules: {misconfiguration: {enabled: false}}");
    assert_eq!(brief(&eval(&view(&waiting("False")), &policy, now())), []);
    assert_eq!(
        brief(&eval(&view(&waiting("True")), &policy, now())),
        [(SidecarContainerNotReady, "proxy".to_string(), Firing)]
    );
}

// ---- KEP-753: the kubelet stops a Job's native sidecars ----

#[test]
fn native_sidecars_the_kubelet_stopped_after_the_job_finished_are_no_finding() {
    // The main container completed at 10:20:00; the kubelet then stopped the sidecars in
    // reverse order: SIGTERM (143), and SIGKILL after the grace period (137).
    let done = pod(
        true,
        json!({"restartPolicy": "Never",
            "initContainers": [
                {"name": "proxy", "image": "istio/proxyv2:1.27.0", "restartPolicy": "Always"},
                {"name": "log-shipper", "image": "fluent/fluent-bit:3.0.4", "restartPolicy": "Always"}],
            "containers": [{"name": "train", "image": "ml/train:1"}]}),
        json!({"phase": "Succeeded",
            "conditions": [{"type": "Ready", "status": "False", "lastTransitionTime": t("10:20:00")}],
            "initContainerStatuses": [
                status("proxy", json!({"ready": false, "restartCount": 0, "state": terminated("Error", 143, "10:00:00", "10:20:31")})),
                status("log-shipper", json!({"ready": false, "restartCount": 0, "state": terminated("Error", 137, "10:00:01", "10:20:30")}))],
            "containerStatuses": [status("train", json!({"ready": false, "restartCount": 0,
                "state": terminated("Completed", 0, "10:00:02", "10:20:00")}))]}),
    );
    let evaluation = eval(&view(&done), &policy("rules: {misconfiguration: {enabled: false}}"), now());
    assert_eq!(brief(&evaluation), []);
    assert_eq!(evaluation.next_change, None);
}

// ---- hostile input ----

#[test]
fn huge_or_malformed_restart_rules_are_bounded_and_name_their_field() {
    // A tenant's Pod at the API's limits for rules: 200 native sidecars, each with 20 rules
    // of 255 exit codes, every one restarted by an in-place Pod restart. It is evaluated for the
    // first 32 sidecars, reports sprawl, and nothing it declares counts as a crash.
    let codes: Vec<i32> = (0..255).collect();
    let rule = json!({"action": "RestartAllContainers", "exitCodes": {"operator": "NotIn", "values": codes}});
    let rules: Vec<Value> = (0..20).map(|_| rule.clone()).collect();
    let sidecars: Vec<Value> = (0..200)
        .map(|i| json!({"name": format!("s{i}"), "image": "x:1", "restartPolicy": "Always", "restartPolicyRules": rules}))
        .collect();
    let statuses: Vec<Value> =
        (0..200).map(|i| status(&format!("s{i}"), after_pod_restart("10:20:03", true))).collect();
    let hostile = pod(
        false,
        json!({"initContainers": sidecars, "containers": [{"name": "app", "image": "x:1"}]}),
        json!({"initContainerStatuses": statuses, "containerStatuses": [status("app", after_pod_restart("10:20:05", true))]}),
    );
    let view = view(&hostile);
    let history = ObservedPod::new(view.clone(), at("10:20:06"));
    let sidecar_histories: Vec<_> =
        history.history().containers.iter().filter(|c| view.containers[c.at as usize].name.starts_with('s')).collect();
    assert_eq!(sidecar_histories.len(), 200);
    assert!(sidecar_histories.iter().all(|c| c.restarts_by_kubelet == 1));
    let evaluation =
        evaluate(&view, &policy("rules: {restarts: {threshold: 1}}"), history.history(), now(), Around::default());
    assert_eq!(evaluation.sidecars.len(), 32);
    assert!(evaluation.alerts.iter().all(|a| a.name == SidecarMisconfigured), "{:?}", brief(&evaluation));

    // A value of the wrong type names the field, as every other one does.
    let mut broken = pod(
        false,
        json!({"containers": [{"name": "app", "image": "x:1", "restartPolicy": "Never",
        "restartPolicyRules": [{"action": "Restart", "exitCodes": {"operator": "In", "values": ["forty-two"]}}]}]}),
        json!({}),
    );
    broken["metadata"]["name"] = json!("broken");
    let error = sidecar_watch_api::decode::<SlimPod>(broken).expect_err("not an exit code");
    assert_eq!(error.path, "spec.containers[0].restartPolicyRules[0].exitCodes.values[0]", "{error}");
}
