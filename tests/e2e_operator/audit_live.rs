//! The live `audit` (no `-f`) against a real kube-apiserver (a control plane of the test's
//! own, so the CRDs start absent): Pods listed in pages, the built-in policy while the CRDs
//! are absent, the cluster's policies once they exist, `--policy` over them, `-n` versus
//! `-A`, a `FailedCreate` Event read as the offline audit reads it, and nothing but
//! read-only calls (`list`, and a `get` of the object that Event names): the audit runs as a
//! ServiceAccount holding only docs/audit.md's `sidecar-watch-auditor` ClusterRole (any other
//! call is a 403), and kube-apiserver's audit log shows exactly which calls it made.

use std::process::Output;

use futures::{stream, StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DynamicObject, PostParams};
use kube::core::ApiResource;
use serde_json::{json, Value};
use sidecar_watch::api::{ClusterSidecarPolicy, SidecarPolicy};
use sidecar_watch::kubeconfig::USER_AGENT;
use sidecar_watch_harness::control_plane::{AuditLog, Options};
use sidecar_watch_harness::env::TestEnv;
use sidecar_watch_testkit::audit::{json, text, Audit};

/// The operator's binary, as the audit runs it.
const SIDECAR_WATCH: Audit = Audit::new(env!("CARGO_BIN_EXE_sidecar-watch"));

/// More than two pages of the live audit's 500.
const PODS: usize = 1100;

/// docs/audit.md's role for a CI account auditing every namespace.
const AUDITOR_ROLE: &str = "apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: sidecar-watch-auditor}
rules:
  - {apiGroups: [\"\"], resources: [pods, namespaces, events], verbs: [list]}
  - {apiGroups: [sidecarwatch.io], resources: [sidecarpolicies, clustersidecarpolicies], verbs: [list]}
  - {apiGroups: [apps], resources: [replicasets, statefulsets, daemonsets], verbs: [get]}
  - {apiGroups: [batch], resources: [jobs, cronjobs], verbs: [get]}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: auditor, namespace: default}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: sidecar-watch-auditor}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: sidecar-watch-auditor}
subjects: [{kind: ServiceAccount, name: auditor, namespace: default}]
";

/// The live audit at a fixed instant, as JSON, `--fail-on none`.
fn audit(kubeconfig: &std::path::Path, args: &[&str]) -> Output {
    let kubeconfig = kubeconfig.to_str().expect("a UTF-8 path");
    let fixed = ["--kubeconfig", kubeconfig, "--now", "2026-01-01T00:00:00Z", "--fail-on", "none", "-o", "json"];
    SIDECAR_WATCH.run(&[&fixed[..], args].concat(), None)
}

fn findings(out: &Output) -> Vec<Value> {
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    json(out)
}

fn pods_with(findings: &[Value], check: &str) -> std::collections::BTreeSet<String> {
    findings.iter().filter(|f| f["check"] == check).filter_map(|f| f["pod"].as_str().map(str::to_string)).collect()
}

