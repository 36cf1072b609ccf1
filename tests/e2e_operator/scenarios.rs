//! The seed scenarios, end to end: alerts (pending → firing on time), series, Events and
//! policy status for each failure mode of the specification.

use std::time::{Duration, Instant};

use k8s_openapi::api::batch::v1::Job;
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::json;
use sidecar_watch_harness::kubelet::{test_pod, State};

use crate::support::*;

/// Seed 000/003: a native sidecar never becomes ready while the main container is ready
/// (the Pod shows 1/2): both readiness alerts go pending, then fire at their `for`; one
/// Warning each; status counts; then the sidecar becomes ready and everything resolves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn never_ready_native_sidecar_with_ready_main() {
    let c = Cluster::start("notready").await;
    let ns = c.ns.clone();
    c.apply_policy(
        "mesh",
        json!({
            "selector": {"matchLabels": {"app": "web"}},
            "sidecars": {"native": true, "names": ["istio-proxy"]},
            "rules": rules(json!({
                "sidecarNotReady": {"for": "5s", "severity": "warning"},
                "mainReadySidecarNotReady": {"for": "3s", "severity": "critical"},
            })),
        }),
    )
    .await;
    let op = Operator::start(&c, "op-0", &[]).await;
    let pod = c.create_pod(native_pod("web-1", "web", "app", "istio-proxy")).await;
    let t0 = Instant::now();
    drive(&pod, &[("app", true), ("istio-proxy", false)]).await;

    let not_ready = |state: AlertState| AlertSeries { state, namespace: &ns, pod: "web-1", ..MESH_NOT_READY }.labels();
    let main_ready = |state: AlertState| {
        let alert = AlertName::MainContainerReadyButSidecarNot;
        AlertSeries { alert, state, severity: Severity::Critical, namespace: &ns, pod: "web-1", ..MESH_NOT_READY }
            .labels()
    };
    let scrape =
        op.wait_alerts("both pending", vec![not_ready(AlertState::Pending), main_ready(AlertState::Pending)]).await;
    assert_eq!(
        scrape.value("sidecar_container_ready", &[("pod", "web-1"), ("container", "istio-proxy")]),
        Some(0.0),
        "{}",
        scrape.text
    );
    assert_eq!(
        scrape.find("sidecar_container_ready", &[("pod", "web-1"), ("container", "istio-proxy")])[0].labels
            ["sidecar_type"],
        "native"
    );
    // The main container is not a sidecar: no series of its own.
    assert!(scrape.find("sidecar_container_ready", &[("container", "app")]).is_empty(), "{}", scrape.text);
    c.wait_status("mesh", "1 matched, 2 pending", |s| status_counts(s, 1, 0, json!({}), 2)).await;

    let (pending, fired) = observe_firing(&op, "web-1", "MainContainerReadyButSidecarNot").await;
    assert!(pending.is_some(), "MainContainerReadyButSidecarNot was never pending");
    assert_on_time("MainContainerReadyButSidecarNot", t0, fired, Duration::from_secs(3));
    let (_, fired) = observe_firing(&op, "web-1", "SidecarContainerNotReady").await;
    assert_on_time("SidecarContainerNotReady", t0, fired, Duration::from_secs(5));
    let scrape =
        op.wait_alerts("both firing", vec![not_ready(AlertState::Firing), main_ready(AlertState::Firing)]).await;
    assert_eq!(scrape.value("sidecar_policy_pods", &[("policy", "mesh"), ("state", "matched")]), Some(1.0));
    assert_eq!(scrape.value("sidecar_policy_pods", &[("policy", "mesh"), ("state", "alerting")]), Some(1.0));

    let events = c.wait_events("web-1", "Warning", "SidecarContainerNotReady", 1).await;
    c.wait_events("web-1", "Warning", "MainContainerReadyButSidecarNot", 1).await;
    let e = the_event(&events, "web-1", "SidecarContainerNotReady");
    AlertEvent {
        alert: AlertName::SidecarContainerNotReady,
        transition: TransitionKind::Fired,
        pod: "web-1",
        field_path: "spec.initContainers{istio-proxy}",
        policy: "mesh",
    }
    .assert_matches(e);
    let note = e.note.as_deref().unwrap_or_default();
    assert!(note.contains("istio-proxy") && note.contains("mesh"), "note names container and policy: {note}");
    // A Pod without owner is its own workload.
    assert!(note.contains("workload Pod/web-1"), "note names the workload: {note}");
    let status = c
        .wait_status("mesh", "both firing", |s| {
            status_counts(s, 1, 1, json!({"MainContainerReadyButSidecarNot": 1, "SidecarContainerNotReady": 1}), 0)?;
            status_ready(s, "True", "Evaluating")
        })
        .await;
    assert_eq!(status["observedGeneration"], c.policy("mesh").await["metadata"]["generation"], "{status}");
    assert!(status["lastEvaluationTime"].is_string(), "{status}");

    // The sidecar becomes ready: series gone, one Normal Resolved Event each.
    set_ready(&pod, "istio-proxy", true).await;
    let scrape = op.wait_alerts("none", vec![]).await;
    assert_eq!(scrape.value("sidecar_container_ready", &[("pod", "web-1"), ("container", "istio-proxy")]), Some(1.0));
    c.wait_events("web-1", "Normal", "SidecarContainerNotReadyResolved", 1).await;
    let events = c.wait_events("web-1", "Normal", "MainContainerReadyButSidecarNotResolved", 1).await;
    let e = the_event(&events, "web-1", "MainContainerReadyButSidecarNotResolved");
    AlertEvent {
        alert: AlertName::MainContainerReadyButSidecarNot,
        transition: TransitionKind::Resolved,
        pod: "web-1",
        field_path: "spec.initContainers{istio-proxy}",
        policy: "mesh",
    }
    .assert_matches(e);
    c.wait_status("mesh", "resolved", |s| status_counts(s, 1, 0, json!({}), 0)).await;
    // Still exactly one Warning each.
    let events = c.events().await;
    assert_eq!(count_events(&events, "web-1", "Warning", "SidecarContainerNotReady"), 1);
    assert_eq!(count_events(&events, "web-1", "Warning", "MainContainerReadyButSidecarNot"), 1);
}

