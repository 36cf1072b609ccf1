//! Pods using the features of Kubernetes 1.33–1.37 the engine reads
//! (`docs/runbooks/kubernetes-versions.md`), end to end on the real kube-apiserver 1.37.2: the
//! server accepts each Pod (the betas are on by default; no gate is needed) and each status the
//! test writes as the kubelet would — including the transitions the server allows only because
//! of restart rules — and the operator tells the kubelet's doings from a sidecar's failures.
//!
//! Each subject Pod has a control Pod that differs only in what the feature changes: when the
//! control's alert fires, the operator has seen the subject too, so its silence is an outcome,
//! not a race.
//!
//! On a release without restart rules (CI runs this suite on 1.33.13 too; KEP-5307's
//! `restartPolicyRules` are in the API from 1.34 and on by default from 1.35, KEP-5532's
//! `RestartAllContainers` from 1.36) those fields do not exist: the Pods are created as that
//! release's users write them, without the fields (1.33 refuses them as unknown, which
//! `admission::every_fixture_gets_audits_findings_with_the_builtin_policy_and_a_cluster_policy`
//! asserts), the test writes what that release's kubelet writes, and it asserts what follows
//! from their absence: a `Never` container's exit is final whatever its code, and a sidecar
//! restarts alone.

use k8s_openapi::api::core::v1::{ContainerState, ContainerStateTerminated, PodStatus};
use serde_json::{json, Value};
use sidecar_watch_harness::kubelet::{self, set_condition, PodDriver, State, SCHEDULER_NAME};

use crate::support::*;

/// Creates a Pod from raw JSON (server-side apply, so that fields newer than the test
/// crate's Kubernetes types, such as `restartPolicyRules`, reach the server), binds it to
/// the test Node and returns its driver.
async fn create_raw(c: &Cluster, mut pod: Value) -> PodDriver {
    pod["apiVersion"] = json!("v1");
    pod["kind"] = json!("Pod");
    pod["spec"]["schedulerName"] = json!(SCHEDULER_NAME);
    let name = pod["metadata"]["name"].as_str().expect("a name").to_string();
    let out = c.apply(&pod.to_string()).await;
    assert!(out.contains(&format!("pod/{name} serverside-applied")), "{out}");
    kubelet::bind(&c.env.client, &c.ns, &name).await.expect("pod bound to the test Node");
    let driver = PodDriver::new(c.env.client.clone(), &c.ns, &name);
    // The server kept the new fields (a dropped field would mean a gate is off).
    let stored: Value = serde_json::from_str(
        &c.env.kubectl(["get", "pod", &name, "-n", &c.ns, "-o", "json"]).await.expect("kubectl get"),
    )
    .expect("JSON");
    for (path, field) in [("initContainers", "restartPolicyRules"), ("containers", "restartPolicyRules")] {
        let sent = pod["spec"][path].as_array().into_iter().flatten().filter(|c| c.get(field).is_some()).count();
        let kept = stored["spec"][path].as_array().into_iter().flatten().filter(|c| c.get(field).is_some()).count();
        assert_eq!(sent, kept, "{name}: spec.{path}[].{field} kept by the server");
    }
    driver
}

fn pod(name: &str, feature: &str, spec: Value) -> Value {
    json!({"metadata": {"name": name, "labels": {"feature": feature}}, "spec": spec})
}

/// A Job Pod whose main container `train` is restarted by its rules on exit code 42, beside a
/// legacy log shipper; without `rules` (a release without KEP-5307), the same Pod as its users
/// write it, no restart rule and no container `restartPolicy`.
fn job_with_restart_rules(name: &str, rules: bool) -> Value {
    let train = if rules {
        json!({"name": "train", "image": "busybox", "restartPolicy": "Never",
               "restartPolicyRules": [{"action": "Restart", "exitCodes": {"operator": "In", "values": [42]}}]})
    } else {
        json!({"name": "train", "image": "busybox"})
    };
    let mut p = pod(
        name,
        "runtime",
        json!({"restartPolicy": "Never", "containers": [train, {"name": "log-sidecar", "image": "busybox"}]}),
    );
    p["metadata"]["ownerReferences"] = json!([{"apiVersion": "batch/v1", "kind": "Job", "name": "train",
        "uid": "5307a5f1-0000-4000-8000-000000000001", "controller": true}]);
    p
}

