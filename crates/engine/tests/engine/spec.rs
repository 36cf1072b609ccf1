//! What the engine reads from a Pod's spec: `postStart` and `preStop` hooks, liveness probes
//! aimed at a sidecar, init containers that run before a native mesh proxy, the owning
//! workload, workload templates (`audit` of manifests) and invalid Pods.

use serde_json::{json, Value};
use sidecar_watch_api::SlimPod;
use sidecar_watch_engine::{evaluate, AlertName, AlertState, Around, Check, CompiledPolicy, PodHistory, PodView};

use sidecar_watch_testkit::engine::view;

fn pod(init: Value, containers: Value) -> Value {
    json!({"metadata": {"name": "web-1", "namespace": "shop", "uid": "u1", "creationTimestamp": "2025-06-03T10:00:00Z"},
           "spec": {"initContainers": init, "containers": containers}})
}

/// `(alert, container, check)` of every alert under the built-in policy.
fn findings(view: &PodView) -> Vec<(AlertName, String, Option<Check>)> {
    evaluate(
        view,
        &CompiledPolicy::builtin(),
        &PodHistory::default(),
        sidecar_watch_testkit::engine::now(),
        Around::default(),
    )
    .alerts
    .into_iter()
    .map(|a| (a.name, a.container, a.check))
    .collect()
}

fn checks_on(view: &PodView, container: &str) -> Vec<Check> {
    findings(view).into_iter().filter(|(_, c, _)| c == container).filter_map(|(_, _, check)| check).collect()
}

const APP: fn() -> Value = || {
    json!({"name": "app", "image": "shop/web:1", "readinessProbe": {"httpGet": {"port": 8080}},
                                      "resources": {"requests": {"cpu": "1"}}, "ports": [{"containerPort": 8080}]})
};

fn envoy(extra: Value) -> Value {
    let mut envoy = json!({"name": "envoy", "image": "envoyproxy/envoy:v1.30.1", "restartPolicy": "Always",
        "readinessProbe": {"httpGet": {"path": "/ready", "port": 9901}}, "resources": {"requests": {"cpu": "100m"}},
        "ports": [{"containerPort": 9901, "name": "admin"}]});
    if let (Some(fields), Some(more)) = (envoy.as_object_mut(), extra.as_object()) {
        fields.extend(more.clone());
    }
    envoy
}

#[test]
fn a_post_start_hook_on_a_native_sidecar_makes_the_kubelet_wait_like_a_startup_probe() {
    let without = view(&pod(json!([envoy(json!({}))]), json!([APP()])));
    assert_eq!(checks_on(&without, "envoy"), [Check::NoStartupProbe]);
    let message = evaluate(
        &without,
        &CompiledPolicy::builtin(),
        &PodHistory::default(),
        sidecar_watch_testkit::engine::now(),
        Around::default(),
    )
    .alerts[0]
        .message
        .clone();
    assert!(message.contains("neither a startupProbe nor a postStart hook"), "{message}");

    let hook = json!({"lifecycle": {"postStart": {"exec": {"command": ["/bin/sh", "-c", "until wget -qO- localhost:9901/ready; do sleep 1; done"]}}}});
    let with_hook = view(&pod(json!([envoy(hook)]), json!([APP()])));
    assert_eq!(checks_on(&with_hook, "envoy"), Vec::<Check>::new());
}