/// Seed 000/002: a liveness-failing sidecar restarts again and again: restarts with
/// `lastState.terminated` Error (137: the kubelet kills it) → `SidecarRestartingFrequently` at
/// the threshold; then `CrashLoopBackOff` → `SidecarCrashLooping` pending → firing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn liveness_failing_sidecar_restart_loop() {
    let c = Cluster::start("crashloop").await;
    let ns = c.ns.clone();
    c.apply_app_policy(
        "logs",
        "api",
        json!({
            "restarts": {"threshold": 3, "window": "10m", "severity": "critical"},
            "crashLoop": {"for": "5s", "severity": "critical"},
        }),
    )
    .await;
    let op = Operator::start(&c, "op-0", &[]).await;
    // Its readiness probe holds each new run unready, as the kubelet reports it until the
    // probe passes (without one, a restarted container is ready at once).
    let mut manifest = native_pod("api-1", "api", "app", "fluent-bit");
    let probe = json!({"httpGet": {"path": "/api/v1/health", "port": 2020}});
    manifest["spec"]["initContainers"][0]["livenessProbe"] = probe.clone();
    manifest["spec"]["initContainers"][0]["readinessProbe"] = probe;
    let pod = c.create_pod(manifest).await;
    drive(&pod, &[("app", true), ("fluent-bit", true)]).await;
    op.wait_scrape("fluent-bit tracked", |s| {
        has_value(s, "sidecar_container_ready", &[("pod", "api-1"), ("container", "fluent-bit")], 1.0)
    })
    .await;

    let t_first = Instant::now();
    for n in 1..=2 {
        pod.restart("fluent-bit", "Error", 137).await.unwrap();
        op.wait_scrape(&format!("{n} restarts"), |s| {
            has_value(
                s,
                "sidecar_container_restarts_total",
                &[("pod", "api-1"), ("container", "fluent-bit")],
                f64::from(n),
            )
        })
        .await;
    }
    // Below the threshold: no restart alert. (Two restarts less than 10 minutes apart with a
    // short run between them already make a crash-loop episode: the engine holds
    // SidecarCrashLooping pending through such a run, see `CRASH_LOOP_BRIDGE`.)
    let fluent_bit = AlertSeries {
        severity: Severity::Critical,
        policy: "logs",
        namespace: &ns,
        pod: "api-1",
        container: "fluent-bit",
        product: "fluent-bit",
        ..MESH_NOT_READY
    };
    let looping_pending =
        AlertSeries { alert: AlertName::SidecarCrashLooping, state: AlertState::Pending, ..fluent_bit }.labels();
    let alerts = op.scrape().await.unwrap().alerts();
    assert!(alerts.iter().all(|a| *a == looping_pending), "{alerts:?}");
    pod.restart("fluent-bit", "Error", 137).await.unwrap();
    let restarting = AlertSeries { alert: AlertName::SidecarRestartingFrequently, ..fluent_bit }.labels();
    op.wait_scrape("restarting at the threshold", |s| {
        let alerts = s.alerts();
        if alerts.contains(&restarting) && alerts.iter().all(|a| *a == restarting || *a == looping_pending) {
            Ok(())
        } else {
            Err(format!("{alerts:?}"))
        }
    })
    .await;
    let events = c.wait_events("api-1", "Warning", "SidecarRestartingFrequently", 1).await;
    let e = the_event(&events, "api-1", "SidecarRestartingFrequently");
    AlertEvent {
        alert: AlertName::SidecarRestartingFrequently,
        transition: TransitionKind::Fired,
        pod: "api-1",
        field_path: "spec.initContainers{fluent-bit}",
        policy: "logs",
    }
    .assert_matches(e);
    let note = e.note.as_deref().unwrap_or_default();
    assert!(note.contains("Error") && note.contains("exit code 137"), "note names the termination: {note}");

    // The liveness probe kills it again; the kubelet backs off (one write: the exit in
    // `lastState`, waiting in CrashLoopBackOff, the restart count unchanged).
    pod.crash_loop("fluent-bit", "Error", 137).await.unwrap();
    let (pending, fired) = observe_firing(&op, "api-1", "SidecarCrashLooping").await;
    assert!(pending.is_some(), "SidecarCrashLooping was never pending");
    // The episode starts at the first restarts of the loop.
    assert_on_time("SidecarCrashLooping", t_first, fired, Duration::from_secs(5));
    op.wait_alerts(
        "restarting and crash looping",
        vec![restarting, AlertSeries { alert: AlertName::SidecarCrashLooping, ..fluent_bit }.labels()],
    )
    .await;
    c.wait_events("api-1", "Warning", "SidecarCrashLooping", 1).await;
    c.wait_status("logs", "two firing", |s| {
        status_counts(s, 1, 1, json!({"SidecarCrashLooping": 1, "SidecarRestartingFrequently": 1}), 0)
    })
    .await;
    assert_eq!(c.event_count("api-1", "Warning", "SidecarRestartingFrequently").await, 1);
}

