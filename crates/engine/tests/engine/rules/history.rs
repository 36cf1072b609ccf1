//! History-driven cases: [`ObservedPod::observe`] watches a sequence of Pod states, and what
//! it records (readiness flips, restarts, start-ups, start-order marks) gives `since`; a
//! restarted operator computes the same `since` as one that watched.

use super::{brief, unordered_native, with_main};
use jiff::Timestamp;
use sidecar_watch_engine::ConditionView;
use sidecar_watch_engine::HistoryMarks;
use sidecar_watch_engine::{
    evaluate, AlertName::*, AlertState::*, Around, CompiledPolicy, Observation, ObservedPod, PodHistory, PodView,
};
use sidecar_watch_testkit::engine::*;

#[test]
fn a_previous_state_with_other_containers_counts_as_none() {
    let first = with_main(native("envoy", running(at("10:00:00"), true)));
    let mut history = ObservedPod::new(first.clone(), at("10:00:02"));
    // envoy restarted twice and turned unready, but the state observed before names other
    // containers in those places (no Pod can change its containers): every container is seen
    // for the first time, no restart time or readiness flip is made up from the mismatch.
    let last = termination("Error", 1, at("10:00:00"), at("10:04:59"));
    let now_state = with_main(native("envoy", restarted(running(at("10:05:00"), false), 2, Some(last))));
    let other =
        pod(vec![regular("app", running(at("10:00:01"), true)), native("envoy", running(at("10:00:00"), true))]);
    history.observe(other, at("10:05:00"));
    history.observe(now_state.clone(), at("10:05:01"));
    let envoy = history.container("envoy").unwrap();
    assert_eq!((envoy.restarts.len(), envoy.ready_changed_at), (0, None));
    // The same after the state before it records both.
    let mut history = ObservedPod::new(first, at("10:00:02"));
    history.observe(now_state, at("10:05:01"));
    let envoy = history.container("envoy").unwrap();
    assert_eq!((envoy.restarts.len(), envoy.ready_changed_at), (2, Some(at("10:05:01").into())));
}

#[test]
fn start_order_marks_hold_for_the_run_they_were_seen_in() {
    let mut history =
        ObservedPod::new(with_main(unordered_native("envoy", running(at("10:00:00"), false))), at("10:00:02"));
    assert!(history.container("envoy").unwrap().marks.contains(HistoryMarks::UNREADY_BESIDE_RUNNING));
    assert!(history.container("app").unwrap().marks.contains(HistoryMarks::RAN_BESIDE_UNREADY_NATIVE));
    // envoy's next run, ready: what was seen of the first run is not this run's.
    let last = termination("Error", 1, at("10:00:00"), at("10:04:59"));
    let next_run = with_main(unordered_native("envoy", restarted(running(at("10:05:00"), true), 1, Some(last))));
    history.observe(next_run.clone(), at("10:05:01"));
    assert!(!history.container("envoy").unwrap().marks.intersects(HistoryMarks::START_ORDER));
    // app's run is the same: its half stays, but alone it pairs with nothing.
    assert!(history.container("app").unwrap().marks.contains(HistoryMarks::RAN_BESIDE_UNREADY_NATIVE));
    assert_eq!(brief(&evaluate(&next_run, &only("startupOrder", ""), history.history(), now(), Around::default())), []);
}

#[test]
fn observed_readiness_flip_gives_since() {
    let ready = with_main(native("envoy", running(at("10:00:00"), true)));
    let not_ready = with_main(native("envoy", running(at("10:00:00"), false)));
    let mut history = ObservedPod::new(ready.clone(), at("10:00:10"));
    assert_eq!(history.observe(not_ready.clone(), at("10:20:00")), vec![]);
    assert_eq!(history.container("envoy").unwrap().ready_changed_at, Some(at("10:20:00").into()));
    let evaluation = evaluate(&not_ready, &CompiledPolicy::builtin(), history.history(), now(), Around::default());
    assert_eq!(
        brief(&evaluation),
        vec![
            (SidecarContainerNotReady, "envoy".into(), Firing, Some(at("10:20:00"))),
            (MainContainerReadyButSidecarNot, "envoy".into(), Firing, Some(at("10:20:00"))),
        ],
        "no MainStartedBeforeSidecarReady: the sidecar was seen ready"
    );
    // Not yet 5 minutes: pending until exactly 10:25:00.
    let early = evaluate(&not_ready, &CompiledPolicy::builtin(), history.history(), at("10:24:59"), Around::default());
    assert_eq!(early.alerts[0].state, Pending);
    assert_eq!(early.alerts[1].state, Firing, "mainReadySidecarNotReady fired at 10:22:00");
    assert_eq!(early.next_change, Some(at("10:25:00")));
    // Ready again: everything resolves, and the run seen ready at 10:00:10 is not mistaken
    // for a new one whose start-up took 31 minutes.
    assert_eq!(history.observe(ready.clone(), at("10:31:00")), vec![]);
    assert!(!history.container("envoy").unwrap().watched_run_seen_ready());
    let quiet = evaluate(&ready, &CompiledPolicy::builtin(), history.history(), at("10:31:00"), Around::default());
    assert_eq!((quiet.alerts, quiet.next_change, quiet.clocked), (vec![], None, vec![]));
}

