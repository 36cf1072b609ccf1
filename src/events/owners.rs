//! The UID of a workload that a Pod's owner reference does not name, for its workload
//! Events, read once (`get`) in a task of its own so that a slow API server never holds up
//! other Events:
//! - a Deployment: the Pod's owner reference names its ReplicaSet;
//! - a CronJob: the Pod's owner reference names its Job, whose name alone made the Pod's
//!   workload the CronJob (`cronjob_of_job`, which a Job named so on purpose passes). The
//!   Job is read first and must be the one the Pod names (its UID) and be controlled by a
//!   CronJob of that name; then the CronJob, which must be the Job's controller (its UID),
//!   for its UID and `spec.concurrencyPolicy`. A forged Job name thus never moves an Event
//!   onto another object.
//!
//! The reads are the one bounded reader's ([`crate::fair_reader`]: fair per namespace,
//! retried when the API server fails, counted under `workload-owner-reads`). Answers are
//! cached per (workload, owner reference UID): a new ReplicaSet (a rollout, the Deployment
//! made again) or a new Job (the next run) is read again. A failed read (the workload does
//! not exist, or is not the Pod's, or the API server failed every attempt) is logged once,
//! counted, and not tried again for [`RETRY_FAILED`].

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use kube::{Api, Client};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::engine::WorkloadKind;
use crate::fair_cache::FairCache;
use crate::fair_queue::InNamespace;
use crate::fair_reader::{Lookup as ReadLookup, Read, Reader, Request};
use crate::metrics::Metrics;

/// Workloads remembered; when full, the least recently used of the namespace that holds the
/// most is forgotten first.
const REMEMBERED: usize = 4096;
/// A read that failed is tried again after this long.
pub(crate) const RETRY_FAILED: Duration = Duration::from_secs(300);
/// The `limit` label of a failed read, or one the full queue dropped.
const READ_LIMIT: &str = "workload-owner-reads";

/// A workload as one of its Pods names it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum OwnerKey {
    /// A Deployment, by the UID of the ReplicaSet its Pod names.
    Deployment {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
        /// The ReplicaSet's UID.
        replica_set_uid: String,
    },
    /// A CronJob, by the Job its Pod names.
    CronJob {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
        /// The Job's name (the Pod's `batch.kubernetes.io/job-name` label).
        job: String,
        /// The Job's UID (the Pod's owner reference).
        job_uid: String,
    },
}

impl InNamespace for OwnerKey {
    fn namespace(&self) -> &str {
        match self {
            Self::Deployment { namespace, .. } | Self::CronJob { namespace, .. } => namespace,
        }
    }
}

impl OwnerKey {
    fn kind(&self) -> WorkloadKind {
        match self {
            Self::Deployment { .. } => WorkloadKind::Deployment,
            Self::CronJob { .. } => WorkloadKind::CronJob,
        }
    }

    fn describe(&self) -> String {
        match self {
            Self::Deployment { namespace, name, .. } => format!("{namespace}/{name}"),
            Self::CronJob { namespace, name, job, .. } => format!("{namespace}/{name} (through Job {job})"),
        }
    }
}

/// What a read tells of a workload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct OwnerInfo {
    /// Its UID.
    pub(crate) uid: String,
    /// A CronJob's `spec.concurrencyPolicy` (`Allow` when unset, as the API defaults it);
    /// `None` for a Deployment.
    pub(crate) concurrency_policy: Option<String>,
}

impl ReadLookup for OwnerKey {
    /// What it is, or why it is not the Pod's workload (not retried: the API server answered).
    type Found = Result<OwnerInfo, String>;

    async fn read(&self, client: Client) -> Result<Result<OwnerInfo, String>, String> {
        read(client, self).await
    }
}

#[derive(Clone, Debug)]
enum Lookup {
    Known(OwnerInfo),
    Failed(Instant),
    Reading,
}

/// What is known of a workload.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum OwnerUid {
    /// Its UID (and concurrency policy).
    Known(OwnerInfo),
    /// Being read: the answer comes through [`Owners::answers`].
    Reading,
    /// The last read failed, less than [`RETRY_FAILED`] ago.
    Failed,
}

/// Workload UIDs, read on demand.
pub(crate) struct Owners {
    /// Fair per namespace: a tenant's many workloads evict its own entries, not another
    /// namespace's (whose Events would wait for a read again).
    cache: FairCache<OwnerKey, Lookup>,
    reader: Reader<OwnerKey>,
    /// Answers of the reads asked for; at most one per cached key.
    pub(crate) answers: mpsc::Receiver<Read<OwnerKey>>,
}