/// Seed 002/004: a Job held open by a legacy sidecar (declared in `containers`): the main
/// container completed, the sidecar still runs → `JobBlockedBySidecar` after its `for`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_held_open_by_legacy_sidecar() {
    let c = Cluster::start("job").await;
    let ns = c.ns.clone();
    c.apply_app_policy("batch", "report", json!({"jobBlocked": {"for": "4s", "severity": "warning"}})).await;
    let jobs: Api<Job> = Api::namespaced(c.env.client.clone(), &ns);
    let job: Job = serde_json::from_value(json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": "report"},
        "spec": {
            "suspend": true,
            "template": {"spec": {"restartPolicy": "Never", "containers": [
                {"name": "worker", "image": "busybox:1.36"},
                {"name": "log-sidecar", "image": "busybox:1.36"},
            ]}},
        },
    }))
    .unwrap();
    let job = jobs.create(&PostParams::default(), &job).await.expect("job created");
    let job_uid = job.metadata.uid.clone().expect("job uid");
    let op = Operator::start(&c, "op-0", &[]).await;

    // The labels of the Job's generated selector, so that a real Job controller adopts the
    // Pod instead of releasing it (which would drop the Job owner the rule looks for).
    let selector_labels = [
        ("app", "report"),
        ("batch.kubernetes.io/controller-uid", job_uid.as_str()),
        ("controller-uid", job_uid.as_str()),
    ];
    let mut manifest = test_pod("report-abcde", &selector_labels, &["worker", "log-sidecar"], &[]);
    manifest["metadata"]["ownerReferences"] = json!([{
        "apiVersion": "batch/v1", "kind": "Job", "name": "report", "uid": job_uid,
        "controller": true, "blockOwnerDeletion": true,
    }]);
    manifest["spec"]["restartPolicy"] = json!("Never");
    let pod = c.create_pod(manifest).await;
    drive(&pod, &[("worker", true), ("log-sidecar", true)]).await;
    let scrape = op
        .wait_scrape("legacy sidecar tracked", |s| {
            has_value(s, "sidecar_container_ready", &[("pod", "report-abcde"), ("container", "log-sidecar")], 1.0)
        })
        .await;
    assert_eq!(
        scrape.find("sidecar_container_ready", &[("container", "log-sidecar")])[0].labels["sidecar_type"],
        "legacy"
    );
    assert!(scrape.alerts().is_empty(), "{:?}", scrape.alerts());

    let t0 = Instant::now();
    pod.set_state("worker", State::terminated("Completed", 0)).await.unwrap();
    let (pending, fired) = observe_firing(&op, "report-abcde", "JobBlockedBySidecar").await;
    assert!(pending.is_some(), "JobBlockedBySidecar was never pending");
    assert_on_time("JobBlockedBySidecar", t0, fired, Duration::from_secs(4));
    op.wait_alerts(
        "job blocked",
        vec![owned_by(
            AlertSeries {
                alert: AlertName::JobBlockedBySidecar,
                policy: "batch",
                namespace: &ns,
                pod: "report-abcde",
                container: "log-sidecar",
                product: "unknown",
                ..MESH_NOT_READY
            }
            .labels(),
            "Job",
            "report",
        )],
    )
    .await;
    let events = c.wait_events("report-abcde", "Warning", "JobBlockedBySidecar", 1).await;
    let e = the_event(&events, "report-abcde", "JobBlockedBySidecar");
    AlertEvent {
        alert: AlertName::JobBlockedBySidecar,
        transition: TransitionKind::Fired,
        pod: "report-abcde",
        field_path: "spec.containers{log-sidecar}",
        policy: "batch",
    }
    .assert_matches(e);
    let note = e.note.as_deref().unwrap_or_default();
    assert!(note.contains("workload Job/report"), "the note names the Job: {note}");
    c.wait_status("batch", "job blocked", |s| status_counts(s, 1, 1, json!({"JobBlockedBySidecar": 1}), 0)).await;

    // The sidecar is stopped (as a fixed sidecar would stop itself): the Job can finish,
    // and the alert resolves: its series goes, a Normal Event says so, the counts follow.
    pod.set_state("log-sidecar", State::terminated("Completed", 0)).await.unwrap();
    op.wait_alerts("job no longer blocked", vec![]).await;
    let events = c.wait_events("report-abcde", "Normal", "JobBlockedBySidecarResolved", 1).await;
    let e = the_event(&events, "report-abcde", "JobBlockedBySidecarResolved");
    AlertEvent {
        alert: AlertName::JobBlockedBySidecar,
        transition: TransitionKind::Resolved,
        pod: "report-abcde",
        field_path: "spec.containers{log-sidecar}",
        policy: "batch",
    }
    .assert_matches(e);
    c.wait_status("batch", "job unblocked", |s| status_counts(s, 1, 0, json!({}), 0)).await;
    assert_eq!(c.event_count("report-abcde", "Warning", "JobBlockedBySidecar").await, 1, "announced once");
}

