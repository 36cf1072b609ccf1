//! The example inhibit rules in a real Alertmanager (issue 62): each case of
//! `config/alertmanager/tests/inhibition.yaml` (which `scripts/check-deploy.sh` evaluates
//! offline) is posted to an Alertmanager of its own running `config/alertmanager/alertmanager.yaml`,
//! which must hide exactly the alerts the case lists, each by one of the alerts it lists (the
//! API names the first it finds), keep every other alert active and notify it. No operator and
//! no Prometheus: the alerts carry the labels the shipped PrometheusRule's alerts carry.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::Value;
use sidecar_watch_harness::alertmanager::{webhooks_to, Alertmanager, WebhookReceiver, TEST_TIMINGS};
use sidecar_watch_harness::env::wait_until;

use crate::support::*;

/// How long a case's outcome must hold once reached: Alertmanager feeds its inhibitor from the
/// alerts it stores a moment later, so an alert seen active could still become hidden. Several
/// of the test's group intervals (1 s), so that a notification that was going to come has come.
const HOLD: Duration = Duration::from_secs(3);

// The names of the case file's cases, one test each ([`TESTED`] holds them all, in order).
const INJECTION_FAILURE: &str = "an injection failure hides its own container's alerts, not another sidecar's";
const BLOCKED_ROLLOUT: &str = "a blocked rollout hides its container's alerts of no higher severity";
const CRASH_LOOP: &str = "a crash loop hides its own container's readiness alerts in its own workload";
const OTHER_WORKLOAD: &str = "another namespace or workload is never hidden";
const INFO_SOURCE: &str = "an info source hides only info alerts";
const OPERATOR_DOWN: &str = "a dead operator shard hides its own missing leader";
/// Every case's name, in the case file's order.
const TESTED: [&str; 6] = [INJECTION_FAILURE, BLOCKED_ROLLOUT, CRASH_LOOP, OTHER_WORKLOAD, INFO_SOURCE, OPERATOR_DOWN];

/// The case file: its cases in order.
#[derive(Debug, Deserialize)]
struct Cases {
    cases: Vec<Case>,
}

/// One case: the labels all its alerts carry, its alerts by id, the hidden ones with their
/// possible sources.
#[derive(Debug, Deserialize)]
struct Case {
    name: String,
    labels: BTreeMap<String, String>,
    alerts: BTreeMap<String, BTreeMap<String, String>>,
    #[serde(default)]
    inhibited: BTreeMap<String, BTreeSet<String>>,
}

impl Case {
    /// Every alert's full label set, by id.
    fn label_sets(&self) -> BTreeMap<&str, BTreeMap<&str, &str>> {
        self.alerts
            .iter()
            .map(|(id, own)| {
                let mut labels: BTreeMap<&str, &str> =
                    self.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                labels.extend(own.iter().map(|(k, v)| (k.as_str(), v.as_str())));
                (id.as_str(), labels)
            })
            .collect()
    }
}

/// The cases of `config/alertmanager/tests/inhibition.yaml`.
fn shipped_cases() -> Vec<Case> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/alertmanager/tests/inhibition.yaml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let file: Cases = serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    file.cases
}

/// The shipped case named `name`.
fn shipped_case(name: &str) -> Case {
    shipped_cases().into_iter().find(|c| c.name == name).unwrap_or_else(|| panic!("no case {name:?}"))
}

/// The id of the case's alert whose labels `alert` (an item of the API's list) carries exactly.
fn id_of<'a>(sets: &BTreeMap<&'a str, BTreeMap<&str, &str>>, alert: &Value) -> Option<&'a str> {
    let labels = alert.get("labels")?.as_object()?;
    sets.iter()
        .find(|(_, set)| set.len() == labels.len() && set.iter().all(|(k, v)| labels.get(*k) == Some(&Value::from(*v))))
        .map(|(id, _)| *id)
}

/// What Alertmanager holds against the case: an error naming the first difference.
fn compare(case: &Case, sets: &BTreeMap<&str, BTreeMap<&str, &str>>, alerts: &[Value]) -> Result<(), String> {
    let fingerprints: BTreeMap<&str, &str> =
        alerts.iter().filter_map(|a| Some((a.get("fingerprint")?.as_str()?, id_of(sets, a)?))).collect();
    let mut seen = BTreeSet::new();
    for alert in alerts {
        let id = id_of(sets, alert).ok_or_else(|| format!("an alert of no case's: {alert}"))?;
        seen.insert(id);
        let state = alert.pointer("/status/state").and_then(Value::as_str).unwrap_or("?");
        let by: Vec<&str> = alert
            .pointer("/status/inhibitedBy")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|f| f.as_str().and_then(|f| fingerprints.get(f).copied()).unwrap_or("(unknown fingerprint)"))
            .collect();
        match case.inhibited.get(id) {
            None if state == "active" && by.is_empty() => {}
            None => return Err(format!("{id} should be active: state {state}, inhibited by {by:?}")),
            Some(sources) if state == "suppressed" && !by.is_empty() && by.iter().all(|s| sources.contains(*s)) => {}
            Some(sources) => {
                return Err(format!(
                    "{id} should be inhibited by one of {sources:?}: state {state}, inhibited by {by:?}"
                ))
            }
        }
    }
    let missing: Vec<&&str> = sets.keys().filter(|id| !seen.contains(*id)).collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!("not in Alertmanager yet: {missing:?}"))
    }
}

