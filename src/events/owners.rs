//! The UID of a Deployment, for its workload Events: a Pod's owner reference names its
//! ReplicaSet, so the Deployment is read once (`get`), in a task of its own so that a slow
//! API server never holds up other Events. Answers are cached per (namespace, Deployment,
//! ReplicaSet UID): a new ReplicaSet (a rollout, the Deployment made again) is read again. A
//! failed read (the Deployment does not exist: a Pod with a forged owner) is logged once,
//! counted, and not tried again for [`RETRY_FAILED`].

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use kube::{Api, Client};
use lru::LruCache;
use tokio::sync::{mpsc, Semaphore};
use tokio::time::Instant;

/// Deployments remembered, the least recently used forgotten first.
const REMEMBERED: usize = 4096;
/// Reads in flight at most; more wait for a permit.
const CONCURRENT: usize = 4;
/// A read that failed is tried again after this long.
pub(crate) const RETRY_FAILED: Duration = Duration::from_secs(300);
/// A read is given up after this long.
const TIMEOUT: Duration = Duration::from_secs(10);

/// A Deployment as one of its Pods names it: namespace, name and the ReplicaSet's UID.
pub(crate) type OwnerKey = (String, String, String);

/// The answer to a read: the Deployment's UID, or why it is unknown.
pub(crate) type Answer = (OwnerKey, Result<String, String>);

#[derive(Clone, Debug)]
enum Lookup {
    Known(String),
    Failed(Instant),
    Reading,
}

/// What is known of a Deployment's UID.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum OwnerUid {
    /// Its UID.
    Known(String),
    /// Being read: the answer comes through [`Owners::answers`].
    Reading,
    /// The last read failed, less than [`RETRY_FAILED`] ago.
    Failed,
}

/// Deployment UIDs, read on demand.
pub(crate) struct Owners {
    client: Client,
    cache: LruCache<OwnerKey, Lookup>,
    permits: Arc<Semaphore>,
    sender: mpsc::UnboundedSender<Answer>,
    /// Answers of the reads started; one per read, and reads are bounded by the cache.
    pub(crate) answers: mpsc::UnboundedReceiver<Answer>,
}

impl Owners {
    /// Reads with `client`.
    pub(crate) fn new(client: Client) -> Self {
        let (sender, answers) = mpsc::unbounded_channel();
        let remembered = NonZeroUsize::new(REMEMBERED).unwrap_or(NonZeroUsize::MIN);
        Owners {
            client,
            cache: LruCache::new(remembered),
            permits: Arc::new(Semaphore::new(CONCURRENT)),
            sender,
            answers,
        }
    }

    /// The UID of the Deployment `key` names, starting a read when none is known.
    pub(crate) fn uid(&mut self, key: &OwnerKey, now: Instant) -> OwnerUid {
        match self.cache.get(key) {
            Some(Lookup::Known(uid)) => return OwnerUid::Known(uid.clone()),
            Some(Lookup::Reading) => return OwnerUid::Reading,
            Some(Lookup::Failed(at)) if now.saturating_duration_since(*at) < RETRY_FAILED => return OwnerUid::Failed,
            _ => {}
        }
        self.cache.put(key.clone(), Lookup::Reading);
        let api: Api<Deployment> = Api::namespaced(self.client.clone(), &key.0);
        let (permits, sender, key) = (self.permits.clone(), self.sender.clone(), key.clone());
        tokio::spawn(async move {
            let answer = match permits.acquire_owned().await {
                Ok(_permit) => match tokio::time::timeout(TIMEOUT, api.get(&key.1)).await {
                    Ok(Ok(deployment)) => deployment_uid(&deployment),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err(format!("no answer within {TIMEOUT:?}")),
                },
                Err(_) => Err("closed".into()),
            };
            // The publisher is gone (shutdown): nobody waits for the answer.
            let _ = sender.send((key, answer));
        });
        OwnerUid::Reading
    }

    /// Records an answer; returns the UID, or `None` when the read failed.
    pub(crate) fn answered(&mut self, key: OwnerKey, answer: Result<String, String>, now: Instant) -> Option<String> {
        match answer {
            Ok(uid) => {
                self.cache.put(key, Lookup::Known(uid.clone()));
                Some(uid)
            }
            Err(error) => {
                tracing::warn!(
                    namespace = %key.0, deployment = %key.1, %error,
                    "reading the Deployment failed; its workload Events wait {RETRY_FAILED:?}"
                );
                self.cache.put(key, Lookup::Failed(now));
                None
            }
        }
    }
}

fn deployment_uid(deployment: &Deployment) -> Result<String, String> {
    deployment.metadata.uid.clone().filter(|uid| !uid.is_empty()).ok_or_else(|| "no metadata.uid".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_api;

    fn key(replica_set: &str) -> OwnerKey {
        ("shop".into(), "web".into(), replica_set.into())
    }

    #[tokio::test(start_paused = true)]
    async fn a_deployment_is_read_once_per_replica_set_and_a_failure_waits() {
        let (client, mut server) = test_api::client();
        let mut owners = Owners::new(client);
        let t0 = Instant::now();
        assert_eq!(owners.uid(&key("rs-1"), t0), OwnerUid::Reading);
        assert_eq!(owners.uid(&key("rs-1"), t0), OwnerUid::Reading, "one read in flight, not two");
        let call = server.next().await;
        call.expect("GET", "/apis/apps/v1/namespaces/shop/deployments/web", &[]);
        call.respond_json(200, &serde_json::json!({"metadata": {"name": "web", "namespace": "shop", "uid": "d-1"}}));
        let (answered, answer) = owners.answers.recv().await.expect("an answer");
        assert_eq!(owners.answered(answered, answer, t0), Some("d-1".to_string()));
        assert_eq!(owners.uid(&key("rs-1"), t0), OwnerUid::Known("d-1".into()), "cached");

        // A new ReplicaSet (the Deployment made again) is read again; this read fails.
        assert_eq!(owners.uid(&key("rs-2"), t0), OwnerUid::Reading);
        server.next().await.respond_status(404, "NotFound");
        let (answered, answer) = owners.answers.recv().await.expect("an answer");
        assert_eq!(owners.answered(answered, answer, t0), None);
        assert_eq!(owners.uid(&key("rs-2"), t0 + RETRY_FAILED / 2), OwnerUid::Failed, "not read again yet");
        server.expect_silence(Duration::from_secs(1)).await;
        assert_eq!(owners.uid(&key("rs-2"), t0 + RETRY_FAILED), OwnerUid::Reading, "read again after the wait");
        server.next().await.expect("GET", "/apis/apps/v1/namespaces/shop/deployments/web", &[]);
    }
}
