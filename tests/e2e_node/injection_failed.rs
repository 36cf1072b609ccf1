//! `SidecarInjectionFailed` on a real node, against the real controllers: a Deployment whose
//! ReplicaSet cannot create a Pod because of a sidecar's injector. First what Kubernetes
//! itself writes — the ReplicaSet's `FailedCreate` Event, read back word for word — and what
//! the engine's [`classify_failed_create`] makes of that very message (this pins its unit
//! tests to reality); then what the operator shows: the alert on the Deployment in
//! `sidecar_alerts`, its Warning Event, and its resolution once Pods can be created.
//!
//! (a) A mutating webhook named as Istio's, failing closed, pointing at a closed port of this
//! machine and selecting only the test's namespace (labelled `istio-injection=enabled`);
//! (b) a namespace enforcing PodSecurity `baseline`: a Deployment with an `istio-init` adding
//! `NET_ADMIN` and `NET_RAW` fires, one whose app container adds them does not.

use std::time::Duration;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{Api, ListParams};
use serde_json::{json, Value};
use sidecar_watch::engine::{classify_failed_create, CatalogId, InjectionCause};
use sidecar_watch_harness::env::free_port;
use sidecar_watch_testkit::prom::Scrape;

use crate::support::{container, job, leader_metrics, wait, Scenario, MINUTE, POLICY};

/// A Deployment of one replica running `init` and `containers` (JSON).
pub(crate) fn deployment(name: &str, init: Vec<Value>, containers: Vec<Value>) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                "spec": {"initContainers": init, "containers": containers, "terminationGracePeriodSeconds": 2}}},
    })
}

/// The message of the `FailedCreate` Event of Deployment `name`'s ReplicaSet, once there is one.
pub(crate) async fn failed_create(s: &Scenario, name: &str) -> String {
    failed_create_of(s, "ReplicaSet", &format!("{name}-")).await
}

/// The message of the first `FailedCreate` Event on a `kind` whose name starts with `prefix`.
async fn failed_create_of(s: &Scenario, kind: &str, prefix: &str) -> String {
    let events: Api<Event> = Api::namespaced(s.env.client.clone(), &s.ns);
    let fields = ListParams::default().fields(&format!("reason=FailedCreate,involvedObject.kind={kind}"));
    let message = wait(MINUTE, &format!("the FailedCreate Event of {kind} {prefix}…"), || async {
        let list = events.list(&fields).await.map_err(|e| e.to_string())?;
        list.items
            .into_iter()
            .find(|e| e.involved_object.name.as_deref().is_some_and(|n| n.starts_with(prefix)))
            .and_then(|e| e.message)
            .ok_or_else(|| "none yet".to_string())
    })
    .await;
    eprintln!("FailedCreate of {kind} {prefix}… in {}: {message}", s.ns);
    message
}

/// Whether `sidecar_alerts` has the series of `SidecarInjectionFailed` on Deployment `name`
/// with `container`, firing, in the scenario's namespace under its policy.
pub(crate) fn firing(m: &Scrape, s: &Scenario, name: &str, container: &str) -> bool {
    let labels = [
        ("alertname", "SidecarInjectionFailed"),
        ("alertstate", "firing"),
        ("policy", POLICY),
        ("namespace", s.ns.as_str()),
        ("pod", ""),
        ("workload_kind", "Deployment"),
        ("workload", name),
        ("container", container),
    ];
    m.value("sidecar_alerts", &labels) == Some(1.0)
}

/// Any `SidecarInjectionFailed` series on Deployment `name`.
pub(crate) fn any_alert(m: &Scrape, s: &Scenario, name: &str) -> usize {
    let labels = [("alertname", "SidecarInjectionFailed"), ("namespace", s.ns.as_str()), ("workload", name)];
    m.find("sidecar_alerts", &labels).len()
}

