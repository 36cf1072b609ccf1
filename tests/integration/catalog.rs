//! The built-in sidecar catalog: one fixture per entry with the container its injector or
//! documented manifest produces (name, image, ports, probes), recognised by name alone, by
//! image alone, never for look-alikes, and never for a Pod's only container.

use serde_json::{json, Value};
use sidecar_watch::engine::{evaluate, Around, Check, CompiledPolicy, PodHistory, PodView, CATALOG};

use sidecar_watch_testkit::engine::view;

/// One fixture per catalog entry: (entry id, the sidecar container as injected).
fn injected() -> Vec<(&'static str, Value)> {
    let http = |path: &str, port: u16| json!({"httpGet": {"path": path, "port": port}});
    let resources = json!({"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "1Gi"}});
    vec![
        (
            "istio",
            json!({"name": "istio-proxy", "image": "docker.io/istio/proxyv2:1.22.0",
            "args": ["proxy", "sidecar", "--domain", "$(POD_NAMESPACE).svc.cluster.local"],
            "ports": [{"containerPort": 15090, "name": "http-envoy-prom", "protocol": "TCP"}],
            "readinessProbe": http("/healthz/ready", 15021), "startupProbe": http("/healthz/ready", 15021),
            "resources": resources}),
        ),
        (
            "linkerd",
            json!({"name": "linkerd-proxy", "image": "cr.l5d.io/linkerd/proxy:stable-2.14.10",
            "ports": [{"containerPort": 4143, "name": "linkerd-proxy"}, {"containerPort": 4191, "name": "linkerd-admin"}],
            "livenessProbe": http("/live", 4191), "readinessProbe": http("/ready", 4191)}),
        ),
        (
            "envoy",
            json!({"name": "envoy", "image": "envoyproxy/envoy:v1.30.1",
            "ports": [{"containerPort": 9901, "name": "admin"}, {"containerPort": 10000}],
            "readinessProbe": http("/ready", 9901), "resources": resources}),
        ),
        (
            "consul",
            json!({"name": "consul-dataplane", "image": "hashicorp/consul-dataplane:1.4.1",
            "args": ["-addresses=consul-server.consul.svc", "-grpc-port=8502", "-proxy-service-id-path=/consul/connect-inject/proxyid"],
            "readinessProbe": {"tcpSocket": {"port": 20000}}}),
        ),
        (
            "kuma",
            json!({"name": "kuma-sidecar", "image": "docker.io/kumahq/kuma-dp:2.7.0",
            "args": ["run", "--log-level=info"], "livenessProbe": http("/ready", 9901),
            "readinessProbe": http("/ready", 9901)}),
        ),
        (
            "dapr",
            json!({"name": "daprd", "image": "docker.io/daprio/daprd:1.13.2",
            "args": ["/daprd", "--mode", "kubernetes", "--dapr-http-port", "3500"],
            "ports": [{"containerPort": 3500, "name": "dapr-http"}, {"containerPort": 50001, "name": "dapr-grpc"},
                      {"containerPort": 3501, "name": "dapr-internal"}, {"containerPort": 9090, "name": "dapr-metrics"}],
            "livenessProbe": http("/v1.0/healthz", 3501), "readinessProbe": http("/v1.0/healthz", 3501)}),
        ),
        (
            "vault-agent",
            json!({"name": "vault-agent", "image": "hashicorp/vault:1.16.1",
            "command": ["/bin/sh", "-ec"],
            "args": ["echo ${VAULT_CONFIG?} | base64 -d > /home/vault/config.json && vault agent -config=/home/vault/config.json"]}),
        ),
        (
            "cloud-sql-proxy",
            json!({"name": "cloud-sql-proxy",
            "image": "gcr.io/cloud-sql-connectors/cloud-sql-proxy:2.11.0",
            "args": ["--structured-logs", "--port=5432", "--health-check", "--http-address=0.0.0.0", "my-project:us-central1:db"],
            "startupProbe": http("/startup", 9090), "livenessProbe": http("/liveness", 9090)}),
        ),
        (
            "gcsfuse",
            json!({"name": "gke-gcsfuse-sidecar",
            "image": "gke.gcr.io/gcs-fuse-csi-driver-sidecar-mounter:v1.4.2-gke.0@sha256:0123abcd",
            "args": ["--v=5"], "restartPolicy": "Always"}),
        ),
        (
            "xray",
            json!({"name": "xray-daemon", "image": "amazon/aws-xray-daemon:3.3.12",
            "ports": [{"containerPort": 2000, "protocol": "UDP", "name": "xray-ingest"}]}),
        ),
        (
            "fluent-bit",
            json!({"name": "fluent-bit", "image": "cr.fluentbit.io/fluent/fluent-bit:3.0.4",
            "ports": [{"containerPort": 2020, "name": "http"}], "livenessProbe": http("/", 2020),
            "readinessProbe": http("/api/v1/health", 2020)}),
        ),
        (
            "otel-collector",
            json!({"name": "otel-collector", "image": "otel/opentelemetry-collector-contrib:0.102.0",
            "ports": [{"containerPort": 4317, "name": "otlp-grpc"}, {"containerPort": 4318, "name": "otlp-http"}],
            "livenessProbe": http("/", 13133), "readinessProbe": http("/", 13133)}),
        ),
        (
            "oauth2-proxy",
            json!({"name": "oauth2-proxy", "image": "quay.io/oauth2-proxy/oauth2-proxy:v7.6.0",
            "args": ["--http-address=0.0.0.0:4180", "--upstream=http://127.0.0.1:8080"],
            "ports": [{"containerPort": 4180, "name": "http"}], "livenessProbe": http("/ping", 4180),
            "readinessProbe": http("/ready", 4180)}),
        ),
        (
            // Google's AlloyDB quickstart for GKE (the proxy beside the app, by its command).
            "alloydb-auth-proxy",
            json!({"name": "alloydb-proxy", "image": "gcr.io/alloydb-connectors/alloydb-auth-proxy:1.10.1",
            "command": ["/alloydb-auth-proxy", "projects/p/locations/us-central1/clusters/c/instances/i"],
            "securityContext": {"runAsNonRoot": true}, "resources": {"requests": {"memory": "2Gi", "cpu": "1"}}}),
        ),
        (
            // Apache Airflow's chart: the DAG-syncing sidecar (its `-init` twin runs once).
            "git-sync",
            json!({"name": "git-sync", "image": "registry.k8s.io/git-sync/git-sync:v4.4.0",
            "env": [{"name": "GITSYNC_REPO", "value": "https://github.com/example/dags.git"},
                    {"name": "GITSYNC_ROOT", "value": "/git"}, {"name": "GITSYNC_LINK", "value": "repo"},
                    {"name": "GITSYNC_PERIOD", "value": "5s"}],
            "securityContext": {"runAsUser": 65533}, "volumeMounts": [{"name": "dags", "mountPath": "/git"}]}),
        ),
    ]
}

/// A Pod with an app container and `sidecar` (in `containers`, or in `initContainers` when
/// it has `restartPolicy: Always`).
fn pod_with(sidecar: Value) -> PodView {
    let app = json!({"name": "app", "image": "shop/web:1.4.2", "ports": [{"containerPort": 8080}]});
    let spec = if sidecar.get("restartPolicy").is_some() {
        json!({"initContainers": [sidecar], "containers": [app]})
    } else {
        json!({"containers": [app, sidecar]})
    };
    view(&json!({"metadata": {"name": "web-1", "namespace": "shop", "uid": "u1"}, "spec": spec}))
}

/// The same container declared in `spec.containers`.
fn strip_restart_policy(container: &mut Value) {
    if let Some(fields) = container.as_object_mut() {
        fields.remove("restartPolicy");
    }
}

/// `container -> identified_by` for every sidecar the policy finds.
fn identified(view: &PodView, policy: &CompiledPolicy) -> Vec<(String, String)> {
    policy.sidecars(view).map(|(_, c, how)| (c.name.to_string(), how.by.to_string())).collect()
}

/// The built-in policy with only the catalog (no native, no pattern): what the catalog
/// recognises on its own.
fn catalog_only() -> CompiledPolicy {
    sidecar_watch_testkit::engine::policy("sidecars: {native: false, catalog: true}")
}

#[test]
fn every_entry_has_a_fixture() {
    let ids: Vec<&str> = injected().iter().map(|(id, _)| *id).collect();
    let catalog: Vec<&str> = CATALOG.iter().map(|e| e.id).collect();
    assert_eq!(ids, catalog, "one fixture per catalog entry, in catalog order");
}

#[test]
fn each_entry_is_recognised_as_injected_by_name_alone_and_by_image_alone() {
    for (id, sidecar) in injected() {
        let name = sidecar["name"].as_str().expect("a name").to_string();
        let expected = vec![(name.clone(), format!("catalog:{id}"))];
        let native = sidecar.get("restartPolicy").is_some();
        if !native {
            assert_eq!(identified(&pod_with(sidecar.clone()), &catalog_only()), expected, "{id} as injected");
        }

        let mut renamed_image = sidecar.clone();
        renamed_image["image"] = json!("registry.corp.example/mirror/custom-build:7");
        strip_restart_policy(&mut renamed_image);
        assert_eq!(identified(&pod_with(renamed_image), &catalog_only()), expected, "{id} by name alone");

        let mut renamed = sidecar.clone();
        renamed["name"] = json!("platform-helper");
        strip_restart_policy(&mut renamed);
        let by_image = identified(&pod_with(renamed), &catalog_only());
        let image_rules = CATALOG.iter().find(|e| e.id == id).map_or(0, |e| e.images.len());
        if image_rules > 0 {
            assert_eq!(by_image, [("platform-helper".to_string(), format!("catalog:{id}"))], "{id} by image alone");
        } else {
            assert!(by_image.is_empty(), "{id} has no image rule");
        }
    }
}

#[test]
fn look_alikes_are_not_sidecars() {
    for (name, image) in [
        ("proxy", "mycorp/proxy:1.0"),                         // an app image called proxy
        ("my-envoy-config", "mycorp/envoy-config:2"),          // an envoy-named helper
        ("ratelimit", "envoyproxy/ratelimit:3.2"),             // Envoy's org, not Envoy
        ("init", "cr.l5d.io/linkerd/proxy-init:v2.4.0"),       // Linkerd's init, not its proxy
        ("vault", "hashicorp/vault:1.16.1"),                   // a Vault server, not the agent
        ("collector-config", "mycorp/opentelemetry-config:1"), // not the collector
    ] {
        let view = pod_with(json!({"name": name, "image": image}));
        assert!(identified(&view, &catalog_only()).is_empty(), "{name} ({image}) is not a sidecar");
    }
    // An init container called my-envoy-config runs to completion: never a sidecar.
    let init = view(&json!({"metadata": {"name": "p", "namespace": "shop"}, "spec": {
        "initContainers": [{"name": "my-envoy-config", "image": "envoyproxy/envoy:v1.30.1"}],
        "containers": [{"name": "app", "image": "shop/web:1"}]}}));
    assert!(identified(&init, &CompiledPolicy::builtin()).is_empty());
}

#[test]
fn a_pod_of_only_well_known_proxies_runs_them_as_main_containers() {
    // An ingress gateway: one istio-proxy container that is the Pod's whole job.
    let gateway = view(&json!({"metadata": {"name": "istio-ingressgateway-1", "namespace": "istio-system"}, "spec": {
        "containers": [{"name": "gateway", "image": "docker.io/istio/proxyv2:1.22.0", "args": ["proxy", "router"]}]}}));
    assert!(identified(&gateway, &catalog_only()).is_empty());
    // Beside an app, the same image is a sidecar.
    let meshed = pod_with(json!({"name": "gateway", "image": "docker.io/istio/proxyv2:1.22.0"}));
    assert_eq!(identified(&meshed, &catalog_only()), [("gateway".to_string(), "catalog:istio".to_string())]);
}

#[test]
fn legacy_sidecar_findings_carry_the_entries_own_remediation() {
    let now = sidecar_watch_testkit::engine::now();
    for (id, snippet) in [
        ("istio", "sidecar.istio.io/nativeSidecar: \"true\""),
        ("linkerd", "config.linkerd.io/proxy-enable-native-sidecar: \"true\" (on Linkerd 2.19 config.beta.linkerd.io/proxy-enable-native-sidecar"),
        ("kuma", "KUMA_EXPERIMENTAL_SIDECAR_CONTAINERS"),
        ("git-sync", "--one-time"),
        ("vault-agent", "vault.hashicorp.com/agent-pre-populate-only"),
    ] {
        let sidecar = injected().into_iter().find(|(i, _)| *i == id).map(|(_, c)| c).expect("a fixture");
        // In a Job's Pod, where a legacy sidecar holds the Job open.
        let mut view = pod_with(sidecar);
        view.group_mut().owned_by_job = true;
        let alerts = evaluate(&view, &catalog_only(), &PodHistory::default(), now, Around::default()).alerts;
        let legacy = alerts.iter().find(|a| a.check == Some(Check::LegacySidecar)).expect("legacy-sidecar");
        assert!(legacy.message.contains(snippet), "{id}: {}", legacy.message);
        assert!(legacy.message.contains("so the Job never completes"), "{id}: {}", legacy.message);
        assert_eq!(legacy.identified_by.map(|i| i.to_string()), Some(format!("catalog:{id}")));
    }
}

/// `legacy-sidecar` says what goes wrong for the Pod's workload: a Job's Pod never completes;
/// a Deployment's (or any other) Pod is never held open, but its sidecar is started and
/// stopped in no guaranteed order.
#[test]
fn legacy_sidecar_findings_fit_the_workload_kind() {
    let now = sidecar_watch_testkit::engine::now();
    let pod = |owner: &str| {
        let (kind, api, name) = match owner {
            "Job" => ("Job", "batch/v1", "report-29148600"),
            _ => ("ReplicaSet", "apps/v1", "web-7c9f8d6b5"),
        };
        view(&json!({"metadata": {"name": "web-1", "namespace": "shop", "uid": "u1",
            "ownerReferences": [{"apiVersion": api, "kind": kind, "name": name, "uid": "o1", "controller": true}]},
            "spec": {"containers": [{"name": "app", "image": "shop/web:1.4.2"},
                                    {"name": "istio-proxy", "image": "docker.io/istio/proxyv2:1.22.0"}]}}))
    };
    let message = |view: &PodView| {
        let alerts = evaluate(view, &catalog_only(), &PodHistory::default(), now, Around::default()).alerts;
        alerts.into_iter().find(|a| a.check == Some(Check::LegacySidecar)).expect("legacy-sidecar").message
    };
    let istio = CATALOG.iter().find(|e| e.id == "istio").expect("istio");
    assert_eq!(
        message(&pod("Job")),
        format!(
            "Sidecar istio-proxy in Pod shop/web-1 is declared in spec.containers: it keeps running after the main containers finish, so the Job never completes; {}",
            istio.job_remediation
        )
    );
    assert_eq!(
        message(&pod("Deployment")),
        "Sidecar istio-proxy in Pod shop/web-1 is declared in spec.containers: the kubelet starts and stops it alongside the main containers in no guaranteed order, so the app can start before it is ready and lose it while still shutting down; annotate the Pod template with sidecar.istio.io/nativeSidecar: \"true\" (or set ENABLE_NATIVE_SIDECARS=true mesh-wide) so istio-proxy runs as a native sidecar, started before the app and stopped after it; Istio 1.27 and later do this by default once every node runs Kubernetes 1.33 or later, so a legacy istio-proxy there means it was turned off"
    );
    // A sidecar the catalog does not know: the generic advice, and never "Job" outside one.
    let policy =
        sidecar_watch_testkit::engine::policy("sidecars: {native: false, catalog: false, names: [log-shipper]}");
    let shipper = view(&json!({"metadata": {"name": "web-2", "namespace": "shop", "uid": "u2"},
        "spec": {"containers": [{"name": "app", "image": "shop/web:1.4.2"}, {"name": "log-shipper", "image": "example/ship:1"}]}}));
    let alerts = evaluate(&shipper, &policy, &PodHistory::default(), now, Around::default()).alerts;
    let legacy = alerts.into_iter().find(|a| a.check == Some(Check::LegacySidecar)).expect("legacy-sidecar").message;
    assert_eq!(
        legacy,
        "Sidecar log-shipper in Pod shop/web-2 is declared in spec.containers: the kubelet starts and stops it alongside the main containers in no guaranteed order, so the app can start before it is ready and lose it while still shutting down; make it a native sidecar (in initContainers with restartPolicy: Always, Kubernetes 1.29+, or through its injector's native-sidecar setting): the kubelet then starts it before the main containers and stops it after them"
    );
    assert!(!legacy.contains("Job"), "{legacy}");
}

#[test]
fn the_runbooks_carry_each_entrys_advice() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/runbooks");
    let read = |name: &str| std::fs::read_to_string(root.join(name)).expect("the runbook exists");
    let (job, ordering) = (read("JobBlockedBySidecar.md"), read("MainStartedBeforeSidecarReady.md"));
    for entry in CATALOG {
        let row = format!("| {} (`catalog:{}`) | ", entry.product, entry.id);
        assert!(job.contains(&row), "JobBlockedBySidecar.md lists {}", entry.id);
        assert!(job.contains(&format!("| {} |", entry.job_remediation)), "{}: job advice", entry.id);
        assert!(ordering.contains(&format!("| {} |", entry.ordering_remediation)), "{}: ordering advice", entry.id);
    }
}

#[test]
fn the_opentelemetry_operators_injected_sidecar_and_the_aws_collector_are_recognised() {
    // The OpenTelemetry Operator injects `otc-container` (pkg/sidecar/pod.go), natively when
    // the cluster supports it, with its readiness probe as startup probe.
    let operator = json!({"name": "otc-container", "image": "ghcr.io/open-telemetry/opentelemetry-collector-releases/opentelemetry-collector:0.130.0",
        "args": ["--config=env:OTEL_CONFIG"], "restartPolicy": "Always",
        "ports": [{"containerPort": 8888, "name": "metrics"}, {"containerPort": 4317, "name": "otlp-grpc"}]});
    let mut legacy = operator.clone();
    strip_restart_policy(&mut legacy);
    assert_eq!(
        identified(&pod_with(legacy), &catalog_only()),
        [("otc-container".into(), "catalog:otel-collector".into())]
    );
    let adot =
        json!({"name": "aws-otel-collector", "image": "public.ecr.aws/aws-observability/aws-otel-collector:v0.43.1"});
    assert_eq!(
        identified(&pod_with(adot), &catalog_only()),
        [("aws-otel-collector".into(), "catalog:otel-collector".into())]
    );
}