impl Owners {
    /// Reads with `client`, counting failures in `metrics`.
    pub(crate) fn new(client: Client, metrics: Metrics) -> Self {
        let (sender, answers) = mpsc::channel(64);
        let reader = Reader::spawn(client, metrics, READ_LIMIT, REMEMBERED, sender);
        Owners { cache: FairCache::new(REMEMBERED), reader, answers }
    }

    /// What is known of the workload `key` names, starting a read when nothing is.
    pub(crate) fn uid(&mut self, key: &OwnerKey, now: Instant) -> OwnerUid {
        match self.cache.get(key) {
            Some(Lookup::Known(info)) => return OwnerUid::Known(info.clone()),
            Some(Lookup::Reading) => return OwnerUid::Reading,
            Some(Lookup::Failed(at)) if now.saturating_duration_since(*at) < RETRY_FAILED => return OwnerUid::Failed,
            _ => {}
        }
        self.cache.put(key.clone(), Lookup::Reading);
        if let Some(dropped) = self.reader.request(Request::new(key.clone(), false)) {
            // Asked for again by the next Event that needs it.
            self.cache.pop(&dropped.lookup);
        }
        OwnerUid::Reading
    }

    /// Records an answer.
    pub(crate) fn answered(&mut self, key: OwnerKey, answer: Result<OwnerInfo, String>, now: Instant) {
        let lookup = match answer {
            Ok(info) => Lookup::Known(info),
            Err(error) => {
                tracing::warn!(
                    workload = %key.describe(), %error,
                    "reading the {} failed; its workload Events wait {RETRY_FAILED:?}", key.kind()
                );
                Lookup::Failed(now)
            }
        };
        self.cache.put(key, lookup);
    }
}

/// Reads what `key` needs: one `get` for a Deployment, two for a CronJob. The inner `Err`
/// is the API server's answer that the workload is not the Pod's (it does not exist, or
/// another object has its name); the outer one a failure worth trying again.
async fn read(client: Client, key: &OwnerKey) -> Result<Result<OwnerInfo, String>, String> {
    match key {
        OwnerKey::Deployment { name, .. } => {
            let deployment = Api::<Deployment>::namespaced(client, key.namespace()).get_opt(name).await;
            let Some(deployment) = deployment.map_err(|e| e.to_string())? else {
                return Ok(Err(format!("Deployment {name} not found")));
            };
            Ok(uid_of(&deployment.metadata).map(|uid| OwnerInfo { uid, concurrency_policy: None }))
        }
        OwnerKey::CronJob { namespace, name, job, job_uid } => {
            let read_job = Api::<Job>::namespaced(client.clone(), namespace).get_opt(job).await;
            let Some(read_job) = read_job.map_err(|e| e.to_string())? else {
                return Ok(Err(format!("Job {job} not found")));
            };
            let cronjob_uid = match cronjob_of(&read_job, name, job_uid) {
                Ok(uid) => uid,
                Err(reason) => return Ok(Err(reason)),
            };
            let read_cronjob = Api::<CronJob>::namespaced(client, namespace).get_opt(name).await;
            let Some(cronjob) = read_cronjob.map_err(|e| e.to_string())? else {
                return Ok(Err(format!("CronJob {name} not found")));
            };
            Ok(cronjob_info(&cronjob, &cronjob_uid, job))
        }
    }
}

/// The CronJob's UID and concurrency policy, if it is the one that controls Job `job`
/// (`controller_uid`).
fn cronjob_info(cronjob: &CronJob, controller_uid: &str, job: &str) -> Result<OwnerInfo, String> {
    let name = cronjob.metadata.name.as_deref().unwrap_or_default();
    let uid = uid_of(&cronjob.metadata)?;
    if uid != controller_uid {
        return Err(format!("CronJob {name} is not Job {job}'s controller (UID {uid}, not {controller_uid})"));
    }
    // The API server defaults it to Allow (pkg/apis/batch/v1/defaults.go).
    let policy = cronjob.spec.as_ref().and_then(|s| s.concurrency_policy.clone()).unwrap_or_else(|| "Allow".into());
    Ok(OwnerInfo { uid, concurrency_policy: Some(policy) })
}