/// The seed policy with a short `for` for the new rule. A CRD without
/// `rules.injectionFailed` prunes the field, which this names rather than wait for an alert.
pub(crate) async fn short_for(s: &Scenario) {
    let patch = json!({"spec": {"rules": {"injectionFailed": {"for": "5s"}}}}).to_string();
    let ns = s.ns.as_str();
    s.env
        .kubectl(["-n", ns, "patch", "sidecarpolicy", POLICY, "--type=merge", "-p", patch.as_str()])
        .await
        .expect("patched");
    let kept = s
        .env
        .kubectl(["-n", ns, "get", "sidecarpolicy", POLICY, "-o", "jsonpath={.spec.rules.injectionFailed.for}"])
        .await
        .expect("the policy");
    assert_eq!(
        kept.trim(),
        "5s",
        "the SidecarPolicy CRD has no rules.injectionFailed: the operator's SidecarInjectionFailed is not wired"
    );
}

/// Waits until the leader's `/metrics` satisfies `check`.
pub(crate) async fn until_metrics(s: &Scenario, what: &str, check: impl Fn(&Scrape) -> bool) {
    wait(MINUTE, what, || async {
        let m = leader_metrics(s).await;
        if check(&m) {
            Ok(())
        } else {
            Err(format!(
                "{:?}",
                m.alerts().into_iter().filter(|a| format!("{a:?}").contains(&s.ns)).collect::<Vec<_>>()
            ))
        }
    })
    .await;
}

/// The operator's Warning Events on Deployments: (reason, Deployment, field path).
pub(crate) async fn deployment_warnings(s: &Scenario) -> Vec<(String, String, String)> {
    s.events()
        .await
        .into_iter()
        .filter(|e| e.type_.as_deref() == Some("Warning"))
        .filter_map(|e| {
            let regarding = e.regarding?;
            (regarding.kind.as_deref() == Some("Deployment")).then(|| {
                (
                    e.reason.unwrap_or_default(),
                    regarding.name.unwrap_or_default(),
                    regarding.field_path.unwrap_or_default(),
                )
            })
        })
        .collect()
}

