//! The timings, the renewal clock, and the election on the in-process API
//! ([`crate::test_api`]): the Lease requests kube-lease-manager sends for us (create, take,
//! renew, take over, release) and the renew deadline on failed or hung renewals.
//! `tests/e2e_operator/leader.rs`, `failover.rs` and `renew_deadline.rs` run the same on
//! kube-apiserver.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use serde_json::json;

use super::*;
use crate::leadership::RoleReceiver;
use crate::test_api::{self, ApiServer, Call};

#[test]
fn timings_follow_client_go_and_reject_impossible_deadlines() {
    let s = Duration::from_secs;
    assert_eq!(
        LeaseTimings::new(s(15), None),
        Ok(LeaseTimings { duration_secs: 15, retry_secs: 2, renew_deadline: s(10) })
    );
    assert_eq!(
        LeaseTimings::new(s(3), None),
        Ok(LeaseTimings { duration_secs: 3, retry_secs: 1, renew_deadline: s(2) })
    );
    assert!(LeaseTimings::new(s(15), Some(s(15))).unwrap_err().contains("shorter than --lease-duration"));
    assert!(LeaseTimings::new(s(15), Some(s(2))).unwrap_err().contains("longer than the renewal period"));
}

#[tokio::test]
async fn only_successful_lease_writes_count_as_renewals() {
    let clock = RenewalClock::default();
    let mut service = tower::Layer::layer(
        &clock,
        tower::service_fn(|request: http::Request<()>| async move {
            let status = if request.uri().path().ends_with("/refuse") { 409 } else { 200 };
            Ok::<_, std::convert::Infallible>(http::Response::builder().status(status).body(()).expect("response"))
        }),
    );
    let mut send = |method: &str, path: &str| {
        let request = http::Request::builder().method(method).uri(path).body(()).expect("request");
        tower::Service::call(&mut service, request)
    };
    send("GET", "/apis/coordination.k8s.io/v1/namespaces/ns/leases/sw").await.expect("ok");
    send("PATCH", "/api/v1/namespaces/ns/pods/p").await.expect("ok");
    send("PATCH", "/apis/coordination.k8s.io/v1/namespaces/ns/leases/refuse").await.expect("ok");
    assert_eq!(clock.since_last(), None, "reads, other objects and refused writes are no renewals");
    send("PATCH", "/apis/coordination.k8s.io/v1/namespaces/ns/leases/sw").await.expect("ok");
    assert!(clock.since_last().is_some_and(|d| d < Duration::from_secs(1)));
}

/// A renewal counts from when it was sent, not from its answer: kube-apiserver stamps the
/// Lease with the request's `renewTime`, and a standby takes over a lease duration after it.
/// With a 15 s lease and a 10 s deadline, a renewal answered 7 s late and then silence would
/// otherwise keep this replica leading 2 s past the Lease's expiry.
#[tokio::test(start_paused = true)]
async fn a_late_answer_counts_from_when_the_renewal_was_sent() {
    let clock = RenewalClock::default();
    let mut service = tower::Layer::layer(
        &clock,
        tower::service_fn(|_: http::Request<()>| async {
            tokio::time::sleep(Duration::from_secs(7)).await;
            Ok::<_, std::convert::Infallible>(http::Response::builder().status(200).body(()).expect("response"))
        }),
    );
    let request = http::Request::builder().method("PATCH").uri(LEASE).body(()).expect("request");
    tower::Service::call(&mut service, request).await.expect("ok");
    assert_eq!(clock.since_last(), Some(Duration::from_secs(7)), "counted from the sending");
}

const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces/sw/leases";
const LEASE: &str = "/apis/coordination.k8s.io/v1/namespaces/sw/leases/sidecar-watch";
/// The field manager of replica `pod-a`, as every Lease write of it carries.
const FIELD_MANAGER: &[(&str, &str)] = &[("fieldManager", "sidecar-watch-pod-a")];
const APPLY: &str = "application/apply-patch+yaml";
const STRATEGIC: &str = "application/strategic-merge-patch+json";

