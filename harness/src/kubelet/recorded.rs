//! The driver against the real kubelet: each scenario the node suite recorded
//! (`harness/node-transitions/`, one line per status change the kubelet 1.37.2 wrote, see
//! harness/README.md "The simulated kubelet and the real one") is played again through the
//! driver's own steps, offline, and every status it would write is compared with the
//! recorded one: phase, conditions in order, each container's state, `ready`, `started`,
//! `restartCount` and `lastState`, and which timestamps each write moved (a condition's
//! `lastTransitionTime`, a run's `startedAt`, where a `lastState` comes from). One step of
//! a test is one recorded write, or the few the kubelet makes for it.
//!
//! The scenarios, as the driver plays them, are in `scenarios`.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::{ContainerStatus, PodSpec, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use serde_json::{json, Value};

use super::spec::Facts;
use super::status::{ensure_statuses, last_terminated, put_condition};

use scenarios::Action::{Bound, Created, Deleted, Do, NodeNotReady, Only};
use scenarios::{scenarios, Played};

mod scenarios;

/// The recorder's summary of a status ([`crate::node::recorder`]), from the driver's.
fn summary(s: &PodStatus, deleting: bool) -> Value {
    let time = |t: &Time| jiff::Timestamp::from_second(t.0.as_second()).unwrap_or_default().to_string();
    let containers = |list: &Option<Vec<ContainerStatus>>| -> Vec<Value> {
        list.iter()
            .flatten()
            .map(|c| {
                let state = c.state.clone().unwrap_or_default();
                json!({
                    "name": c.name, "ready": c.ready, "started": c.started, "restarts": c.restart_count,
                    "running": state.running.and_then(|r| r.started_at).map(|t| time(&t)),
                    "waiting": state.waiting.and_then(|w| w.reason),
                    "terminated": state.terminated.map(|t| json!({"reason": t.reason, "exit": t.exit_code,
                        "startedAt": t.started_at.map(|x| time(&x)), "finishedAt": t.finished_at.map(|x| time(&x))})),
                    "last": last_terminated(c).map(|t| json!({"reason": t.reason, "exit": t.exit_code,
                        "finishedAt": t.finished_at.as_ref().map(time)})),
                })
            })
            .collect()
    };
    json!({
        "deleting": deleting,
        "phase": s.phase,
        "conditions": s.conditions.iter().flatten()
            .map(|c| format!("{}={}@{}", c.type_, c.status, c.last_transition_time.as_ref().map(time).unwrap_or_default()))
            .collect::<Vec<_>>(),
        "init": containers(&s.init_container_statuses),
        "containers": containers(&s.container_statuses),
    })
}

/// A Pod's summaries with times turned into what each write did to them: `~` marks a
/// condition whose `lastTransitionTime` moved and a run whose `startedAt` is new; a
/// terminated state says whether it started when the run did; a `lastState` whether it is
/// the exit last seen as the state (`=exit`), the one before (unchanged) or new (`~`). The
/// times themselves are noise the replay tolerates: the driver stamps a write with the
/// instant the recorder saw the kubelet's, later than the kubelet's clock by the watch's
/// delay, and a postStart hook has the run reported seconds after its `startedAt`.
fn relations(lines: &[Value]) -> Vec<Value> {
    let mut condition_times: HashMap<String, String> = HashMap::new();
    let mut runs: HashMap<String, String> = HashMap::new();
    let mut exits: HashMap<String, String> = HashMap::new();
    let mut lasts: HashMap<String, String> = HashMap::new();
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    lines
        .iter()
        .map(|line| {
            let conditions: Vec<String> = line["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|c| {
                    let (kind, at) = c.as_str().unwrap_or_default().split_once('@').unwrap_or_default();
                    let type_ = kind.split('=').next().unwrap_or_default().to_string();
                    let moved = condition_times.insert(type_, at.to_string()).as_deref() != Some(at);
                    format!("{kind}{}", if moved { "~" } else { "" })
                })
                .collect();
            let mut containers = Vec::new();
            for list in ["init", "containers"] {
                for c in line[list].as_array().into_iter().flatten() {
                    let name = format!("{list}/{}", text(&c["name"]));
                    let state = if let Some(at) = c["running"].as_str() {
                        let new = runs.insert(name.clone(), at.to_string()).as_deref() != Some(at);
                        format!("running{}", if new { "~" } else { "" })
                    } else if let Some(reason) = c["waiting"].as_str() {
                        format!("waiting:{reason}")
                    } else if c["terminated"].is_object() {
                        let t = &c["terminated"];
                        let same_run = runs.get(&name).is_some_and(|r| *r == text(&t["startedAt"]));
                        exits.insert(name.clone(), text(&t["finishedAt"]));
                        format!("terminated:{}/{}{}", text(&t["reason"]), t["exit"], if same_run { "" } else { "(?)" })
                    } else {
                        "none".into()
                    };
                    let last = match c["last"].as_object() {
                        None => Value::Null,
                        Some(l) => {
                            let finished = text(&l["finishedAt"]);
                            let origin = if lasts.get(&name) == Some(&finished) {
                                ""
                            } else if exits.get(&name) == Some(&finished) {
                                "=exit"
                            } else {
                                "~"
                            };
                            lasts.insert(name.clone(), finished);
                            json!(format!("{}/{}{origin}", text(&l["reason"]), l["exit"]))
                        }
                    };
                    containers.push(json!({"name": name, "state": state, "ready": c["ready"],
                        "started": c["started"], "restarts": c["restarts"], "last": last}));
                }
            }
            json!({"phase": line["phase"], "deleting": line["deleting"], "conditions": conditions,
                   "containers": containers})
        })
        .collect()
}

