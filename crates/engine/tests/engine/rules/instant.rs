//! Rules without a `for`: shutdown order, Jobs blocked by a sidecar, which containers are
//! sidecars (native, names, pattern, catalog), and the sidecar-sprawl misconfiguration.

use super::brief;
use sidecar_watch_engine::{evaluate, AlertName::*, AlertState::*, Around, CompiledPolicy, PodHistory};
use sidecar_watch_testkit::engine::*;

#[test]
fn shutdown_order_cases() {
    let stopped = terminated("Completed", 0, at("10:00:00"), at("10:29:29"));
    for (case, deleting, main, fires) in [
        ("main still running", true, running(at("10:00:01"), true), true),
        ("main finished after the sidecar", true, terminated("Completed", 0, at("10:00:01"), at("10:29:40")), true),
        ("main finished first", true, terminated("Completed", 0, at("10:00:01"), at("10:29:00")), false),
        ("not terminating", false, running(at("10:00:01"), true), false),
    ] {
        let mut view = pod(vec![regular("istio-proxy", stopped.clone()), regular("app", main)]);
        view.deleting_since = deleting.then(|| at("10:30:28").into());
        let evaluation = eval(&view, &only("shutdownOrder", ""), now());
        let expected: Vec<_> = fires
            .then(|| (SidecarStoppedBeforeMain, "istio-proxy".to_string(), Firing, Some(at("10:29:29"))))
            .into_iter()
            .collect();
        assert_eq!(brief(&evaluation), expected, "{case}");
    }
}

#[test]
fn job_blocked_needs_a_job_and_every_main_finished() {
    let done = terminated("Completed", 0, at("10:00:01"), at("10:05:00"));
    for (case, job, mains, fires) in [
        ("job, main done", true, vec![regular("a", done.clone())], Some(at("10:05:00"))),
        (
            "job, latest main finish counts",
            true,
            vec![regular("a", done.clone()), regular("b", terminated("Error", 1, at("10:00:01"), at("10:07:00")))],
            Some(at("10:07:00")),
        ),
        (
            "job, one main still running",
            true,
            vec![regular("a", done.clone()), regular("b", running(at("10:00:01"), true))],
            None,
        ),
        ("not a job", false, vec![regular("a", done.clone())], None),
    ] {
        let mut containers = mains;
        containers.push(regular("log-sidecar", running(at("10:00:00"), true)));
        let mut view = pod(containers);
        view.group_mut().owned_by_job = job;
        let evaluation = eval(&view, &only("jobBlocked", ""), now());
        let expected: Vec<_> =
            fires.map(|s| (JobBlockedBySidecar, "log-sidecar".to_string(), Firing, Some(s))).into_iter().collect();
        assert_eq!(brief(&evaluation), expected, "{case}");
    }
}

#[test]
fn sidecars_by_pattern_names_and_native() {
    let view = pod(vec![
        container("envoy-config", sidecar_watch_engine::ContainerKind::Init, running(at("10:00:00"), false)),
        native("agent", running(at("10:00:00"), false)),
        regular("envoy", running(at("10:00:00"), false)),
        regular("envoy-config", running(at("10:00:00"), false)),
        regular("log-sidecar", running(at("10:00:00"), false)),
        regular("app", running(at("10:00:00"), false)),
    ]);
    let not_ready = |p: &CompiledPolicy| -> Vec<String> {
        eval(&view, p, now())
            .alerts
            .iter()
            .filter(|a| a.name == SidecarContainerNotReady)
            .map(|a| a.container.clone())
            .collect()
    };
    assert_eq!(not_ready(&CompiledPolicy::builtin()), ["agent", "envoy", "log-sidecar"]);
    // The catalog (on unless turned off) knows `envoy` whatever else the policy names.
    assert_eq!(not_ready(&policy("sidecars: {native: false, names: [app]}")), ["app", "envoy"]);
    assert_eq!(not_ready(&policy("sidecars: {native: false, catalog: false, names: [app]}")), ["app"]);
    assert_eq!(not_ready(&policy("sidecars: {native: true, pattern: 'envoy-.*'}")), ["agent", "envoy", "envoy-config"]);
    assert_eq!(
        not_ready(&policy("sidecars: {native: true, catalog: false, pattern: 'envoy-.*'}")),
        ["agent", "envoy-config"]
    );
    assert_eq!(not_ready(&policy("sidecars: {native: false, catalog: false, pattern: 'envoy'}")), ["envoy"]);
}

// ---- misconfiguration boundaries ----

#[test]
fn sidecar_sprawl_is_reported_from_five_sidecars() {
    use sidecar_watch_engine::Check;
    for (sidecars, expected) in [(4usize, 0usize), (5, 1), (6, 1)] {
        let mut containers: Vec<_> =
            (0..sidecars).map(|i| native(&format!("agent-{i}"), running(at("10:00:00"), true))).collect();
        containers.push(regular("app", running(at("10:00:01"), true)));
        let evaluation =
            evaluate(&pod(containers), &only("misconfiguration", ""), &PodHistory::default(), now(), Around::default());
        let sprawl: Vec<_> = evaluation.alerts.iter().filter(|a| a.check == Some(Check::SidecarSprawl)).collect();
        assert_eq!(sprawl.len(), expected, "{sidecars} sidecars: {:#?}", evaluation.alerts);
        if let Some(alert) = sprawl.first() {
            assert_eq!((alert.container.as_str(), alert.state), ("", Firing), "a Pod-level finding");
            assert!(alert.message.contains(&format!("runs {sidecars} sidecars")), "{}", alert.message);
        }
    }
}
