//! The status writer's requests and its reaction to each answer, on the in-process API
//! ([`crate::test_api`]); `tests/e2e_operator/policies.rs` and `sharding.rs` run it on
//! kube-apiserver.

use serde_json::json;

use super::*;
use crate::api::PolicySpec;
use crate::engine::CompiledPolicy;
use crate::index::Writes;
use crate::leadership::{self, RoleSender};
use crate::test_api::{self, ApiServer, Call};

const WEB: &str = "/apis/sidecarwatch.io/v1alpha1/namespaces/shop/sidecarpolicies/web";
const CLUSTER_POLICIES: &str = "/apis/sidecarwatch.io/v1alpha1/clustersidecarpolicies";

fn entry(policy: &PolicyRef, generation: i64) -> PolicyEntry {
    let compiled = CompiledPolicy::compile(policy.clone(), &PolicySpec::default());
    let mut entry = PolicyEntry::new(compiled);
    entry.generation = Some(generation);
    entry
}

/// A writer for `policies` as `shard`, leading and synced, on the in-process API.
fn writer(policies: Vec<(PolicyRef, PolicyEntry)>, shard: Shard) -> (StatusWriter, ApiServer, RoleSender) {
    let (client, server) = test_api::client();
    let index = Index::new();
    for (policy, entry) in policies {
        index.apply_policy(policy, entry, Timestamp::now());
    }
    let (role_tx, role) = leadership::channel();
    leadership::set_leader(&role_tx, true);
    leadership::set_synced(&role_tx);
    let writer = StatusWriter {
        client,
        index: Arc::new(index),
        role,
        metrics: Metrics::new(),
        interval: Duration::from_secs(1),
        dirty: Arc::new(Notify::new()),
        shard,
    };
    (writer, server, role_tx)
}

const UNSHARDED: Shard = Shard { index: 0, count: 1 };

/// The Ready condition an evaluated policy of `generation` gets, `since` its transition.
fn ready(generation: i64, message: &str, since: &serde_json::Value) -> serde_json::Value {
    json!([{
        "type": "Ready", "status": "True", "reason": "Evaluating", "message": message,
        "observedGeneration": generation, "lastTransitionTime": since,
    }])
}

/// Takes `lastEvaluationTime` out of a written status, checking that it is a time.
fn take_evaluation_time(body: &mut serde_json::Value) -> Timestamp {
    let time = body["status"].as_object_mut().and_then(|s| s.remove("lastEvaluationTime")).expect("an evaluation time");
    time.as_str().and_then(|t| t.parse().ok()).expect("RFC 3339")
}

/// Expects the server-side apply of `path`'s status and answers it; the body, without its
/// evaluation time, and that time.
async fn expect_apply(server: &mut ApiServer, path: &str) -> (serde_json::Value, Timestamp) {
    let call = server.next().await;
    call.expect("PATCH", &format!("{path}/status"), &[("fieldManager", "sidecar-watch"), ("force", "true")]);
    assert_eq!(call.header("content-type"), "application/apply-patch+yaml");
    let mut body = call.json();
    call.respond_json(200, &body);
    let at = take_evaluation_time(&mut body);
    (body, at)
}

/// `time` as a condition's `lastTransitionTime` is written (whole seconds).
fn condition_time(time: Timestamp) -> serde_json::Value {
    serde_json::to_value(Time(time)).expect("a time")
}

