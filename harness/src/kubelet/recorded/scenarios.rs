//! The scenarios the node suite recorded, as the driver plays them: each Pod's spec and the
//! [`Action`]s between two recorded lines (API server writes, driver steps, the kubelet's
//! follow-ups).

use std::time::Duration;

use serde_json::{json, Value};

use crate::kubelet::status::Derive;
use crate::kubelet::steps::Step;
use crate::kubelet::State;

/// What happens to a Pod between two recorded lines.
#[derive(Debug, Clone)]
pub(super) enum Action {
    /// Created (the API server's `phase: Pending`).
    Created,
    /// Bound by the scheduler (`PodScheduled=True`).
    Bound,
    /// Deleted (`deletionTimestamp` set by the API server).
    Deleted,
    /// The node lifecycle controller's write when the Node goes `NotReady`: `Ready=False` and
    /// nothing else (`ContainersReady` and the containers' `ready` stay until the kubelet is
    /// back). Not the kubelet's, so not the driver's: no test of the operator needs it.
    NodeNotReady,
    /// A driver step, with the kubelet's follow-up writes.
    Do(Step),
    /// One write of the given kind and no follow-up: how the replay orders a race the
    /// kubelet lost one way in one run (`not-ready`).
    Only(Step, Derive),
}

use Action::{Bound, Created, Deleted, Do, NodeNotReady, Only};

fn run(c: &str) -> Action {
    Do(Step::State(c.into(), State::Running))
}

fn exit(c: &str, reason: &str, code: i32) -> Action {
    Do(Step::State(c.into(), State::terminated(reason, code)))
}

fn back_off(c: &str) -> Action {
    Do(Step::State(c.into(), State::waiting("CrashLoopBackOff")))
}

fn ready(c: &str, ready: bool) -> Action {
    Do(Step::Ready(c.into(), ready))
}

fn started(c: &str) -> Action {
    Do(Step::Started(c.into(), true))
}

fn restart(c: &str, reason: &str, code: i32) -> Action {
    Do(Step::Restart { container: c.into(), reason: reason.into(), exit_code: code })
}

fn crash_loop(c: &str, reason: &str, code: i32) -> Action {
    Do(Step::CrashLoop { container: c.into(), reason: reason.into(), exit_code: code })
}

fn stop(stops: &[(&str, u64)]) -> Action {
    Do(Step::Stop(
        stops
            .iter()
            .map(|(c, ago)| (c.to_string(), State::terminated("Completed", 0), Duration::from_secs(*ago)))
            .collect(),
    ))
}

/// Created, bound, the kubelet's first status, the sandbox up; then `more`.
fn admitted(more: impl IntoIterator<Item = Action>) -> Vec<Action> {
    let mut actions = vec![Created, Bound, Do(Step::Admit), Do(Step::SandboxReady)];
    actions.extend(more);
    actions
}

fn probe() -> Value {
    json!({"exec": {"command": ["sh", "-c", "true"]}})
}

/// A container of the node suite ([`crate::node::pods`]) with `extra` fields.
fn container(name: &str, extra: Value) -> Value {
    let mut c = json!({"name": name, "image": "sidecar-watch.test/busybox:1"});
    if let (Some(c), Some(extra)) = (c.as_object_mut(), extra.as_object()) {
        c.extend(extra.clone());
    }
    c
}

fn native(name: &str, mut extra: Value) -> Value {
    extra["restartPolicy"] = json!("Always");
    container(name, extra)
}

fn pod(init: Vec<Value>, containers: Vec<Value>) -> Value {
    json!({"initContainers": init, "containers": containers})
}

fn job(init: Vec<Value>, containers: Vec<Value>) -> Value {
    let mut spec = pod(init, containers);
    spec["restartPolicy"] = json!("Never");
    spec
}

/// The Pod of a scenario: its spec and what happens to it.
pub(super) struct Played {
    pub(super) pod: String,
    pub(super) spec: Value,
    pub(super) actions: Vec<Action>,
}