fn pod(namespace: &str, name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": namespace,
           "labels": {"app": "web"}, "creationTimestamp": "2025-12-31T23:00:00Z"},
           "spec": {"containers": [{"name": "app", "image": "shop/web:1"},
                                   {"name": "log-sidecar", "image": "fluent/fluent-bit:3.0.4",
                                    "readinessProbe": {"httpGet": {"port": 2020}}, "resources": {"requests": {"cpu": "10m"}}}]}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_audit_as_a_list_only_account_reads_only_lists() {
    let audit_log = AuditLog::new().expect("an audit policy");
    let options = Options { apiserver_args: audit_log.apiserver_args(), ..Options::default() };
    let env = TestEnv::start_control_plane(options).await.expect("control plane");
    env.assert_reached_server().await.expect("/version");
    env.kubectl_apply(AUDITOR_ROLE).await.expect("auditor role");
    let kubeconfig = env.dir().join("kubeconfig-auditor");
    sidecar_watch_harness::install::service_account_kubeconfig(&env, "default", "auditor", &kubeconfig)
        .await
        .expect("auditor token");
    pages_through_pods_and_uses_the_clusters_policies(&env, &kubeconfig).await;
    reads_failed_create_events_as_offline(&env, &kubeconfig).await;

    // Read-only, as kube-apiserver logged it: every request of the audit was a list, made as
    // the auditor, but for the one object a FailedCreate Event named; no discovery, no
    // /version, no watch.
    let requests = audit_log.requests_by(USER_AGENT).expect("kube-apiserver's audit log");
    assert!(!requests.is_empty(), "no request by {USER_AGENT} in {}", audit_log.path().display());
    for r in &requests {
        assert_eq!(r.user, "system:serviceaccount:default:auditor", "{r:?}");
    }
    let mut calls: Vec<(&str, &str)> = requests.iter().map(|r| (r.verb.as_str(), r.resource.as_str())).collect();
    calls.sort_unstable();
    calls.dedup();
    assert_eq!(
        calls,
        [
            ("get", "replicasets"),
            ("list", "clustersidecarpolicies"),
            ("list", "events"),
            ("list", "namespaces"),
            ("list", "pods"),
            ("list", "sidecarpolicies")
        ]
    );
    // Events listed only with the server-side selector on the reason, never all of them.
    let events: Vec<_> = requests.iter().filter(|r| r.resource == "events").collect();
    assert!(events.iter().all(|r| r.request_uri.contains("fieldSelector=reason%3DFailedCreate")), "{events:#?}");
    // Each answered with a 2xx, but the policy lists of the two audits run before the CRDs
    // existed: a 404 each, which is how the audit knows to use the built-in policy.
    let not_found: Vec<&str> = requests.iter().filter(|r| r.code == Some(404)).map(|r| r.resource.as_str()).collect();
    assert_eq!(not_found, ["sidecarpolicies", "clustersidecarpolicies", "sidecarpolicies", "clustersidecarpolicies"]);
    let failed: Vec<_> =
        requests.iter().filter(|r| r.code != Some(404) && !r.code.is_some_and(|c| (200..300).contains(&c))).collect();
    assert!(failed.is_empty(), "{failed:#?}");
}

/// The audit, run with `kubeconfig`, over Pods in two namespaces without and with policies.
async fn pages_through_pods_and_uses_the_clusters_policies(env: &TestEnv, kubeconfig: &std::path::Path) {
    for ns in ["shop", "batch"] {
        env.create_namespace(ns).await.expect("namespace");
    }
    let (shop, batch): (Api<Pod>, Api<Pod>) =
        (Api::namespaced(env.client.clone(), "shop"), Api::namespaced(env.client.clone(), "batch"));
    stream::iter(0..PODS)
        .map(|i| {
            let (api, ns) = if i % 11 == 0 { (&batch, "batch") } else { (&shop, "shop") };
            let object: Pod = serde_json::from_value(pod(ns, &format!("web-{i:04}"))).expect("a Pod");
            async move { api.create(&PostParams::default(), &object).await }
        })
        .buffer_unordered(16)
        .try_collect::<Vec<_>>()
        .await
        .expect("Pods created");

    // No CRDs: the built-in policy, on every Pod of every page.
    let out = audit(kubeconfig, &["-A"]);
    let stderr = text(&out.stderr);
    assert!(stderr.contains("CRD is not installed; using the built-in policy"), "{stderr}");
    let all = findings(&out);
    assert_eq!(pods_with(&all, "legacy-sidecar").len(), PODS, "every Pod, across pages");
    assert!(all.iter().all(|f| f["policy"] == "default" && f["identified_by"] == "catalog:fluent-bit"));

    // One namespace: the context's default or -n.
    let batch_only = findings(&audit(kubeconfig, &["-n", "batch"]));
    assert_eq!(pods_with(&batch_only, "legacy-sidecar").len(), PODS.div_ceil(11));
    assert!(batch_only.iter().all(|f| f["namespace"] == "batch"));

    // With the CRDs and the cluster's own policies: those are used.
    env.install_crds(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("crds")).await.expect("CRDs");
    let cluster = ApiResource::erase::<ClusterSidecarPolicy>(&());
    let namespaced = ApiResource::erase::<SidecarPolicy>(&());
    let create = |api: Api<DynamicObject>, object: Value| async move {
        let object: DynamicObject = serde_json::from_value(object).expect("a policy");
        api.create(&PostParams::default(), &object).await.expect("created")
    };
    create(
        Api::all_with(env.client.clone(), &cluster),
        json!({"apiVersion": "sidecarwatch.io/v1alpha1", "kind": "ClusterSidecarPolicy", "metadata": {"name": "platform"},
               "spec": {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "batch"}}}}),
    )
    .await;
    create(
        Api::namespaced_with(env.client.clone(), "shop", &namespaced),
        json!({"apiVersion": "sidecarwatch.io/v1alpha1", "kind": "SidecarPolicy", "metadata": {"name": "mesh", "namespace": "shop"},
               "spec": {"rules": {"misconfiguration": {"severity": "warning"}}}}),
    )
    .await;
    let with_policies = findings(&audit(kubeconfig, &["-A"]));
    for f in &with_policies {
        let expected = if f["namespace"] == "shop" { ("mesh", "warning") } else { ("platform", "info") };
        assert_eq!((f["policy"].as_str(), f["severity"].as_str()), (Some(expected.0), Some(expected.1)), "{f}");
    }
    assert_eq!(pods_with(&with_policies, "legacy-sidecar").len(), PODS);

    // --policy wins over the cluster's.
    let file = env.dir().join("strict.yaml");
    std::fs::write(
        &file,
        "apiVersion: sidecarwatch.io/v1alpha1\nkind: ClusterSidecarPolicy\nmetadata: {name: ci}\nspec: {sidecars: {catalog: false, native: true}}\n",
    )
    .expect("write");
    let overridden = findings(&audit(kubeconfig, &["-A", "--policy", file.to_str().expect("utf-8")]));
    assert!(overridden.is_empty(), "without the catalog no container of these Pods is a sidecar: {overridden:?}");
}