/// The driver's writes for `played`, each at the time of the recorded line it stands for.
fn replay(played: &Played, recorded: &[Value]) -> Vec<Value> {
    let meta = ObjectMeta { name: Some(played.pod.clone()), namespace: Some("ns".into()), ..Default::default() };
    let spec: PodSpec = serde_json::from_value(played.spec.clone()).expect("a Pod spec");
    let mut facts = Facts::new(&meta, &spec, &played.spec);
    let mut status = PodStatus::default();
    let mut out = Vec::new();
    for action in &played.actions {
        let at = recorded.get(out.len()).and_then(|l| l["at"].as_str()).unwrap_or("2026-01-01T00:00:00Z");
        let at = Time(at.parse().expect("a timestamp"));
        let (step, derive, follow) = match action {
            Created => {
                status.phase = Some("Pending".into());
                out.push(summary(&status, facts.deleting));
                continue;
            }
            Bound => {
                put_condition(status.conditions.get_or_insert_with(Vec::new), "PodScheduled", (true, None), &at);
                out.push(summary(&status, facts.deleting));
                continue;
            }
            Deleted => {
                facts.deleting = true;
                out.push(summary(&status, facts.deleting));
                continue;
            }
            NodeNotReady => {
                let ready = status.conditions.iter_mut().flatten().find(|c| c.type_ == "Ready");
                if let Some(c) = ready.filter(|c| c.status != "False") {
                    c.status = "False".into();
                    c.last_transition_time = Some(at);
                }
                out.push(summary(&status, facts.deleting));
                continue;
            }
            Do(step) => (step, step.derive(), true),
            Only(step, derive) => (step, *derive, false),
        };
        ensure_statuses(&spec, &mut status);
        step.apply(&facts, &mut status, &at).expect("the containers of the spec");
        let mut next = derive.apply(&facts, &mut status, &at);
        out.push(summary(&status, facts.deleting));
        while let Some(d) = next.filter(|_| follow) {
            let before = status.clone();
            next = d.apply(&facts, &mut status, &at);
            if status != before {
                out.push(summary(&status, facts.deleting));
            }
        }
    }
    out
}

#[test]
fn the_driver_writes_what_the_real_kubelet_wrote() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("node-transitions");
    let scenarios = scenarios();
    let mut recorded: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|f| f.ok()?.file_name().to_str()?.strip_suffix(".jsonl").map(str::to_string))
        .collect();
    recorded.sort();
    let mut played: Vec<String> = scenarios.iter().map(|(s, _)| s.to_string()).collect();
    played.sort();
    assert_eq!(played, recorded, "every recording is played, and only those");
    let mut failures = Vec::new();
    for (scenario, pods) in scenarios {
        let path = dir.join(format!("{scenario}.jsonl"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).expect("a JSON line")).collect();
        let mut seen = 0;
        for played in &pods {
            let recorded: Vec<Value> = lines.iter().filter(|l| l["pod"] == *played.pod).cloned().collect();
            seen += recorded.len();
            let (want, got) = (relations(&recorded), relations(&replay(played, &recorded)));
            if want != got {
                // The first write that differs, or the first one only one side made.
                let i = want.iter().zip(&got).position(|(w, g)| w != g).unwrap_or(want.len().min(got.len()));
                let at = |writes: &[Value]| writes.get(i).map_or("(no write)".into(), Value::to_string);
                let (pod, n, m) = (&played.pod, want.len(), got.len());
                failures.push(format!(
                    "{scenario}/{pod} write {i} ({n} recorded, {m} from the driver):\n  kubelet {}\n  driver  {}",
                    at(&want),
                    at(&got)
                ));
            }
        }
        assert_eq!(seen, lines.len(), "{scenario}: a Pod of the recording is not played");
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
