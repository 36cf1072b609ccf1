//! `startupOrder` (MainStartedBeforeSidecarReady): what the status and the observed history
//! say about the order, and every sequence of status writes a kubelet can make.

use super::{brief, unordered_native, with_main};
use jiff::Timestamp;
use sidecar_watch_engine::HistoryMarks;
use sidecar_watch_engine::{
    evaluate, AlertName::*, AlertState::*, Around, CompiledPolicy, ContainerHistory, Evaluation, ObservedPod,
    PodHistory, PodView,
};
use sidecar_watch_engine::{ConditionView, ContainerStatusView, SpecFlags};
use sidecar_watch_testkit::engine::*;

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
        let evaluation = evaluate(&view, &only("startupOrder", ""), &history, now, Around::default());
        let expected: Vec<_> =
            since.map(|s| (MainStartedBeforeSidecarReady, "envoy".to_string(), Firing, Some(s))).into_iter().collect();
        assert_eq!(brief(&evaluation), expected, "{case}");
        assert_eq!(evaluation.next_change, None, "{case}");
        // With a startupProbe or a postStart hook the kubelet made app wait: never reported.
        for gate in [SpecFlags::STARTUP_PROBE, SpecFlags::POST_START] {
            let (mut gated, mut containers) = (view.clone(), view.containers.to_vec());
            containers[0].spec_mut().flags.insert(gate);
            gated.containers = containers.into();
            let evaluation = evaluate(&gated, &only("startupOrder", ""), &history, now, Around::default());
            assert_eq!(brief(&evaluation), [], "{case} with {gate:?}");
        }
    }
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
                let mut observed = None;
                for (i, written) in writes.iter().enumerate().skip(first) {
                    let view = written.view(gate);
                    // Seen one write a second from 13:47:22 on: the operator sees envoy's
                    // ready flip at or after app's startedAt, whenever the kubelet wrote it.
                    let history = observe_into(&mut observed, view.clone(), plus(at("13:47:22"), i as i64));
                    let evaluation = evaluate(&view, &order, history.history(), at("13:50:00"), Around::default());
                    assert_eq!(brief(&evaluation), [], "{gate:?} {writes:?} seen from write {first} to {i}");
                }
            }
            // Without the gate (a readinessProbe only), exactly the sequences with a status
            // that showed app running while envoy was not ready are reported, from that status
            // on, even if the operator saw nothing before it.
            let (mut observed, mut shown) = (None, false);
            for (i, written) in writes.iter().enumerate().skip(first) {
                let view = written.view(SpecFlags::READINESS_PROBE);
                let history = observe_into(&mut observed, view.clone(), plus(at("13:47:22"), i as i64));
                shown |= written.app_running && !written.envoy_ready;
                let expected: Vec<_> = shown
                    .then(|| (MainStartedBeforeSidecarReady, "envoy".to_string(), Firing, Some(at("13:47:22"))))
                    .into_iter()
                    .collect();
                let evaluation = evaluate(&view, &order, history.history(), at("13:50:00"), Around::default());
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
    let mut history = ObservedPod::new(starting.view(flags), at("13:47:15"));
    history.observe(app_runs.view(flags), at("13:47:23"));
    let evaluation = evaluate(&app_runs.view(flags), &order, history.history(), at("13:47:23"), Around::default());
    assert_eq!(brief(&evaluation), [(MainStartedBeforeSidecarReady, "envoy".into(), Firing, Some(at("13:47:22")))]);
    assert_eq!(
        message(&evaluation),
        ["Main container app in Pod shop/web-1 started before sidecar envoy was ready: the sidecar is not ready yet; \
          add a startupProbe so the kubelet waits for it"]
    );
    // Once envoy is ready the finding stays, from what that status showed.
    history.observe(ready.view(flags), at("13:47:40"));
    let evaluation = evaluate(&ready.view(flags), &order, history.history(), at("13:50:00"), Around::default());
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
    let restarted = ObservedPod::new(app_runs.view(flags), at("13:47:30"));
    assert_eq!(
        evaluate(&app_runs.view(flags), &order, restarted.history(), at("13:47:30"), Around::default()).alerts.len(),
        1
    );
    let restarted = ObservedPod::new(ready.view(flags), at("13:48:00"));
    assert_eq!(
        brief(&evaluate(&ready.view(flags), &order, restarted.history(), at("13:50:00"), Around::default())),
        []
    );
    assert_eq!(brief(&eval(&ready.view(flags), &order, at("13:50:00"))), []);

    // envoy's ready flip and app's start in one status write: no status showed app running
    // beside envoy not ready, and the moment the operator saw the flip (the same second as
    // app's startedAt, or later) says nothing about the kubelet's order.
    for seen in ["13:47:22", "13:47:23", "13:48:00"] {
        let mut history = ObservedPod::new(starting.view(flags), at("13:47:15"));
        history.observe(ready.view(flags), at(seen));
        assert!(history.container("envoy").unwrap().watched_run_seen_ready(), "seen at {seen}");
        assert_eq!(
            brief(&evaluate(&ready.view(flags), &order, history.history(), at("13:50:00"), Around::default())),
            [],
            "seen at {seen}"
        );
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
    let history = ObservedPod::new(legacy("10:00:03"), at("10:00:03"));
    assert_eq!(brief(&evaluate(&legacy("10:00:03"), &order, history.history(), now(), Around::default())), []);
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
    let mut observed = None;
    for (written, seen) in
        [(Written::default(), "13:47:13"), (runs, "13:47:15"), (app_runs, "13:47:23"), (app_ready, "13:47:30")]
    {
        let history = observe_into(&mut observed, written.view(flags), at(seen));
        let evaluation = evaluate(
            &written.view(flags),
            &CompiledPolicy::builtin(),
            history.history(),
            at("13:50:00"),
            Around::default(),
        );
        let findings: Vec<_> = evaluation.alerts.iter().map(|a| (a.name, a.check)).collect();
        assert!(findings.iter().all(|(name, _)| *name != MainStartedBeforeSidecarReady), "{seen}: {findings:?}");
        assert!(
            findings.contains(&(SidecarMisconfigured, Some(sidecar_watch_engine::Check::NoStartupProbe))),
            "{seen}: {findings:?}"
        );
    }
}

/// Observes `view` at `now` in `observed`: the Pod's first observation when there was none.
fn observe_into(observed: &mut Option<ObservedPod>, view: PodView, now: Timestamp) -> &ObservedPod {
    match observed.take() {
        Some(mut pod) => {
            pod.observe(view, now);
            observed.insert(pod)
        }
        None => observed.insert(ObservedPod::new(view, now)),
    }
}