/// The ids of the case's alerts the webhook receiver was sent firing, at any receiver.
fn notified<'a>(sets: &BTreeMap<&'a str, BTreeMap<&str, &str>>, hook: &WebhookReceiver) -> BTreeSet<&'a str> {
    hook.notifications().iter().flat_map(|n| n.alerts().iter().filter_map(|a| id_of(sets, a))).collect()
}

/// Posts each of `alerts` (id, labels) of the case `name` to `am`.
async fn post<'a>(
    am: &Alertmanager,
    name: &str,
    alerts: impl Iterator<Item = (&'a &'a str, &'a BTreeMap<&'a str, &'a str>)>,
) {
    for (id, labels) in alerts {
        let pairs: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (*k, *v)).collect();
        am.add_alert(&pairs).await.unwrap_or_else(|e| panic!("case {name:?}, alert {id}: {e}"));
    }
}

/// Runs the case `name`: posts its alerts, waits (bounded) until Alertmanager holds exactly the
/// case's outcome and has notified exactly its active alerts, then checks that this holds for
/// [`HOLD`].
async fn run_case(name: &str) {
    let case = shipped_case(name);
    let sets = case.label_sets();
    let hook = WebhookReceiver::start().await.expect("the webhook receiver listens");
    let config = webhooks_to(&shipped_alertmanager_config(), &hook.base_url(), TEST_TIMINGS)
        .expect("the shipped Alertmanager configuration has one webhook per receiver");
    let dir = std::env::temp_dir().join(format!("sidecar-watch-am-inhibition-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a directory for Alertmanager");
    let am = Alertmanager::start(&dir, &config).await.unwrap_or_else(|e| panic!("{e}"));
    // The sources first, until Alertmanager holds them: a target notified before its source
    // arrived would be Alertmanager's timing, not the rules' doing.
    let sources: BTreeSet<&str> = case.inhibited.values().flatten().map(String::as_str).collect();
    post(&am, name, sets.iter().filter(|(id, _)| sources.contains(*id))).await;
    let what = format!("case {name:?}: Alertmanager holds the sources");
    let held = wait_until(WAIT, &what, || async {
        let alerts = am.alerts().await.map_err(|e| e.to_string())?;
        let ids: BTreeSet<&str> = alerts.iter().filter_map(|a| id_of(&sets, a)).collect();
        if ids == sources {
            Ok(())
        } else {
            Err(format!("holds {ids:?}, want {sources:?}"))
        }
    });
    if let Err(e) = held.await {
        panic!("{e}\n{}", am.describe_alerts().await);
    }
    post(&am, name, sets.iter().filter(|(id, _)| !sources.contains(*id))).await;
    let active: BTreeSet<&str> = sets.keys().copied().filter(|id| !case.inhibited.contains_key(*id)).collect();
    let check = || async {
        let alerts = am.alerts().await.map_err(|e| e.to_string())?;
        compare(&case, &sets, &alerts)?;
        let paged = notified(&sets, &hook);
        if paged == active {
            Ok(())
        } else {
            Err(format!("notified {paged:?}, want exactly the active {active:?}"))
        }
    };
    let report = || async {
        format!("--- Alertmanager ---\n{}\n--- webhook ---\n{}", am.describe_alerts().await, hook.describe())
    };
    if let Err(e) = wait_until(WAIT, &format!("case {name:?}"), check).await {
        panic!("case {name:?}: {e}\n{}", report().await);
    }
    let start = Instant::now();
    while start.elapsed() < HOLD {
        if let Err(e) = check().await {
            panic!("case {name:?}: changed within {HOLD:?}: {e}\n{}", report().await);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// (a) SidecarInjectionFailed of istio-proxy hides istio-proxy's SidecarContainerNotReady, not
/// fluent-bit's critical SidecarOOMKilled in the same Deployment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alertmanager_inhibition_injection_failure_hides_only_its_container() {
    run_case(INJECTION_FAILURE).await;
}

/// (b) A warning RolloutBlockedBySidecar of log-shipper hides its warnings, not its critical
/// SidecarCrashLooping nor another container's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alertmanager_inhibition_blocked_rollout_hides_no_higher_severity() {
    run_case(BLOCKED_ROLLOUT).await;
}

/// (c) SidecarCrashLooping hides SidecarContainerNotReady and MainContainerReadyButSidecarNot of
/// its container, not another container's or another workload's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alertmanager_inhibition_crash_loop_hides_its_readiness_alerts() {
    run_case(CRASH_LOOP).await;
}

/// (d) Another namespace, workload name or workload kind is never hidden.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alertmanager_inhibition_never_crosses_namespace_or_workload() {
    run_case(OTHER_WORKLOAD).await;
}

/// An info source hides only info alerts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alertmanager_inhibition_info_source_hides_only_info() {
    run_case(INFO_SOURCE).await;
}

/// The operator's own rule as before: SidecarWatchDown hides its shard's SidecarWatchNoLeader.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alertmanager_inhibition_operator_down_hides_its_shard_no_leader() {
    run_case(OPERATOR_DOWN).await;
}

/// Every case of the file runs in a test here: a new case needs its test (and name) in [`TESTED`].
#[test]
fn alertmanager_inhibition_every_shipped_case_is_tested() {
    let names: Vec<String> = shipped_cases().into_iter().map(|c| c.name).collect();
    assert_eq!(names, TESTED, "config/alertmanager/tests/inhibition.yaml's cases, in order");
}
