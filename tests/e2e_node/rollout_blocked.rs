//! `RolloutBlockedBySidecar` on a real node, with the real Deployment controller: a
//! Deployment (`maxUnavailable: 0`, `maxSurge: 1`) rolled to a template whose native sidecar
//! never becomes ready keeps its two old Pods running beside one new Pod that never becomes
//! ready. The operator names the Deployment, both revisions and the sidecar, in
//! `sidecar_alerts` (`pod=""`) and in a Warning Event on the Deployment, and resolves once
//! `kubectl rollout undo` brings the old template back. A second Deployment whose rollout
//! completes fires nothing.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use serde_json::{json, Value};

use crate::support::leader_metrics;
use crate::support::{container, native, probe, wait, Scenario, MINUTE};

/// The native sidecar of both Deployments.
const SIDECAR: &str = "proxy";

/// Deployment `name` of two Pods with a native sidecar [`SIDECAR`] whose readiness probe runs
/// `ready`, beside `app`; `revision` goes into the sidecar's environment, so that each value
/// is a template (and a `pod-template-hash`) of its own. A rollout adds one Pod at a time and
/// removes an old one only once a new one is ready.
fn deployment(name: &str, revision: &str, ready: &str) -> Value {
    let proxy = native(
        SIDECAR,
        "exec sleep 3600",
        json!({"readinessProbe": probe(ready), "env": [{"name": "REVISION", "value": revision}]}),
    );
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": 2,
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"initContainers": [proxy], "containers": [container("app", "exec sleep 3600", json!({}))],
                         "terminationGracePeriodSeconds": 1},
            },
        },
    })
}

/// A live (not deleting) Pod of a Deployment: its revision and whether each container is ready.
#[derive(Debug, PartialEq, Eq)]
struct LivePod {
    name: String,
    hash: String,
    sidecar_ready: bool,
    app_ready: bool,
}