#[tokio::test(start_paused = true)]
async fn status_is_applied_with_a_forced_field_manager_to_each_policy_kind() {
    let (cluster, namespaced) = (PolicyRef::cluster("default"), PolicyRef::namespaced("shop", "web"));
    let (writer, mut server, _role) =
        writer(vec![(cluster.clone(), entry(&cluster, 2)), (namespaced.clone(), entry(&namespaced, 7))], UNSHARDED);
    let mut written = HashMap::new();
    let scenario = async {
        let (cluster_body, at) = expect_apply(&mut server, &format!("{CLUSTER_POLICIES}/default")).await;
        let (namespaced_body, _) = expect_apply(&mut server, WEB).await;
        (cluster_body, namespaced_body, at)
    };
    let ((), (cluster_body, namespaced_body, at)) = tokio::join!(writer.write_all(&mut written), scenario);
    let counts = json!({ "matchedPods": 0, "alertingPods": 0, "pendingAlerts": 0 });
    let status = |generation: i64| {
        let mut status = counts.clone();
        status["observedGeneration"] = json!(generation);
        status
    };
    for (body, kind, generation) in [(cluster_body, "ClusterSidecarPolicy", 2), (namespaced_body, "SidecarPolicy", 7)] {
        let since = &body["status"]["conditions"][0]["lastTransitionTime"];
        let mut expected =
            json!({ "apiVersion": "sidecarwatch.io/v1alpha1", "kind": kind, "status": status(generation) });
        expected["status"]["conditions"] = ready(generation, "Evaluating 0 Pods", since);
        assert_eq!(body, expected);
        // A new condition's transition is the write itself (in whole seconds).
        let since: Timestamp = since.as_str().and_then(|t| t.parse().ok()).expect("a transition time");
        assert!(at.duration_since(since).abs() < jiff::SignedDuration::from_secs(1), "{since} vs {at}");
    }
    assert_eq!(written.len(), 2);
    assert_eq!(writer.metrics.reconcile_errors.get(), 0);
}

#[tokio::test(start_paused = true)]
async fn an_unchanged_status_is_written_again_only_for_the_refresh() {
    let policy = PolicyRef::namespaced("shop", "web");
    let (writer, mut server, _role) = writer(vec![(policy.clone(), entry(&policy, 1))], UNSHARDED);
    let mut written = HashMap::new();
    tokio::join!(writer.write_all(&mut written), expect_apply(&mut server, WEB));
    writer.write_all(&mut written).await;
    server.expect_silence(Duration::from_millis(1)).await;
    // The refresh is due REFRESH after the last write (wall-clock time, so moved back here).
    for w in written.values_mut() {
        w.at = w.at - REFRESH - Duration::from_secs(1);
    }
    tokio::join!(writer.write_all(&mut written), expect_apply(&mut server, WEB));
    // A new generation is a change, written at once.
    writer.index.apply_policy(policy.clone(), entry(&policy, 2), Timestamp::now());
    let ((), (body, _)) = tokio::join!(writer.write_all(&mut written), expect_apply(&mut server, WEB));
    assert_eq!(body["status"]["observedGeneration"], 2);
}

/// A policy deleted and created again under its name between two passes is another object:
/// its status is written at once, though it equals what the old one was given.
#[tokio::test(start_paused = true)]
async fn a_policy_created_again_under_its_name_gets_its_status_at_once() {
    let policy = PolicyRef::namespaced("shop", "web");
    let with_uid = |uid: &str| {
        let mut entry = entry(&policy, 1);
        entry.uid = Some(uid.into());
        entry
    };
    let (writer, mut server, _role) = writer(vec![(policy.clone(), with_uid("first"))], UNSHARDED);
    let mut written = HashMap::new();
    tokio::join!(writer.write_all(&mut written), expect_apply(&mut server, WEB));
    writer.index.apply_policy(policy.clone(), with_uid("second"), Timestamp::now());
    tokio::join!(writer.write_all(&mut written), expect_apply(&mut server, WEB));
    writer.write_all(&mut written).await;
    server.expect_silence(Duration::from_millis(1)).await;
}

/// Answers a status write with a failure of each kind the writer must survive.
fn fail(call: Call, how: &str) {
    match how {
        "conflict" => call.respond_status(409, "Conflict"),
        "throttled" => call.respond_status(429, "TooManyRequests"),
        "server error" => call.respond_status(500, "InternalError"),
        "policy gone" => call.respond_status(404, "NotFound"),
        "dropped connection" => call.drop_connection(),
        "malformed answer" => call.respond_bytes(200, "application/json", "{\"status\": {"),
        other => panic!("{other}"),
    }
}