/// The namespace's Pods whose name starts with `prefix`.
async fn pods_of(s: &Scenario, prefix: &str) -> usize {
    let pods: Api<Pod> = Api::namespaced(s.env.client.clone(), &s.ns);
    let list = pods.list(&ListParams::default()).await.map(|l| l.items).unwrap_or_default();
    list.iter().filter(|p| p.metadata.name.as_deref().is_some_and(|n| n.starts_with(prefix))).count()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_injector_webhook_that_fails_closed_blocks_the_deployment() {
    let s = Scenario::start("node-inject-webhook").await;
    s.env.kubectl(["label", "namespace", s.ns.as_str(), "istio-injection=enabled"]).await.expect("labelled");
    // Named as Istio's; it selects only this namespace, so that a run that fails before the
    // end leaves nothing that blocks another test's Pods.
    let configuration = format!("istio-sidecar-injector-{}", s.ns);
    let selector = json!({"namespaceSelector": {"matchLabels": {"istio-injection": "enabled", "kubernetes.io/metadata.name": s.ns}}});
    let port = closed_webhook(&s, &configuration, "namespace.sidecar-injector.istio.io", selector).await;
    s.apply(deployment("web", vec![], vec![container("app", "exec sleep 3600", json!({}))])).await;

    let message = failed_create(&s, "web").await;
    let expected = format!(
        "Error creating: Internal error occurred: failed calling webhook \"namespace.sidecar-injector.istio.io\": failed to call webhook: Post \"https://127.0.0.1:{port}/inject?timeout=10s\": dial tcp 127.0.0.1:{port}: connect: connection refused"
    );
    assert_eq!(message, expected, "the ReplicaSet controller's words");
    let got = classify_failed_create("ReplicaSet", &message).expect("the engine reads it as ours");
    assert_eq!((got.catalog, got.cause), (CatalogId::by_id("istio"), InjectionCause::WebhookUnreachable));
    assert_eq!(
        (got.container.as_str(), got.webhook.as_deref()),
        ("istio-proxy", Some("namespace.sidecar-injector.istio.io"))
    );
    assert_eq!(
        got.summary,
        "Istio's injector webhook \"namespace.sidecar-injector.istio.io\" could not be called (refused the connection), and it fails closed"
    );
    assert_eq!(pods_of(&s, "web-").await, 0, "no Pod was created");

    // A StatefulSet's and a Job's words for the same refusal. The StatefulSet's verb is
    // lower case up to v1.34 (`strings.ToLower`), title case from v1.35 (`cases.Title`).
    let mut db = deployment("db", vec![], vec![container("app", "exec sleep 3600", json!({}))]);
    db["kind"] = json!("StatefulSet");
    db["spec"]["serviceName"] = json!("db");
    s.apply(db).await;
    s.apply(job("batch", vec![], vec![container("main", "true", json!({}))])).await;
    let minor: u32 =
        s.env.client.apiserver_version().await.expect("version").minor.trim_end_matches('+').parse().expect("minor");
    let verb = if minor >= 35 { "Create" } else { "create" };
    let error = expected.strip_prefix("Error creating: ").expect("the API server's error");
    let stateful = failed_create_of(&s, "StatefulSet", "db").await;
    assert_eq!(stateful, format!("{verb} Pod db-0 in StatefulSet db failed error: {error}"));
    let batch = failed_create_of(&s, "Job", "batch").await;
    assert_eq!(batch, expected, "the Job controller's words");
    for (kind, message) in [("StatefulSet", &stateful), ("Job", &batch)] {
        let read = classify_failed_create(kind, message).expect("ours");
        assert_eq!(
            (read.cause, read.container.as_str()),
            (InjectionCause::WebhookUnreachable, "istio-proxy"),
            "{kind}"
        );
    }

    // What the operator shows, once its wiring of SidecarInjectionFailed is merged.
    short_for(&s).await;
    until_metrics(&s, "SidecarInjectionFailed firing on Deployment web", |m| firing(m, &s, "web", "istio-proxy")).await;
    wait(MINUTE, "the Warning Event on Deployment web", || async {
        let got = deployment_warnings(&s).await;
        // No field path: istio-proxy is not in the template.
        let want = ("SidecarInjectionFailed".to_string(), "web".to_string(), String::new());
        if got.contains(&want) {
            Ok(())
        } else {
            Err(format!("{got:?}"))
        }
    })
    .await;

    // The webhook removed, the ReplicaSet retried at once (a change of it requeues it without
    // its back-off): Pods appear and the alert resolves.
    s.env.kubectl(["delete", "mutatingwebhookconfiguration", configuration.as_str()]).await.expect("deleted");
    let sets: Api<ReplicaSet> = Api::namespaced(s.env.client.clone(), &s.ns);
    for rs in sets.list(&ListParams::default().labels("app=web")).await.expect("ReplicaSets").items {
        let name = rs.metadata.name.unwrap_or_default();
        s.env
            .kubectl(["-n", s.ns.as_str(), "annotate", "rs", name.as_str(), "retry=now", "--overwrite"])
            .await
            .expect("annotated");
    }
    wait(MINUTE, "a Pod of Deployment web", || async {
        match pods_of(&s, "web-").await {
            0 => Err("none yet".to_string()),
            _ => Ok(()),
        }
    })
    .await;
    until_metrics(&s, "SidecarInjectionFailed gone from Deployment web", |m| any_alert(m, &s, "web") == 0).await;
    wait(MINUTE, "SidecarInjectionFailedResolved", || async {
        let events = s.events().await;
        match events.iter().any(|e| e.reason.as_deref() == Some("SidecarInjectionFailedResolved")) {
            true => Ok(()),
            false => Err(format!("{:?}", events.iter().map(|e| e.reason.clone()).collect::<Vec<_>>())),
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn pod_security_rejecting_istio_init_blocks_the_deployment_but_an_app_container_is_not_ours() {
    let s = Scenario::start("node-inject-podsecurity").await;
    s.env
        .kubectl(["label", "namespace", s.ns.as_str(), "pod-security.kubernetes.io/enforce=baseline"])
        .await
        .expect("labelled");
    let caps = json!({"securityContext": {"capabilities": {"add": ["NET_ADMIN", "NET_RAW"]}}});
    // A plain init container, as Istio's injector writes istio-init.
    let init = container("istio-init", "true", caps.clone());
    s.apply(deployment("meshed", vec![init], vec![container("app", "exec sleep 3600", json!({}))])).await;
    s.apply(deployment("privileged-app", vec![], vec![container("app", "exec sleep 3600", caps)])).await;

    let forbidden = |what: &str| {
        format!("\" is forbidden: violates PodSecurity \"baseline:latest\": non-default capabilities ({what} must not include \"NET_ADMIN\", \"NET_RAW\" in securityContext.capabilities.add)")
    };
    let meshed = failed_create(&s, "meshed").await;
    // `pods "<generated name>" is forbidden: …`: the name is the ReplicaSet's and random.
    assert!(meshed.starts_with("Error creating: pods \"meshed-"), "{meshed}");
    assert!(meshed.ends_with(&forbidden("container \"istio-init\"")), "{meshed}");
    let got = classify_failed_create("ReplicaSet", &meshed).expect("the engine reads it as ours");
    assert_eq!((got.catalog, got.cause), (CatalogId::by_id("istio"), InjectionCause::AdmissionRejected));
    assert_eq!((got.container.as_str(), got.webhook), ("istio-init", None));

    let app = failed_create(&s, "privileged-app").await;
    assert!(app.starts_with("Error creating: pods \"privileged-app-"), "{app}");
    assert!(app.ends_with(&forbidden("container \"app\"")), "{app}");
    assert_eq!(classify_failed_create("ReplicaSet", &app), None, "an app container is not a sidecar's");

    // What the operator shows, once its wiring of SidecarInjectionFailed is merged.
    short_for(&s).await;
    until_metrics(&s, "SidecarInjectionFailed firing on Deployment meshed", |m| firing(m, &s, "meshed", "istio-init"))
        .await;
    let field = "spec.template.spec.initContainers{istio-init}".to_string();
    wait(MINUTE, "the Warning Event on Deployment meshed", || async {
        let got = deployment_warnings(&s).await;
        if got.contains(&("SidecarInjectionFailed".to_string(), "meshed".to_string(), field.clone())) {
            Ok(())
        } else {
            Err(format!("{got:?}"))
        }
    })
    .await;
    // Past the rule's `for` twice over: still nothing for the app container's Deployment.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let m = leader_metrics(&s).await;
    assert_eq!(any_alert(&m, &s, "privileged-app"), 0, "{:?}", m.alerts());
    let warnings = deployment_warnings(&s).await;
    assert!(warnings.iter().all(|(_, name, _)| name != "privileged-app"), "{warnings:?}");
}

/// A rollout the injector rejects, undone: Deployment `web` (2 replicas, `maxUnavailable: 0`)
/// runs; its new template carries the Pod label the (closed) webhook selects, so the new
/// ReplicaSet cannot create its Pod and the alert fires while both old Pods keep serving.
/// `kubectl rollout undo` scales the new ReplicaSet to zero and creates no Pod: the alert
/// resolves by the failing ReplicaSet's own state (within one 15 s re-read), though its
/// `FailedCreate` Event stays, and the old Pods are never touched.
#[tokio::test(flavor = "multi_thread")]
async fn rollout_undo_of_a_template_the_injector_rejects_resolves_it() {
    let s = Scenario::start("node-inject-undo").await;
    let configuration = closed_object_webhook(&s).await;
    let mut web = deployment("web", vec![], vec![container("app", "exec sleep 3600", json!({}))]);
    web["spec"]["replicas"] = json!(2);
    web["spec"]["strategy"] = json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}});
    s.apply(web).await;
    short_for(&s).await;
    let ns = s.ns.as_str();
    let rolled = ["-n", ns, "rollout", "status", "deployment/web", "--timeout=60s"];
    s.env.kubectl(rolled).await.expect("web rolled out");
    let before = live_pod_names(&s).await;
    assert_eq!(before.len(), 2, "{before:?}");

    let inject = json!({"spec": {"template": {"metadata": {"labels": {"sidecar.istio.io/inject": "true"}}}}});
    let patch = inject.to_string();
    s.env
        .kubectl(["-n", ns, "patch", "deployment", "web", "--type=merge", "-p", patch.as_str()])
        .await
        .expect("patched");
    let message = failed_create(&s, "web").await;
    assert!(message.contains("object.sidecar-injector.istio.io"), "{message}");
    until_metrics(&s, "SidecarInjectionFailed firing on Deployment web", |m| firing(m, &s, "web", "istio-proxy")).await;
    assert_eq!(live_pod_names(&s).await, before, "maxUnavailable 0: the old Pods serve on");

    s.env.kubectl(["-n", ns, "rollout", "undo", "deployment/web"]).await.expect("kubectl rollout undo");
    let undone = std::time::Instant::now();
    until_metrics(&s, "SidecarInjectionFailed gone after the undo", |m| any_alert(m, &s, "web") == 0).await;
    // One 15 s re-read of the failing ReplicaSet, its answer, and the scrape.
    assert!(undone.elapsed() < Duration::from_secs(30), "resolved {:?} after the undo", undone.elapsed());
    wait(MINUTE, "SidecarInjectionFailedResolved on Deployment web", || async {
        let events = s.events().await;
        let resolved = events.iter().any(|e| {
            e.reason.as_deref() == Some("SidecarInjectionFailedResolved")
                && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("web")
        });
        resolved
            .then_some(())
            .ok_or_else(|| format!("{:?}", events.iter().map(|e| e.reason.clone()).collect::<Vec<_>>()))
    })
    .await;
    assert_eq!(failed_create(&s, "web").await, message, "the Event stays; the alert went with the ReplicaSet's state");
    assert_eq!(live_pod_names(&s).await, before, "the undo created and deleted no Pod");
    s.env.kubectl(["delete", "mutatingwebhookconfiguration", configuration.as_str()]).await.expect("deleted");
}

/// A mutating webhook configuration `configuration` with the one webhook `name` (named as an
/// injector's), selecting Pods by `selectors` (its `namespaceSelector` and `objectSelector`),
/// failing closed and pointing at a closed port of this machine, which it returns. It is
/// cluster-scoped: the caller deletes it.
async fn closed_webhook(s: &Scenario, configuration: &str, name: &str, selectors: Value) -> u16 {
    let port = free_port().expect("a closed port");
    let mut webhook = json!({
        "name": name,
        "clientConfig": {"url": format!("https://127.0.0.1:{port}/inject")},
        "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]}],
        "failurePolicy": "Fail", "sideEffects": "None", "admissionReviewVersions": ["v1"],
    });
    for (key, value) in selectors.as_object().into_iter().flatten() {
        webhook[key] = value.clone();
    }
    let configuration = json!({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": configuration}, "webhooks": [webhook],
    });
    s.env.kubectl_apply(&configuration.to_string()).await.expect("webhook configuration");
    port
}

/// Istio's revision webhook, closed, for Pods labelled `sidecar.istio.io/inject: "true"` of
/// the scenario's namespace only; returns its configuration's name.
pub(crate) async fn closed_object_webhook(s: &Scenario) -> String {
    let configuration = format!("istio-revision-injector-{}", s.ns);
    let selectors = json!({
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": s.ns}},
        "objectSelector": {"matchLabels": {"sidecar.istio.io/inject": "true"}},
    });
    closed_webhook(s, &configuration, "object.sidecar-injector.istio.io", selectors).await;
    configuration
}

/// The names of the namespace's Pods that are not being deleted, sorted.
pub(crate) async fn live_pod_names(s: &Scenario) -> Vec<String> {
    let pods: Api<Pod> = Api::namespaced(s.env.client.clone(), &s.ns);
    let list = pods.list(&ListParams::default()).await.map(|l| l.items).unwrap_or_default();
    let mut names: Vec<String> =
        list.into_iter().filter(|p| p.metadata.deletion_timestamp.is_none()).filter_map(|p| p.metadata.name).collect();
    names.sort();
    names
}