/// The kubelet's record of a container removed for an in-place Pod restart
/// (`kubelet_pods.go`): reason `RestartingAllContainers`, exit code 137, no timestamps.
fn removed_for_pod_restart() -> ContainerState {
    ContainerState {
        terminated: Some(ContainerStateTerminated {
            reason: Some("RestartingAllContainers".into()),
            message: Some("The container is removed because RestartAllContainers in place".into()),
            exit_code: 137,
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn remove_condition(s: &mut PodStatus, type_: &str) {
    if let Some(conditions) = s.conditions.as_mut() {
        conditions.retain(|c| c.type_ != type_);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kubelets_own_restarts_and_waits_are_no_sidecar_failures() {
    let c = Cluster::start("k137").await;
    let ns = c.ns.clone();
    c.apply_policy(
        "runtime",
        json!({"selector": {"matchLabels": {"feature": "runtime"}},
        "sidecars": {"native": true, "catalog": true, "pattern": ".*-sidecar"},
        "rules": rules(json!({
            "jobBlocked": {"for": "2s", "severity": "warning"},
            "restarts": {"threshold": 1, "window": "15m", "severity": "critical"},
            "sidecarNotReady": {"for": "2s", "severity": "warning"},
        }))}),
    )
    .await;
    let op = Operator::start(&c, "op-0", &[]).await;
    let minor = server_minor(&c.env).await;
    let (restart_rules, restart_all_rules) = (minor >= 35, minor >= 36);
    // KEP-1287's in-place resize is on by default from 1.33; before, the server drops
    // `resizePolicy` (alpha gate off), so nothing tells a resize restart from a crash.
    let resize = minor >= 33;

    // KEP-5307: exit 42 is restarted by the rules (not finished), exit 1 finishes the Job.
    // Without the rules, exit 42 finishes it as well.
    let rules_42 = create_raw(&c, job_with_restart_rules("rules-42", restart_rules)).await;
    let rules_1 = create_raw(&c, job_with_restart_rules("rules-1", restart_rules)).await;
    // KEP-5532: watcher's exit 88 restarts every container of the Pod; without the rule, the
    // kubelet restarts the sidecar alone.
    let mut watcher = json!({"name": "watcher", "image": "busybox", "restartPolicy": "Always"});
    if restart_all_rules {
        watcher["restartPolicyRules"] =
            json!([{"action": "RestartAllContainers", "exitCodes": {"operator": "In", "values": [88]}}]);
    }
    let restart_all = create_raw(
        &c,
        pod(
            "restart-all",
            "runtime",
            json!({"restartPolicy": "Never",
                "initContainers": [{"name": "proxy", "image": "busybox", "restartPolicy": "Always"}, watcher],
                "containers": [{"name": "train", "image": "busybox"}]}),
        ),
    )
    .await;
    // KEP-1287: a memory resize restarts the sidecar (RestartContainer), or does not need to.
    let resize_pod = |name: &str, policy: &str| {
        pod(
            name,
            "runtime",
            json!({"initContainers": [{"name": "proxy", "image": "busybox", "restartPolicy": "Always",
                       "resizePolicy": [{"resourceName": "memory", "restartPolicy": policy}],
                       "resources": {"requests": {"memory": "64Mi"}, "limits": {"memory": "64Mi"}}}],
                   "containers": [{"name": "app", "image": "busybox"}]}),
        )
    };
    let resized = create_raw(&c, resize_pod("resized", "RestartContainer")).await;
    let crashed = create_raw(&c, resize_pod("crashed", "NotRequired")).await;
    // KEP-3085: the sandbox is not ready yet, or it is and the sidecar still waits.
    let sandbox_pod = |name: &str| {
        pod(
            name,
            "runtime",
            json!({"initContainers": [{"name": "proxy", "image": "busybox", "restartPolicy": "Always"}],
                   "containers": [{"name": "app", "image": "busybox"}]}),
        )
    };
    let no_sandbox = create_raw(&c, sandbox_pod("no-sandbox")).await;
    let sandbox = create_raw(&c, sandbox_pod("sandbox")).await;

    for p in [&rules_42, &rules_1, &restart_all, &resized, &crashed] {
        p.run_all().await.expect("running");
    }
    // The kubelet's first status (every container waiting, the sandbox not ready), and its
    // second (the sandbox ready, nothing started yet).
    no_sandbox.admit().await.expect("waiting for the sandbox");
    sandbox.sandbox_ready().await.expect("waiting for the sidecar");
    op.wait_scrape("every Pod tracked", |s| {
        let tracked = s.find("sidecar_container_ready", &[]).len();
        if tracked >= 8 {
            Ok(())
        } else {
            Err(format!("{tracked} sidecar series"))
        }
    })
    .await;

    rules_42.set_state("train", State::terminated("Error", 42)).await.expect("exit 42");
    rules_1.set_state("train", State::terminated("Error", 1)).await.expect("exit 1");
    restart_all
        .update(|_, s| {
            if restart_all_rules {
                set_condition(s, "AllContainersRestarting", true, Some("RestartAllContainersStarted"));
            }
            let watcher = s.init_container_statuses.iter_mut().flatten().find(|c| c.name == "watcher").unwrap();
            watcher.state = Some(State::terminated("Error", 88).to_k8s());
            watcher.ready = false;
            Ok(())
        })
        .await
        .expect("watcher exits with 88");
    if !restart_all_rules {
        // Before 1.36 the kubelet restarts the sidecar alone: no condition, no record of the
        // other containers.
        restart_all
            .update(|_, s| {
                let watcher = s.init_container_statuses.iter_mut().flatten().find(|c| c.name == "watcher").unwrap();
                watcher.last_state = Some(State::terminated("Error", 88).to_k8s());
                watcher.restart_count += 1;
                watcher.state = Some(State::Running.to_k8s());
                watcher.started = Some(true);
                watcher.ready = true;
                Ok(())
            })
            .await
            .expect("watcher started again");
    } else {
        restart_all
            .update(|_, s| {
                set_condition(s, "AllContainersRestarting", false, None);
                for c in s.init_container_statuses.iter_mut().flatten().chain(s.container_statuses.iter_mut().flatten())
                {
                    c.last_state = Some(removed_for_pod_restart());
                    c.restart_count += 1;
                    c.state = Some(State::Running.to_k8s());
                    c.started = Some(true);
                    c.ready = true;
                }
                Ok(())
            })
            .await
            .expect("every container started again");
    }
    resized.set_condition("PodResizeInProgress", true, None).await.expect("resize in progress");
    for p in [&resized, &crashed] {
        p.update(|_, s| {
            remove_condition(s, "PodResizeInProgress");
            let proxy = s.init_container_statuses.iter_mut().flatten().find(|c| c.name == "proxy").unwrap();
            proxy.last_state = Some(State::terminated("Error", 143).to_k8s());
            proxy.restart_count += 1;
            proxy.state = Some(State::Running.to_k8s());
            Ok(())
        })
        .await
        .expect("the sidecar restarted");
    }

    let restarts = |pod: &str, container: &str| {
        AlertSeries {
            alert: AlertName::SidecarRestartingFrequently,
            severity: Severity::Critical,
            policy: "runtime",
            namespace: &ns,
            pod,
            container,
            // `watcher` and `proxy` are busybox: not in the catalog.
            product: "unknown",
            ..MESH_NOT_READY
        }
        .labels()
    };
    let blocked = |pod: &str| {
        owned_by(
            AlertSeries {
                alert: AlertName::JobBlockedBySidecar,
                policy: "runtime",
                namespace: &ns,
                pod,
                container: "log-sidecar",
                product: "unknown",
                ..MESH_NOT_READY
            }
            .labels(),
            "Job",
            "train",
        )
    };
    let mut expected = vec![
        blocked("rules-1"),
        restarts("restart-all", "watcher"),
        restarts("crashed", "proxy"),
        AlertSeries {
            policy: "runtime",
            namespace: &ns,
            pod: "sandbox",
            container: "proxy",
            product: "unknown",
            ..MESH_NOT_READY
        }
        .labels(),
    ];
    if !restart_rules {
        // No rule restarts `train` on exit 42: it finished, and the Job is blocked as well.
        expected.push(blocked("rules-42"));
    }
    if !resize {
        // No resize policy: the resized sidecar's restart counts as the crashed one's does.
        expected.push(restarts("resized", "proxy"));
    }
    op.wait_alerts("each control fires, no subject does", expected).await;
    let events = c.wait_events("restart-all", "Warning", "SidecarRestartingFrequently", 1).await;
    let note = the_event(&events, "restart-all", "SidecarRestartingFrequently").note.clone().unwrap_or_default();
    assert!(note.contains("Sidecar watcher"), "{note}");
    assert_eq!(note.contains("RestartAllContainers"), restart_all_rules, "{note}");

    // The server enforces what the engine assumed: a `Never` container runs again only on an
    // exit its rules restart (and, without rules, on none).
    let again = rules_42.set_state("train", State::Running).await;
    if restart_rules {
        again.expect("exit 42 is restarted");
    } else {
        assert!(again.is_err(), "the server refuses to run again a container that finished on 42: {again:?}");
    }
    let refused = rules_1.set_state("train", State::Running).await;
    assert!(refused.is_err(), "the server refuses to run again a container that finished: {refused:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_containers_before_a_mesh_proxy_and_native_pre_stop_hooks_are_reported() {
    let c = Cluster::start("k137s").await;
    let ns = c.ns.clone();
    c.apply_policy(
        "static",
        json!({"selector": {"matchLabels": {"feature": "static"}},
               "rules": rules(json!({"misconfiguration": {"severity": "info"}}))}),
    )
    .await;
    let op = Operator::start(&c, "op-0", &[]).await;
    let probes = json!({"readinessProbe": {"httpGet": {"path": "/ready", "port": 15021}},
                        "startupProbe": {"httpGet": {"path": "/ready", "port": 15021}},
                        "resources": {"requests": {"cpu": "100m"}}});
    let with = |mut container: Value| {
        if let (Some(fields), Some(more)) = (container.as_object_mut(), probes.as_object()) {
            fields.extend(more.clone());
        }
        container
    };
    create_raw(
        &c,
        pod(
            "billing",
            "static",
            json!({"initContainers": [
                    {"name": "istio-init", "image": "docker.io/istio/proxyv2:1.27.0", "args": ["istio-iptables", "-u", "1337"]},
                    {"name": "migrate", "image": "busybox"},
                    with(json!({"name": "istio-proxy", "image": "docker.io/istio/proxyv2:1.27.0", "restartPolicy": "Always",
                        "securityContext": {"runAsUser": 1337},
                        "lifecycle": {"preStop": {"exec": {"command": ["pilot-agent", "request", "--debug-port=15020", "POST", "drain"]}}}}))],
                   "containers": [{"name": "billing", "image": "busybox"}]}),
        ),
    )
    .await;
    create_raw(
        &c,
        pod(
            "web",
            "static",
            json!({"initContainers": [with(json!({"name": "envoy", "image": "envoyproxy/envoy:v1.30.1", "restartPolicy": "Always",
                        "lifecycle": {"preStop": {"exec": {"command": ["/bin/sh", "-c", "curl -s -X POST localhost:9901/quitquitquit"]}}}}))],
                   "containers": [{"name": "web", "image": "busybox"}]}),
        ),
    )
    .await;
    let check = |pod: &str, container: &str, product: &str, check: &str| {
        let mut labels = AlertSeries {
            alert: AlertName::SidecarMisconfigured,
            severity: Severity::Info,
            policy: "static",
            namespace: &ns,
            pod,
            container,
            product,
            ..MESH_NOT_READY
        }
        .labels();
        labels.insert("check".into(), check.into());
        labels
    };
    op.wait_alerts(
        "one finding each",
        vec![
            check("billing", "istio-proxy", "istio", "init-before-proxy"),
            check("web", "envoy", "envoy", "native-prestop"),
        ],
    )
    .await;
    let events = c.wait_events("billing", "Warning", "SidecarMisconfigured", 1).await;
    let event = the_event(&events, "billing", "SidecarMisconfigured");
    assert_eq!(event.action.as_deref(), Some("init-before-proxy"));
    let note = event.note.clone().unwrap_or_default();
    assert!(note.starts_with("Init container migrate in Pod") && note.contains("runAsUser: 1337"), "{note}");
}
