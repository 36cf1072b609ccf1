//! `audit` on a `kubectl get deploy,rs,sts,ds,job,cronjob,pods,events -A -o json` dump: the
//! alerts on workloads, `SidecarInjectionFailed` from the controllers' `FailedCreate`
//! Events and `RolloutBlockedBySidecar` from a rollout's Pods, as the operator reports them
//! (the audit computes them with the operator's own index).

use serde_json::{json, Value};
use sidecar_watch_testkit::audit::text;

use crate::SIDECAR_WATCH;

/// The ReplicaSet controller's message when Istio's injection webhook cannot be reached,
/// as in `src/controller/create_failures/tests.rs` (its format: the engine's tests, from
/// Kubernetes' pkg/controller/replicaset).
const UNREACHABLE: &str = "Error creating: Internal error occurred: failed calling webhook \
    \"namespace.sidecar-injector.istio.io\": failed to call webhook: Post \
    \"https://istiod.istio-system.svc:443/inject?timeout=10s\": dial tcp 10.96.0.10:443: connect: connection refused";

/// The same failure from a webhook no catalog injector registers.
const UNRELATED: &str = "Error creating: Internal error occurred: failed calling webhook \
    \"validate.policies.example.com\": failed to call webhook: Post \
    \"https://policies.example.svc:443/validate?timeout=10s\": dial tcp 10.96.0.11:443: connect: connection refused";

/// Deployment web's ReplicaSet in `shop`, as the API server serves it.
fn replicaset() -> Value {
    json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": "web-7d9f8c6b5", "namespace": "shop", "uid": "rs-uid",
            "labels": {"app": "web", "pod-template-hash": "7d9f8c6b5"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web",
                                 "uid": "deploy-uid", "controller": true, "blockOwnerDeletion": true}]},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web", "pod-template-hash": "7d9f8c6b5"}},
            "template": {"metadata": {"labels": {"app": "web", "pod-template-hash": "7d9f8c6b5"}},
                "spec": {"containers": [{"name": "app", "image": "shop/web:1.2.3",
                    "resources": {"requests": {"cpu": "10m"}}}]}}}})
}

/// A core/v1 `FailedCreate` Event in `namespace` about the ReplicaSet in `object_namespace`.
fn event(namespace: &str, object_namespace: &str, message: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Event",
        "metadata": {"name": "web-7d9f8c6b5.1800a", "namespace": namespace, "uid": "event-uid"},
        "involvedObject": {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-7d9f8c6b5",
                           "namespace": object_namespace, "uid": "rs-uid"},
        "reason": "FailedCreate", "message": message, "type": "Warning", "count": 5,
        "source": {"component": "replicaset-controller"},
        "firstTimestamp": "2026-01-01T10:00:00Z", "lastTimestamp": "2026-01-01T10:01:00Z"})
}

/// A Pod of Deployment web, revision `hash`, created at `created`; its native sidecar
/// `istio-proxy` is ready or not since it started, 2 s after.
fn pod(name: &str, hash: &str, created: &str, sidecar_ready: bool) -> Value {
    let started = |s: i64| {
        let at: jiff::Timestamp = created.parse().expect("time");
        at.checked_add(jiff::SignedDuration::from_secs(s)).expect("time").to_string()
    };
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "shop", "uid": format!("uid-{name}"), "creationTimestamp": created,
            "labels": {"app": "web", "pod-template-hash": hash},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": format!("web-{hash}"),
                                 "uid": format!("rs-{hash}"), "controller": true}]},
        "spec": {
            "initContainers": [{"name": "istio-proxy", "image": "docker.io/istio/proxyv2:1.24.0", "restartPolicy": "Always",
                "readinessProbe": {"httpGet": {"path": "/healthz/ready", "port": 15021}},
                "startupProbe": {"httpGet": {"path": "/healthz/ready", "port": 15021}},
                "resources": {"requests": {"cpu": "10m"}}}],
            "containers": [{"name": "app", "image": "shop/web:1.2.3", "resources": {"requests": {"cpu": "10m"}}}]},
        "status": {"phase": "Running", "startTime": created,
            "conditions": [{"type": "Ready", "status": if sidecar_ready { "True" } else { "False" },
                            "lastTransitionTime": started(3)}],
            "initContainerStatuses": [{"name": "istio-proxy", "image": "docker.io/istio/proxyv2:1.24.0",
                "ready": sidecar_ready, "started": true, "restartCount": 0,
                "state": {"running": {"startedAt": started(2)}}}],
            "containerStatuses": [{"name": "app", "image": "shop/web:1.2.3", "ready": true, "started": true,
                "restartCount": 0, "state": {"running": {"startedAt": started(3)}}}]}})
}