/// The election's parts a test watches: the role, the loss signal and the API.
struct Replica {
    role: RoleReceiver,
    lost: CancellationToken,
    server: ApiServer,
    start: JoinHandle<anyhow::Result<Election>>,
}

/// Replica `pod-a` starting to compete for `sw/sidecar-watch`: a 3 s lease, renewed every
/// second, a 2 s renew deadline.
fn replica() -> Replica {
    let (service, server) = test_api::service();
    let clock = RenewalClock::default();
    let client = kube::Client::new(tower::Layer::layer(&clock, service), "default");
    let lease = LeaseConfig {
        name: "sidecar-watch".into(),
        namespace: "sw".into(),
        identity: "pod-a".into(),
        duration: Duration::from_secs(3),
        renew_deadline: Duration::from_secs(2),
    };
    let timings = LeaseTimings::new(lease.duration, Some(lease.renew_deadline)).expect("timings");
    let (role_tx, role) = leadership::channel();
    let lost = CancellationToken::new();
    let start = tokio::spawn(Election::start_on(client, clock, lease, timings, role_tx, lost.clone()));
    Replica { role, lost, server, start }
}

/// A Lease as kube-apiserver returns it: held by `holder` since a renewal `ago` (real time:
/// kube-lease-manager reads expiry from the wall clock), or free.
fn lease(holder: Option<&str>, ago: Duration, transitions: i32) -> serde_json::Value {
    lease_for(holder, ago, transitions, 3)
}

/// Another replica's live Lease, an hour long, so that no stall of the test's real time
/// lets it expire.
fn live_lease_of(holder: &str) -> serde_json::Value {
    lease_for(Some(holder), Duration::ZERO, 1, 3600)
}

/// [`lease`] for `seconds`.
fn lease_for(holder: Option<&str>, ago: Duration, transitions: i32, seconds: u64) -> serde_json::Value {
    let renewed = Timestamp::now() - ago;
    let spec = match holder {
        Some(holder) => json!({
            "holderIdentity": holder, "leaseDurationSeconds": seconds, "leaseTransitions": transitions,
            "acquireTime": MicroTime(renewed), "renewTime": MicroTime(renewed),
        }),
        None => json!({ "leaseTransitions": transitions }),
    };
    json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": { "name": "sidecar-watch", "namespace": "sw", "resourceVersion": "1" },
        "spec": spec,
    })
}

/// Answers every read of the Lease with `current` until a write comes, and returns it.
async fn next_write(server: &mut ApiServer, current: &serde_json::Value) -> Call {
    loop {
        let call = server.next().await;
        if call.parts.method != http::Method::GET {
            return call;
        }
        call.expect("GET", LEASE, &[]);
        call.respond_json(200, current);
    }
}

/// The `spec` of a release: every field of the holder cleared.
fn released() -> serde_json::Value {
    json!({ "acquireTime": null, "renewTime": null, "holderIdentity": null, "leaseDurationSeconds": null })
}

/// Expects a read of the Lease and answers `current`.
async fn expect_read(server: &mut ApiServer, current: &serde_json::Value) {
    let call = server.next().await;
    call.expect("GET", LEASE, &[]);
    call.respond_json(200, current);
}

