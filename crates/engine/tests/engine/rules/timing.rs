//! Rules with a clock: `for` (pending until exactly since+for), restart thresholds and the
//! (now-window, now] window, OOM windows, crash-loop episodes and their bridging, and the
//! first-seen clock of a condition the API gives no start for.

use super::{brief, with_main};
use jiff::Timestamp;
use sidecar_watch_api::Severity;
use sidecar_watch_engine::ContainerStatusView;
use sidecar_watch_engine::{
    evaluate, AlertName, AlertName::*, AlertState::*, Around, ContainerHistory, PodHistory, PodView, Stamp,
};
use sidecar_watch_testkit::engine::*;

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
                .find(|c| sidecar_watch_testkit::engine::sidecar_type(&policy, &view, c).is_some())
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
        let evaluation = evaluate(&view, &only("restarts", ""), &history, now, Around::default());
        let expected: Vec<_> =
            since.map(|s| (SidecarRestartingFrequently, "envoy".to_string(), Firing, Some(s))).into_iter().collect();
        assert_eq!(brief(&evaluation), expected, "{case}");
        assert_eq!(evaluation.next_change, next, "{case}");
        // At next_change the alert is gone (the oldest counted restart left the window).
        if let Some(next) = next {
            if times.len() == 3 {
                assert!(
                    evaluate(&view, &only("restarts", ""), &history, next, Around::default()).alerts.is_empty(),
                    "{case} at next_change"
                );
                assert!(
                    !evaluate(&view, &only("restarts", ""), &history, plus(next, -1), Around::default())
                        .alerts
                        .is_empty(),
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
    let evaluation = evaluate(&view, &policy, &history, now, Around::default());
    assert_eq!(brief(&evaluation), vec![(SidecarRestartingFrequently, "envoy".into(), Firing, Some(plus(now, -100)))]);
    assert_eq!(evaluation.alerts[0].severity, Severity::Warning);
    assert_eq!(evaluation.next_change, Some(plus(now, 100)));
    let one = only("restarts", "threshold: 1");
    assert_eq!(evaluate(&view, &one, &history, now, Around::default()).alerts[0].since, Some(plus(now, -100)));
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
    let evaluation = evaluate(&view, &only("crashLoop", ""), &history, now, Around::default());
    assert_eq!(brief(&evaluation), vec![(SidecarCrashLooping, "envoy".into(), Firing, Some(plus(now, -900)))]);
    // Exactly 10 minutes apart still belongs to the episode.
    let times = [plus(now, -700), plus(now, -100)];
    let (view, history) = crash(&times, waiting("CrashLoopBackOff"));
    assert_eq!(
        evaluate(&view, &only("crashLoop", ""), &history, now, Around::default()).alerts[0].since,
        Some(plus(now, -700))
    );
    let times = [plus(now, -701), plus(now, -100)];
    let (view, history) = crash(&times, waiting("CrashLoopBackOff"));
    let evaluation = evaluate(&view, &only("crashLoop", ""), &history, now, Around::default());
    assert_eq!(brief(&evaluation), vec![(SidecarCrashLooping, "envoy".into(), Pending, Some(plus(now, -100)))]);
    assert_eq!(evaluation.next_change, Some(plus(now, 200)));

    // A short run between back-offs keeps the episode (bridging) until startedAt + 5m.
    let times = [plus(now, -400), plus(now, -100)];
    let (view, history) = crash(&times, running(plus(now, -90), false));
    let evaluation = evaluate(&view, &only("crashLoop", ""), &history, plus(now, -150), Around::default());
    assert_eq!(brief(&evaluation), vec![(SidecarCrashLooping, "envoy".into(), Pending, Some(plus(now, -400)))]);
    assert_eq!(evaluation.next_change, Some(plus(now, -100)), "fires at since+5m, before the bridge ends");
    let evaluation = evaluate(&view, &only("crashLoop", ""), &history, now, Around::default());
    assert_eq!(brief(&evaluation), vec![(SidecarCrashLooping, "envoy".into(), Firing, Some(plus(now, -400)))]);
    assert_eq!(evaluation.next_change, Some(plus(now, 210)), "the bridge ends 5m after the run started");
    assert!(!evaluate(&view, &only("crashLoop", ""), &history, plus(now, 209), Around::default()).alerts.is_empty());
    assert!(evaluate(&view, &only("crashLoop", ""), &history, plus(now, 210), Around::default()).alerts.is_empty());
    // One restart and running: not a loop.
    let (view, history) = crash(&[plus(now, -100)], running(plus(now, -90), false));
    assert!(evaluate(&view, &only("crashLoop", ""), &history, now, Around::default()).alerts.is_empty());
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
    let first = evaluate(&view, &policy, &history, at("10:10:00"), Around::default());
    assert_eq!(first.clocked, vec![("JobBlockedBySidecar", "log-sidecar".to_string())]);
    assert_eq!(brief(&first), vec![(JobBlockedBySidecar, "log-sidecar".into(), Pending, Some(at("10:10:00")))]);
    assert_eq!(first.next_change, Some(at("10:15:00")));
    history.set_clocks(first.clocked.clone(), at("10:10:00"));
    let later = evaluate(&view, &policy, &history, at("10:15:00"), Around::default());
    assert_eq!(brief(&later), vec![(JobBlockedBySidecar, "log-sidecar".into(), Firing, Some(at("10:10:00")))]);
    history.set_clocks(later.clocked.clone(), at("10:15:00"));
    assert_eq!(history.clock("JobBlockedBySidecar", "log-sidecar"), Some(at("10:10:00")));
    // The condition clears: the clock is dropped, and a new episode starts afresh.
    history.set_clocks(Vec::new(), at("10:16:00"));
    assert_eq!(history.clocks, None);
    assert_eq!(
        evaluate(&view, &policy, &history, at("10:20:00"), Around::default()).alerts[0].since,
        Some(at("10:20:00"))
    );
}
