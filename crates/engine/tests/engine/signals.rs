//! `SidecarMisconfigured`'s blind-spot checks: a catalog sidecar whose own metrics or health
//! endpoint its arguments, environment or the Pod's annotations switch off or put out of
//! Prometheus's reach (`metrics-disabled`, `metrics-unreachable`, `health-check-disabled`),
//! one product at a time: off fires with the exact message, the default or on fires nothing.

use serde_json::{json, Value};
use sidecar_watch_engine::{evaluate, signal_texts as texts, Around, Check, CompiledPolicy, PodHistory};
use sidecar_watch_testkit::engine::view;

/// A Pod with `annotations` and one native sidecar `sidecar`, probed and with resources so
/// that only the blind-spot checks can fire on it.
fn pod(annotations: Value, sidecar: Value) -> Value {
    let mut sidecar = sidecar;
    let base = json!({"restartPolicy": "Always", "readinessProbe": {"tcpSocket": {"port": 1}},
                      "startupProbe": {"tcpSocket": {"port": 1}}, "resources": {"requests": {"cpu": "10m"}}});
    if let (Some(fields), Some(more)) = (sidecar.as_object_mut(), base.as_object()) {
        fields.extend(more.clone());
    }
    json!({"metadata": {"name": "web-1", "namespace": "shop", "uid": "u1", "creationTimestamp": "2025-06-03T10:00:00Z",
                        "annotations": annotations},
           "spec": {"initContainers": [sidecar],
                    "containers": [{"name": "app", "image": "shop/web:1", "readinessProbe": {"httpGet": {"port": 8080}},
                                    "resources": {"requests": {"cpu": "1"}}}]}})
}

/// `(check, message)` of every `SidecarMisconfigured` alert.
fn blindspots(pod: &Value) -> Vec<(Check, String)> {
    let view = view(pod);
    let evaluation = evaluate(
        &view,
        &CompiledPolicy::builtin(),
        &PodHistory::default(),
        sidecar_watch_testkit::engine::now(),
        Around::default(),
    );
    evaluation.alerts.into_iter().filter_map(|a| Some((a.check?, a.message))).collect()
}

fn message(container: &str, text: &str) -> String {
    format!("Sidecar {container} in Pod shop/web-1 {text}")
}

fn git_sync(args: Value, env: Value) -> Value {
    json!({"name": "git-sync", "image": "registry.k8s.io/git-sync/git-sync:v4.4.0", "args": args, "env": env})
}

#[test]
fn git_sync_without_its_http_endpoint_or_metrics_is_a_blind_spot() {
    let off = vec![(Check::MetricsDisabled, message("git-sync", texts::GIT_SYNC_METRICS_OFF))];
    assert_eq!(blindspots(&pod(json!({}), git_sync(json!(["--repo=https://x/r", "--period=30s"]), json!(null)))), off);
    assert_eq!(
        blindspots(&pod(json!({}), git_sync(json!(["--http-bind=:8080"]), json!(null)))),
        off,
        "v4: no /metrics"
    );
    assert_eq!(blindspots(&pod(json!({}), git_sync(json!(["--http-bind=", "--http-metrics"]), json!(null)))), off);
    for (args, env) in [
        (json!(["--http-bind=:8080", "--http-metrics"]), json!(null)),
        (json!(["--http-bind", "0.0.0.0:8080", "--http-metrics=true"]), json!([])),
        (
            json!([]),
            json!([{"name": "GITSYNC_HTTP_BIND", "value": ":8080"}, {"name": "GITSYNC_HTTP_METRICS", "value": "true"}]),
        ),
    ] {
        assert_eq!(blindspots(&pod(json!({}), git_sync(args.clone(), env))), [], "{args}");
    }
    // v3 serves /metrics on its endpoint unless told not to.
    let v3 = json!({"name": "git-sync", "image": "k8s.gcr.io/git-sync/git-sync:v3.6.9", "args": ["--http-bind=:8080"]});
    assert_eq!(blindspots(&pod(json!({}), v3)), []);
    // A flag wins over the environment.
    let flag_off = git_sync(
        json!(["--http-bind=:8080", "--http-metrics=false"]),
        json!([{"name": "GITSYNC_HTTP_METRICS", "value": "true"}]),
    );
    assert_eq!(blindspots(&pod(json!({}), flag_off)), off);
}

fn cloud_sql(args: Value) -> Value {
    json!({"name": "cloud-sql-proxy", "image": "gcr.io/cloud-sql-connectors/cloud-sql-proxy:2.14.1", "args": args})
}

#[test]
fn the_cloud_sql_proxy_without_prometheus_or_health_check_or_on_localhost_is_a_blind_spot() {
    let at = |text| (Check::MetricsDisabled, message("cloud-sql-proxy", text));
    let stock = blindspots(&pod(json!({}), cloud_sql(json!(["--structured-logs", "p:r:i"]))));
    assert_eq!(
        stock,
        [
            at(texts::CLOUD_SQL_METRICS_OFF),
            (Check::HealthCheckDisabled, message("cloud-sql-proxy", texts::CLOUD_SQL_HEALTH_CHECK_OFF))
        ]
    );
    let local = blindspots(&pod(json!({}), cloud_sql(json!(["--prometheus", "--health-check", "p:r:i"]))));
    assert_eq!(local, [(Check::MetricsUnreachable, message("cloud-sql-proxy", texts::CLOUD_SQL_METRICS_LOCAL))]);
    let loopback = cloud_sql(json!(["--prometheus", "--health-check", "--http-address=127.0.0.1", "p:r:i"]));
    assert_eq!(blindspots(&pod(json!({}), loopback)).len(), 1);
    let on = cloud_sql(json!(["--prometheus", "--health-check", "--http-address", "0.0.0.0", "p:r:i"]));
    assert_eq!(blindspots(&pod(json!({}), on)), []);
    let env = json!({"name": "cloud-sql-proxy", "image": "gcr.io/cloud-sql-connectors/cloud-sql-proxy:2.14.1",
        "env": [{"name": "CSQL_PROXY_PROMETHEUS", "value": "true"}, {"name": "CSQL_PROXY_HEALTH_CHECK", "value": "1"},
                {"name": "CSQL_PROXY_HTTP_ADDRESS", "value": "0.0.0.0"}]});
    assert_eq!(blindspots(&pod(json!({}), env)), []);
}