/// A ReplicaSet of Deployment web and the ReplicaSet controller's `FailedCreate` Event
/// naming Istio's unreachable injection webhook (this control plane runs no controllers, so
/// both stay as written): the live audit reads the Event and the ReplicaSet and reports
/// `SidecarInjectionFailed` on Deployment/web, exactly as the offline audit of the same
/// objects does.
async fn reads_failed_create_events_as_offline(env: &TestEnv, kubeconfig: &std::path::Path) {
    let replicasets = ApiResource::from_gvk(&kube::core::GroupVersionKind::gvk("apps", "v1", "ReplicaSet"));
    let replicaset: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": "web-7d9f8c6b5", "namespace": "shop",
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web",
                                 "uid": "1c3bd5a0-0000-4000-8000-000000000001", "controller": true}]},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web", "pod-template-hash": "7d9f8c6b5"}},
            "template": {"metadata": {"labels": {"app": "web", "pod-template-hash": "7d9f8c6b5"}},
                "spec": {"containers": [{"name": "app", "image": "shop/web:1"}]}}}}))
    .expect("a ReplicaSet");
    let replicaset = Api::<DynamicObject>::namespaced_with(env.client.clone(), "shop", &replicasets)
        .create(&PostParams::default(), &replicaset)
        .await
        .expect("ReplicaSet created");
    let message = "Error creating: Internal error occurred: failed calling webhook \"namespace.sidecar-injector.istio.io\": \
        failed to call webhook: Post \"https://istiod.istio-system.svc:443/inject?timeout=10s\": dial tcp 10.96.0.10:443: \
        connect: connection refused";
    let event: k8s_openapi::api::core::v1::Event = serde_json::from_value(json!({
        "metadata": {"name": "web-7d9f8c6b5.1800a", "namespace": "shop"},
        "involvedObject": {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-7d9f8c6b5", "namespace": "shop",
                           "uid": replicaset.metadata.uid},
        "reason": "FailedCreate", "message": message, "type": "Warning", "count": 3,
        "source": {"component": "replicaset-controller"},
        "firstTimestamp": "2025-12-31T23:50:00Z", "lastTimestamp": "2025-12-31T23:55:00Z"}))
    .expect("an Event");
    let event = Api::<k8s_openapi::api::core::v1::Event>::namespaced(env.client.clone(), "shop")
        .create(&PostParams::default(), &event)
        .await
        .expect("Event created");

    let injection = |findings: Vec<Value>| -> Vec<Value> {
        findings.into_iter().filter(|f| f["alertname"] == "SidecarInjectionFailed").collect()
    };
    // A tenant's Event that nobody can decode (a time past jiff's range, stored as written)
    // is said and left out, not the list it is in.
    let events = ApiResource::erase::<k8s_openapi::api::core::v1::Event>(&());
    let forged: DynamicObject = serde_json::from_value(json!({"apiVersion": "v1", "kind": "Event",
        "metadata": {"name": "forged", "namespace": "shop"},
        "involvedObject": {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-7d9f8c6b5", "namespace": "shop"},
        "reason": "FailedCreate", "message": message, "type": "Warning", "lastTimestamp": "9999-12-31T23:59:59Z"}))
    .expect("an Event");
    Api::<DynamicObject>::namespaced_with(env.client.clone(), "shop", &events)
        .create(&PostParams::default(), &forged)
        .await
        .expect("kube-apiserver stores it");
    // One whose object's name (which no API server checks on an Event) would rewrite the
    // terminal: the object cannot be read, and the message says so with the name quoted.
    let hostile: k8s_openapi::api::core::v1::Event = serde_json::from_value(json!({
        "metadata": {"name": "hostile", "namespace": "shop"},
        "involvedObject": {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "x\u{1b}[2J\nforged line",
                           "namespace": "shop", "uid": "1c3bd5a0-0000-4000-8000-000000000099"},
        "reason": "FailedCreate", "message": message, "type": "Warning", "count": 1,
        "firstTimestamp": "2025-12-31T23:50:00Z", "lastTimestamp": "2025-12-31T23:55:00Z"}))
    .expect("an Event");
    Api::<k8s_openapi::api::core::v1::Event>::namespaced(env.client.clone(), "shop")
        .create(&PostParams::default(), &hostile)
        .await
        .expect("kube-apiserver stores it");
    // Under the namespace's own policy, as the operator would report it.
    let out = audit(kubeconfig, &["-n", "shop"]);
    let said = text(&out.stderr);
    assert!(said.contains("skipping Event shop/forged: lastTimestamp: "), "{said}");
    assert!(!said.contains('\u{1b}') && !said.contains("\nforged line"), "{said:?}");
    let live = injection(findings(&out));
    let [finding] = &live[..] else { panic!("one finding: {live:#?}") };
    assert_eq!(
        (&finding["workload_kind"], &finding["workload"], &finding["container"], &finding["state"], &finding["policy"]),
        (&json!("Deployment"), &json!("web"), &json!("istio-proxy"), &json!("firing"), &json!("mesh")),
        "{finding:#}"
    );
    // The same objects offline, under one policy file for both: the same finding.
    let policy = env.dir().join("every-default.yaml");
    std::fs::write(
        &policy,
        "apiVersion: sidecarwatch.io/v1alpha1\nkind: ClusterSidecarPolicy\nmetadata: {name: ci}\nspec: {}\n",
    )
    .expect("write");
    let policy = policy.to_str().expect("utf-8");
    let live = injection(findings(&audit(kubeconfig, &["-n", "shop", "--policy", policy])));
    let dump = env.dir().join("failed-create.json");
    let objects = json!({"apiVersion": "v1", "kind": "List", "items": [replicaset, event]});
    std::fs::write(&dump, objects.to_string()).expect("write");
    let fixed = ["--now", "2026-01-01T00:00:00Z", "--fail-on", "none", "-o", "json", "--policy", policy];
    let offline = SIDECAR_WATCH.run(&[&["-f", dump.to_str().expect("utf-8")][..], &fixed[..]].concat(), None);
    assert_eq!(live.len(), 1, "{live:#?}");
    assert_eq!(injection(findings(&offline)), live, "offline and live agree");
}