#[test]
fn a_main_liveness_probe_on_a_sidecar_port_is_reported_on_the_sidecar() {
    let probing = |probe: Value| {
        let mut app = APP();
        app["livenessProbe"] = probe;
        view(&pod(json!([envoy(json!({"startupProbe": {"httpGet": {"path": "/ready", "port": 9901}}}))]), json!([app])))
    };
    // By number and by the sidecar's port name, over HTTP and TCP.
    for probe in [
        json!({"httpGet": {"path": "/ready", "port": 9901}}),
        json!({"httpGet": {"path": "/ready", "port": "admin"}}),
        json!({"tcpSocket": {"port": 9901}}),
    ] {
        let view = probing(probe.clone());
        assert_eq!(checks_on(&view, "envoy"), [Check::MainProbeOnSidecar], "{probe}");
        let alerts = evaluate(
            &view,
            &CompiledPolicy::builtin(),
            &PodHistory::default(),
            sidecar_watch_testkit::engine::now(),
            Around::default(),
        )
        .alerts;
        let message = &alerts[0].message;
        assert!(message.contains("Main container app") && message.contains("port 9901 of sidecar envoy"), "{message}");
    }
    // The app's own port, another host, and Istio's rewritten app probes are fine.
    for probe in [
        json!({"httpGet": {"path": "/healthz", "port": 8080}}),
        json!({"httpGet": {"path": "/ready", "port": 9901, "host": "config.internal"}}),
        json!({"exec": {"command": ["true"]}}),
    ] {
        assert_eq!(checks_on(&probing(probe.clone()), "envoy"), Vec::<Check>::new(), "{probe}");
    }
    // A well-known sidecar's undeclared health port counts too, except Istio's probe rewrite.
    let istio = |path: &str, port: u16| {
        let mut app = APP();
        app["livenessProbe"] = json!({"httpGet": {"path": path, "port": port}});
        view(&pod(
            json!([{"name": "istio-proxy", "image": "docker.io/istio/proxyv2:1.22.0", "restartPolicy": "Always",
                    "readinessProbe": {"httpGet": {"path": "/healthz/ready", "port": 15021}},
                    "startupProbe": {"httpGet": {"path": "/healthz/ready", "port": 15021}},
                    "resources": {"requests": {"cpu": "100m"}}}]),
            json!([app]),
        ))
    };
    assert_eq!(checks_on(&istio("/healthz/ready", 15021), "istio-proxy"), [Check::MainProbeOnSidecar]);
    assert_eq!(checks_on(&istio("/app-health/app/livez", 15020), "istio-proxy"), Vec::<Check>::new());
}

#[test]
fn the_workload_is_the_controller_owner_and_a_deployment_stands_for_its_replica_set() {
    let owned = |owners: Value, labels: Value| {
        let mut p = pod(json!([]), json!([APP()]));
        p["metadata"]["ownerReferences"] = owners;
        p["metadata"]["labels"] = labels;
        let v = view(&p);
        let (kind, name) = v.workload();
        (kind.to_string(), name.to_string())
    };
    let rs =
        json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-7d4b9c", "uid": "r", "controller": true}]);
    assert_eq!(owned(rs.clone(), json!({"pod-template-hash": "7d4b9c"})), ("Deployment".into(), "web".into()));
    // A ReplicaSet not made by a Deployment (no matching hash) stays itself.
    assert_eq!(owned(rs.clone(), json!({"app": "web"})), ("ReplicaSet".into(), "web-7d4b9c".into()));
    assert_eq!(owned(rs, json!({"pod-template-hash": "other"})), ("ReplicaSet".into(), "web-7d4b9c".into()));
    let job =
        json!([{"apiVersion": "batch/v1", "kind": "Job", "name": "backup-28650", "uid": "j", "controller": true}]);
    assert_eq!(owned(job, json!({})), ("Job".into(), "backup-28650".into()));
    // The controller owner, not the first.
    let two = json!([{"apiVersion": "v1", "kind": "ConfigMap", "name": "cm", "uid": "c"},
                     {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "db", "uid": "s", "controller": true}]);
    assert_eq!(owned(two, json!({})), ("StatefulSet".into(), "db".into()));
    assert_eq!(owned(json!(null), json!({})), ("Pod".into(), "web-1".into()));
}

