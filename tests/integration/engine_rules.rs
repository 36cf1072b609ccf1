//! Table-driven tests of every rule and its boundaries: `for` (pending until exactly
//! since+for), restart thresholds and the (now-window, now] window, OOM windows, the exact
//! `next_change`, disabled rules, severity overrides, and history-driven cases where
//! [`PodHistory::observe`] watches a sequence of Pod states.

use crate::fixtures::*;
use jiff::Timestamp;
use sidecar_watch::api::Severity;
use sidecar_watch::engine::history::HistoryMarks;
use sidecar_watch::engine::pod::{ConditionView, ContainerStatusView, SpecFlags};
use sidecar_watch::engine::{
    evaluate, AlertName, AlertName::*, AlertState, AlertState::*, CompiledPolicy, ContainerHistory, Evaluation,
    Observation, PodHistory, PodView, Stamp,
};

/// The (name, container, state, since) of every alert.
fn brief(evaluation: &Evaluation) -> Vec<(AlertName, String, AlertState, Option<Timestamp>)> {
    evaluation.alerts.iter().map(|a| (a.name, a.container.clone(), a.state, a.since)).collect()
}

/// A Pod with a ready main container `app` (running since 10:00:01) and the sidecar `sidecar`.
fn with_main(sidecar: sidecar_watch::engine::ContainerView) -> PodView {
    pod(vec![sidecar, regular("app", running(at("10:00:01"), true))])
}

// ---- `for` boundaries ----

/// One Pod per for-rule whose condition holds since `since`, with only that rule enabled.
fn for_rule_cases() -> Vec<(&'static str, AlertName, u64, PodView, Timestamp)> {
    let not_ready = with_main(native("envoy", running(at("10:00:00"), false)));
    let crash = pod(vec![
        native(
            "envoy",
            restarted(waiting("CrashLoopBackOff"), 1, Some(termination("Error", 1, at("10:00:00"), at("10:10:00")))),
        ),
        regular("app", running(at("10:00:01"), true)),
    ]);
    let mut job = pod(vec![
        regular("migrate", terminated("Completed", 0, at("10:00:01"), at("10:05:00"))),
        regular("log-sidecar", running(at("10:00:00"), true)),
    ]);
    job.group_mut().owned_by_job = true;
    vec![
        ("sidecarNotReady", SidecarContainerNotReady, 300, not_ready.clone(), at("10:00:00")),
        ("mainReadySidecarNotReady", MainContainerReadyButSidecarNot, 120, not_ready, at("10:00:01")),
        ("crashLoop", SidecarCrashLooping, 300, crash, at("10:10:00")),
        ("jobBlocked", JobBlockedBySidecar, 300, job, at("10:05:00")),
    ]
}

#[test]
fn for_rules_are_pending_until_exactly_since_plus_for() {
    for (key, name, default_for, view, since) in for_rule_cases() {
        for (rule_for, settings) in [(default_for as i64, String::new()), (90, "for: 90s".to_string())] {
            let policy = only(key, &settings);
            let due = plus(since, rule_for);
            let sidecar = view
                .containers
                .iter()
                .find(|c| crate::fixtures::sidecar_type(&policy, &view, c).is_some())
                .unwrap()
                .name
                .clone();
            for (offset, state, next) in [
                (-rule_for, Pending, Some(due)), // the condition just started
                (-1, Pending, Some(due)),
                (0, Firing, None),
                (1, Firing, None),
                (86_400, Firing, None),
            ] {
                let now = plus(due, offset);
                let evaluation = eval(&view, &policy, now);
                assert_eq!(
                    brief(&evaluation),
                    vec![(name, sidecar.to_string(), state, Some(since))],
                    "{key} {settings:?} at due{offset:+}s"
                );
                assert_eq!(evaluation.next_change, next, "{key} {settings:?} at due{offset:+}s");
            }
        }
    }
}

#[test]
fn for_zero_fires_immediately() {
    let view = with_main(native("envoy", running(at("10:00:00"), false)));
    let evaluation = eval(&view, &only("sidecarNotReady", "for: 0s"), at("10:00:00"));
    assert_eq!(brief(&evaluation), vec![(SidecarContainerNotReady, "envoy".into(), Firing, Some(at("10:00:00")))]);
    assert_eq!(evaluation.next_change, None);
}

// ---- restarts ----

/// A ready, running sidecar with `count` restarts whose times the operator observed.
fn restarts_at(times: &[Timestamp]) -> (PodView, PodHistory) {
    let last = times.last().map(|t| termination("Error", 137, plus(*t, -60), *t));
    let started = times.last().map_or(at("10:00:00"), |t| plus(*t, 1));
    let status = restarted(running(started, true), times.len() as u32, last);
    let mut view = with_main(native("envoy", status));
    // Restarts placed at the Pod start (unknown times) must not leak into these cases.
    view.started_at = Some(at("00:00:00").into());
    view.created_at = Some(at("00:00:00").into());
    let history = PodHistory {
        // envoy, the native sidecar, comes first in the view.
        containers: Box::new([ContainerHistory {
            at: 0,
            restarts: times.iter().copied().map(Stamp::new).collect(),
            ..ContainerHistory::default()
        }]),
        ..PodHistory::default()
    };
    (view, history)
}

