//! What happens to kube-apiserver and what it saw, for the tests that run the operator on a
//! control plane of their own: an outage through the fault proxy, a compacted history, and
//! the operator's requests for initial states as kube-apiserver's audit log records them.

use sidecar_watch_harness::control_plane::{AuditLog, AuditedRequest};
use sidecar_watch_harness::env::wait_until;
use sidecar_watch_harness::fault_proxy::FaultProxy;

use crate::support::{Cluster, WAIT};

/// An outage: every request of the operator fails with 500 and every connection closes.
/// Returns once the operator has hit the fault (a few failed requests); `proxy.heal()` ends it.
pub async fn outage(proxy: &FaultProxy) {
    let failed_before = proxy.injected();
    proxy.fail_next(u32::MAX, 500, 0);
    proxy.drop_connections();
    wait_until(WAIT, "the operator to hit the injected 500s", || async {
        let n = proxy.injected();
        if n > failed_before + 3 {
            Ok(())
        } else {
            Err(n)
        }
    })
    .await
    .unwrap();
}

/// Forgets every resourceVersion handed out so far, as a long outage does: etcd compacted and
/// kube-apiserver restarted (its watch cache would still serve the older versions).
pub async fn compact_history(c: &Cluster) {
    let cp = c.control_plane();
    cp.compact_etcd().await.expect("etcd compacted");
    cp.restart_apiserver().await.expect("kube-apiserver started again");
}

/// How the operator asked kube-apiserver for one resource's initial state, by its audit log.
/// A request answered otherwise (429 while a new CRD's watch cache starts, say) is retried by
/// the watcher; its code is kept for messages.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InitialStates {
    /// Streaming watches (`sendInitialEvents=true`) served.
    pub streamed: u64,
    /// Streaming watches refused (422 Invalid: WatchList off or before 1.27).
    pub refused: u64,
    /// LIST requests served (pages included).
    pub listed: u64,
    /// The codes of the other answers to either.
    pub retried: Vec<u16>,
}

impl InitialStates {
    /// Every request for an initial state, answered or not.
    pub fn requests(&self) -> u64 {
        self.streamed + self.refused + self.listed + self.retried.len() as u64
    }

    /// Streamed, refused and listed: what a test expects whatever was retried.
    pub fn counts(&self) -> (u64, u64, u64) {
        (self.streamed, self.refused, self.listed)
    }
}

/// The operator's requests for the initial state of `resource` so far.
pub fn initial_states(audit: &AuditLog, resource: &str) -> InitialStates {
    let requests = audit.requests_by(sidecar_watch::kubeconfig::USER_AGENT).expect("kube-apiserver's audit log");
    let mut states = InitialStates::default();
    // The `events` watch is the core API's (FailedCreate); a new leader's read-back of its
    // own Warnings lists events.k8s.io Events, which are no watch's initial state.
    let watched =
        |r: &&AuditedRequest| r.resource == resource && (resource != "events" || r.request_uri.starts_with("/api/v1/"));
    for request in requests.iter().filter(watched) {
        let streaming = request.verb == "watch" && request.request_uri.contains("sendInitialEvents=true");
        if request.verb != "list" && !streaming {
            continue;
        }
        match (streaming, request.code.unwrap_or(0)) {
            (true, 200..=299) => states.streamed += 1,
            (true, 422) => states.refused += 1,
            (false, 200..=299) => states.listed += 1,
            (_, code) => states.retried.push(code),
        }
    }
    states
}