#[tokio::test(start_paused = true)]
async fn a_failed_write_counts_a_reconcile_error_and_is_retried_on_the_next_pass() {
    let failures = ["conflict", "throttled", "server error", "policy gone", "dropped connection", "malformed answer"];
    for how in failures {
        let policy = PolicyRef::namespaced("shop", "web");
        let (writer, mut server, _role) = writer(vec![(policy.clone(), entry(&policy, 1))], UNSHARDED);
        let mut written = HashMap::new();
        let failing = async { fail(server.next().await, how) };
        tokio::join!(writer.write_all(&mut written), failing);
        assert_eq!((writer.metrics.reconcile_errors.get(), written.len()), (1, 0), "{how}");
        tokio::join!(writer.write_all(&mut written), expect_apply(&mut server, WEB));
        assert_eq!((writer.metrics.reconcile_errors.get(), written.len()), (1, 1), "{how}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_replica_that_does_not_act_writes_nothing_and_forgets_what_it_wrote() {
    let policy = PolicyRef::namespaced("shop", "web");
    let (writer, mut server, role) = writer(vec![(policy.clone(), entry(&policy, 1))], UNSHARDED);
    let mut written = HashMap::new();
    tokio::join!(writer.write_all(&mut written), expect_apply(&mut server, WEB));
    leadership::set_leader(&role, false);
    writer.write_all(&mut written).await;
    server.expect_silence(Duration::from_millis(1)).await;
    assert!(written.is_empty());
    // Leading again, it writes what an interim leader may have overwritten.
    leadership::set_leader(&role, true);
    tokio::join!(writer.write_all(&mut written), expect_apply(&mut server, WEB));
}

#[tokio::test(start_paused = true)]
async fn a_shard_merge_patches_its_own_entry_and_the_sums() {
    let policy = PolicyRef::namespaced("shop", "web");
    let mut entry = entry(&policy, 4);
    let other = |matched_pods, shard_count| ShardStatus {
        counts: PolicyCounts { matched_pods, ..PolicyCounts::default() },
        shard_count,
    };
    // Shard 0's entry counts; one written under another shard count does not.
    entry.shard_statuses = BTreeMap::from([("0".to_string(), other(5, 3)), ("2".to_string(), other(9, 2))]);
    let (writer, mut server, _role) = writer(vec![(policy.clone(), entry)], Shard { index: 1, count: 3 });
    let mut written = HashMap::new();
    let scenario = async {
        let call = server.next().await;
        call.expect("PATCH", &format!("{WEB}/status"), &[("fieldManager", "sidecar-watch-shard-1")]);
        assert_eq!(call.header("content-type"), "application/merge-patch+json");
        let mut body = call.json();
        call.respond_json(200, &body);
        take_evaluation_time(&mut body);
        body
    };
    let ((), body) = tokio::join!(writer.write_all(&mut written), scenario);
    let since = &body["status"]["conditions"][0]["lastTransitionTime"];
    assert!(since.is_string(), "{since}");
    // Every alert name not firing is removed by name: a merge patch keeps what it omits.
    let none_firing: serde_json::Map<String, serde_json::Value> =
        AlertName::ALL.iter().map(|name| (name.as_str().to_string(), serde_json::Value::Null)).collect();
    let own =
        json!({ "matchedPods": 0, "alertingPods": 0, "pendingAlerts": 0, "shardCount": 3, "firing": none_firing });
    let expected = json!({ "status": {
        "observedGeneration": 4, "matchedPods": 5, "alertingPods": 0, "pendingAlerts": 0,
        "firing": none_firing,
        "shards": { "1": own },
        "conditions": ready(4, "Evaluating 5 Pods in 3 shards", since),
    }});
    assert_eq!(body, expected);
}

/// A shard whose last firing alert ended (as it does while `sharding::` restarts one): the alert's
/// count leaves the stored status, its own entry and the sums, while another shard's stays.
#[tokio::test(start_paused = true)]
async fn a_shard_whose_last_alert_ended_removes_its_count_from_the_stored_status() {
    let policy = PolicyRef::namespaced("shop", "web");
    let mut entry = entry(&policy, 4);
    let firing = |n| BTreeMap::from([("SidecarContainerNotReady".to_string(), n)]);
    let shard = |matched_pods, alerting_pods, n| ShardStatus {
        counts: PolicyCounts { matched_pods, alerting_pods, firing: firing(n), ..PolicyCounts::default() },
        shard_count: 3,
    };
    entry.shard_statuses = BTreeMap::from([("0".to_string(), shard(4, 4, 4)), ("1".to_string(), shard(2, 1, 1))]);
    let mut stored = json!({ "status": {
        "matchedPods": 6, "alertingPods": 5, "pendingAlerts": 0, "firing": firing(5),
        "shards": { "0": shard(4, 4, 4), "1": shard(2, 1, 1) },
    }});
    let (writer, mut server, _role) = writer(vec![(policy.clone(), entry)], Shard { index: 1, count: 3 });
    let mut written = HashMap::new();
    let scenario = async {
        let call = server.next().await;
        let body = call.json();
        call.respond_json(200, &body);
        body
    };
    let ((), patch) = tokio::join!(writer.write_all(&mut written), scenario);
    json_patch::merge(&mut stored, &patch);
    let status = &stored["status"];
    assert_eq!(status["firing"], json!({ "SidecarContainerNotReady": 4 }), "{status}");
    assert_eq!(status["shards"]["0"]["firing"], json!({ "SidecarContainerNotReady": 4 }), "{status}");
    assert_eq!(status["shards"]["1"]["firing"], json!({}), "{status}");
    assert_eq!(status["shards"]["1"]["alertingPods"], 0, "{status}");
}

#[tokio::test(start_paused = true)]
async fn the_ready_condition_keeps_its_transition_time_while_its_status_stays() {
    let since: Timestamp = "2024-01-02T03:04:05Z".parse().expect("a time");
    for (previous, kept) in [("True", true), ("False", false)] {
        let policy = PolicyRef::namespaced("shop", "web");
        let mut entry = entry(&policy, 1);
        entry.ready_condition = Some((previous.to_string(), since.to_string()));
        let (writer, mut server, _role) = writer(vec![(policy.clone(), entry)], UNSHARDED);
        let mut written = HashMap::new();
        let ((), (body, at)) = tokio::join!(writer.write_all(&mut written), expect_apply(&mut server, WEB));
        let transition = &body["status"]["conditions"][0]["lastTransitionTime"];
        let expected = if kept { condition_time(since) } else { condition_time(at) };
        assert_eq!(transition, &expected, "previously {previous}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_change_is_written_after_the_debounce_interval_and_once_more_at_shutdown() {
    let policy = PolicyRef::namespaced("shop", "web");
    let (writer, mut server, _role) = writer(vec![(policy.clone(), entry(&policy, 1))], UNSHARDED);
    let (index, dirty, interval) = (writer.index.clone(), writer.dirty.clone(), writer.interval);
    let shutdown = CancellationToken::new();
    let started = tokio::time::Instant::now();
    let run = tokio::spawn(writer.run(shutdown.clone()));
    // The periodic refresh ticks at once; its write waits for the debounce.
    expect_apply(&mut server, WEB).await;
    assert_eq!(started.elapsed(), interval);
    index.apply_policy(policy.clone(), entry(&policy, 2), Timestamp::now());
    let woken = tokio::time::Instant::now();
    dirty.notify_one();
    let (body, _) = expect_apply(&mut server, WEB).await;
    assert_eq!((woken.elapsed(), &body["status"]["observedGeneration"]), (interval, &json!(2)));
    // A change still unwritten at shutdown is flushed without waiting for the debounce.
    index.apply_policy(policy.clone(), entry(&policy, 3), Timestamp::now());
    shutdown.cancel();
    let (body, _) = expect_apply(&mut server, WEB).await;
    assert_eq!(body["status"]["observedGeneration"], 3);
    tokio::time::timeout(test_api::PATIENCE, run).await.expect("run returns").expect("run");
}
