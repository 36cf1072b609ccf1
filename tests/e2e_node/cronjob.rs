//! A CronJob whose Job a legacy sidecar holds open, with the real CronJob and Job controllers:
//! its Pods are named by the CronJob (`workload_kind="CronJob"`, from the Job's name
//! `<cronjob>-<minute>` alone), and the workload Warning goes on the CronJob, read through
//! the Job, saying that under `concurrencyPolicy: Forbid` every later run is skipped (the
//! controller records each skipped run only as a Normal `JobAlreadyActive` Event:
//! hashicorp/vault-k8s#133).

use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use serde_json::json;
use sidecar_watch_harness::env::wait_until;

use crate::support::{container, job, leader_metrics, Scenario, MINUTE, POLICY};

/// The only Pod of the namespace (`Forbid`: one run at a time) and its Job's name.
async fn the_run(s: &Scenario) -> (String, String) {
    let pods: Api<Pod> = Api::namespaced(s.env.client.clone(), &s.ns);
    wait_until(3 * MINUTE, "the CronJob's first run", || async {
        let list = pods.list(&ListParams::default()).await.map_err(|e| e.to_string())?;
        let pod = list.items.first().ok_or("no Pod yet")?;
        let job = pod.metadata.owner_references.iter().flatten().find(|o| o.kind == "Job").ok_or("no Job owner")?;
        Ok::<_, String>((pod.metadata.name.clone().unwrap_or_default(), job.name.clone()))
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cronjob_held_open_by_a_legacy_sidecar_is_named_and_warned_on() {
    let s = Scenario::start("node-cronjob").await;
    // The shipper first: the kubelet starts regular containers in order.
    let template = job(
        "nightly",
        vec![],
        vec![container("log-sidecar", "exec sleep 3600", json!({})), container("app", "sleep 2", json!({}))],
    );
    s.apply(json!({
        "apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "nightly"},
        "spec": {"schedule": "* * * * *", "concurrencyPolicy": "Forbid", "jobTemplate": {"spec": template["spec"]}},
    }))
    .await;
    let (pod, run) = the_run(&s).await;
    let suffix = run.strip_prefix("nightly-").unwrap_or_default();
    assert!(!suffix.is_empty() && suffix.bytes().all(|b| b.is_ascii_digit()), "the controller's Job name: {run}");
    // The Pod's Warning, and one on the CronJob (not the Job, whose name changes every run);
    // `jobBlocked.for` is the scenario policy's 10 s. Later minutes start no run (Forbid), so
    // nothing else arrives.
    let expected = [
        ("JobBlockedBySidecar", pod.as_str(), "spec.containers{log-sidecar}"),
        ("JobBlockedBySidecar", "nightly", "spec.jobTemplate.spec.template.spec.containers{log-sidecar}"),
    ];
    s.expect_warnings(2 * MINUTE, Duration::from_secs(70), &expected).await;
    let events = s.events().await;
    let on_cronjob = events
        .iter()
        .find(|e| e.regarding.as_ref().and_then(|r| r.kind.as_deref()) == Some("CronJob"))
        .expect("the CronJob's Warning");
    let note = on_cronjob.note.clone().unwrap_or_default();
    let expected_note = "JobBlockedBySidecar on sidecar container log-sidecar in 1 Pod of CronJob/nightly (CronJob \
         nightly has concurrencyPolicy Forbid: every later run is skipped while this Job runs), e.g. Pod ";
    assert!(note.starts_with(expected_note), "{note}");
    let jobs: Api<Job> = Api::namespaced(s.env.client.clone(), &s.ns);
    let listed = jobs.list(&ListParams::default()).await.expect("Jobs listed");
    assert_eq!(listed.items.len(), 1, "Forbid: no later run started beside the held one");

    let metrics = leader_metrics(&s).await;
    let alerts: Vec<_> = metrics
        .alerts()
        .into_iter()
        .filter(|l| l.get("namespace").map(String::as_str) == Some(s.ns.as_str()))
        .filter(|l| l.get("alertname").map(String::as_str) == Some("JobBlockedBySidecar"))
        .filter(|l| l.get("policy").map(String::as_str) == Some(POLICY))
        .map(|l| {
            let get = |k: &str| l.get(k).cloned().unwrap_or_default();
            (get("pod"), get("container"), get("alertstate"), get("workload_kind"), get("workload"))
        })
        .collect();
    assert_eq!(
        alerts,
        [(pod.clone(), "log-sidecar".into(), "firing".into(), "CronJob".into(), "nightly".into())],
        "sidecar_alerts"
    );
    // The sidecar's version series counts the run's Pod on the CronJob too.
    let info = metrics.find("sidecar_info", &[("namespace", s.ns.as_str()), ("container", "log-sidecar")]);
    let named: Vec<(String, String)> = info
        .iter()
        .map(|sample| {
            let get = |k: &str| sample.labels.get(k).cloned().unwrap_or_default();
            (get("workload_kind"), get("workload"))
        })
        .collect();
    assert_eq!(named, [("CronJob".to_string(), "nightly".to_string())], "sidecar_info");
}