#[test]
fn a_job_template_with_a_legacy_sidecar_will_never_complete() {
    let template: SlimPod = serde_json::from_value(json!({"metadata": {"namespace": "batch"}, "spec": {"containers": [
        APP(),
        {"name": "istio-proxy", "image": "docker.io/istio/proxyv2:1.22.0", "readinessProbe": {"httpGet": {"port": 15021}},
         "resources": {"requests": {"cpu": "100m"}}}]}}))
    .expect("a template");
    let job = PodView::from_template(&template, "CronJob", "nightly-backup");
    assert_eq!(job.name(), "CronJob/nightly-backup");
    assert_eq!(job.workload(), ("CronJob", "nightly-backup"));
    let alerts = evaluate(
        &job,
        &CompiledPolicy::builtin(),
        &PodHistory::default(),
        sidecar_watch_testkit::engine::now(),
        Around::default(),
    )
    .alerts;
    let summary: Vec<_> = alerts.iter().map(|a| (a.name, a.container.as_str(), a.check, a.state, a.since)).collect();
    assert_eq!(
        summary,
        [
            (AlertName::JobBlockedBySidecar, "istio-proxy", None, AlertState::Firing, None),
            (AlertName::SidecarMisconfigured, "istio-proxy", Some(Check::LegacySidecar), AlertState::Firing, None),
        ]
    );
    assert_eq!(alerts[0].severity, sidecar_watch_api::Severity::Warning);
    assert!(alerts[0].message.contains("the Job will never complete"), "{}", alerts[0].message);
    assert!(alerts[0].message.contains("sidecar.istio.io/nativeSidecar"), "{}", alerts[0].message);

    // The same template in a Deployment: only the static check.
    let deployment = PodView::from_template(&template, "Deployment", "web");
    let names: Vec<_> = findings(&deployment).into_iter().map(|(name, _, _)| name).collect();
    assert_eq!(names, [AlertName::SidecarMisconfigured]);
}

#[test]
fn two_containers_with_one_name_yield_one_set_of_alerts() {
    let sidecar = json!({"name": "log-sidecar", "image": "fluent/fluent-bit:3.0"});
    let twice = view(&pod(json!([]), json!([APP(), sidecar.clone(), sidecar])));
    assert_eq!(twice.containers.len(), 2);
    let keys = findings(&twice);
    let mut unique = keys.clone();
    unique.dedup();
    assert_eq!(keys, unique);
}

#[test]
fn a_legacy_proxy_started_first_with_a_waiting_post_start_hook_is_not_a_start_order_violation() {
    // holdApplicationUntilProxyStarts: istio-proxy first, with `pilot-agent wait` as postStart.
    // The app started 1 s after the proxy; the kubelet marked the proxy ready 8 s later (its
    // readiness probe runs every few seconds), which is not the proxy's real readiness.
    let status = |name: &str, started: &str, ready: bool| json!({"name": name, "ready": ready, "restartCount": 0, "state": {"running": {"startedAt": started}}});
    let mut proxy = json!({"name": "istio-proxy", "image": "docker.io/istio/proxyv2:1.22.0",
        "readinessProbe": {"httpGet": {"path": "/healthz/ready", "port": 15021}}, "resources": {"requests": {"cpu": "100m"}}});
    let with_hook = |proxy: &Value| {
        let mut p = pod(json!([]), json!([]));
        p["spec"]["containers"] = json!([proxy, APP()]);
        p["status"] = json!({"containerStatuses": [status("istio-proxy", "2025-06-03T10:00:00Z", false),
                                                   status("app", "2025-06-03T10:00:01Z", true)]});
        view(&p)
    };
    let order = |v: &PodView| {
        findings(v).into_iter().filter(|(n, _, _)| *n == AlertName::MainStartedBeforeSidecarReady).count()
    };
    assert_eq!(order(&with_hook(&proxy)), 1, "without the hook the app did start first");
    proxy["lifecycle"] = json!({"postStart": {"exec": {"command": ["pilot-agent", "wait"]}}});
    assert_eq!(order(&with_hook(&proxy)), 0);
}

/// The `init-before-proxy` and `native-prestop` findings only, with their containers.
fn shutdown_and_network_checks(view: &PodView) -> Vec<(String, Check)> {
    findings(view)
        .into_iter()
        .filter_map(|(_, container, check)| Some((container, check?)))
        .filter(|(_, check)| matches!(check, Check::InitBeforeProxy | Check::NativePreStop))
        .collect()
}

