//! What one tenant's Pods cannot do to the operator: leave series behind that grow with
//! every unique name.

use std::time::Duration;

use serde_json::json;
use sidecar_watch_harness::control_plane::Options;
use sidecar_watch_harness::env::wait_until;

use crate::support::*;

fn startup_series(s: &Scrape) -> usize {
    s.find("sidecar_startup_seconds_count", &[]).len()
}

/// Pods with unique sidecar names come and go (a name per rollout): the startup histogram
/// keeps a series per name only while a Pod runs it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_series_go_with_their_last_pod() {
    let c = Cluster::start("startup").await;
    c.apply_app_policy("mesh", "web", json!({})).await;
    let op = Operator::start(&c, "op", &["--leader-elect=false"]).await;
    let baseline = startup_series(&op.scrape().await.expect("scrape"));

    let mut pods = Vec::new();
    for i in 0..10 {
        let sidecar = format!("s{i}-sidecar");
        let pod = c.create_pod(native_pod(&format!("p{i}"), "web", "app", &sidecar)).await;
        drive(&pod, &[("app", true), (sidecar.as_str(), false)]).await;
        pods.push((pod, sidecar));
    }
    // The operator must see each run start before it sees the sidecar ready.
    op.wait_scrape("every sidecar seen not ready", |s| {
        let n = s.find("sidecar_container_ready", &[]).iter().filter(|x| x.value == 0.0).count();
        if n == 10 {
            Ok(())
        } else {
            Err(format!("{n} not ready"))
        }
    })
    .await;
    for (pod, sidecar) in &pods {
        set_ready(pod, sidecar, true).await;
    }
    op.wait_scrape("a startup series per unique name", |s| {
        let n = startup_series(s);
        if n == baseline + 10 {
            Ok(())
        } else {
            Err(format!("{n} startup series, baseline {baseline}"))
        }
    })
    .await;

    for i in 0..10 {
        c.delete_pod_now(&format!("p{i}")).await;
    }
    op.wait_scrape("the startup series are gone with their Pods", |s| {
        let n = startup_series(s);
        if n == baseline {
            Ok(())
        } else {
            Err(format!("{n} startup series, baseline {baseline}"))
        }
    })
    .await;
}

