//! A CronJob's Pods are named by their CronJob, on kube-apiserver: a Pod of the Job
//! `<cronjob>-<minute>` is labelled `workload_kind="CronJob"`, and its workload Event goes on
//! the CronJob, read through the Job (which must be the CronJob's), with what the CronJob's
//! `concurrencyPolicy` does to its next runs. There is no controller-manager here, so the test
//! makes the CronJob, its Job and the Pod with the owner references and labels the controllers
//! would write.

use std::time::{SystemTime, UNIX_EPOCH};

use k8s_openapi::api::batch::v1::{CronJob, Job};
use kube::api::{Api, PostParams};
use serde_json::{json, Value};
use sidecar_watch::engine::AlertName;
use sidecar_watch_harness::kubelet::{test_pod, State};

use crate::support::*;

/// The minute the CronJob controller would name a Job created now by.
fn this_minute() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() / 60).unwrap_or_default()
}

/// A CronJob `name` with `concurrencyPolicy` and its Job `<name>-<this minute>` (suspended:
/// nothing runs it), owned as the CronJob controller owns it; returns the CronJob's UID, the
/// Job's name and the owner reference its Pods carry.
pub(crate) async fn cronjob_with_job(c: &Cluster, name: &str, concurrency: &str) -> (String, String, Value) {
    let template = json!({"spec": {"restartPolicy": "Never", "containers": [{"name": "worker", "image": "busybox"}]}});
    let cronjob: CronJob = serde_json::from_value(json!({
        "apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": name},
        "spec": {"schedule": "* * * * *", "suspend": true, "concurrencyPolicy": concurrency,
                 "jobTemplate": {"spec": {"template": template}}},
    }))
    .expect("a CronJob");
    let cronjobs: Api<CronJob> = Api::namespaced(c.env.client.clone(), &c.ns);
    let cronjob = cronjobs.create(&PostParams::default(), &cronjob).await.expect("CronJob created");
    let cronjob_uid = cronjob.metadata.uid.expect("a UID");
    let job_name = format!("{name}-{}", this_minute());
    let job: Job = serde_json::from_value(json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": job_name, "ownerReferences": [{
            "apiVersion": "batch/v1", "kind": "CronJob", "name": name, "uid": cronjob_uid,
            "controller": true, "blockOwnerDeletion": true,
        }]},
        "spec": {"suspend": true, "template": template},
    }))
    .expect("a Job");
    let jobs: Api<Job> = Api::namespaced(c.env.client.clone(), &c.ns);
    let job = jobs.create(&PostParams::default(), &job).await.expect("Job created");
    let owner = json!({
        "apiVersion": "batch/v1", "kind": "Job", "name": job_name,
        "uid": job.metadata.uid.expect("a UID"), "controller": true, "blockOwnerDeletion": true,
    });
    (cronjob_uid, job_name, owner)
}

