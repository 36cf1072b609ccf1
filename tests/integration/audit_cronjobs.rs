//! `audit` of `kubectl get cronjobs,jobs,pods -A -o json`: a CronJob's template, its Jobs'
//! templates and its Jobs' Pods are one workload, `CronJob/<name>`, as the operator names it;
//! `JobBlockedBySidecar` says what the CronJob's `concurrencyPolicy` does to its next runs. A
//! plain Job whose name ends in digits stays a Job.

use serde_json::{json, Value};
use sidecar_watch_testkit::audit::{json as findings_of, text};

use crate::SIDECAR_WATCH;

const NOW: &str = "2025-06-03T10:30:00Z";
/// 2025-06-03T10:00:00Z in minutes since the epoch: the run the CronJob's Job is named by.
const RUN: &str = "nightly-29149080";

fn template() -> Value {
    json!({"spec": {"restartPolicy": "Never", "containers": [
        {"name": "worker", "image": "busybox:1.36"},
        {"name": "istio-proxy", "image": "docker.io/istio/proxyv2:1.24.2"},
    ]}})
}

fn job(name: &str, owner: Option<Value>) -> Value {
    let mut job = json!({"apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name, "namespace": "batch", "uid": format!("{name}-uid")},
        "spec": {"template": template()}});
    if let Some(owner) = owner {
        job["metadata"]["ownerReferences"] = json!([owner]);
    }
    job
}

/// A Pod of Job `job`, created at 10:00:05, whose worker finished at 10:01 while its legacy
/// sidecar runs on.
fn pod(job: &str) -> Value {
    let terminated = json!({"terminated": {"exitCode": 0, "reason": "Completed",
        "startedAt": "2025-06-03T10:00:10Z", "finishedAt": "2025-06-03T10:01:00Z"}});
    json!({"apiVersion": "v1", "kind": "Pod",
    "metadata": {"name": format!("{job}-x7k2p"), "namespace": "batch", "uid": format!("{job}-pod"),
        "creationTimestamp": "2025-06-03T10:00:05Z",
        "labels": {"batch.kubernetes.io/job-name": job},
        "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": job, "uid": format!("{job}-uid"),
                             "controller": true}]},
    "spec": template()["spec"],
    "status": {"phase": "Running", "startTime": "2025-06-03T10:00:06Z", "containerStatuses": [
        {"name": "worker", "image": "busybox:1.36", "imageID": "", "ready": false, "started": false,
         "restartCount": 0, "state": terminated},
        {"name": "istio-proxy", "image": "docker.io/istio/proxyv2:1.24.2", "imageID": "", "ready": true,
         "started": true, "restartCount": 0, "state": {"running": {"startedAt": "2025-06-03T10:00:10Z"}}},
    ]}})
}

fn list(cronjob: bool) -> String {
    let mut items = Vec::new();
    if cronjob {
        items.push(json!({"apiVersion": "batch/v1", "kind": "CronJob",
            "metadata": {"name": "nightly", "namespace": "batch", "uid": "cron-uid"},
            "spec": {"schedule": "0 10 * * *", "concurrencyPolicy": "Forbid",
                     "jobTemplate": {"spec": {"template": template()}}}}));
    }
    let owner = json!({"apiVersion": "batch/v1", "kind": "CronJob", "name": "nightly", "uid": "cron-uid",
                       "controller": true});
    items.extend([job(RUN, Some(owner)), job("migrate-1", None), pod(RUN), pod("migrate-1")]);
    json!({"apiVersion": "v1", "kind": "List", "items": items}).to_string()
}

/// `(pod, alertname, workload_kind/workload)` of each `JobBlockedBySidecar`, and its messages.
fn blocked(input: &str) -> (Vec<String>, Vec<String>) {
    let out = SIDECAR_WATCH.run(&["-f", "-", "--now", NOW, "-o", "json", "--fail-on", "none"], Some(input.as_bytes()));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let findings: Vec<Value> =
        findings_of(&out).into_iter().filter(|f| f["alertname"] == "JobBlockedBySidecar").collect();
    let rows = findings
        .iter()
        .map(|f| {
            let field = |k: &str| f[k].as_str().unwrap_or_default().to_string();
            format!("{} {} {}/{}", field("pod"), field("kind"), field("workload_kind"), field("workload"))
        })
        .collect();
    (rows, findings.iter().map(|f| f["message"].as_str().unwrap_or_default().to_string()).collect())
}

#[test]
fn a_cronjobs_template_jobs_and_pods_are_named_by_the_cronjob() {
    let (rows, messages) = blocked(&list(true));
    assert_eq!(
        rows,
        [
            "CronJob/nightly CronJob CronJob/nightly",
            "Job/migrate-1 Job Job/migrate-1",
            "migrate-1-x7k2p Pod Job/migrate-1",
            "nightly-29149080-x7k2p Pod CronJob/nightly",
        ]
    );
    let forbid = "(CronJob nightly has concurrencyPolicy Forbid: every later run is skipped while this Job runs)";
    let said: Vec<bool> = messages.iter().map(|m| m.ends_with(forbid)).collect();
    // The template's finding is the static check, worded as the admission policy words it
    // (tests/e2e_operator/admission.rs compares them): only the running Job's Pod says it.
    assert_eq!(said, [false, false, false, true], "{messages:#?}");
}

#[test]
fn without_the_cronjob_its_job_is_still_named_by_it_but_no_policy_is_known() {
    let (rows, messages) = blocked(&list(false));
    assert_eq!(
        rows,
        [
            "CronJob/nightly CronJob CronJob/nightly",
            "Job/migrate-1 Job Job/migrate-1",
            "migrate-1-x7k2p Pod Job/migrate-1",
            "nightly-29149080-x7k2p Pod CronJob/nightly",
        ]
    );
    assert!(messages.iter().all(|m| !m.contains("concurrencyPolicy")), "{messages:#?}");
}
