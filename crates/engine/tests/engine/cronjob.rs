//! A CronJob's Pods are named by their CronJob, from the Job name alone
//! (`cronjob_of_job`): accepted only where the name cannot be a plain Job's by accident.

use jiff::Timestamp;
use serde_json::json;
use sidecar_watch_engine::{cronjob_concurrency, cronjob_of_job, CRONJOB_CLOCK_SKEW, CRONJOB_RUN_WINDOW};

use sidecar_watch_testkit::engine::view;

/// The Pods' creation time in these tests, 2025-06-03T10:00:00Z: minute 29,149,080.
const CREATED: &str = "2025-06-03T10:00:00Z";
const MINUTE: i64 = 29_149_080;

fn created() -> Timestamp {
    CREATED.parse().expect("a timestamp")
}

/// The workload a Pod of Job `job` is labelled with.
fn workload_of_pod(job: &str) -> (String, String) {
    let pod = json!({"metadata": {"name": format!("{job}-x7k2p"), "namespace": "batch", "uid": "u1",
        "creationTimestamp": CREATED,
        "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": job, "uid": "j1", "controller": true}]},
        "spec": {"containers": [{"name": "app", "image": "busybox"}]}});
    let v = view(&pod);
    let (kind, name) = v.workload();
    (kind.to_string(), name.to_string())
}

fn cronjob(name: &str) -> (String, String) {
    ("CronJob".into(), name.into())
}

fn job(name: &str) -> (String, String) {
    ("Job".into(), name.into())
}

#[test]
fn a_job_named_for_a_minute_just_before_its_pod_stands_for_its_cronjob() {
    assert_eq!(workload_of_pod(&format!("nightly-{MINUTE}")), cronjob("nightly"));
    // A few minutes late (the Pod waited for a node), a dotted name, the longest name.
    assert_eq!(workload_of_pod(&format!("nightly-{}", MINUTE - 3)), cronjob("nightly"));
    assert_eq!(workload_of_pod(&format!("db.backup-{MINUTE}")), cronjob("db.backup"));
    let longest = "a".repeat(52);
    assert_eq!(workload_of_pod(&format!("{longest}-{MINUTE}")), cronjob(&longest));
    // Only the last `-` separates: the CronJob's own name may hold digits and dashes.
    assert_eq!(workload_of_pod(&format!("backup-2-{MINUTE}")), cronjob("backup-2"));
}

#[test]
fn plain_job_names_stay_jobs() {
    for name in [
        "migrate-1",       // minute 1: 1970
        "backup-20240101", // minute 20,240,101: 2008
        "backup-28650",
        "migrate",
        "migrate-",
        "-29149080",                       // no CronJob name
        "Nightly-29149080",                // not a DNS-1123 name
        "nightly.-29149080",               // a label ends in `.`
        "nightly--29149080",               // the name would end in `-`
        "nightly-029149080",               // `%d` prints no leading zero
        "nightly-+29149080",               // nor a sign
        "nightly-29149080a",               // nor anything but digits
        "nightly-2914908O",                // (a letter O)
        "nightly-99999999999999999999999", // overflows an i64: a forged huge suffix
        "nightly-153722867280912931",      // fits an i64, its seconds do not
        "nightly-9223372036854775807",     // i64::MAX minutes
    ] {
        assert_eq!(workload_of_pod(name), job(name), "{name}");
    }
    let too_long = "a".repeat(53);
    let name = format!("{too_long}-{MINUTE}");
    assert_eq!(workload_of_pod(&name), job(&name), "a CronJob name is at most 52 characters");
}

#[test]
fn the_minute_must_be_within_the_window_before_the_pod() {
    let skew = i64::try_from(CRONJOB_CLOCK_SKEW.as_secs() / 60).expect("minutes");
    let window = i64::try_from(CRONJOB_RUN_WINDOW.as_secs() / 60).expect("minutes");
    assert_eq!((skew, window), (5, 7 * 24 * 60), "the documented rule");
    let at = |minute: i64| cronjob_of_job(&format!("nightly-{minute}"), created()).map(str::to_string);
    assert_eq!(at(MINUTE + skew).as_deref(), Some("nightly"), "the controller's clock ahead by the skew");
    assert_eq!(at(MINUTE + skew + 1), None, "after the Pod's creation: not a run that made it");
    assert_eq!(at(MINUTE - window).as_deref(), Some("nightly"), "a week late");
    assert_eq!(at(MINUTE - window - 1), None, "older than the window");
}

#[test]
fn a_pod_without_creation_time_or_owned_otherwise_names_its_owner() {
    // No creationTimestamp: the window cannot be checked, so the Job stays.
    let pod = json!({"metadata": {"name": "p", "namespace": "batch", "uid": "u1",
        "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": format!("nightly-{MINUTE}"), "uid": "j1",
                             "controller": true}]},
        "spec": {"containers": [{"name": "app", "image": "busybox"}]}});
    assert_eq!(view(&pod).workload(), ("Job", format!("nightly-{MINUTE}").as_str()));
    // Another group's `Job` is not batch's.
    let mut other = pod.clone();
    other["metadata"]["creationTimestamp"] = json!(CREATED);
    other["metadata"]["ownerReferences"][0]["apiVersion"] = json!("example.com/v1");
    assert_eq!(view(&other).workload(), ("Job", format!("nightly-{MINUTE}").as_str()));
}

#[test]
fn each_concurrency_policy_says_what_happens_to_the_next_runs() {
    let said = |policy: &str| cronjob_concurrency("nightly", policy);
    assert_eq!(
        said("Forbid").as_deref(),
        Some("CronJob nightly has concurrencyPolicy Forbid: every later run is skipped while this Job runs")
    );
    assert_eq!(
        said("Replace").as_deref(),
        Some("CronJob nightly has concurrencyPolicy Replace: the next run replaces this Job")
    );
    assert_eq!(
        said("Allow").as_deref(),
        Some("CronJob nightly has concurrencyPolicy Allow: later runs start beside it")
    );
    // Not a value of the API: nothing said rather than a guess.
    assert_eq!(said("forbid"), None);
    assert_eq!(said(""), None);
}