fn init(name: &str, extra: Value) -> Value {
    let mut c = json!({"name": name, "image": format!("shop/{name}:1")});
    if let (Some(fields), Some(more)) = (c.as_object_mut(), extra.as_object()) {
        fields.extend(more.clone());
    }
    c
}

/// A mesh proxy as its injector writes it in native mode (name, image, user).
fn mesh_proxy(name: &str, image: &str, uid: i64) -> Value {
    json!({"name": name, "image": image, "restartPolicy": "Always", "securityContext": {"runAsUser": uid},
           "readinessProbe": {"httpGet": {"port": 15021}}, "startupProbe": {"httpGet": {"port": 15021}},
           "resources": {"requests": {"cpu": "100m"}}})
}

fn istio_proxy() -> Value {
    mesh_proxy("istio-proxy", "docker.io/istio/proxyv2:1.27.0", 1337)
}

#[test]
fn init_before_proxy_needs_a_redirect_already_in_place_when_the_init_container_runs() {
    let none = json!({});
    let on_proxy = |name: &str| vec![(name.to_string(), Check::InitBeforeProxy)];
    for (case, inits, expected) in [
        (
            "after istio-init, before istio-proxy",
            json!([init("istio-init", none.clone()), init("migrate", none.clone()), istio_proxy()]),
            on_proxy("istio-proxy"),
        ),
        (
            "before istio-init: the plain network",
            json!([init("migrate", none.clone()), init("istio-init", none.clone()), istio_proxy()]),
            vec![],
        ),
        (
            "after istio-proxy, as Istio's injector places it",
            json!([init("istio-init", none.clone()), istio_proxy(), init("migrate", none.clone())]),
            vec![],
        ),
        (
            "Istio CNI redirects from the sandbox's creation on",
            json!([init("migrate", none.clone()), init("istio-validation", none.clone()), istio_proxy()]),
            on_proxy("istio-proxy"),
        ),
        (
            "running as the proxy's user: its traffic is not redirected",
            json!([
                init("istio-init", none.clone()),
                init("migrate", json!({"securityContext": {"runAsUser": 1337}})),
                istio_proxy()
            ]),
            vec![],
        ),
        (
            "running as another user",
            json!([
                init("istio-init", none.clone()),
                init("migrate", json!({"securityContext": {"runAsUser": 0}})),
                istio_proxy()
            ]),
            on_proxy("istio-proxy"),
        ),
        ("no redirection seen: nothing to say", json!([init("migrate", none.clone()), istio_proxy()]), vec![]),
        (
            "a native sidecar before the proxy is not an init container that must finish",
            json!([
                init("istio-init", none.clone()),
                init("log-shipper", json!({"restartPolicy": "Always"})),
                istio_proxy()
            ]),
            vec![],
        ),
        (
            "Linkerd",
            json!([
                init("linkerd-init", none.clone()),
                init("wait-for-db", none.clone()),
                mesh_proxy("linkerd-proxy", "cr.l5d.io/linkerd/proxy:edge-26.8.3", 2102)
            ]),
            on_proxy("linkerd-proxy"),
        ),
        (
            "Kuma with its CNI",
            json!([
                init("vault-agent-init", none.clone()),
                init("kuma-validation", none.clone()),
                mesh_proxy("kuma-sidecar", "docker.io/kumahq/kuma-dp:2.14.0", 5678)
            ]),
            on_proxy("kuma-sidecar"),
        ),
    ] {
        let view = view(&pod(inits, json!([APP()])));
        assert_eq!(shutdown_and_network_checks(&view), expected, "{case}");
    }
    // The Pod's runAsUser applies to an init container that sets none.
    let mut shared_user =
        pod(json!([init("istio-init", none.clone()), init("migrate", none.clone()), istio_proxy()]), json!([APP()]));
    shared_user["spec"]["securityContext"] = json!({"runAsUser": 1337});
    assert_eq!(shutdown_and_network_checks(&view(&shared_user)), vec![]);
    // A legacy istio-proxy starts after every init container: nothing runs before it.
    let mut legacy = istio_proxy();
    if let Some(fields) = legacy.as_object_mut() {
        fields.remove("restartPolicy");
    }
    let legacy =
        view(&pod(json!([init("istio-init", none.clone()), init("migrate", none.clone())]), json!([APP(), legacy])));
    assert_eq!(shutdown_and_network_checks(&legacy), vec![]);
    // Two of them are named in one finding, with Linkerd's own remedy.
    let two = view(&pod(
        json!([
            init("linkerd-init", none.clone()),
            init("wait-for-db", none.clone()),
            init("fetch-model", none.clone()),
            mesh_proxy("linkerd-proxy", "cr.l5d.io/linkerd/proxy:edge-26.8.3", 2102)
        ]),
        json!([APP()]),
    ));
    let message = evaluate(
        &two,
        &CompiledPolicy::builtin(),
        &PodHistory::default(),
        sidecar_watch_testkit::engine::now(),
        Around::default(),
    )
    .alerts
    .into_iter()
    .find(|a| a.check == Some(Check::InitBeforeProxy))
    .map(|a| a.message)
    .unwrap_or_default();
    assert!(
        message.starts_with(
            "Init containers wait-for-db, fetch-model in Pod shop/web-1 run before native sidecar linkerd-proxy"
        ),
        "{message}"
    );
    assert!(message.contains("config.linkerd.io/skip-outbound-ports"), "{message}");
}