fn daprd() -> Value {
    json!({"name": "daprd", "image": "ghcr.io/dapr/daprd:1.15.4", "args": ["/daprd", "--enable-metrics=false"]})
}

#[test]
fn dapr_with_metrics_switched_off_by_its_annotation_is_a_blind_spot_read_as_its_injector_reads_it() {
    let off = vec![(Check::MetricsDisabled, message("daprd", texts::DAPR_METRICS_OFF))];
    for value in ["false", "FALSE", "0", "no", "off"] {
        assert_eq!(
            blindspots(&pod(json!({"dapr.io/enabled": "true", "dapr.io/enable-metrics": value}), daprd())),
            off,
            "{value}"
        );
    }
    for annotations in [
        json!({"dapr.io/enabled": "true"}),
        json!({"dapr.io/enable-metrics": "True"}),
        json!({"dapr.io/enable-metrics": ""}),
    ] {
        assert_eq!(blindspots(&pod(annotations.clone(), daprd())), [], "{annotations}");
    }
    // A huge value is cut where it is decoded, and still reads as Dapr reads it.
    let huge = "x".repeat(1 << 20);
    assert_eq!(blindspots(&pod(json!({"dapr.io/enable-metrics": huge}), daprd())), off);
}

#[test]
fn an_istio_pod_opted_out_of_the_metrics_merge_is_a_blind_spot_read_with_parse_bool() {
    let proxy = json!({"name": "istio-proxy", "image": "docker.io/istio/proxyv2:1.24.0"});
    let unmerged = vec![(Check::MetricsUnreachable, message("istio-proxy", texts::ISTIO_NOT_MERGED))];
    for value in ["false", "FALSE", "0", "f"] {
        assert_eq!(
            blindspots(&pod(json!({"prometheus.istio.io/merge-metrics": value}), proxy.clone())),
            unmerged,
            "{value}"
        );
    }
    // True, or a value ParseBool refuses (the mesh's setting then applies: on by default).
    for value in ["true", "no", ""] {
        assert_eq!(blindspots(&pod(json!({"prometheus.istio.io/merge-metrics": value}), proxy.clone())), [], "{value}");
    }
}

#[test]
fn vault_agent_without_telemetry_is_a_blind_spot_unless_its_own_configuration_may_hold_it() {
    let agent = json!({"name": "vault-agent", "image": "hashicorp/vault:1.19.0", "args": ["echo ${VAULT_CONFIG?} | base64 -d > /home/vault/config.json && vault agent -config=/home/vault/config.json"], "command": ["/bin/sh", "-ec"]});
    let inject = json!({"vault.hashicorp.com/agent-inject": "true"});
    assert_eq!(
        blindspots(&pod(inject, agent.clone())),
        [(Check::MetricsDisabled, message("vault-agent", texts::VAULT_NO_TELEMETRY))]
    );
    let telemetry = json!({"vault.hashicorp.com/agent-inject": "true", "vault.hashicorp.com/agent-telemetry-prometheus_retention_time": "30s"});
    assert_eq!(blindspots(&pod(telemetry, agent.clone())), []);
    let own_config =
        json!({"vault.hashicorp.com/agent-inject": "true", "vault.hashicorp.com/agent-configmap": "my-agent"});
    assert_eq!(blindspots(&pod(own_config, agent)), []);
}

#[test]
fn products_whose_signal_no_pod_setting_turns_off_fire_nothing() {
    for sidecar in [
        json!({"name": "linkerd-proxy", "image": "cr.l5d.io/linkerd/proxy:edge-25.1.1"}),
        json!({"name": "otc-container", "image": "otel/opentelemetry-collector-contrib:0.120.0", "args": ["--prometheus"]}),
        json!({"name": "fluent-bit", "image": "fluent/fluent-bit:3.2", "args": ["--http-bind="]}),
        json!({"name": "my-sidecar", "image": "shop/thing:1", "args": ["--prometheus=false"]}),
    ] {
        assert_eq!(blindspots(&pod(json!({"dapr.io/enable-metrics": "false"}), sidecar.clone())), [], "{sidecar}");
    }
}

#[test]
fn odd_arguments_never_fail_a_pod_or_fire_a_check_they_do_not_state() {
    for args in [
        json!(["--http-bind"]),
        json!(["--\u{0}http-bind=:1", "--http-bind=\u{7f}"]),
        json!(["—http-bind=:1"]),
        json!(null),
    ] {
        let found = blindspots(&pod(
            json!({}),
            git_sync(args.clone(), json!([{"name": "GITSYNC_HTTP_BIND"}, {"valueFrom": {}}])),
        ));
        assert_eq!(found.iter().map(|(c, _)| *c).collect::<Vec<_>>(), [Check::MetricsDisabled], "{args}");
    }
}