/// A never-scheduled Pod with `n` native sidecars `s{i}-sidecar` (busybox, no probes, no
/// resources: every static check fails on every one of them).
fn flood_pod(n: usize) -> serde_json::Value {
    let names: Vec<String> = (0..n).map(|i| format!("s{i}-sidecar")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    sidecar_watch_harness::kubelet::test_pod("flood", &[("app", "flood")], &["app"], &names)
}

/// Seed 000: a crash-looping sidecar, as the kubelet reports it.
pub(crate) async fn crash_loop(pod: &sidecar_watch_harness::kubelet::PodDriver, container: &str) {
    use sidecar_watch_harness::kubelet::State;
    pod.update(|_, s| {
        let c = s
            .init_container_statuses
            .iter_mut()
            .flatten()
            .find(|c| c.name == container)
            .ok_or_else(|| kube::Error::Service("no such container".into()))?;
        c.restart_count = 4;
        c.last_state = Some(State::terminated("Error", 1).to_k8s());
        c.state = Some(State::waiting("CrashLoopBackOff").to_k8s());
        c.started = Some(false);
        c.ready = false;
        Ok(())
    })
    .await
    .expect("status written");
}

/// The Warning Events in `namespace` as (Pod, reason, action).
async fn warnings_in(c: &Cluster, namespace: &str) -> Vec<(String, String, String)> {
    let mut out: Vec<_> = c
        .events()
        .await
        .into_iter()
        .filter(|e| e.type_.as_deref() == Some("Warning"))
        .filter(|e| e.regarding.as_ref().and_then(|r| r.namespace.as_deref()) == Some(namespace))
        .map(|e| {
            let pod = e.regarding.and_then(|r| r.name).unwrap_or_default();
            (pod, e.reason.unwrap_or_default(), e.action.unwrap_or_default())
        })
        .collect();
    out.sort();
    out
}

/// A tenant's Pod with 5,000 sidecars exists before the operator starts (its Events alone
/// would overflow the Event queue). Another namespace's crash-looping sidecar, started later,
/// still gets its Warning within 2 s of firing, none of its Events is dropped, the flood
/// exports at most the capped series, and the operator stays ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_tenant_neither_blinds_nor_delays_another() {
    let c = Cluster::start("flood").await;
    let shop = c.ns.clone();
    let flood = format!("{shop}-flood");
    c.env.create_namespace(&flood).await.expect("namespace");
    c.apply_app_policy("mesh", "web", json!({"crashLoop": {"for": "1s", "severity": "critical"}})).await;
    c.apply_in(
        &flood,
        &json!({"apiVersion": "sidecarwatch.io/v1alpha1", "kind": "SidecarPolicy",
                "metadata": {"name": "everything", "namespace": flood}, "spec": {}})
        .to_string(),
    )
    .await;
    c.create_pod_in(&flood, flood_pod(5000)).await;

    let op = Operator::start_watching(&c, "op", &[&shop, &flood]).await;
    let capped = op
        .wait_scrape("the flood Pod is evaluated, capped", |s| {
            let n = s.find("sidecar_alerts", &[("namespace", &flood)]).len();
            if n > 0 {
                Ok(())
            } else {
                Err("no flood alerts yet".into())
            }
        })
        .await;
    // 32 sidecars, four static checks each, and the sprawl finding.
    assert_eq!(capped.find("sidecar_alerts", &[("namespace", &flood)]).len(), 32 * 4 + 1);
    assert_eq!(capped.find("sidecar_container_ready", &[("namespace", &flood)]).len(), 32);
    assert!(capped.value("sidecar_watch_limited_total", &[("limit", "sidecars-per-pod")]).unwrap_or(0.0) >= 1.0);

    // Another namespace, after the flood.
    let pod = c.create_pod(native_pod("web-1", "web", "app", "istio-proxy")).await;
    drive(&pod, &[("app", true), ("istio-proxy", false)]).await;
    crash_loop(&pod, "istio-proxy").await;
    let (_, fired) = observe_firing(&op, "web-1", "SidecarCrashLooping").await;
    c.wait_events("web-1", "Warning", "SidecarCrashLooping", 1).await;
    let took = fired.elapsed();
    assert!(took <= Duration::from_secs(2), "the shop Warning took {took:?} after firing");

    // Every firing shop alert has its Warning: nothing of shop's was dropped.
    let scrape = op.scrape().await.expect("scrape");
    let mut expected: Vec<(String, String, String)> = scrape
        .find("sidecar_alerts", &[("namespace", &shop), ("alertstate", "firing")])
        .iter()
        .map(|s| {
            let action = match s.labels["check"].as_str() {
                "" => "Alert".to_string(),
                check => check.to_string(),
            };
            (s.labels["pod"].clone(), s.labels["alertname"].clone(), action)
        })
        .collect();
    expected.sort();
    let wanted = expected.clone();
    wait_until(WAIT, "every shop alert announced", || async {
        let got = warnings_in(&c, &shop).await;
        if got == wanted {
            Ok(())
        } else {
            Err(format!("got {got:?}\nwanted {wanted:?}"))
        }
    })
    .await
    .unwrap();
    // The flood Pod's Events were limited per object: a burst of 25.
    let flood_events = warnings_in(&c, &flood).await.len();
    assert!(flood_events <= 25, "{flood_events} flood Warnings");
    assert_eq!(sidecar_watch_harness::env::http_get(op.port, "/readyz").await.expect("GET").0, 200);
}