/// The live Pods of Deployment `app`, sorted by name.
async fn live_pods(s: &Scenario, app: &str) -> Vec<LivePod> {
    let pods: Api<Pod> = Api::namespaced(s.env.client.clone(), &s.ns);
    let list = pods.list(&ListParams::default().labels(&format!("app={app}"))).await.expect("Pods listed");
    let mut out: Vec<LivePod> = list
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .map(|p| {
            let status = p.status.unwrap_or_default();
            let ready = |name: &str| {
                let init = status.init_container_statuses.iter().flatten();
                init.chain(status.container_statuses.iter().flatten()).any(|c| c.name == name && c.ready)
            };
            LivePod {
                hash: p.metadata.labels.unwrap_or_default().get("pod-template-hash").cloned().unwrap_or_default(),
                name: p.metadata.name.unwrap_or_default(),
                sidecar_ready: ready(SIDECAR),
                app_ready: ready("app"),
            }
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// Waits until Deployment `app` has exactly two live Pods, both of one revision and ready;
/// that revision. Pods of `past`, the revision a new template replaces, do not count: right
/// after the apply the controller may not have made the new ReplicaSet yet.
async fn settled(s: &Scenario, app: &str, past: Option<&str>) -> String {
    wait(2 * MINUTE, &format!("Deployment {app}: two ready Pods of one revision"), || async {
        let pods = live_pods(s, app).await;
        let one = pods.iter().all(|p| p.hash == pods[0].hash && p.sidecar_ready && p.app_ready)
            && past.is_none_or(|past| pods[0].hash != past);
        match (pods.len(), one) {
            (2, true) => Ok(pods[0].hash.clone()),
            _ => Err(format!("{pods:?}; all: {}", s.describe_pods().await)),
        }
    })
    .await
}

/// `sidecar_alerts` series of `RolloutBlockedBySidecar` on Deployment `app`: their labels.
async fn rollout_alerts(s: &Scenario, app: &str) -> Vec<String> {
    let m = leader_metrics(s).await;
    let matching = [
        ("alertname", "RolloutBlockedBySidecar"),
        ("namespace", s.ns.as_str()),
        ("workload_kind", "Deployment"),
        ("workload", app),
    ];
    m.find("sidecar_alerts", &matching).iter().map(|sample| format!("{:?}={}", sample.labels, sample.value)).collect()
}

/// The operator's Events of `reason` on Deployment `app`: (type, field path, note).
async fn deployment_events(s: &Scenario, app: &str, reason: &str) -> Vec<(String, String, String)> {
    let events = s.workload_events("Deployment", app, reason).await;
    events
        .into_iter()
        .map(|e| {
            let path = e.regarding.and_then(|r| r.field_path).unwrap_or_default();
            (e.type_.unwrap_or_default(), path, e.note.unwrap_or_default())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rollout_stalled_by_a_sidecar_that_never_becomes_ready_is_reported_until_undone() {
    let s = Scenario::start("node-rollout").await;
    s.shorten_rollout_rules().await;
    s.apply(deployment("web", "1", "true")).await;
    s.apply(deployment("api", "1", "true")).await;
    let old = settled(&s, "web", None).await;
    let api_old = settled(&s, "api", None).await;

    // web's new revision never becomes ready; api's does, and its rollout completes.
    s.apply(deployment("web", "2", "false")).await;
    s.apply(deployment("api", "2", "true")).await;
    let api_new = settled(&s, "api", Some(&api_old)).await;
    assert_ne!(api_new, api_old, "api rolled to a new revision");
    let stalled = || async {
        let pods = live_pods(&s, "web").await;
        let old_running = pods.iter().filter(|p| p.hash == old && p.sidecar_ready && p.app_ready).count();
        let new: Vec<&LivePod> = pods.iter().filter(|p| p.hash != old).collect();
        // The app runs (a native sidecar without a startup probe counts as started at once),
        // the sidecar never turns ready.
        match (old_running, new.as_slice()) {
            (2, [one]) if one.app_ready && !one.sidecar_ready && pods.len() == 3 => Ok(one.hash.clone()),
            _ => Err(format!("{pods:?}; all: {}", s.describe_pods().await)),
        }
    };
    let new = wait(2 * MINUTE, "web stalled: two old Pods ready, one new one whose sidecar is not", stalled).await;

    let firing = || async {
        let m = leader_metrics(&s).await;
        let labels = [
            ("alertname", "RolloutBlockedBySidecar"),
            ("alertstate", "firing"),
            ("namespace", s.ns.as_str()),
            ("pod", ""),
            ("workload_kind", "Deployment"),
            ("workload", "web"),
            ("container", SIDECAR),
        ];
        match m.value("sidecar_alerts", &labels) {
            Some(1.0) => Ok(()),
            _ => Err(rollout_alerts(&s, "web").await),
        }
    };
    wait(2 * MINUTE, "RolloutBlockedBySidecar firing on Deployment web", firing).await;
    let message = format!(
        "Deployment web: the 1 Pod of revision {new} has {SIDECAR} SidecarContainerNotReady \
         while 2 Pods of revision {old} still run"
    );
    let warning = wait(MINUTE, "the Warning RolloutBlockedBySidecar on Deployment web", || async {
        let events = deployment_events(&s, "web", "RolloutBlockedBySidecar").await;
        match events.as_slice() {
            [(kind, path, note)] if kind == "Warning" => Ok((path.clone(), note.clone())),
            _ => Err(format!("{events:?}")),
        }
    })
    .await;
    assert_eq!(warning.0, format!("spec.template.spec.initContainers{{{SIDECAR}}}"));
    assert!(warning.1.contains(&message), "{:?} does not say {message:?}", warning.1);
    // The cluster is as it was: the alert reports the stall, it does not end it.
    assert_eq!(stalled().await, Ok(new.clone()), "web still stalled");
    assert_eq!(rollout_alerts(&s, "api").await, Vec::<String>::new(), "api's rollout completed");

    // `kubectl rollout pause`: the controller holds the rollout itself, no Pod changes; the
    // operator reads the Deployment again within CONTROLLER_REREAD (30 s) and resolves it.
    let rollout = |verb: &'static str| ["-n", s.ns.as_str(), "rollout", verb, "deployment/web"];
    s.env.kubectl(rollout("pause")).await.expect("kubectl rollout pause");
    wait(2 * MINUTE, "RolloutBlockedBySidecar resolved on the paused Deployment web", || async {
        let series = rollout_alerts(&s, "web").await;
        let resolved = deployment_events(&s, "web", "RolloutBlockedBySidecarResolved").await;
        match (series.as_slice(), resolved.as_slice()) {
            ([], [_, ..]) => Ok(()),
            _ => Err(format!("series {series:?}; resolved Events {resolved:?}")),
        }
    })
    .await;
    assert_eq!(stalled().await, Ok(new.clone()), "pausing changed no Pod");
    // Resumed: blocked again (the sidecar has not been ready all along).
    s.env.kubectl(rollout("resume")).await.expect("kubectl rollout resume");
    wait(2 * MINUTE, "RolloutBlockedBySidecar firing again once resumed", firing).await;

    // `kubectl rollout undo`: the old template again, its ReplicaSet reused, the new Pod gone.
    let undo = rollout("undo");
    s.env.kubectl(undo).await.expect("kubectl rollout undo");
    assert_eq!(settled(&s, "web", None).await, old, "the undo returns to the old revision's hash");
    wait(2 * MINUTE, "RolloutBlockedBySidecar resolved on Deployment web", || async {
        let series = rollout_alerts(&s, "web").await;
        let resolved = deployment_events(&s, "web", "RolloutBlockedBySidecarResolved").await;
        let normal =
            |(kind, path, _): &(String, String, String)| kind == "Normal" && path.ends_with(&format!("{{{SIDECAR}}}"));
        match series.as_slice() {
            [] if !resolved.is_empty() && resolved.iter().all(normal) => Ok(()),
            _ => Err(format!("series {series:?}; resolved Events {resolved:?}")),
        }
    })
    .await;

    // api: never a series, never an Event.
    assert_eq!(rollout_alerts(&s, "api").await, Vec::<String>::new());
    assert_eq!(deployment_events(&s, "api", "RolloutBlockedBySidecar").await, vec![]);
    let deployments: Api<Deployment> = Api::namespaced(s.env.client.clone(), &s.ns);
    let web = deployments.get("web").await.expect("web");
    let status = web.status.unwrap_or_default();
    assert_eq!((status.ready_replicas, status.updated_replicas), (Some(2), Some(2)), "web rolled back: {status:?}");
}