/// The findings of `audit -o json` on `objects` (one List on stdin) at `now`.
fn audit(objects: Vec<Value>, now: &str) -> Vec<Value> {
    let list = json!({"apiVersion": "v1", "kind": "List", "items": objects});
    let out = SIDECAR_WATCH
        .run(&["-f", "-", "--now", now, "-o", "json", "--fail-on", "none"], Some(list.to_string().as_bytes()));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("a JSON array")
}

fn named<'a>(findings: &'a [Value], alert: &str) -> Vec<&'a Value> {
    findings.iter().filter(|f| f["alertname"] == alert).collect()
}

/// A ReplicaSet of Deployment web whose Pods Istio's unreachable webhook keeps from being
/// created: one alert on Deployment/web, container istio-proxy, pending for the rule's 2m
/// from the Event's first time, then firing.
#[test]
fn an_unreachable_injector_fails_the_deployment() {
    let objects = || vec![replicaset(), event("shop", "shop", UNREACHABLE)];
    let pending = audit(objects(), "2026-01-01T10:01:59Z");
    let [finding] = named(&pending, "SidecarInjectionFailed")[..] else { panic!("one finding: {pending:#?}") };
    assert_eq!(finding["state"], "pending");

    let firing = audit(objects(), "2026-01-01T10:02:00Z");
    let [finding] = named(&firing, "SidecarInjectionFailed")[..] else { panic!("one finding: {firing:#?}") };
    let expected = [
        ("state", "firing"),
        ("severity", "critical"),
        ("namespace", "shop"),
        ("pod", ""),
        ("container", "istio-proxy"),
        ("kind", "Deployment"),
        ("workload_kind", "Deployment"),
        ("workload", "web"),
        ("policy", "default"),
        ("since", "2026-01-01T10:00:00Z"),
        ("identified_by", "catalog:istio"),
    ];
    for (field, value) in expected {
        assert_eq!(finding[field], value, "{field}: {finding:#}");
    }
    let message = finding["message"].as_str().expect("a message");
    assert!(message.starts_with("Deployment/web cannot create Pods: "), "{message}");
    assert!(message.contains("namespace.sidecar-injector.istio.io"), "{message}");
    assert!(firing.iter().all(|f| f["alertname"] != "RolloutBlockedBySidecar"), "{firing:#?}");

    // The table names the workload where a Pod would be, and the exit status follows
    // --fail-on: the alert is critical.
    let list = json!({"apiVersion": "v1", "kind": "List", "items": objects()}).to_string();
    let out = SIDECAR_WATCH.run(&["-f", "-", "--now", "2026-01-01T10:02:00Z"], Some(list.as_bytes()));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    let row = table.lines().find(|l| l.contains("SidecarInjectionFailed")).expect(&table);
    let cells: Vec<&str> = row.split_whitespace().take(5).collect();
    assert_eq!(cells, ["shop/Deployment/web", "istio-proxy", "SidecarInjectionFailed", "critical", "firing"]);
    let out = SIDECAR_WATCH.run(&["-f", "-", "--now", "2026-01-01T10:02:00Z", "-o", "sarif"], Some(list.as_bytes()));
    let sarif: Value = serde_json::from_slice(&out.stdout).expect("SARIF");
    let result = sarif["runs"][0]["results"]
        .as_array()
        .and_then(|r| r.iter().find(|r| r["ruleId"] == "SidecarInjectionFailed"))
        .expect("a SARIF result");
    assert_eq!(result["locations"][0]["logicalLocations"][0]["fullyQualifiedName"], "shop/Deployment/web");
}