/// Pods nobody can read: one with a timestamp past jiff's range (valid RFC 3339, clamped) and
/// one with a field of the wrong type (skipped), present at start and arriving by watch. The
/// operator becomes ready, tracks every other Pod, counts the undecodable ones, and no log
/// line carries a Pod's body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_pods_neither_block_nor_leak() {
    // kube-apiserver stores the far-future time but refuses a string `restartCount` (only a
    // broken server or an aggregated API sends one): the fault proxy writes that one into
    // what it relays to the operator.
    let (c, proxy) = Cluster::start_behind_fault_proxy("decode", Options::default()).await;
    for broken in ["broken-1", "broken-2"] {
        proxy.corrupt_restart_count(broken, "SECRET-B");
    }
    c.apply_app_policy("mesh", "web", json!({})).await;
    // Untyped: the typed client cannot read the far-future time back.
    let resource = kube::core::ApiResource::erase::<k8s_openapi::api::core::v1::Pod>(&());
    let pods: kube::Api<kube::api::DynamicObject> = kube::Api::namespaced_with(c.env.client.clone(), &c.ns, &resource);
    // Written as a node or a controller with pods/status can.
    let raw_status = |name: &'static str, status: serde_json::Value| {
        let pods = pods.clone();
        async move {
            let patch = kube::api::Patch::Merge(json!({"status": status}));
            pods.patch_status(name, &kube::api::PatchParams::default(), &patch).await.expect("raw status written");
        }
    };
    let far = || {
        json!({"containerStatuses": [{"name": "app", "ready": true, "restartCount": 1,
        "image": "busybox", "imageID": "", "lastState": {"terminated": {"exitCode": 1,
        "startedAt": "2026-01-01T00:00:00Z", "finishedAt": "9999-12-31T23:59:59Z", "message": "SECRET-A"}}}]})
    };
    // Stored as written; the operator reads `restartCount: "SECRET-B"` through the proxy.
    let broken = || {
        json!({"containerStatuses": [{"name": "app", "ready": true, "restartCount": 1,
        "image": "busybox", "imageID": ""}]})
    };
    c.create_pod(native_pod("far-1", "web", "app", "istio-proxy")).await;
    raw_status("far-1", far()).await;
    c.create_pod(native_pod("broken-1", "web", "app", "istio-proxy")).await;
    raw_status("broken-1", broken()).await;
    c.create_pod(native_pod("fine-1", "web", "app", "istio-proxy")).await;

    let op = Operator::start(&c, "op", &["--leader-elect=false"]).await;
    // By watch, after the initial list.
    c.create_pod(native_pod("far-2", "web", "app", "istio-proxy")).await;
    raw_status("far-2", far()).await;
    c.create_pod(native_pod("broken-2", "web", "app", "istio-proxy")).await;
    raw_status("broken-2", broken()).await;
    c.create_pod(native_pod("fine-2", "web", "app", "istio-proxy")).await;
    let scrape = op
        .wait_scrape("every readable Pod tracked, the unreadable ones counted", |s| {
            let tracked = s.value("sidecar_watch_pods_tracked", &[]);
            let errors = s.value("sidecar_watch_decode_errors_total", &[("kind", "Pod")]);
            if tracked == Some(4.0) && errors.is_some_and(|e| e >= 2.0) {
                Ok(())
            } else {
                Err(format!("tracked {tracked:?}, decode errors {errors:?}"))
            }
        })
        .await;
    let pods_with_series: std::collections::BTreeSet<String> =
        scrape.find("sidecar_container_ready", &[]).iter().map(|s| s.labels["pod"].clone()).collect();
    assert_eq!(pods_with_series, ["far-1", "far-2", "fine-1", "fine-2"].map(String::from).into());
    let log = op.log();
    assert!(log.contains("broken-1") && log.contains("restartCount"), "the log names the Pod and field:\n{log}");
    assert!(!log.contains("SECRET"), "a Pod's body reached the log:\n{log}");
}

/// A tenant writes its own SidecarPolicy's managed fields with a time past jiff's range
/// (kube-apiserver keeps the times a writer sends). The operator still becomes ready with
/// paginated lists, evaluates that policy and the others, and writes its status without an
/// error: managed fields are never read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn managed_fields_no_one_can_decode_block_nothing() {
    let c = Cluster::start("managed-fields").await;
    c.apply_app_policy("mesh", "web", json!({"sidecarNotReady": {"for": "1s"}})).await;
    c.apply_app_policy("forged", "other", json!({"sidecarNotReady": {"for": "1s"}})).await;
    let managed = json!({"metadata": {"managedFields": [{"manager": "tenant", "operation": "Update",
        "apiVersion": "sidecarwatch.io/v1alpha1", "time": "9999-12-31T23:59:59Z",
        "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {}}}]}})
    .to_string();
    let patched = c
        .env
        .kubectl([
            "patch",
            "sidecarpolicy",
            "forged",
            "-n",
            &c.ns,
            "--type",
            "merge",
            "-p",
            &managed,
            "-o",
            "json",
            "--show-managed-fields",
        ])
        .await
        .expect("patched");
    assert!(patched.contains("9999-12-31T23:59:59Z"), "kube-apiserver keeps the time:\n{patched}");
    for (name, app) in [("web-1", "web"), ("other-1", "other")] {
        let pod = c.create_pod(native_pod(name, app, "app", "istio-proxy")).await;
        drive(&pod, &[("app", true), ("istio-proxy", false)]).await;
    }
    let op = Operator::start(&c, "op", &["--leader-elect=false", "--initial-list", "paginated"]).await;
    let firing: std::collections::BTreeSet<(String, String)> = [("mesh", "web-1"), ("forged", "other-1")]
        .iter()
        .map(|(policy, pod)| (policy.to_string(), pod.to_string()))
        .collect();
    op.wait_scrape("both policies alert", |s| {
        let alerts: std::collections::BTreeSet<(String, String)> = s
            .find("sidecar_alerts", &[("alertstate", "firing")])
            .iter()
            .map(|a| (a.labels["policy"].clone(), a.labels["pod"].clone()))
            .collect();
        if alerts == firing {
            Ok(())
        } else {
            Err(format!("{alerts:?}"))
        }
    })
    .await;
    wait_until(WAIT, "its status is written", || async {
        let args = ["get", "sidecarpolicy", "forged", "-n", &c.ns, "-o", "jsonpath={.status.firing}"];
        match c.env.kubectl(args).await {
            Ok(firing) if firing == r#"{"SidecarContainerNotReady":1}"# => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", op.log()));
    let scrape = op.scrape().await.expect("a scrape");
    assert_eq!(scrape.sum("sidecar_watch_reconcile_errors_total", &[]), 0.0, "{}", op.log());
}