#[test]
fn a_native_sidecars_pre_stop_hook_is_reported_when_it_can_stop_it_and_is_not_its_meshs_drain() {
    let hook = |handler: Value| json!({"lifecycle": {"preStop": handler}});
    let quit = json!({"exec": {"command": ["/bin/sh", "-c", "curl -X POST localhost:9901/quitquitquit"]}});
    let istio_drain = json!({"exec": {"command": ["pilot-agent", "request", "--debug-port=15020", "POST", "drain"]}});
    let on_envoy = vec![("envoy".to_string(), Check::NativePreStop)];
    for (case, sidecar, expected) in [
        ("an exec hook that quits Envoy", envoy(hook(quit.clone())), on_envoy.clone()),
        ("an HTTP hook", envoy(hook(json!({"httpGet": {"path": "/quitquitquit", "port": 9901}}))), on_envoy.clone()),
        ("a sleep only waits", envoy(hook(json!({"sleep": {"seconds": 5}}))), vec![]),
        ("Istio's drain on another proxy is not its mesh's hook", envoy(hook(istio_drain.clone())), on_envoy.clone()),
        ("no hook", envoy(json!({})), vec![]),
    ] {
        let view = view(&pod(json!([sidecar]), json!([APP()])));
        assert_eq!(shutdown_and_network_checks(&view), expected, "{case}");
    }
    // The drains the mesh injectors write keep the proxy serving until SIGTERM.
    let mut istio = istio_proxy();
    istio["lifecycle"] = json!({"preStop": istio_drain});
    let mut kuma = mesh_proxy("kuma-sidecar", "docker.io/kumahq/kuma-dp:2.14.0", 5678);
    kuma["lifecycle"] = json!({"preStop": {"exec": {"command": ["killall", "-USR2", "kuma-dp"]}}});
    for proxy in [istio, kuma] {
        assert_eq!(shutdown_and_network_checks(&view(&pod(json!([proxy]), json!([APP()])))), vec![]);
    }
    // A legacy sidecar's hook runs beside the app's anyway: legacy-sidecar covers it.
    let mut legacy = envoy(hook(quit));
    if let Some(fields) = legacy.as_object_mut() {
        fields.remove("restartPolicy");
    }
    assert_eq!(shutdown_and_network_checks(&view(&pod(json!([]), json!([APP(), legacy])))), vec![]);
}