pub(super) fn scenarios() -> Vec<(&'static str, Vec<Played>)> {
    let plain = || native("proxy", json!({}));
    let app = || container("app", json!({}));
    let unready = || native("proxy", json!({"readinessProbe": probe()}));
    let healthy = || native("proxy", json!({"startupProbe": probe(), "readinessProbe": probe()}));
    let never_ready = |name: &str| Played {
        pod: name.into(),
        spec: pod(vec![unready()], vec![app()]),
        actions: admitted([run("proxy"), run("app")]),
    };
    let healthy_start = || admitted([run("proxy"), started("proxy"), ready("proxy", true), run("app")]);
    let mut flapping = admitted([run("proxy"), started("proxy"), ready("proxy", true), run("app")]);
    for _ in 0..6 {
        flapping.extend([ready("proxy", false), ready("proxy", true)]);
    }
    let crash = || [exit("proxy", "Error", 1), back_off("proxy"), run("proxy")];
    let restart_rule = json!({"restartPolicy": "Never",
        "restartPolicyRules": [{"action": "Restart", "exitCodes": {"operator": "In", "values": [42]}}]});
    let mut start_order = Vec::new();
    for run_n in ["1", "2"] {
        let name = |row: &str| format!("{row}-{run_n}");
        start_order.extend([
            Played {
                pod: name("readiness"),
                spec: pod(vec![unready()], vec![app()]),
                actions: admitted([run("proxy"), run("app"), ready("proxy", true)]),
            },
            Played {
                pod: name("liveness"),
                spec: pod(vec![native("proxy", json!({"livenessProbe": probe()}))], vec![app()]),
                actions: admitted([run("proxy"), run("app")]),
            },
            Played { pod: name("startup"), spec: pod(vec![healthy()], vec![app()]), actions: healthy_start() },
            Played {
                pod: name("poststart"),
                spec: pod(
                    vec![native(
                        "proxy",
                        json!({"readinessProbe": probe(),
                        "lifecycle": {"postStart": {"exec": {"command": ["sh", "-c", "sleep 3"]}}}}),
                    )],
                    vec![app()],
                ),
                // The hook holds the write: the run is reported 3 s after its startedAt.
                actions: admitted([run("proxy"), ready("proxy", true), run("app")]),
            },
        ]);
    }
    vec![
        ("chart", vec![never_ready("web")]),
        ("never-ready", vec![never_ready("web")]),
        (
            "crash-loop",
            vec![Played {
                pod: "web".into(),
                spec: pod(vec![plain()], vec![app()]),
                // The first exit is restarted at once, the next ones after a back-off.
                actions: admitted(
                    [run("proxy"), run("app"), exit("proxy", "Error", 1), run("proxy")]
                        .into_iter()
                        .chain(crash())
                        .chain(crash())
                        .chain(crash())
                        .chain([exit("proxy", "Error", 1)]),
                ),
            }],
        ),
        (
            "exit-zero",
            vec![Played {
                pod: "web".into(),
                spec: pod(vec![native("proxy", json!({"startupProbe": probe()}))], vec![app()]),
                // Killed by its startup probe, it exits 0: the first two kills restart it at
                // once, then it stays terminated (0/Completed) for each back-off, never
                // waiting in CrashLoopBackOff.
                actions: admitted([
                    run("proxy"),
                    restart("proxy", "Completed", 0),
                    restart("proxy", "Completed", 0),
                    crash_loop("proxy", "Completed", 0),
                    run("proxy"),
                    crash_loop("proxy", "Completed", 0),
                    run("proxy"),
                    crash_loop("proxy", "Completed", 0),
                    run("proxy"),
                ]),
            }],
        ),
        (
            "liveness",
            vec![Played {
                pod: "web".into(),
                spec: pod(vec![native("proxy", json!({"livenessProbe": probe()}))], vec![app()]),
                actions: admitted([
                    run("proxy"),
                    run("app"),
                    restart("proxy", "Error", 137),
                    restart("proxy", "Error", 137),
                    crash_loop("proxy", "Error", 137),
                    run("proxy"),
                    crash_loop("proxy", "Error", 137),
                    run("proxy"),
                    crash_loop("proxy", "Error", 137),
                ]),
            }],
        ),
        (
            "oom",
            vec![Played {
                pod: "web".into(),
                spec: pod(vec![plain()], vec![app()]),
                actions: admitted([run("proxy"), run("app"), exit("proxy", "OOMKilled", 137), run("proxy")]),
            }],
        ),
        ("flapping", vec![Played { pod: "web".into(), spec: pod(vec![healthy()], vec![app()]), actions: flapping }]),
        (
            "job-blocked",
            vec![Played {
                pod: "report-p9rcp".into(),
                spec: job(vec![], vec![container("log-sidecar", json!({})), app()]),
                actions: admitted([Do(Step::RunAll), exit("app", "Completed", 0)]),
            }],
        ),
        (
            "job-native",
            vec![Played {
                pod: "report-ct62b".into(),
                spec: job(vec![native("log-sidecar", json!({}))], vec![app()]),
                // The sidecar is killed after the app (137 past the 2 s grace period); the
                // phase comes in a write of its own.
                actions: admitted([
                    run("log-sidecar"),
                    run("app"),
                    exit("app", "Completed", 0),
                    exit("log-sidecar", "Error", 137),
                ]),
            }],
        ),
        (
            "restart-rule",
            vec![Played {
                pod: "report-9d8zt".into(),
                spec: job(vec![], vec![container("log-sidecar", json!({})), container("app", restart_rule)]),
                actions: admitted([
                    Do(Step::RunAll),
                    exit("app", "Error", 42),
                    run("app"),
                    exit("app", "Completed", 0),
                ]),
            }],
        ),
        (
            "stop-order",
            vec![
                Played {
                    pod: "legacy".into(),
                    spec: pod(vec![], vec![container("log-sidecar", json!({})), app()]),
                    // Nothing is written while the containers stop: one status at the end.
                    actions: admitted([Do(Step::RunAll), Deleted, stop(&[("log-sidecar", 5), ("app", 0)])]),
                },
                Played {
                    pod: "native".into(),
                    spec: pod(vec![native("log-sidecar", json!({}))], vec![app()]),
                    actions: admitted([
                        run("log-sidecar"),
                        run("app"),
                        Deleted,
                        stop(&[("app", 0), ("log-sidecar", 0)]),
                    ]),
                },
            ],
        ),
        (
            "faults",
            // Restarting the kubelet and containerd changed no status.
            vec![
                never_ready("broken"),
                Played { pod: "fine".into(), spec: pod(vec![healthy()], vec![app()]), actions: healthy_start() },
                never_ready("broken-later"),
            ],
        ),
        (
            "not-ready",
            vec![Played {
                pod: "fine".into(),
                spec: pod(vec![healthy()], vec![app()]),
                actions: admitted([
                    run("proxy"),
                    // The readiness result came before the pod sync the startup result
                    // triggers, unlike in every other recording.
                    Only(Step::Started("proxy".into(), true), Derive::Startup),
                    ready("proxy", true),
                    Only(Step::Admit, Derive::Sync),
                    run("app"),
                    // The node lifecycle controller; then the kubelet is back and
                    // probes the sidecar again before it counts it ready.
                    NodeNotReady,
                    ready("proxy", false),
                    ready("proxy", true),
                ]),
            }],
        ),
        ("start-order", start_order),
    ]
}