/// Asserts a write of the Lease with `content_type`, and its `spec` apart from the times.
#[track_caller]
fn expect_write(call: &Call, content_type: &str, spec: serde_json::Value) {
    call.expect("PATCH", LEASE, FIELD_MANAGER);
    assert_eq!(call.header("content-type"), content_type);
    let mut body = call.json();
    for time in ["acquireTime", "renewTime"] {
        if let Some(t) = body["spec"].get_mut(time).filter(|t| !t.is_null()) {
            assert!(t.as_str().and_then(|t| t.parse::<Timestamp>().ok()).is_some(), "{time}: {t}");
            *t = json!("<time>");
        }
    }
    assert_eq!(body, json!({ "apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "spec": spec }));
}

/// The two writes that take a free lease, answered; the Lease as it then stands.
async fn take_free_lease(server: &mut ApiServer, free: &serde_json::Value, transitions: i32) -> serde_json::Value {
    let apply = next_write(server, free).await;
    let spec =
        json!({ "holderIdentity": "pod-a", "leaseDurationSeconds": 3, "acquireTime": "<time>", "renewTime": "<time>" });
    expect_write(&apply, APPLY, spec);
    let held = lease(Some("pod-a"), Duration::ZERO, transitions);
    apply.respond_json(200, &held);
    let count = next_write(server, free).await;
    expect_write(&count, STRATEGIC, json!({ "leaseTransitions": transitions + 1 }));
    let held = lease(Some("pod-a"), Duration::ZERO, transitions + 1);
    count.respond_json(200, &held);
    held
}

/// Creates the missing Lease and takes it: the replica leads when this returns.
async fn lead(replica: &mut Replica) -> serde_json::Value {
    let server = &mut replica.server;
    let get = server.next().await;
    get.expect("GET", LEASE, &[]);
    get.respond_status(404, "NotFound");
    let create = server.next().await;
    create.expect("POST", LEASES, &[]);
    assert_eq!(
        create.json(),
        json!({ "apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": { "name": "sidecar-watch" } })
    );
    let free = lease(None, Duration::ZERO, 0);
    create.respond_json(201, &free);
    let held = take_free_lease(server, &free, 0).await;
    // The read after the take shows the lease held: the role turns to leader.
    expect_read(server, &held).await;
    replica.role.wait_for(|r| r.leader).await.expect("leads");
    held
}

#[tokio::test(start_paused = true)]
async fn a_missing_lease_is_created_and_taken_then_renewed() {
    let mut replica = replica();
    let held = lead(&mut replica).await;
    let election = replica.start.await.expect("start").expect("started");
    // Renewed `grace` before expiry: a second after the take, by a strategic merge patch.
    let taken = tokio::time::Instant::now();
    let renew = next_write(&mut replica.server, &held).await;
    let after = taken.elapsed();
    // About a second: the sleep is reckoned from the wall clock, which moves a little too.
    assert!(after > Duration::from_millis(500) && after <= Duration::from_secs(1), "{after:?}");
    expect_write(&renew, STRATEGIC, json!({ "renewTime": "<time>", "leaseDurationSeconds": 3 }));
    renew.respond_json(200, &held);
    assert!(replica.role.borrow().leader && !replica.lost.is_cancelled());
    drop(election);
}

#[tokio::test(start_paused = true)]
async fn an_expired_lease_of_another_replica_is_released_and_taken_over() {
    let mut replica = replica();
    let expired = lease(Some("pod-b"), Duration::from_secs(10), 4);
    let server = &mut replica.server;
    let release = next_write(server, &expired).await;
    expect_write(&release, STRATEGIC, released());
    let free = lease(None, Duration::ZERO, 4);
    release.respond_json(200, &free);
    assert!(!replica.role.borrow().leader, "not before the take");
    let held = take_free_lease(server, &free, 4).await;
    expect_read(server, &held).await;
    replica.role.wait_for(|r| r.leader).await.expect("leads");
    replica.start.await.expect("start").expect("started");
}

#[tokio::test(start_paused = true)]
async fn a_live_lease_of_another_replica_is_left_alone() {
    let mut replica = replica();
    let held = live_lease_of("pod-b");
    let reads = async {
        loop {
            let call = replica.server.next().await;
            assert_eq!(call.parts.method, http::Method::GET, "a standby only reads a live Lease");
            call.respond_json(200, &held);
        }
    };
    // Ten lease durations of paused time: no write, no leadership.
    let _ = tokio::time::timeout(Duration::from_secs(30), reads).await;
    assert!(!replica.role.borrow().leader);
    replica.start.await.expect("start").expect("started");
}

#[tokio::test(start_paused = true)]
async fn a_conflicting_take_leaves_the_lease_to_the_replica_that_won() {
    let mut replica = replica();
    let free = lease(None, Duration::ZERO, 0);
    let apply = next_write(&mut replica.server, &free).await;
    expect_write(
        &apply,
        APPLY,
        json!({ "holderIdentity": "pod-a", "leaseDurationSeconds": 3, "acquireTime": "<time>", "renewTime": "<time>" }),
    );
    // Another replica's apply came first: the field managers conflict.
    apply.respond_status(409, "Conflict");
    let won = live_lease_of("pod-b");
    let reads = async {
        loop {
            let call = replica.server.next().await;
            assert_eq!(call.parts.method, http::Method::GET, "after the conflict, only reads");
            call.respond_json(200, &won);
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(30), reads).await;
    assert!(!replica.role.borrow().leader);
}

/// Leads, then fails every renewal with `fail` until the renew deadline passes: the role
/// turns to standby and the loss is reported between 2 s and 2.2 s (the 100 ms check) after
/// the last successful Lease write.
async fn lose_on(fail: impl Fn(Call, &mut Vec<Call>)) {
    let mut replica = replica();
    let held = lead(&mut replica).await;
    let last_write = tokio::time::Instant::now();
    let mut hung = Vec::new();
    let failing = async {
        loop {
            let call = next_write(&mut replica.server, &held).await;
            expect_write(&call, STRATEGIC, json!({ "renewTime": "<time>", "leaseDurationSeconds": 3 }));
            fail(call, &mut hung);
        }
    };
    // Bounded, so that a leader that never gives up fails the test instead of hanging it.
    let lost = tokio::time::timeout(Duration::from_secs(10), async {
        // Biased: the release that follows the loss at once is not taken for a renewal.
        tokio::select! {
            biased;
            () = replica.lost.cancelled() => {}
            () = failing => unreachable!("the scenario loops"),
        }
    });
    lost.await.expect("the loss is reported");
    let after = last_write.elapsed();
    assert!(after > Duration::from_secs(2) && after <= Duration::from_millis(2200), "{after:?}");
    assert!(!replica.role.borrow().leader);
    // Unawaited, the lease manager still tries to release the lease it holds.
    let release = next_write(&mut replica.server, &held).await;
    expect_write(&release, STRATEGIC, released());
}

#[tokio::test(start_paused = true)]
async fn a_leader_whose_renewals_fail_stops_leading_at_the_renew_deadline() {
    lose_on(|call, _| call.respond_status(500, "InternalError")).await;
    lose_on(|call, _| call.respond_status(429, "TooManyRequests")).await;
    lose_on(|call, _| call.drop_connection()).await;
}

#[tokio::test(start_paused = true)]
async fn a_leader_whose_renewal_hangs_stops_leading_at_the_renew_deadline() {
    lose_on(|call, hung| hung.push(call)).await;
}

#[tokio::test(start_paused = true)]
async fn stepping_down_releases_the_lease() {
    let mut replica = replica();
    let held = lead(&mut replica).await;
    let election = replica.start.await.expect("start").expect("started");
    let step_down = tokio::spawn(election.step_down());
    let release = next_write(&mut replica.server, &held).await;
    expect_write(&release, STRATEGIC, released());
    let free = lease(None, Duration::ZERO, 1);
    release.respond_json(200, &free);
    expect_read(&mut replica.server, &free).await;
    step_down.await.expect("stepped down");
    assert!(!replica.role.borrow().leader && !replica.lost.is_cancelled());
}

#[tokio::test(start_paused = true)]
async fn a_refused_or_unreachable_lease_fails_the_start_for_the_caller_to_retry() {
    for refuse in [|call: Call| call.respond_status(403, "Forbidden"), |call: Call| call.drop_connection()] {
        let mut replica = replica();
        refuse(replica.server.next().await);
        let error = replica.start.await.expect("start").err().expect("no election");
        assert!(error.downcast_ref::<TimingError>().is_none(), "retried, unlike bad flags: {error}");
        assert!(!replica.role.borrow().leader);
    }
}