#[test]
fn restart_threshold_and_window_boundaries() {
    let now = now();
    let ago = |secs: i64| plus(now, -secs);
    // The default window, 15m.
    let w = 900;
    // (case, restart times, expected since, expected next_change)
    type Case = (&'static str, Vec<Timestamp>, Option<Timestamp>, Option<Timestamp>);
    let cases: Vec<Case> = vec![
        ("one below the threshold", vec![ago(600), ago(300)], None, None),
        ("exactly the threshold", vec![ago(600), ago(300), ago(60)], Some(ago(60)), Some(plus(ago(600), w))),
        ("oldest exactly `window` ago is not counted", vec![ago(w), ago(300), ago(60)], None, None),
        ("oldest one second inside the window", vec![ago(w - 1), ago(300), ago(60)], Some(ago(60)), Some(plus(now, 1))),
        ("a restart exactly now counts", vec![ago(600), ago(300), now], Some(now), Some(plus(ago(600), w))),
        ("older restarts outside the window", vec![ago(5000), ago(4000), ago(w + 1), ago(10), ago(5)], None, None),
        (
            "above the threshold: since is the third, the alert holds until two have left",
            vec![ago(800), ago(700), ago(600), ago(500)],
            Some(ago(600)),
            Some(plus(ago(700), w)),
        ),
    ];
    for (case, times, since, next) in cases {
        let (view, history) = restarts_at(&times);
        let evaluation = evaluate(&view, &only("restarts", ""), &history, now);
        let expected: Vec<_> =
            since.map(|s| (SidecarRestartingFrequently, "envoy".to_string(), Firing, Some(s))).into_iter().collect();
        assert_eq!(brief(&evaluation), expected, "{case}");
        assert_eq!(evaluation.next_change, next, "{case}");
        // At next_change the alert is gone (the oldest counted restart left the window).
        if let Some(next) = next {
            if times.len() == 3 {
                assert!(
                    evaluate(&view, &only("restarts", ""), &history, next).alerts.is_empty(),
                    "{case} at next_change"
                );
                assert!(
                    !evaluate(&view, &only("restarts", ""), &history, plus(next, -1)).alerts.is_empty(),
                    "{case} just before next_change"
                );
            }
        }
    }
}

#[test]
fn restart_threshold_and_window_are_configurable() {
    let now = now();
    let (view, history) = restarts_at(&[plus(now, -3500), plus(now, -100)]);
    let policy = only("restarts", "threshold: 2, window: 1h, severity: warning");
    let evaluation = evaluate(&view, &policy, &history, now);
    assert_eq!(brief(&evaluation), vec![(SidecarRestartingFrequently, "envoy".into(), Firing, Some(plus(now, -100)))]);
    assert_eq!(evaluation.alerts[0].severity, Severity::Warning);
    assert_eq!(evaluation.next_change, Some(plus(now, 100)));
    let one = only("restarts", "threshold: 1");
    assert_eq!(evaluate(&view, &one, &history, now).alerts[0].since, Some(plus(now, -100)));
}

#[test]
fn restarts_without_history_use_last_termination_and_pod_start() {
    // restartCount 3, only the last finishedAt known: the other two count at the Pod's start.
    let status =
        restarted(running(at("10:25:01"), true), 3, Some(termination("Error", 1, at("10:24:00"), at("10:25:00"))));
    let mut view = with_main(native("envoy", status));
    view.started_at = Some(at("10:20:00").into());
    let evaluation = eval(&view, &only("restarts", ""), now());
    assert_eq!(brief(&evaluation), vec![(SidecarRestartingFrequently, "envoy".into(), Firing, Some(at("10:25:00")))]);
    assert_eq!(evaluation.next_change, Some(at("10:35:00")), "the Pod-start restarts leave the window first");
    // A Pod started before the window: only one restart counts.
    view.started_at = Some(at("10:00:00").into());
    assert!(eval(&view, &only("restarts", ""), now()).alerts.is_empty());
}

// ---- OOM ----

#[test]
fn oom_killed_inside_and_outside_the_window() {
    let now = now();
    for (case, finished_ago, window, active) in [
        ("just now", 0, 3600, true),
        ("one second inside", 3599, 3600, true),
        ("exactly `window` ago", 3600, 3600, false),
        ("outside", 3601, 3600, false),
        ("custom window 10m, inside", 599, 600, true),
        ("custom window 10m, outside", 601, 600, false),
    ] {
        let finished = plus(now, -finished_ago);
        let status = restarted(
            running(plus(finished, 1), true),
            1,
            Some(termination("OOMKilled", 137, at("00:00:00"), finished)),
        );
        let view = with_main(native("agent", status));
        let policy = only("oomKilled", &format!("window: {window}s"));
        let evaluation = eval(&view, &policy, now);
        if active {
            assert_eq!(brief(&evaluation), vec![(SidecarOomKilled, "agent".into(), Firing, Some(finished))], "{case}");
            assert_eq!(evaluation.next_change, Some(plus(finished, window)), "{case}");
        } else {
            assert_eq!((&evaluation.alerts, evaluation.next_change), (&vec![], None), "{case}");
        }
    }
    // A sidecar that is terminated right now with OOMKilled counts as well; other reasons do not.
    for (reason, alerts) in [("OOMKilled", 1), ("Error", 0), ("Completed", 0)] {
        let view = with_main(native("agent", terminated(reason, 137, at("10:00:00"), at("10:29:00"))));
        assert_eq!(eval(&view, &only("oomKilled", ""), now).alerts.len(), alerts, "{reason}");
    }
}

// ---- crash loop ----

#[test]
fn crash_loop_episode_and_bridging() {
    let now = now();
    let crash = |times: &[Timestamp], state: ContainerStatusView| {
        let (mut view, history) = restarts_at(times);
        let status = view.containers[0].status().unwrap();
        // `state` is not ready: it keeps the rest of the status (started, restarts, last exit).
        assert!(!state.ready());
        let mut replaced = state;
        replaced.set_started(status.started());
        replaced.set_restart_count(status.restart_count());
        replaced.last_termination = status.last_termination.clone();
        view.containers[0].set_status(Some(replaced));
        (view, history)
    };
    // Restarts 10 minutes or less apart are one episode; a longer gap starts a new one.
    let times = [plus(now, -3000), plus(now, -900), plus(now, -400), plus(now, -100)];
    let (view, history) = crash(&times, waiting("CrashLoopBackOff"));
    let evaluation = evaluate(&view, &only("crashLoop", ""), &history, now);
    assert_eq!(brief(&evaluation), vec![(SidecarCrashLooping, "envoy".into(), Firing, Some(plus(now, -900)))]);
    // Exactly 10 minutes apart still belongs to the episode.
    let times = [plus(now, -700), plus(now, -100)];
    let (view, history) = crash(&times, waiting("CrashLoopBackOff"));
    assert_eq!(evaluate(&view, &only("crashLoop", ""), &history, now).alerts[0].since, Some(plus(now, -700)));
    let times = [plus(now, -701), plus(now, -100)];
    let (view, history) = crash(&times, waiting("CrashLoopBackOff"));
    let evaluation = evaluate(&view, &only("crashLoop", ""), &history, now);
    assert_eq!(brief(&evaluation), vec![(SidecarCrashLooping, "envoy".into(), Pending, Some(plus(now, -100)))]);
    assert_eq!(evaluation.next_change, Some(plus(now, 200)));

    // A short run between back-offs keeps the episode (bridging) until startedAt + 5m.
    let times = [plus(now, -400), plus(now, -100)];
    let (view, history) = crash(&times, running(plus(now, -90), false));
    let evaluation = evaluate(&view, &only("crashLoop", ""), &history, plus(now, -150));
    assert_eq!(brief(&evaluation), vec![(SidecarCrashLooping, "envoy".into(), Pending, Some(plus(now, -400)))]);
    assert_eq!(evaluation.next_change, Some(plus(now, -100)), "fires at since+5m, before the bridge ends");
    let evaluation = evaluate(&view, &only("crashLoop", ""), &history, now);
    assert_eq!(brief(&evaluation), vec![(SidecarCrashLooping, "envoy".into(), Firing, Some(plus(now, -400)))]);
    assert_eq!(evaluation.next_change, Some(plus(now, 210)), "the bridge ends 5m after the run started");
    assert!(!evaluate(&view, &only("crashLoop", ""), &history, plus(now, 209)).alerts.is_empty());
    assert!(evaluate(&view, &only("crashLoop", ""), &history, plus(now, 210)).alerts.is_empty());
    // One restart and running: not a loop.
    let (view, history) = crash(&[plus(now, -100)], running(plus(now, -90), false));
    assert!(evaluate(&view, &only("crashLoop", ""), &history, now).alerts.is_empty());
}

// ---- instant rules ----

/// A native sidecar with a readiness probe and nothing that makes the kubelet wait for it (no
/// `startupProbe`, no `postStart` hook): the main containers start as soon as it runs.
fn unordered_native(name: &str, status: ContainerStatusView) -> sidecar_watch::engine::ContainerView {
    let mut sidecar = native(name, status);
    sidecar.spec_mut().flags.remove(SpecFlags::STARTUP_PROBE);
    sidecar
}

#[test]
fn startup_order_cases() {
    let now = now();
    // The histories of envoy (this run since 10:00:00) and app (since 10:00:01).
    // envoy, the native sidecar, comes first in the view, app second.
    let seen = |at_: u32, run: &str, marks: HistoryMarks, first_ready_at: Option<&str>| ContainerHistory {
        at: at_,
        ready_changed_at: first_ready_at.map(|t| at(t).into()),
        watched_run_started_at: Some(at(run).into()),
        marks: if first_ready_at.is_some() { marks | HistoryMarks::WATCHED_RUN_SEEN_READY } else { marks },
        ..ContainerHistory::default()
    };
    // One observed status showed app running beside envoy's run, not ready yet.
    let beside = || {
        vec![
            seen(0, "10:00:00", HistoryMarks::UNREADY_BESIDE_RUNNING, Some("10:00:05")),
            seen(1, "10:00:01", HistoryMarks::RAN_BESIDE_UNREADY_NATIVE, None),
        ]
    };
    // (case, sidecar status, histories, Pod Ready condition, expected since)
    type Case = (&'static str, ContainerStatusView, Vec<ContainerHistory>, Option<ConditionView>, Option<Timestamp>);
    let cases: Vec<Case> = vec![
        (
            "seen ready by the operator only after main started (its own clock says nothing)",
            running(at("10:00:00"), true),
            vec![seen(0, "10:00:00", HistoryMarks::empty(), Some("10:00:05"))],
            None,
            None,
        ),
        (
            "one status showed main running beside the unready run",
            running(at("10:00:00"), true),
            beside(),
            None,
            Some(at("10:00:01")),
        ),
        (
            "main ran beside another container's unready run, not a native sidecar's",
            running(at("10:00:00"), true),
            {
                let mut h = beside();
                h[1].marks = HistoryMarks::RAN_BESIDE_UNREADY_REGULAR;
                h
            },
            None,
            None,
        ),
        ("ready now, nothing known", running(at("10:00:00"), true), vec![], None, None),
        ("started after main", running(at("10:00:02"), true), vec![], None, Some(at("10:00:01"))),
        ("started in the same second as main", running(at("10:00:01"), true), vec![], None, None),
        ("never ready", running(at("10:00:00"), false), vec![], None, Some(at("10:00:01"))),
        (
            "not ready, Pod Ready=False only since 10:20 (it was ready before)",
            running(at("10:00:00"), false),
            vec![],
            Some(ConditionView { status: false, since: Some(at("10:20:00").into()) }),
            None,
        ),
        (
            "not ready, Pod never Ready",
            running(at("10:00:00"), false),
            vec![],
            Some(ConditionView { status: false, since: Some(at("09:59:59").into()) }),
            Some(at("10:00:01")),
        ),
        ("terminated", terminated("Completed", 0, at("10:00:00"), at("10:20:00")), vec![], None, None),
        ("restarted: only the first run tells", restarted(running(at("10:00:00"), false), 1, None), vec![], None, None),
    ];
    for (case, status, histories, condition, since) in cases {
        let history = PodHistory { containers: histories.into(), ..PodHistory::default() };
        let mut view = with_main(unordered_native("envoy", status));
        view.set_ready_condition(condition);
        let evaluation = evaluate(&view, &only("startupOrder", ""), &history, now);
        let expected: Vec<_> =
            since.map(|s| (MainStartedBeforeSidecarReady, "envoy".to_string(), Firing, Some(s))).into_iter().collect();
        assert_eq!(brief(&evaluation), expected, "{case}");
        assert_eq!(evaluation.next_change, None, "{case}");
        // With a startupProbe or a postStart hook the kubelet made app wait: never reported.
        for gate in [SpecFlags::STARTUP_PROBE, SpecFlags::POST_START] {
            let (mut gated, mut containers) = (view.clone(), view.containers.to_vec());
            containers[0].spec_mut().flags.insert(gate);
            gated.containers = containers.into();
            let evaluation = evaluate(&gated, &only("startupOrder", ""), &history, now);
            assert_eq!(brief(&evaluation), [], "{case} with {gate:?}");
        }
    }
}

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

// ---- disabled rules and severity overrides, on every scenario ----

#[test]
fn disabling_a_rule_removes_exactly_its_alerts() {
    let mut seen = std::collections::BTreeSet::new();
    for scenario in Scenario::ALL {
        let (view, file) = (load_view(scenario), scenario.file());
        let all = eval(&view, &CompiledPolicy::builtin(), now());
        seen.extend(all.alerts.iter().map(|a| a.name));
        for (key, name) in RULE_KEYS {
            let disabled = policy(&format!("rules: {{{key}: {{enabled: false}}}}"));
            let evaluation = eval(&view, &disabled, now());
            let expected: Vec<Row> = rows(&all).into_iter().filter(|r| r.0 != name).collect();
            assert_eq!(rows(&evaluation), expected, "{file} without {key}");
        }
    }
    // SidecarVersionDrift needs a policy's minimumVersions, which the built-in policy has none
    // of: its rule is exercised beside its code (crates/engine/src/rules/drift/tests.rs).
    assert_eq!(seen.len(), AlertName::ALL.len() - 1, "the fixtures exercise every other rule: {seen:?}");
}

#[test]
fn severity_overrides_apply_to_their_rule_only() {
    for scenario in Scenario::ALL {
        let (view, file) = (load_view(scenario), scenario.file());
        let all = eval(&view, &CompiledPolicy::builtin(), now());
        for (key, name) in RULE_KEYS {
            for severity in [Severity::Info, Severity::Warning, Severity::Critical] {
                let overridden = policy(&format!("rules: {{{key}: {{severity: {severity}}}}}"));
                let evaluation = eval(&view, &overridden, now());
                let expected: Vec<Row> = rows(&all)
                    .into_iter()
                    .map(|mut r| {
                        if r.0 == name {
                            r.5 = severity;
                        }
                        r
                    })
                    .collect();
                assert_eq!(rows(&evaluation), expected, "{file} {key} {severity}");
            }
        }
    }
}

// ---- history-driven ----

#[test]
fn a_previous_state_with_other_containers_counts_as_none() {
    let first = with_main(native("envoy", running(at("10:00:00"), true)));
    let mut history = PodHistory::default();
    history.observe(None, &first, at("10:00:02"));
    // envoy restarted twice and turned unready, but the state said to come before names other
    // containers in those places (no Pod can change its containers): every container is seen
    // for the first time, no restart time or readiness flip is made up from the mismatch.
    let last = termination("Error", 1, at("10:00:00"), at("10:04:59"));
    let now_state = with_main(native("envoy", restarted(running(at("10:05:00"), false), 2, Some(last))));
    let other =
        pod(vec![regular("app", running(at("10:00:01"), true)), native("envoy", running(at("10:00:00"), true))]);
    history.observe(Some(&other), &now_state, at("10:05:01"));
    let envoy = history.container(&now_state, "envoy").unwrap();
    assert_eq!((envoy.restarts.len(), envoy.ready_changed_at), (0, None));
    // The same with the right previous state records both.
    let mut history = PodHistory::default();
    history.observe(None, &first, at("10:00:02"));
    history.observe(Some(&first), &now_state, at("10:05:01"));
    let envoy = history.container(&now_state, "envoy").unwrap();
    assert_eq!((envoy.restarts.len(), envoy.ready_changed_at), (2, Some(at("10:05:01").into())));
}

#[test]
fn start_order_marks_hold_for_the_run_they_were_seen_in() {
    let mut history = Observer::default();
    history.observe(&with_main(unordered_native("envoy", running(at("10:00:00"), false))), at("10:00:02"));
    assert!(history.container("envoy").unwrap().marks.contains(HistoryMarks::UNREADY_BESIDE_RUNNING));
    assert!(history.container("app").unwrap().marks.contains(HistoryMarks::RAN_BESIDE_UNREADY_NATIVE));
    // envoy's next run, ready: what was seen of the first run is not this run's.
    let last = termination("Error", 1, at("10:00:00"), at("10:04:59"));
    let next_run = with_main(unordered_native("envoy", restarted(running(at("10:05:00"), true), 1, Some(last))));
    history.observe(&next_run, at("10:05:01"));
    assert!(!history.container("envoy").unwrap().marks.intersects(HistoryMarks::START_ORDER));
    // app's run is the same: its half stays, but alone it pairs with nothing.
    assert!(history.container("app").unwrap().marks.contains(HistoryMarks::RAN_BESIDE_UNREADY_NATIVE));
    assert_eq!(brief(&evaluate(&next_run, &only("startupOrder", ""), &history, now())), []);
}

#[test]
fn observed_readiness_flip_gives_since() {
    let mut history = Observer::default();
    let ready = with_main(native("envoy", running(at("10:00:00"), true)));
    let not_ready = with_main(native("envoy", running(at("10:00:00"), false)));
    assert_eq!(history.observe(&ready, at("10:00:10")), vec![]);
    assert_eq!(history.observe(&not_ready, at("10:20:00")), vec![]);
    assert_eq!(history.container("envoy").unwrap().ready_changed_at, Some(at("10:20:00").into()));
    let evaluation = evaluate(&not_ready, &CompiledPolicy::builtin(), &history, now());
    assert_eq!(
        brief(&evaluation),
        vec![
            (SidecarContainerNotReady, "envoy".into(), Firing, Some(at("10:20:00"))),
            (MainContainerReadyButSidecarNot, "envoy".into(), Firing, Some(at("10:20:00"))),
        ],
        "no MainStartedBeforeSidecarReady: the sidecar was seen ready"
    );
    // Not yet 5 minutes: pending until exactly 10:25:00.
    let early = evaluate(&not_ready, &CompiledPolicy::builtin(), &history, at("10:24:59"));
    assert_eq!(early.alerts[0].state, Pending);
    assert_eq!(early.alerts[1].state, Firing, "mainReadySidecarNotReady fired at 10:22:00");
    assert_eq!(early.next_change, Some(at("10:25:00")));
    // Ready again: everything resolves, and the run seen ready at 10:00:10 is not mistaken
    // for a new one whose start-up took 31 minutes.
    assert_eq!(history.observe(&ready, at("10:31:00")), vec![]);
    assert!(!history.container("envoy").unwrap().watched_run_seen_ready());
    let quiet = evaluate(&ready, &CompiledPolicy::builtin(), &history, at("10:31:00"));
    assert_eq!((quiet.alerts, quiet.next_change, quiet.clocked), (vec![], None, vec![]));
}

#[test]
fn observed_restarts_are_recorded_with_finished_at() {
    let mut history = Observer::default();
    let state = |count: u32, finished: Option<&str>| {
        let last = finished.map(|f| termination("Error", 137, plus(at(f), -30), at(f)));
        with_main(native("envoy", restarted(running(at("10:00:00"), true), count, last)))
    };
    history.observe(&state(0, None), at("10:00:00"));
    history.observe(&state(1, Some("10:18:00")), at("10:18:05"));
    history.observe(&state(2, Some("10:22:00")), at("10:22:05"));
    // Two restarts in one gap: the newest at its finishedAt, the other at the previous observation.
    history.observe(&state(4, Some("10:27:00")), at("10:27:05"));
    let envoy = history.container("envoy").unwrap();
    let restarts: Vec<Timestamp> = envoy.restarts.iter().map(|s| s.timestamp()).collect();
    assert_eq!(restarts, [at("10:18:00"), at("10:22:00"), at("10:22:05"), at("10:27:00")]);
    let view = state(4, Some("10:27:00"));
    let evaluation = evaluate(&view, &only("restarts", ""), &history, now());
    assert_eq!(brief(&evaluation), vec![(SidecarRestartingFrequently, "envoy".into(), Firing, Some(at("10:22:05")))]);
    assert_eq!(evaluation.next_change, Some(at("10:37:00")), "when the second-oldest leaves the 15m window");
    // Without a finishedAt the observation time is used.
    history.observe(&state(5, None), at("10:29:00"));
    assert_eq!(history.container("envoy").unwrap().restarts.last().map(|s| s.timestamp()), Some(at("10:29:00")));
}

#[test]
fn observed_start_ups_are_timed_and_start_order_kept_from_the_status_that_showed_it() {
    let sidecar = |ready: bool| unordered_native("envoy", running(at("10:00:02"), ready));
    let app = |started: &str| regular("app", running(at(started), true));
    let app_waiting = regular("app", waiting("ContainerCreating"));

    // Main starts one second after the sidecar, which becomes ready 8s later: the start-up is
    // timed (the operator's clock, for the metric), and the status of 10:00:03 showed app
    // running beside envoy not ready yet, which stays the finding once envoy is ready.
    let mut history = Observer::default();
    assert_eq!(history.observe(&pod(vec![sidecar(false), app_waiting.clone()]), at("10:00:02")), vec![]);
    assert_eq!(history.observe(&pod(vec![sidecar(false), app("10:00:03")]), at("10:00:03")), vec![]);
    let ready = pod(vec![sidecar(true), app("10:00:03")]);
    assert_eq!(
        history.observe(&ready, at("10:00:10")),
        vec![Observation::StartedUp { container: "envoy".into(), seconds: 8.0 }]
    );
    assert!(history.container("envoy").unwrap().watched_run_seen_ready());
    let evaluation = evaluate(&ready, &only("startupOrder", ""), &history, now());
    assert_eq!(brief(&evaluation), vec![(MainStartedBeforeSidecarReady, "envoy".into(), Firing, Some(at("10:00:03")))]);
    assert_eq!(
        evaluation.alerts[0].message,
        "Main container app in Pod shop/web-1 started before sidecar envoy was ready: the sidecar was reported not \
         ready while app was running; add a startupProbe so the kubelet waits for it"
    );
    // A second flip does not report another start-up.
    history.observe(&pod(vec![sidecar(false), app("10:00:03")]), at("10:10:00"));
    assert_eq!(history.observe(&ready, at("10:11:00")), vec![]);
    assert_eq!(evaluate(&ready, &only("startupOrder", ""), &history, now()).alerts.len(), 1);

    // Ready before the main container started: no alert.
    let mut history = Observer::default();
    history.observe(&pod(vec![sidecar(false), app_waiting.clone()]), at("10:00:02"));
    let started = history.observe(&pod(vec![sidecar(true), app_waiting]), at("10:00:07"));
    assert_eq!(started, vec![Observation::StartedUp { container: "envoy".into(), seconds: 5.0 }]);
    let good = pod(vec![sidecar(true), app("10:00:08")]);
    history.observe(&good, at("10:00:08"));
    assert!(evaluate(&good, &only("startupOrder", ""), &history, now()).alerts.is_empty());

    // First seen already ready: no start-up to time.
    let mut history = Observer::default();
    assert_eq!(history.observe(&good, at("10:05:00")), vec![]);
    assert_eq!(history.container("envoy").unwrap().watched_run_started_at, None);

    // First seen mid-run while briefly unready (an operator restart or a relist), the Pod
    // Ready=False only since 10:20, after the run started: its start-up is long over. Once
    // ready again: no start-up timed, no startup-order alert.
    let mut unready = pod(vec![sidecar(false), app("10:00:03")]);
    unready.set_ready_condition(Some(ConditionView { status: false, since: Some(at("10:20:00").into()) }));
    let mut history = Observer::default();
    assert_eq!(history.observe(&unready, at("10:20:01")), vec![]);
    assert_eq!(history.container("envoy").unwrap().watched_run_started_at, None);
    let mut ready = pod(vec![sidecar(true), app("10:00:03")]);
    ready.set_ready_condition(Some(ConditionView { status: true, since: Some(at("10:20:02").into()) }));
    assert_eq!(history.observe(&ready, at("10:20:02")), vec![]);
    assert!(evaluate(&ready, &only("startupOrder", ""), &history, now()).alerts.is_empty());
}

/// What the kubelet writes, one fact at a time, for a native sidecar `envoy` that runs from
/// 13:47:14 and a main container `app` that runs from 13:47:22 (a real kubelet's times).
#[derive(Clone, Copy, Debug, Default)]
struct Written {
    envoy_running: bool,
    envoy_started: bool,
    app_running: bool,
    envoy_ready: bool,
    app_ready: bool,
}

impl Written {
    /// The Pod as that status shows it, with `flags` on envoy: created 13:47:12, `Ready` False
    /// since then until every container is ready.
    fn view(self, flags: SpecFlags) -> PodView {
        let envoy = if self.envoy_running {
            let mut envoy = running(at("13:47:14"), self.envoy_ready);
            envoy.set_started(Some(self.envoy_started));
            envoy
        } else {
            waiting("PodInitializing")
        };
        let app = if self.app_running { running(at("13:47:22"), self.app_ready) } else { waiting("PodInitializing") };
        let mut sidecar = native("envoy", envoy);
        sidecar.spec_mut().flags = flags;
        let mut view = pod(vec![sidecar, regular("app", app)]);
        (view.created_at, view.started_at) = (Some(at("13:47:12").into()), Some(at("13:47:12").into()));
        let ready = self.envoy_ready && self.app_ready;
        let since = if ready { at("13:47:40") } else { at("13:47:12") };
        view.set_ready_condition(Some(ConditionView { status: ready, since: Some(since.into()) }));
        view
    }
}

/// Every sequence of status writes the kubelet can make for [`Written`]: envoy runs, then is
/// started; app runs only then (the startupProbe or postStart hook holds it back), and envoy's
/// ready flip comes before, with or after app's start, in any grouping of the facts into
/// writes (the status manager batches what changed between two writes).
fn kubelet_write_sequences() -> Vec<Vec<Written>> {
    type Fact = fn(&mut Written);
    let (runs, started, app_runs, ready, app_ready): (Fact, Fact, Fact, Fact, Fact) = (
        |w| w.envoy_running = true,
        |w| w.envoy_started = true,
        |w| w.app_running = true,
        |w| w.envoy_ready = true,
        |w| w.app_ready = true,
    );
    let orders: [[Fact; 5]; 3] = [
        [runs, started, ready, app_runs, app_ready],
        [runs, started, app_runs, ready, app_ready],
        [runs, started, app_runs, app_ready, ready],
    ];
    let mut sequences = Vec::new();
    for order in orders {
        // Bit i of `cuts`: a write ends after fact i.
        for cuts in 0u32..16 {
            let mut state = Written::default();
            let mut writes = vec![state];
            for (i, fact) in order.iter().enumerate() {
                fact(&mut state);
                if i == order.len() - 1 || cuts & (1 << i) != 0 {
                    writes.push(state);
                }
            }
            sequences.push(writes);
        }
    }
    sequences
}

#[test]
fn a_native_sidecar_the_kubelet_waits_for_is_never_out_of_order() {
    // The real kubelet's sequence: envoy has a startupProbe (or a blocking postStart hook),
    // app starts 8 s after it, and envoy's `ready: true` may reach the API in a status written
    // after app's start, or in the same one. Whatever the operator saw, from whichever write
    // on (an operator restart or a relist starts it anywhere), and whenever it saw it: no
    // MainStartedBeforeSidecarReady.
    let order = only("startupOrder", "");
    let gates = [
        SpecFlags::READINESS_PROBE | SpecFlags::STARTUP_PROBE,
        SpecFlags::READINESS_PROBE | SpecFlags::POST_START,
        SpecFlags::STARTUP_PROBE,
    ];
    let sequences = kubelet_write_sequences();
    assert_eq!(sequences.len(), 48);
    for writes in &sequences {
        for first in 0..writes.len() {
            for gate in gates {
                let mut history = Observer::default();
                for (i, written) in writes.iter().enumerate().skip(first) {
                    let view = written.view(gate);
                    // Seen one write a second from 13:47:22 on: the operator sees envoy's
                    // ready flip at or after app's startedAt, whenever the kubelet wrote it.
                    history.observe(&view, plus(at("13:47:22"), i as i64));
                    let evaluation = evaluate(&view, &order, &history, at("13:50:00"));
                    assert_eq!(brief(&evaluation), [], "{gate:?} {writes:?} seen from write {first} to {i}");
                }
            }
            // Without the gate (a readinessProbe only), exactly the sequences with a status
            // that showed app running while envoy was not ready are reported, from that status
            // on, even if the operator saw nothing before it.
            let mut history = Observer::default();
            let mut shown = false;
            for (i, written) in writes.iter().enumerate().skip(first) {
                let view = written.view(SpecFlags::READINESS_PROBE);
                history.observe(&view, plus(at("13:47:22"), i as i64));
                shown |= written.app_running && !written.envoy_ready;
                let expected: Vec<_> = shown
                    .then(|| (MainStartedBeforeSidecarReady, "envoy".to_string(), Firing, Some(at("13:47:22"))))
                    .into_iter()
                    .collect();
                let evaluation = evaluate(&view, &order, &history, at("13:50:00"));
                assert_eq!(brief(&evaluation), expected, "{writes:?} seen from write {first} to {i}");
            }
        }
    }
}

#[test]
fn a_sidecar_with_only_a_readiness_probe_is_reported_from_the_kubelets_record() {
    let order = only("startupOrder", "");
    let flags = SpecFlags::READINESS_PROBE;
    let starting = Written { envoy_running: true, envoy_started: true, ..Written::default() };
    let app_runs = Written { app_running: true, ..starting };
    let ready = Written { envoy_ready: true, app_ready: true, ..app_runs };
    let message = |evaluation: &Evaluation| evaluation.alerts.iter().map(|a| a.message.clone()).collect::<Vec<_>>();

    // Seen: app running while envoy is not ready yet (the seed article "Start Sidecar First").
    let mut history = Observer::default();
    history.observe(&starting.view(flags), at("13:47:15"));
    history.observe(&app_runs.view(flags), at("13:47:23"));
    let evaluation = evaluate(&app_runs.view(flags), &order, &history, at("13:47:23"));
    assert_eq!(brief(&evaluation), [(MainStartedBeforeSidecarReady, "envoy".into(), Firing, Some(at("13:47:22")))]);
    assert_eq!(
        message(&evaluation),
        ["Main container app in Pod shop/web-1 started before sidecar envoy was ready: the sidecar is not ready yet; \
          add a startupProbe so the kubelet waits for it"]
    );
    // Once envoy is ready the finding stays, from what that status showed.
    history.observe(&ready.view(flags), at("13:47:40"));
    let evaluation = evaluate(&ready.view(flags), &order, &history, at("13:50:00"));
    assert_eq!(brief(&evaluation), [(MainStartedBeforeSidecarReady, "envoy".into(), Firing, Some(at("13:47:22")))]);
    assert_eq!(
        message(&evaluation),
        ["Main container app in Pod shop/web-1 started before sidecar envoy was ready: the sidecar was reported not \
          ready while app was running; add a startupProbe so the kubelet waits for it"]
    );

    // An operator restarted meanwhile has only the Pod. While envoy is still not ready the
    // evidence is in the status and it fires; once envoy is ready nothing the kubelet recorded
    // is left (envoy started before app, and is ready), so it does not: a restart must not
    // invent a finding, and cannot recover the one it lost.
    let mut restarted = Observer::default();
    restarted.observe(&app_runs.view(flags), at("13:47:30"));
    assert_eq!(evaluate(&app_runs.view(flags), &order, &restarted, at("13:47:30")).alerts.len(), 1);
    let mut restarted = Observer::default();
    restarted.observe(&ready.view(flags), at("13:48:00"));
    assert_eq!(brief(&evaluate(&ready.view(flags), &order, &restarted, at("13:50:00"))), []);
    assert_eq!(brief(&eval(&ready.view(flags), &order, at("13:50:00"))), []);

    // envoy's ready flip and app's start in one status write: no status showed app running
    // beside envoy not ready, and the moment the operator saw the flip (the same second as
    // app's startedAt, or later) says nothing about the kubelet's order.
    for seen in ["13:47:22", "13:47:23", "13:48:00"] {
        let mut history = Observer::default();
        history.observe(&starting.view(flags), at("13:47:15"));
        history.observe(&ready.view(flags), at(seen));
        assert!(history.container("envoy").unwrap().watched_run_seen_ready(), "seen at {seen}");
        assert_eq!(brief(&evaluate(&ready.view(flags), &order, &history, at("13:50:00"))), [], "seen at {seen}");
    }
}

#[test]
fn equal_start_seconds_say_nothing_about_order() {
    // A legacy sidecar declared after the app: started in the same second, ready now.
    let order = only("startupOrder", "");
    let legacy = |started: &str| {
        pod(vec![regular("app", running(at("10:00:03"), true)), regular("log-sidecar", running(at(started), true))])
    };
    assert_eq!(brief(&eval(&legacy("10:00:03"), &order, now())), []);
    let mut history = Observer::default();
    history.observe(&legacy("10:00:03"), at("10:00:03"));
    assert_eq!(brief(&evaluate(&legacy("10:00:03"), &order, &history, now())), []);
    // A second later it did start after the app.
    let evaluation = eval(&legacy("10:00:04"), &order, now());
    assert_eq!(
        brief(&evaluation),
        [(MainStartedBeforeSidecarReady, "log-sidecar".into(), Firing, Some(at("10:00:03")))]
    );
    assert!(evaluation.alerts[0].message.contains("the sidecar started 1s later;"), "{}", evaluation.alerts[0].message);
    // A native sidecar started in the same second as the app, ready now.
    let native_same = with_main(unordered_native("envoy", running(at("10:00:01"), true)));
    assert_eq!(brief(&eval(&native_same, &order, now())), []);
}

#[test]
fn a_sidecar_with_only_a_liveness_probe_has_no_start_order() {
    // Without a readiness probe the kubelet reports it ready as soon as it runs, so no status
    // shows it running and not ready: nothing about order, whatever was seen. What is reported
    // is its missing startupProbe (and readiness probe).
    let flags = SpecFlags::LIVENESS_PROBE | SpecFlags::RESOURCES;
    let runs = Written { envoy_running: true, envoy_started: true, envoy_ready: true, ..Written::default() };
    let app_runs = Written { app_running: true, ..runs };
    let app_ready = Written { app_ready: true, ..app_runs };
    let mut history = Observer::default();
    for (written, seen) in
        [(Written::default(), "13:47:13"), (runs, "13:47:15"), (app_runs, "13:47:23"), (app_ready, "13:47:30")]
    {
        history.observe(&written.view(flags), at(seen));
        let evaluation = evaluate(&written.view(flags), &CompiledPolicy::builtin(), &history, at("13:50:00"));
        let findings: Vec<_> = evaluation.alerts.iter().map(|a| (a.name, a.check)).collect();
        assert!(findings.iter().all(|(name, _)| *name != MainStartedBeforeSidecarReady), "{seen}: {findings:?}");
        assert!(
            findings.contains(&(SidecarMisconfigured, Some(sidecar_watch::engine::Check::NoStartupProbe))),
            "{seen}: {findings:?}"
        );
    }
}

#[test]
fn clocks_keep_first_seen_time_when_the_api_has_none() {
    // A Job whose main container's finishedAt is missing: the condition has no API start.
    let mut main = terminated("Completed", 0, at("10:00:01"), at("10:05:00"));
    if let Some(t) = main.terminated_mut() {
        t.finished_at = None;
    }
    let mut view = pod(vec![regular("migrate", main), regular("log-sidecar", running(at("10:00:00"), true))]);
    view.group_mut().owned_by_job = true;
    let policy = only("jobBlocked", "");
    let mut history = PodHistory::default();
    let first = evaluate(&view, &policy, &history, at("10:10:00"));
    assert_eq!(first.clocked, vec![("JobBlockedBySidecar", "log-sidecar".to_string())]);
    assert_eq!(brief(&first), vec![(JobBlockedBySidecar, "log-sidecar".into(), Pending, Some(at("10:10:00")))]);
    assert_eq!(first.next_change, Some(at("10:15:00")));
    history.set_clocks(first.clocked.clone(), at("10:10:00"));
    let later = evaluate(&view, &policy, &history, at("10:15:00"));
    assert_eq!(brief(&later), vec![(JobBlockedBySidecar, "log-sidecar".into(), Firing, Some(at("10:10:00")))]);
    history.set_clocks(later.clocked.clone(), at("10:15:00"));
    assert_eq!(history.clock("JobBlockedBySidecar", "log-sidecar"), Some(at("10:10:00")));
    // The condition clears: the clock is dropped, and a new episode starts afresh.
    history.set_clocks(Vec::new(), at("10:16:00"));
    assert_eq!(history.clocks, None);
    assert_eq!(evaluate(&view, &policy, &history, at("10:20:00")).alerts[0].since, Some(at("10:20:00")));
}

/// A restarted operator (empty history) computes the same `since` as one that watched the
/// Pod from its start, for every alert whose start the API records.
#[test]
fn restarted_operator_computes_the_same_since() {
    // A sequence of Pod states and the instants the watching operator saw them.
    let job = |mut v: PodView| {
        v.group_mut().owned_by_job = true;
        v
    };
    let not_ready_since = |t: &str| Some(ConditionView { status: false, since: Some(at(t).into()) });
    let mut flipped = with_main(native("envoy", running(at("10:00:00"), false)));
    flipped.set_ready_condition(not_ready_since("10:20:00"));
    let mut shutting_down = pod(vec![
        regular("istio-proxy", terminated("Completed", 0, at("10:00:00"), at("10:29:29"))),
        regular("app", running(at("10:00:01"), true)),
    ]);
    shutting_down.deleting_since = Some(at("10:30:28").into());
    let oom = |count, finished: &str| {
        with_main(native(
            "agent",
            restarted(
                running(plus(at(finished), 1), true),
                count,
                Some(termination("OOMKilled", 137, at("10:00:00"), at(finished))),
            ),
        ))
    };
    let restarts = |count, finished: &str| {
        let mut v = with_main(native(
            "envoy",
            restarted(
                waiting("CrashLoopBackOff"),
                count,
                Some(termination("Error", 143, at("10:00:00"), at(finished))),
            ),
        ));
        v.started_at = Some(at("10:20:00").into());
        v
    };
    // The crash-loop episode starts at the first restart of the loop, which the API does not
    // record (only the last termination): a watching operator knows it, a restarted one
    // places it at the Pod's start. Every other `since` below is an API timestamp.
    let sequences: Vec<(&str, Vec<(PodView, Timestamp)>)> = vec![
        (
            "never-ready sidecar",
            vec![
                (with_main(native("envoy", waiting("PodInitializing"))), at("10:00:00")),
                (with_main(native("envoy", running(at("10:00:00"), false))), at("10:00:01")),
            ],
        ),
        (
            "sidecar became unready (observed at the Pod condition's transition)",
            vec![
                (with_main(native("envoy", running(at("10:00:00"), true))), at("10:00:05")),
                (flipped.clone(), at("10:20:00")),
            ],
        ),
        ("OOM kill", vec![(oom(0, "10:00:00"), at("10:00:00")), (oom(1, "10:14:10"), at("10:14:12"))]),
        (
            "three restarts since the Pod started",
            vec![
                (restarts(0, "10:20:00"), at("10:20:00")),
                (restarts(1, "10:21:00"), at("10:21:02")),
                (restarts(2, "10:23:00"), at("10:23:02")),
                (restarts(3, "10:26:00"), at("10:26:02")),
            ],
        ),
        (
            "job blocked",
            vec![
                (
                    job(pod(vec![
                        regular("a", running(at("10:00:01"), true)),
                        regular("x-sidecar", running(at("10:00:00"), true)),
                    ])),
                    at("10:00:02"),
                ),
                (
                    job(pod(vec![
                        regular("a", terminated("Completed", 0, at("10:00:01"), at("10:12:30"))),
                        regular("x-sidecar", running(at("10:00:00"), true)),
                    ])),
                    at("10:12:31"),
                ),
            ],
        ),
        (
            "shutdown order",
            vec![
                (with_main(regular("istio-proxy", running(at("10:00:00"), true))), at("10:00:02")),
                (shutting_down, at("10:29:30")),
            ],
        ),
    ];
    for (case, states) in sequences {
        let policy = policy("rules: {crashLoop: {enabled: false}}");
        let mut watched = Observer::default();
        for (view, seen) in &states {
            watched.observe(view, *seen);
        }
        let (last, _) = states.last().unwrap();
        let with_history = evaluate(last, &policy, &watched, now());
        let restarted = evaluate(last, &policy, &PodHistory::default(), now());
        assert!(!with_history.alerts.is_empty(), "{case}: the case produces alerts");
        assert_eq!(rows(&with_history), rows(&restarted), "{case}");
        // Restart times the API does not keep only move a wake-up, never a row: a restarted
        // operator places them at the Pod's start and wakes no later than a watching one.
        if case.starts_with("three restarts") {
            assert!(restarted.next_change <= with_history.next_change, "{case}");
        } else {
            assert_eq!(with_history.next_change, restarted.next_change, "{case}");
        }
        // The restarted operator then watches on: nothing changes on the next identical state.
        let mut fresh = Observer::default();
        fresh.observe(last, now());
        assert_eq!(rows(&evaluate(last, &policy, &fresh, now())), rows(&restarted), "{case} after one observation");
    }
}

#[test]
fn sidecars_by_pattern_names_and_native() {
    let view = pod(vec![
        container("envoy-config", sidecar_watch::engine::ContainerKind::Init, running(at("10:00:00"), false)),
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
    use sidecar_watch::engine::Check;
    for (sidecars, expected) in [(4usize, 0usize), (5, 1), (6, 1)] {
        let mut containers: Vec<_> =
            (0..sidecars).map(|i| native(&format!("agent-{i}"), running(at("10:00:00"), true))).collect();
        containers.push(regular("app", running(at("10:00:01"), true)));
        let evaluation = evaluate(&pod(containers), &only("misconfiguration", ""), &PodHistory::default(), now());
        let sprawl: Vec<_> = evaluation.alerts.iter().filter(|a| a.check == Some(Check::SidecarSprawl)).collect();
        assert_eq!(sprawl.len(), expected, "{sidecars} sidecars: {:#?}", evaluation.alerts);
        if let Some(alert) = sprawl.first() {
            assert_eq!((alert.container.as_str(), alert.state), ("", Firing), "a Pod-level finding");
            assert!(alert.message.contains(&format!("runs {sidecars} sidecars")), "{}", alert.message);
        }
    }
}
