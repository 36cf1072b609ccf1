//! What the admission policy costs the API server on a 5,000-container Pod, measured with
//! `sidecar-watch-control-plane cel-cost` (`harness/control-plane/celcost.go`: kube-apiserver's own
//! CEL library, which reports what the server does not): within the request's budget and every
//! expression's limit, for the suite's hostile Pod and for Pods of the costliest kinds of
//! container, and every expression compiles with the CEL library of Kubernetes 1.30. The
//! figures are printed (`-- --nocapture`) and quoted in docs/admission-policies.md;
//! `admission.rs` checks what the server does with such Pods.

use std::path::Path;

use serde_json::{json, Value};
use sidecar_watch_harness::cel_cost;
use sidecar_watch_testkit::factory::flood_pod;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

#[test]
fn the_cost_of_a_5000_container_pod_is_within_the_api_servers_budget() {
    let policy = Path::new(ROOT).join("config/components/admission-policies/validatingadmissionpolicy.yaml");
    let dir = std::env::temp_dir().join(format!("sidecar-watch-cel-cost-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let pods = [
        ("the suite's flood Pod", flood_pod(5000)),
        ("5,000 plain containers", plain_containers(5000)),
        ("4,999 native sidecars", native_sidecars(5000)),
        ("4,999 Vault agents", vault_agents(5000)),
        ("4,997 init containers before istio-proxy", inits_before_a_mesh_proxy(5000)),
        ("5,000 plain containers that every injector is asked for", asks_every_injector(plain_containers(5000))),
        ("31 Cloud SQL Auth Proxies with 32 flags of 128 characters and 32 variables", cloud_sql_proxies(32, 32, 128)),
    ];
    for (what, pod) in pods {
        let file = dir.join("pod.json");
        std::fs::write(&file, pod.to_string()).expect("write");
        let report = cel_cost::evaluate(&policy, &file, None).expect("cel-cost");
        assert!(report.errors.is_empty(), "{what}: {:#?}", report.errors);
        assert!(
            report.compat_errors.is_empty(),
            "does not compile on Kubernetes {}: {:#?}",
            report.compat_version,
            report.compat_errors
        );
        let largest = report.variables.iter().max_by_key(|v| v.cost).expect("variables");
        eprintln!(
            "{what}: {} of {} cost units for the request; largest expression {} = {} of {}",
            report.total_cost, report.budget, largest.name, largest.cost, report.per_call_limit
        );
        assert!(report.total_cost < report.budget, "{what}: {report:#?}");
        assert!(largest.cost < report.per_call_limit, "{what}: {report:#?}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A Pod of one app and `n - 1` Vault Agent containers (the catalog entry that costs most to
/// recognise: image and command).
fn vault_agents(n: usize) -> Value {
    let mut containers = vec![json!({"name": "app", "image": "example/app:1.0"})];
    containers.extend((1..n).map(|i| {
        json!({"name": format!("v{i}"), "image": format!("registry.example.com/hashicorp/vault:1.{i}"),
               "args": ["agent", "-config=/etc/vault/config.hcl"]})
    }));
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "vault", "namespace": "shop"}, "spec": {"containers": containers}})
}

/// A Pod of one app and `n - 1` Cloud SQL Auth Proxies, each with `words` flags of `chars`
/// characters in `args` and as many in `command` and variables in `env`, none of them its
/// switches': every word read for their blind-spot checks.
fn cloud_sql_proxies(n: usize, words: usize, chars: usize) -> Value {
    let flags: Vec<String> = (0..words).map(|i| format!("--instance-{i:03}={:0>1$}", "p:r:db", chars - 15)).collect();
    let env: Vec<Value> = (0..words).map(|i| json!({"name": format!("CSQL_PROXY_X_{i}"), "value": "true"})).collect();
    let mut containers = vec![json!({"name": "app", "image": "example/app:1.0"})];
    containers.extend((1..n).map(|i| {
        json!({"name": format!("p{i}"), "image": "gcr.io/cloud-sql-connectors/cloud-sql-proxy:2.14.1",
               "command": flags, "args": flags, "env": env})
    }));
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "proxies", "namespace": "shop"}, "spec": {"containers": containers}})
}

/// A Pod of `n` containers none of which is a sidecar, each image looked up in the catalog.
fn plain_containers(n: usize) -> Value {
    let containers: Vec<Value> = (0..n)
        .map(|i| json!({"name": format!("c{i}"), "image": format!("registry.example.com:5000/team/app-{i}:1.0.{i}")}))
        .collect();
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "plain", "namespace": "shop"}, "spec": {"containers": containers}})
}

/// `pod` with the Pod marker of every injector that has one asking for its sidecar, none of
/// which it runs: `SidecarMissing` at its costliest (each expected sidecar looked for among
/// every container).
fn asks_every_injector(mut pod: Value) -> Value {
    use sidecar_watch::engine::{Inject, Place, INJECTORS};
    for marker in INJECTORS.iter().flat_map(|i| i.pod) {
        let value = match marker.inject {
            Inject::Never => continue,
            Inject::Any => "yes",
            Inject::Of(values) => values[0],
        };
        let place = if marker.place == Place::Label { "labels" } else { "annotations" };
        pod["metadata"][place][marker.key] = json!(value);
    }
    pod["metadata"]["ownerReferences"] =
        json!([{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "plain", "uid": "u", "controller": true}]);
    pod
}

/// A Pod of one app and `n - 1` native sidecars.
fn native_sidecars(n: usize) -> Value {
    let natives: Vec<Value> = (1..n)
        .map(|i| json!({"name": format!("n{i}"), "image": "envoyproxy/envoy:latest", "restartPolicy": "Always"}))
        .collect();
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "natives", "namespace": "shop"},
           "spec": {"initContainers": natives, "containers": [{"name": "app", "image": "example/app:1.0"}]}})
}

/// A Pod of Istio's CNI validator, `n - 3` plain init containers, a native istio-proxy and an
/// app: `init-before-proxy` at its costliest (it scans the first 64 init containers).
fn inits_before_a_mesh_proxy(n: usize) -> Value {
    let proxy = "docker.io/istio/proxyv2:1.27.0";
    let mut inits = vec![json!({"name": "istio-validation", "image": proxy})];
    inits.extend(
        (3..n).map(|i| json!({"name": format!("i{i}"), "image": format!("registry.example.com/team/init-{i}:1")})),
    );
    inits.push(json!({"name": "istio-proxy", "image": proxy, "restartPolicy": "Always"}));
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "mesh", "namespace": "shop"},
           "spec": {"initContainers": inits, "containers": [{"name": "app", "image": "example/app:1.0"}]}})
}