#[test]
fn observed_restarts_are_recorded_with_finished_at() {
    let state = |count: u32, finished: Option<&str>| {
        let last = finished.map(|f| termination("Error", 137, plus(at(f), -30), at(f)));
        with_main(native("envoy", restarted(running(at("10:00:00"), true), count, last)))
    };
    let mut history = ObservedPod::new(state(0, None), at("10:00:00"));
    history.observe(state(1, Some("10:18:00")), at("10:18:05"));
    history.observe(state(2, Some("10:22:00")), at("10:22:05"));
    // Two restarts in one gap: the newest at its finishedAt, the other at the previous observation.
    history.observe(state(4, Some("10:27:00")), at("10:27:05"));
    let envoy = history.container("envoy").unwrap();
    let restarts: Vec<Timestamp> = envoy.restarts.iter().map(|s| s.timestamp()).collect();
    assert_eq!(restarts, [at("10:18:00"), at("10:22:00"), at("10:22:05"), at("10:27:00")]);
    let view = state(4, Some("10:27:00"));
    let evaluation = evaluate(&view, &only("restarts", ""), history.history(), now(), Around::default());
    assert_eq!(brief(&evaluation), vec![(SidecarRestartingFrequently, "envoy".into(), Firing, Some(at("10:22:05")))]);
    assert_eq!(evaluation.next_change, Some(at("10:37:00")), "when the second-oldest leaves the 15m window");
    // Without a finishedAt the observation time is used.
    history.observe(state(5, None), at("10:29:00"));
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
    let mut history = ObservedPod::new(pod(vec![sidecar(false), app_waiting.clone()]), at("10:00:02"));
    assert_eq!(history.observe(pod(vec![sidecar(false), app("10:00:03")]), at("10:00:03")), vec![]);
    let ready = pod(vec![sidecar(true), app("10:00:03")]);
    assert_eq!(
        history.observe(ready.clone(), at("10:00:10")),
        vec![Observation::StartedUp { container: "envoy".into(), seconds: 8.0 }]
    );
    assert!(history.container("envoy").unwrap().watched_run_seen_ready());
    let evaluation = evaluate(&ready, &only("startupOrder", ""), history.history(), now(), Around::default());
    assert_eq!(brief(&evaluation), vec![(MainStartedBeforeSidecarReady, "envoy".into(), Firing, Some(at("10:00:03")))]);
    assert_eq!(
        evaluation.alerts[0].message,
        "Main container app in Pod shop/web-1 started before sidecar envoy was ready: the sidecar was reported not \
         ready while app was running; add a startupProbe so the kubelet waits for it"
    );
    // A second flip does not report another start-up.
    history.observe(pod(vec![sidecar(false), app("10:00:03")]), at("10:10:00"));
    assert_eq!(history.observe(ready.clone(), at("10:11:00")), vec![]);
    assert_eq!(
        evaluate(&ready, &only("startupOrder", ""), history.history(), now(), Around::default()).alerts.len(),
        1
    );

    // Ready before the main container started: no alert.
    let mut history = ObservedPod::new(pod(vec![sidecar(false), app_waiting.clone()]), at("10:00:02"));
    let started = history.observe(pod(vec![sidecar(true), app_waiting]), at("10:00:07"));
    assert_eq!(started, vec![Observation::StartedUp { container: "envoy".into(), seconds: 5.0 }]);
    let good = pod(vec![sidecar(true), app("10:00:08")]);
    history.observe(good.clone(), at("10:00:08"));
    assert!(evaluate(&good, &only("startupOrder", ""), history.history(), now(), Around::default()).alerts.is_empty());

    // First seen already ready: no start-up to time.
    let history = ObservedPod::new(good.clone(), at("10:05:00"));
    assert_eq!(history.container("envoy").unwrap().watched_run_started_at, None);

    // First seen mid-run while briefly unready (an operator restart or a relist), the Pod
    // Ready=False only since 10:20, after the run started: its start-up is long over. Once
    // ready again: no start-up timed, no startup-order alert.
    let mut unready = pod(vec![sidecar(false), app("10:00:03")]);
    unready.set_ready_condition(Some(ConditionView { status: false, since: Some(at("10:20:00").into()) }));
    let mut history = ObservedPod::new(unready.clone(), at("10:20:01"));
    assert_eq!(history.container("envoy").unwrap().watched_run_started_at, None);
    let mut ready = pod(vec![sidecar(true), app("10:00:03")]);
    ready.set_ready_condition(Some(ConditionView { status: true, since: Some(at("10:20:02").into()) }));
    assert_eq!(history.observe(ready.clone(), at("10:20:02")), vec![]);
    assert!(evaluate(&ready, &only("startupOrder", ""), history.history(), now(), Around::default()).alerts.is_empty());
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
        let ((first, first_seen), later) = states.split_first().unwrap();
        let mut watched = ObservedPod::new(first.clone(), *first_seen);
        for (view, seen) in later {
            watched.observe(view.clone(), *seen);
        }
        let (last, _) = states.last().unwrap();
        let with_history = evaluate(last, &policy, watched.history(), now(), Around::default());
        let restarted = evaluate(last, &policy, &PodHistory::default(), now(), Around::default());
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
        let fresh = ObservedPod::new(last.clone(), now());
        assert_eq!(
            rows(&evaluate(last, &policy, fresh.history(), now(), Around::default())),
            rows(&restarted),
            "{case} after one observation"
        );
    }
}