/// A Pod `name` of the Job `owner` names, labelled `app=<app>` and as the Job API labels a
/// Job's Pods (`batch.kubernetes.io/job-name`), running `worker` and the legacy sidecar
/// `log-sidecar`.
pub(crate) fn job_pod(name: &str, app: &str, owner: &Value) -> Value {
    let job = owner["name"].as_str().unwrap_or_default();
    let mut pod =
        test_pod(name, &[("app", app), ("batch.kubernetes.io/job-name", job)], &["worker", "log-sidecar"], &[]);
    pod["metadata"]["ownerReferences"] = json!([owner]);
    pod["spec"]["restartPolicy"] = json!("Never");
    pod
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cronjobs_held_job_warns_on_the_cronjob_with_its_concurrency_policy() {
    let c = Cluster::start("cronjob-events").await;
    let ns = c.ns.clone();
    c.apply_app_policy("batch", "nightly", json!({"jobBlocked": {"for": "1s", "severity": "warning"}})).await;
    let (uid, job, owner) = cronjob_with_job(&c, "nightly", "Forbid").await;
    let op = Operator::start(&c, "op-0", &[]).await;
    let pod_name = format!("{job}-abcde");
    let pod = c.create_pod(job_pod(&pod_name, "nightly", &owner)).await;
    drive(&pod, &[("worker", true), ("log-sidecar", true)]).await;
    pod.set_state("worker", State::terminated("Completed", 0)).await.expect("worker completed");
    let series = AlertSeries {
        alert: AlertName::JobBlockedBySidecar,
        policy: "batch",
        namespace: &ns,
        pod: &pod_name,
        container: "log-sidecar",
        product: "unknown",
        ..MESH_NOT_READY
    };
    op.wait_alerts("held by its sidecar", vec![owned_by(series.labels(), "CronJob", "nightly")]).await;
    c.wait_events(&pod_name, "Warning", "JobBlockedBySidecar", 1).await;
    let events = c.wait_events("nightly", "Warning", "JobBlockedBySidecar", 1).await;
    let warning = the_event(&events, "nightly", "JobBlockedBySidecar");
    let regarding = warning.regarding.clone().unwrap_or_default();
    assert_eq!(
        (regarding.kind.as_deref(), regarding.api_version.as_deref(), regarding.uid.as_deref()),
        (Some("CronJob"), Some("batch/v1"), Some(uid.as_str()))
    );
    assert_eq!(regarding.field_path.as_deref(), Some("spec.jobTemplate.spec.template.spec.containers{log-sidecar}"));
    let note = warning.note.as_deref().unwrap_or_default();
    let expected = "JobBlockedBySidecar on sidecar container log-sidecar in 1 Pod of CronJob/nightly (CronJob nightly \
         has concurrencyPolicy Forbid: every later run is skipped while this Job runs), e.g. Pod ";
    assert!(note.starts_with(expected), "{note}");
    // The Pod's own Event names the CronJob as its workload.
    let pod_events = c.events().await;
    let pod_warning = the_event(&pod_events, &pod_name, "JobBlockedBySidecar");
    let pod_note = pod_warning.note.as_deref().unwrap_or_default();
    assert!(pod_note.ends_with(&format!("(workload CronJob/nightly, policy SidecarPolicy {ns}/batch)")), "{pod_note}");
}

/// A Job named as a CronJob's run but controlled by another CronJob (a tenant's forgery):
/// the Pod is labelled by the name, as the rule says, but no Event goes on the CronJob
/// `nightly`, which does not control that Job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_job_name_puts_no_event_on_another_cronjob() {
    let c = Cluster::start("cronjob-forged").await;
    c.apply_app_policy("batch", "nightly", json!({"jobBlocked": {"for": "1s", "severity": "warning"}})).await;
    let (_, _, _) = cronjob_with_job(&c, "nightly", "Forbid").await;
    let (_, _, other) = cronjob_with_job(&c, "other", "Allow").await;
    // The other CronJob's Job, named as if it were nightly's.
    let job: Job = serde_json::from_value(json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": format!("nightly-{}", this_minute() - 1), "ownerReferences": [{
            "apiVersion": "batch/v1", "kind": "CronJob", "name": "other", "uid": other["uid"],
            "controller": true,
        }]},
        "spec": {"suspend": true, "template": {"spec": {"restartPolicy": "Never",
                 "containers": [{"name": "worker", "image": "busybox"}]}}},
    }))
    .expect("a Job");
    let jobs: Api<Job> = Api::namespaced(c.env.client.clone(), &c.ns);
    let job = jobs.create(&PostParams::default(), &job).await.expect("Job created");
    let owner = json!({
        "apiVersion": "batch/v1", "kind": "Job", "name": job.metadata.name.clone().unwrap_or_default(),
        "uid": job.metadata.uid.clone().unwrap_or_default(), "controller": true,
    });
    let op = Operator::start(&c, "op-0", &[]).await;
    let pod = c.create_pod(job_pod("forged-abcde", "nightly", &owner)).await;
    drive(&pod, &[("worker", true), ("log-sidecar", true)]).await;
    pod.set_state("worker", State::terminated("Completed", 0)).await.expect("worker completed");
    c.wait_events("forged-abcde", "Warning", "JobBlockedBySidecar", 1).await;
    op.wait_scrape("the workload Event counted as failed", |s| {
        match s.value("sidecar_watch_events_total", &[("reason", "JobBlockedBySidecar"), ("result", "error")]) {
            Some(1.0) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert_eq!(op.log().matches("reading the CronJob failed").count(), 1, "logged once: {}", op.log());
    let events = c.events().await;
    assert_eq!(count_events(&events, "nightly", "Warning", "JobBlockedBySidecar"), 0, "{}", describe_events(&events));
}