/// A dump of a cluster holds every tenant's Events: one nobody can decode (a time past
/// jiff's range, which kube-apiserver stores) is said on stderr and left out, and any other
/// Event is not read at all; the real failure beside them is reported.
#[test]
fn an_undecodable_event_is_left_out_not_the_audit() {
    let mut forged = event("tenant", "tenant", UNREACHABLE);
    forged["metadata"]["name"] = json!("forged");
    forged["lastTimestamp"] = json!("9999-12-31T23:59:59Z");
    let mut unrelated = event("tenant", "tenant", "SECRET");
    unrelated["reason"] = json!("Pulled");
    unrelated["count"] = json!("not a number");
    let list = json!({"apiVersion": "v1", "kind": "List",
        "items": [replicaset(), event("shop", "shop", UNREACHABLE), forged, unrelated]});
    let out = SIDECAR_WATCH.run(
        &["-f", "-", "--now", "2026-01-01T10:02:00Z", "-o", "json", "--fail-on", "none"],
        Some(list.to_string().as_bytes()),
    );
    let said = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{said}");
    assert_eq!(
        said.trim(),
        "sidecar-watch audit: skipping Event tenant/forged: lastTimestamp: a value of the wrong type or out of range"
    );
    let findings: Vec<Value> = serde_json::from_slice(&out.stdout).expect("a JSON array");
    let [finding] = named(&findings, "SidecarInjectionFailed")[..] else { panic!("one finding: {findings:#?}") };
    assert_eq!((&finding["namespace"], &finding["state"]), (&json!("shop"), &json!("firing")));
}

/// What is not a sidecar's failure, or not believed, or over: an unrelated webhook; an Event
/// about another namespace's object (anyone who may create Events in their namespace can
/// write one); an Event whose object is not in the input (the operator reads the object); a
/// ReplicaSet that no longer needs Pods (all created, or scaled to zero as `rollout undo`
/// leaves it); but a Pod of the workload does not end the failure.
#[test]
fn what_is_not_an_injection_failure() {
    let now = "2026-01-01T10:30:00Z";
    let none = |objects: Vec<Value>, why: &str| {
        let findings = audit(objects, now);
        assert!(named(&findings, "SidecarInjectionFailed").is_empty(), "{why}: {findings:#?}");
    };
    none(vec![replicaset(), event("shop", "shop", UNRELATED)], "an unrelated webhook");
    none(vec![replicaset(), event("tenant", "shop", UNREACHABLE)], "another namespace's object");
    none(vec![event("shop", "shop", UNREACHABLE)], "no object in the input");
    let mut forged = replicaset();
    forged["metadata"]["uid"] = json!("another-uid");
    none(vec![forged, event("shop", "shop", UNREACHABLE)], "another object of the same name");
    let mut created = replicaset();
    created["metadata"]["generation"] = json!(2);
    created["status"] = json!({"observedGeneration": 2, "replicas": 1});
    none(vec![created, event("shop", "shop", UNREACHABLE)], "every Pod created");
    let mut undone = replicaset();
    undone["spec"]["replicas"] = json!(0);
    none(vec![undone, event("shop", "shop", UNREACHABLE)], "scaled to zero");
    // A Pod of the workload, even one created since, does not resolve it.
    let created_after = pod("web-7d9f8c6b5-x1", "7d9f8c6b5", "2026-01-01T10:01:30Z", true);
    let findings = audit(vec![replicaset(), event("shop", "shop", UNREACHABLE), created_after], now);
    assert_eq!(named(&findings, "SidecarInjectionFailed").len(), 1, "{findings:#?}");
}