/// Seed 001: a native sidecar without a startupProbe; the main container starts before
/// the sidecar is ready → `MainStartedBeforeSidecarReady` (an instant alert).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn main_started_before_sidecar_ready() {
    let c = Cluster::start("startup").await;
    let ns = c.ns.clone();
    c.apply_app_policy("order", "shop", json!({"startupOrder": {"severity": "warning"}})).await;
    let op = Operator::start(&c, "op-0", &[]).await;
    // A readiness probe and no startup probe: the kubelet reports it started at once and
    // ready only once the probe passes.
    let mut manifest = native_pod("shop-1", "shop", "app", "envoy");
    manifest["spec"]["initContainers"][0]["readinessProbe"] = json!({"httpGet": {"path": "/ready", "port": 15021}});
    let pod = c.create_pod(manifest).await;
    // The sidecar starts (not ready yet: no startupProbe holds the main container back) …
    let started = pod.set_state("envoy", State::Running).await.unwrap();
    let envoy = &started.status.as_ref().unwrap().init_container_statuses.as_ref().unwrap()[0];
    assert_eq!((envoy.started, envoy.ready), (Some(true), false), "{envoy:?}");
    op.wait_scrape("envoy tracked", |s| {
        s.value("sidecar_container_ready", &[("pod", "shop-1"), ("container", "envoy")])
            .map(|_| ())
            .ok_or_else(|| "no".into())
    })
    .await;
    assert!(op.scrape().await.unwrap().alerts().is_empty());
    // … and the main container starts right away.
    pod.set_state("app", State::Running).await.unwrap();
    let alert = AlertName::MainStartedBeforeSidecarReady;
    let expected = vec![AlertSeries {
        alert,
        policy: "order",
        namespace: &ns,
        pod: "shop-1",
        container: "envoy",
        product: "envoy",
        ..MESH_NOT_READY
    }
    .labels()];
    op.wait_alerts("startup order", expected.clone()).await;
    let events = c.wait_events("shop-1", "Warning", "MainStartedBeforeSidecarReady", 1).await;
    let e = the_event(&events, "shop-1", "MainStartedBeforeSidecarReady");
    AlertEvent {
        alert: AlertName::MainStartedBeforeSidecarReady,
        transition: TransitionKind::Fired,
        pod: "shop-1",
        field_path: "spec.initContainers{envoy}",
        policy: "order",
    }
    .assert_matches(e);
    let note = e.note.as_deref().unwrap_or_default();
    assert!(note.contains("startupProbe"), "note suggests a startupProbe: {note}");
    c.wait_status("order", "startup order", |s| status_counts(s, 1, 1, json!({"MainStartedBeforeSidecarReady": 1}), 0))
        .await;
    // The sidecar becoming ready later does not undo the order of this run.
    drive(&pod, &[("app", true), ("envoy", true)]).await;
    op.wait_scrape("envoy ready", |s| {
        has_value(s, "sidecar_container_ready", &[("pod", "shop-1"), ("container", "envoy")], 1.0)
    })
    .await;
    assert_eq!(op.scrape().await.unwrap().alerts(), expected);
    assert_eq!(c.event_count("shop-1", "Warning", "MainStartedBeforeSidecarReady").await, 1);
}