/// The UID of the CronJob `cronjob` controlling `job`, when `job` is the Job the Pod names
/// (`job_uid`) and a CronJob of that name controls it.
fn cronjob_of(job: &Job, cronjob: &str, job_uid: &str) -> Result<String, String> {
    let name = job.metadata.name.as_deref().unwrap_or_default();
    if job.metadata.uid.as_deref() != Some(job_uid) {
        return Err(format!("Job {name} is not the Pod's owner (UID {job_uid})"));
    }
    let owners = job.metadata.owner_references.as_deref().unwrap_or_default();
    let controller = owners.iter().find(|o| o.controller == Some(true));
    match controller {
        Some(o) if o.kind == "CronJob" && o.api_version == "batch/v1" && o.name == cronjob && !o.uid.is_empty() => {
            Ok(o.uid.clone())
        }
        _ => Err(format!("Job {name} is not controlled by CronJob {cronjob}")),
    }
}

fn uid_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Result<String, String> {
    meta.uid.clone().filter(|uid| !uid.is_empty()).ok_or_else(|| "no metadata.uid".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_api;

    fn key(replica_set: &str) -> OwnerKey {
        OwnerKey::Deployment { namespace: "shop".into(), name: "web".into(), replica_set_uid: replica_set.into() }
    }

    fn known(uid: &str) -> OwnerInfo {
        OwnerInfo { uid: uid.into(), concurrency_policy: None }
    }

    #[tokio::test(start_paused = true)]
    async fn a_deployment_is_read_once_per_replica_set_and_a_failure_waits() {
        let (client, mut server) = test_api::client();
        let mut owners = Owners::new(client, Metrics::new());
        let t0 = Instant::now();
        assert_eq!(owners.uid(&key("rs-1"), t0), OwnerUid::Reading);
        assert_eq!(owners.uid(&key("rs-1"), t0), OwnerUid::Reading, "one read in flight, not two");
        let call = server.next().await;
        call.expect("GET", "/apis/apps/v1/namespaces/shop/deployments/web", &[]);
        call.respond_json(200, &serde_json::json!({"metadata": {"name": "web", "namespace": "shop", "uid": "d-1"}}));
        let read = owners.answers.recv().await.expect("an answer");
        let (answered, answer) = (read.lookup, read.found.and_then(|found| found));
        assert_eq!(answer, Ok(known("d-1")));
        owners.answered(answered, answer, t0);
        assert_eq!(owners.uid(&key("rs-1"), t0), OwnerUid::Known(known("d-1")), "cached");

        // A new ReplicaSet (the Deployment made again) is read again; this read fails.
        assert_eq!(owners.uid(&key("rs-2"), t0), OwnerUid::Reading);
        server.next().await.respond_status(404, "NotFound");
        let read = owners.answers.recv().await.expect("an answer");
        let (answered, answer) = (read.lookup, read.found.and_then(|found| found));
        assert!(answer.is_err(), "{answer:?}");
        owners.answered(answered, answer, t0);
        assert_eq!(owners.uid(&key("rs-2"), t0 + RETRY_FAILED / 2), OwnerUid::Failed, "not read again yet");
        server.expect_silence(Duration::from_secs(1)).await;
        assert_eq!(owners.uid(&key("rs-2"), t0 + RETRY_FAILED), OwnerUid::Reading, "read again after the wait");
        server.next().await.expect("GET", "/apis/apps/v1/namespaces/shop/deployments/web", &[]);
    }

    /// The API server failing is tried again (and counted); its answer that the Deployment
    /// does not exist is not: a forged owner costs one read per [`RETRY_FAILED`].
    #[tokio::test(start_paused = true)]
    async fn a_server_failure_is_retried_and_a_missing_deployment_is_not() {
        let (client, mut server) = test_api::client();
        let metrics = Metrics::new();
        let mut owners = Owners::new(client, metrics.clone());
        let t0 = Instant::now();
        assert_eq!(owners.uid(&key("rs-1"), t0), OwnerUid::Reading);
        server.next().await.respond_status(500, "InternalError");
        let retried = server.next().await;
        retried.expect("GET", "/apis/apps/v1/namespaces/shop/deployments/web", &[]);
        retried.respond_json(200, &serde_json::json!({"metadata": {"name": "web", "namespace": "shop", "uid": "d-1"}}));
        let read = owners.answers.recv().await.expect("an answer");
        assert_eq!(read.found, Ok(Ok(known("d-1"))));
        assert_eq!(metrics.limited.with_label_values(&[READ_LIMIT]).get(), 1);
        assert_eq!(owners.uid(&key("rs-forged"), t0), OwnerUid::Reading);
        server.next().await.respond_status(404, "NotFound");
        let read = owners.answers.recv().await.expect("an answer");
        assert!(matches!(read.found, Ok(Err(ref e)) if e.contains("not found")), "{:?}", read.found);
        server.expect_silence(Duration::from_secs(60)).await;
        assert_eq!(metrics.limited.with_label_values(&[READ_LIMIT]).get(), 1, "an answer is no failure");
    }

    fn run(job: &str) -> OwnerKey {
        OwnerKey::CronJob { namespace: "batch".into(), name: "nightly".into(), job: job.into(), job_uid: "j-1".into() }
    }

    fn job(uid: &str, owner: serde_json::Value) -> serde_json::Value {
        serde_json::json!({"metadata": {"name": "nightly-29149080", "namespace": "batch", "uid": uid,
                                        "ownerReferences": [owner]}})
    }

    fn cronjob_owner(name: &str, uid: &str) -> serde_json::Value {
        serde_json::json!({"apiVersion": "batch/v1", "kind": "CronJob", "name": name, "uid": uid, "controller": true})
    }

    const JOB_PATH: &str = "/apis/batch/v1/namespaces/batch/jobs/nightly-29149080";
    const CRONJOB_PATH: &str = "/apis/batch/v1/namespaces/batch/cronjobs/nightly";

    /// Reads `key`, answering each request with `(path it must ask, body)` in turn; returns
    /// what the read told.
    async fn read_run(key: OwnerKey, responses: Vec<(&str, serde_json::Value)>) -> Option<OwnerInfo> {
        let (client, mut server) = test_api::client();
        let mut owners = Owners::new(client, Metrics::new());
        let t0 = Instant::now();
        assert_eq!(owners.uid(&key, t0), OwnerUid::Reading);
        for (path, body) in responses {
            let call = server.next().await;
            call.expect("GET", path, &[]);
            call.respond_json(200, &body);
        }
        let read = owners.answers.recv().await.expect("an answer");
        let (answered, answer) = (read.lookup, read.found.and_then(|found| found));
        let told = answer.clone().ok();
        owners.answered(answered, answer, t0);
        server.expect_silence(Duration::from_secs(1)).await;
        told
    }

    fn cronjob(uid: &str, policy: Option<&str>) -> serde_json::Value {
        let mut spec = serde_json::json!({"schedule": "* * * * *", "jobTemplate": {"spec": {"template": {}}}});
        if let Some(policy) = policy {
            spec["concurrencyPolicy"] = policy.into();
        }
        serde_json::json!({"metadata": {"name": "nightly", "namespace": "batch", "uid": uid}, "spec": spec})
    }

    #[tokio::test(start_paused = true)]
    async fn a_cronjob_is_read_through_the_job_its_pod_names() {
        let responses = vec![
            (JOB_PATH, job("j-1", cronjob_owner("nightly", "c-1"))),
            (CRONJOB_PATH, cronjob("c-1", Some("Forbid"))),
        ];
        let told = read_run(run("nightly-29149080"), responses).await;
        assert_eq!(told, Some(OwnerInfo { uid: "c-1".into(), concurrency_policy: Some("Forbid".into()) }));
        // Unset, it is the API's default.
        let responses =
            vec![(JOB_PATH, job("j-1", cronjob_owner("nightly", "c-1"))), (CRONJOB_PATH, cronjob("c-1", None))];
        let told = read_run(run("nightly-29149080"), responses).await;
        assert_eq!(told.and_then(|t| t.concurrency_policy).as_deref(), Some("Allow"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_forged_job_name_moves_no_event_onto_another_object() {
        // A Job named like the CronJob's runs but controlled by something else, or by another
        // CronJob: the CronJob is never read.
        let config_map = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "name": "nightly", "uid": "x", "controller": true});
        for owner in [config_map, cronjob_owner("other", "c-2")] {
            assert_eq!(read_run(run("nightly-29149080"), vec![(JOB_PATH, job("j-1", owner))]).await, None);
        }
        // Another Job of that name than the Pod's (its UID differs).
        let other = job("j-other", cronjob_owner("nightly", "c-1"));
        assert_eq!(read_run(run("nightly-29149080"), vec![(JOB_PATH, other)]).await, None);
        // The CronJob of that name is not the Job's controller (made again since).
        let responses =
            vec![(JOB_PATH, job("j-1", cronjob_owner("nightly", "c-old"))), (CRONJOB_PATH, cronjob("c-new", None))];
        assert_eq!(read_run(run("nightly-29149080"), responses).await, None);
    }
}