/// A rollout of Deployment web: two ready Pods of revision A, one new Pod of revision B whose
/// native sidecar never becomes ready. Blocked once the per-Pod alert fires and the rule's
/// 10m have passed since its condition began; naming both revisions.
#[test]
fn a_rollout_behind_a_never_ready_sidecar_is_blocked() {
    let objects = || {
        vec![
            pod("web-aaaaaaaaa-1", "aaaaaaaaa", "2026-01-01T09:00:00Z", true),
            pod("web-aaaaaaaaa-2", "aaaaaaaaa", "2026-01-01T09:00:00Z", true),
            pod("web-bbbbbbbbb-1", "bbbbbbbbb", "2026-01-01T10:00:00Z", false),
        ]
    };
    let blocked = audit(objects(), "2026-01-01T10:30:00Z");
    let [finding] = named(&blocked, "RolloutBlockedBySidecar")[..] else { panic!("one finding: {blocked:#?}") };
    for (field, value) in [
        ("state", "firing"),
        ("severity", "warning"),
        ("pod", ""),
        ("container", "istio-proxy"),
        ("kind", "Deployment"),
        ("workload", "web"),
    ] {
        assert_eq!(finding[field], value, "{field}: {finding:#}");
    }
    let message = finding["message"].as_str().expect("a message");
    for part in ["Deployment web", "bbbbbbbbb", "aaaaaaaaa", "istio-proxy"] {
        assert!(message.contains(part), "{part} in {message}");
    }
    // Before the rule's 10m: pending.
    let early = audit(objects(), "2026-01-01T10:08:00Z");
    let states: Vec<&Value> = named(&early, "RolloutBlockedBySidecar").iter().map(|f| &f["state"]).collect();
    assert_eq!(states, [&json!("pending")], "{early:#?}");
    // The new Pod's sidecar ready: nothing blocks the rollout.
    let mut recovered = objects();
    recovered[2] = pod("web-bbbbbbbbb-1", "bbbbbbbbb", "2026-01-01T10:00:00Z", true);
    assert!(named(&audit(recovered, "2026-01-01T10:30:00Z"), "RolloutBlockedBySidecar").is_empty());
}

/// Deployment web at revision `revision` (paused or not), and its ReplicaSet of `hash`
/// numbered `rs_revision`, as the API server serves them.
fn deployment_and_replicaset(revision: &str, paused: bool, hash: &str, rs_revision: &str) -> Vec<Value> {
    let annotations = |r: &str| json!({"deployment.kubernetes.io/revision": r});
    vec![
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "shop", "uid": "deploy-uid", "annotations": annotations(revision)},
            "spec": {"paused": paused, "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "app", "image": "shop/web:1.2.3"}]}}}}),
        json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": format!("web-{hash}"), "namespace": "shop", "uid": format!("rs-{hash}"),
                "annotations": annotations(rs_revision),
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web",
                                     "uid": "deploy-uid", "controller": true}]},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web", "pod-template-hash": hash}},
                "template": {"metadata": {"labels": {"app": "web", "pod-template-hash": hash}},
                    "spec": {"containers": [{"name": "app", "image": "shop/web:1.2.3"}]}}}}),
    ]
}

/// The Deployment in the input is heard as the operator hears it from the API server: a paused
/// rollout is not blocked, and its revision numbers, not the Pods' creation times, say which
/// revision is the newest.
#[test]
fn the_deployment_in_the_input_says_whether_and_which_rollout_is_blocked() {
    let blocked_pods = || {
        vec![
            pod("web-aaaaaaaaa-1", "aaaaaaaaa", "2026-01-01T09:00:00Z", true),
            pod("web-bbbbbbbbb-1", "bbbbbbbbb", "2026-01-01T10:00:00Z", false),
        ]
    };
    let now = "2026-01-01T10:30:00Z";
    let with =
        |extra: Vec<Value>| named(&audit([blocked_pods(), extra].concat(), now), "RolloutBlockedBySidecar").len();
    assert_eq!(with(deployment_and_replicaset("2", false, "bbbbbbbbb", "2")), 1, "rolling to bbbbbbbbb: blocked");
    assert_eq!(with(deployment_and_replicaset("2", true, "bbbbbbbbb", "2")), 0, "paused: not blocked");
    // Revision 3 is aaaaaaaaa again (rolled back): bbbbbbbbb's failing Pod is what is left
    // of an older revision, though it was created last.
    assert_eq!(with(deployment_and_replicaset("3", false, "aaaaaaaaa", "3")), 0, "rolled back: not blocked");
    // No Deployment in the input: the Pods decide, as when the operator cannot read it.
    assert_eq!(with(vec![]), 1);
}