/// Seed 001/002: on shutdown the sidecar stops before the main container:
/// `SidecarStoppedBeforeMain` while the Pod terminates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sidecar_stopped_before_main_on_shutdown() {
    let c = Cluster::start("shutdown").await;
    let ns = c.ns.clone();
    c.apply_app_policy("order", "cart", json!({"shutdownOrder": {"severity": "critical"}})).await;
    let op = Operator::start(&c, "op-0", &[]).await;
    // Bound to a node, the Pod stays while it terminates, until its kubelet deletes it.
    let pod = c.create_pod(native_pod("cart-1", "cart", "app", "istio-proxy")).await;
    drive(&pod, &[("app", true), ("istio-proxy", true)]).await;
    op.wait_scrape("cart-1 tracked", |s| {
        s.value("sidecar_container_ready", &[("pod", "cart-1")]).map(|_| ()).ok_or_else(|| "no".into())
    })
    .await;
    assert!(op.scrape().await.unwrap().alerts().is_empty());

    c.pods().delete("cart-1", &DeleteParams::default().grace_period(30)).await.expect("graceful delete");
    let terminating = pod.get().await.unwrap();
    assert!(terminating.metadata.deletion_timestamp.is_some(), "{:?}", terminating.metadata);
    // The sidecar dies a second into the termination while the app drains for another
    // second. The kubelet writes nothing while it stops the containers: one status once all
    // have stopped, each with its own finishedAt (as recorded on the real node).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let stopped = pod
        .stop(&[
            ("istio-proxy", State::terminated("Error", 137), Duration::from_secs(1)),
            ("app", State::terminated("Completed", 0), Duration::ZERO),
        ])
        .await
        .unwrap();
    assert_eq!(stopped.status.and_then(|s| s.phase).as_deref(), Some("Succeeded"));
    let (alert, severity) = (AlertName::SidecarStoppedBeforeMain, Severity::Critical);
    let expected = vec![AlertSeries {
        alert,
        severity,
        policy: "order",
        namespace: &ns,
        pod: "cart-1",
        ..MESH_NOT_READY
    }
    .labels()];
    op.wait_alerts("shutdown order", expected).await;
    let events = c.wait_events("cart-1", "Warning", "SidecarStoppedBeforeMain", 1).await;
    let e = the_event(&events, "cart-1", "SidecarStoppedBeforeMain");
    AlertEvent {
        alert: AlertName::SidecarStoppedBeforeMain,
        transition: TransitionKind::Fired,
        pod: "cart-1",
        field_path: "spec.initContainers{istio-proxy}",
        policy: "order",
    }
    .assert_matches(e);
    c.wait_status("order", "shutdown order", |s| status_counts(s, 1, 1, json!({"SidecarStoppedBeforeMain": 1}), 0))
        .await;

    // The kubelet removes the Pod (grace period 0): no series left.
    c.delete_pod_now("cart-1").await;
    op.wait_scrape("cart-1 gone", |s| {
        let left = s.find("sidecar_container_ready", &[("pod", "cart-1")]).len() + s.alerts().len();
        if left == 0 {
            Ok(())
        } else {
            Err(s.pod_series().join("\n"))
        }
    })
    .await;
    c.wait_status("order", "pod gone", |s| status_counts(s, 0, 0, json!({}), 0)).await;
}
