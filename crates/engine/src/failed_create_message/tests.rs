//! Each controller's `FailedCreate` format in each release we support, each injector's
//! webhooks, PodSecurity and invalid Pods, and messages that are forged, huge or garbled.
//! The messages are built as the Kubernetes code cited in the module's table builds them.

use super::*;

/// Webhook call failure as kube-apiserver words it (`NewInternalError(ErrCallingWebhook)`).
fn unreachable(webhook: &str, net: &str) -> String {
    format!(
        "Internal error occurred: failed calling webhook \"{webhook}\": failed to call webhook: Post \"https://istiod.istio-system.svc:443/inject?timeout=10s\": {net}"
    )
}

/// The controllers' wrappings of an API error, per release: (kind, message).
fn wrapped(error: &str) -> Vec<(&'static str, String)> {
    vec![
        ("ReplicaSet", format!("Error creating: {error}")),
        ("ReplicationController", format!("Error creating: {error}")),
        ("DaemonSet", format!("Error creating: {error}")),
        ("Job", format!("Error creating: {error}")),
        // v1.33 and v1.34: strings.ToLower(verb).
        ("StatefulSet", format!("create Pod web-0 in StatefulSet web failed error: {error}")),
        // v1.35 and later: cases.Title(language.English).String(verb).
        ("StatefulSet", format!("Create Pod web-0 in StatefulSet web failed error: {error}")),
        ("CronJob", format!("Error creating job: {error}")),
    ]
}

fn id(catalog: &str) -> Option<CatalogId> {
    Some(CatalogId::by_id(catalog).expect("in the catalog"))
}

#[test]
fn every_controller_format_in_every_release_is_read() {
    let error =
        unreachable("namespace.sidecar-injector.istio.io", "dial tcp 10.96.0.10:443: connect: connection refused");
    for (kind, message) in wrapped(&error) {
        let got = classify_failed_create(kind, &message).unwrap_or_else(|| panic!("{kind}: {message}"));
        assert_eq!(got.catalog, id("istio"), "{kind}");
        assert_eq!(got.cause, InjectionCause::WebhookUnreachable);
        assert_eq!(got.container, "istio-proxy");
        assert_eq!(got.webhook.as_deref(), Some("namespace.sidecar-injector.istio.io"));
        assert_eq!(
            got.summary,
            "Istio's injector webhook \"namespace.sidecar-injector.istio.io\" could not be called (refused the connection), and it fails closed"
        );
        assert!(got.fix.starts_with("check that istiod is running"), "{}", got.fix);
        // Combined by the Event aggregator: the same.
        let combined = format!("(combined from similar events): {message}");
        assert_eq!(classify_failed_create(kind, &combined), Some(got));
    }
}

#[test]
fn a_message_of_another_kind_or_format_is_not_read() {
    let error = unreachable("sidecar-injector.istio.io", "connect: connection refused");
    // The ReplicaSet's wording on a StatefulSet, and the reverse; an unknown kind.
    assert_eq!(classify_failed_create("StatefulSet", &format!("Error creating: {error}")), None);
    assert_eq!(
        classify_failed_create("ReplicaSet", &format!("create Pod a in StatefulSet b failed error: {error}")),
        None
    );
    assert_eq!(classify_failed_create("Deployment", &format!("Error creating: {error}")), None);
    // A StatefulSet's claim: not a Pod.
    assert_eq!(
        classify_failed_create(
            "StatefulSet",
            &format!("create Claim d-web-0 for Pod web-0 in StatefulSet web failed error: {error}")
        ),
        None
    );
    assert_eq!(classify_failed_create("CronJob", &format!("Error creating: {error}")), None);
}

#[test]
fn each_injectors_webhooks_are_known() {
    for (webhook, catalog, container) in [
        ("sidecar-injector.istio.io", "istio", "istio-proxy"),
        ("rev.namespace.sidecar-injector.istio.io", "istio", "istio-proxy"),
        ("rev.object.sidecar-injector.istio.io", "istio", "istio-proxy"),
        ("object.sidecar-injector.istio.io", "istio", "istio-proxy"),
        ("linkerd-proxy-injector.linkerd.io", "linkerd", "linkerd-proxy"),
        ("namespace-kuma-injector.kuma.io", "kuma", "kuma-sidecar"),
        ("pods-kuma-injector.kuma.io", "kuma", "kuma-sidecar"),
        ("mesh-zoneproxy-kuma-injector.kuma.io", "kuma", "kuma-sidecar"),
        ("pod.validator.kuma-admission.kuma.io", "kuma", "kuma-sidecar"),
        ("consul-connect-injector.consul.hashicorp.com", "consul", "consul-dataplane"),
        ("prod-consul-connect-injector.consul.hashicorp.com", "consul", "consul-dataplane"),
        ("sidecar-injector.dapr.io", "dapr", "daprd"),
        ("vault.hashicorp.com", "vault-agent", "vault-agent"),
        ("gcsfuse-sidecar-injector.csi.storage.gke.io", "gcsfuse", "gke-gcsfuse-sidecar"),
    ] {
        let message = format!("Error creating: {}", unreachable(webhook, "context deadline exceeded"));
        let got = classify_failed_create("ReplicaSet", &message).unwrap_or_else(|| panic!("{webhook}"));
        assert_eq!((got.catalog, got.container.as_str()), (id(catalog), container), "{webhook}");
        assert!(got.summary.contains("(timed out)"), "{}", got.summary);
    }
}

#[test]
fn unrelated_webhooks_are_not_ours() {
    for webhook in [
        // Kubebuilder's generic Pod webhook: the OpenTelemetry Operator's, and many others'.
        "mpod.kb.io",
        "validation.gatekeeper.sh",
        "mutate.kyverno.svc-fail",
        // Look-alikes: a suffix without its dot, a prefix, Kuma's webhooks on its own resources.
        "evil-sidecar-injector.istio.io.example.com",
        "xsidecar-injector.istio.io",
        ".sidecar-injector.istio.io.",
        "owner-reference.kuma-admission.kuma.io",
        "connect-injector.consul.hashicorp.com",
    ] {
        let message = format!("Error creating: {}", unreachable(webhook, "connect: connection refused"));
        assert_eq!(classify_failed_create("ReplicaSet", &message), None, "{webhook}");
        let denied = format!("Error creating: admission webhook \"{webhook}\" denied the request: no");
        assert_eq!(classify_failed_create("ReplicaSet", &denied), None, "{webhook}");
    }
}

#[test]
fn why_a_call_failed_is_named() {
    for (net, why) in [
        ("dial tcp 127.0.0.1:1: connect: connection refused", "refused the connection"),
        ("dial tcp 10.0.2.120:5443: i/o timeout", "timed out"),
        ("context deadline exceeded", "timed out"),
        (
            "tls: failed to verify certificate: x509: certificate signed by unknown authority",
            "failed the TLS handshake",
        ),
        ("no endpoints available for service \"istiod\"", "has no endpoints"),
        ("service \"istiod\" not found", "has no endpoints"),
        ("dial tcp: lookup istiod.istio-system.svc: no such host", "has no DNS name"),
        ("EOF", "failed"),
    ] {
        let got = classify_failed_create(
            "Job",
            &format!("Error creating: {}", unreachable("sidecar-injector.istio.io", net)),
        )
        .expect("ours");
        assert!(
            got.summary.ends_with(&format!("could not be called ({why}), and it fails closed")),
            "{net}: {}",
            got.summary
        );
    }
    let invalid = "Error creating: Internal error occurred: failed calling webhook \"sidecar-injector.dapr.io\": received invalid webhook response: expected response.uid=\"1\", got \"\"";
    let got = classify_failed_create("ReplicaSet", invalid).expect("ours");
    assert!(got.summary.contains("(answered with a response the API server could not use)"), "{}", got.summary);
}

#[test]
fn a_denial_names_the_webhook_and_its_reason() {
    let message = "Error creating: admission webhook \"sidecar-injector.dapr.io\" denied the request: service account 'user-xdd5l' not on the list of allowed controller accounts";
    let got = classify_failed_create("ReplicaSet", message).expect("ours");
    assert_eq!(got.cause, InjectionCause::WebhookDenied);
    assert_eq!((got.catalog, got.container.as_str()), (id("dapr"), "daprd"));
    assert_eq!(
        got.summary,
        "Dapr's injector webhook \"sidecar-injector.dapr.io\" denied the Pod: service account 'user-xdd5l' not on the list of allowed controller accounts"
    );
    let bare = "Error creating: admission webhook \"linkerd-proxy-injector.linkerd.io\" denied the request without explanation";
    let got = classify_failed_create("DaemonSet", bare).expect("ours");
    assert!(got.summary.ends_with("denied the Pod: without explanation"), "{}", got.summary);
}

/// PodSecurity's message for Pod `web-1` (pod-security-admission `forbiddenResponse`).
fn pod_security(details: &str) -> String {
    format!("Error creating: pods \"web-1\" is forbidden: violates PodSecurity \"baseline:latest\": {details}")
}

#[test]
fn pod_security_naming_a_sidecar_or_its_helper_is_ours() {
    let istio_init = "non-default capabilities (container \"istio-init\" must not include \"NET_ADMIN\", \"NET_RAW\" in securityContext.capabilities.add)";
    let got = classify_failed_create("ReplicaSet", &pod_security(istio_init)).expect("ours");
    assert_eq!(got.cause, InjectionCause::AdmissionRejected);
    assert_eq!((got.catalog, got.container.as_str(), got.webhook), (id("istio"), "istio-init", None));
    assert_eq!(
        got.summary,
        format!("PodSecurity \"baseline:latest\" rejects Istio's container istio-init: {istio_init}")
    );
    assert!(got.fix.starts_with("install Istio's CNI node agent"), "{}", got.fix);

    // Several reasons, several containers: the first catalog container is named.
    let several = "privileged (container \"app\" must not set securityContext.privileged=true), non-default capabilities (containers \"app\", \"linkerd-init\" must not include \"NET_ADMIN\", \"NET_RAW\" in securityContext.capabilities.add)";
    let got = classify_failed_create("Job", &pod_security(several)).expect("ours");
    assert_eq!((got.catalog, got.container.as_str()), (id("linkerd"), "linkerd-init"));
    assert!(got.summary.ends_with(": non-default capabilities (containers \"app\", \"linkerd-init\" must not include \"NET_ADMIN\", \"NET_RAW\" in securityContext.capabilities.add)"), "{}", got.summary);

    for (details, catalog, container) in [
        ("runAsNonRoot != true (pod or containers \"vault-agent-init\", \"vault-agent\" must set securityContext.runAsNonRoot=true)", "vault-agent", "vault-agent-init"),
        ("runAsUser=0 (container \"kuma-init\" must not set runAsUser=0)", "kuma", "kuma-init"),
        ("unrestricted capabilities (container \"consul-connect-inject-init\" must set securityContext.capabilities.drop=[\"ALL\"])", "consul", "consul-connect-inject-init"),
        ("hostPort (container \"envoy\" uses hostPort 9901)", "envoy", "envoy"),
        ("privileged (container \"istio-validation\" must not set securityContext.privileged=true)", "istio", "istio-validation"),
    ] {
        let got = classify_failed_create("ReplicaSet", &pod_security(details)).unwrap_or_else(|| panic!("{details}"));
        assert_eq!((got.catalog, got.container.as_str()), (id(catalog), container), "{details}");
    }
    // A catalog sidecar without an injector gets the generic advice.
    let got = classify_failed_create("ReplicaSet", &pod_security("hostPort (container \"envoy\" uses hostPort 9901)"))
        .expect("ours");
    assert_eq!(got.fix, GENERIC_ADMISSION_FIX);
}

#[test]
fn pod_security_naming_only_app_containers_is_not_ours() {
    for details in [
        "non-default capabilities (container \"app\" must not include \"NET_ADMIN\" in securityContext.capabilities.add)",
        "privileged (containers \"app\", \"worker\" must not set securityContext.privileged=true)",
        // The capability named istio-init is a value, not a container.
        "non-default capabilities (container \"app\" must not include \"istio-init\" in securityContext.capabilities.add)",
        "hostPath volumes (volume \"istio-proxy\")",
        "host namespaces (hostNetwork=true)",
    ] {
        assert_eq!(classify_failed_create("ReplicaSet", &pod_security(details)), None, "{details}");
    }
    // Another admission plugin's refusal: a quota names no container.
    let quota = "Error creating: pods \"web-1\" is forbidden: exceeded quota: compute, requested: cpu=2, used: cpu=9, limited: cpu=10";
    assert_eq!(classify_failed_create("ReplicaSet", quota), None);
}

#[test]
fn an_invalid_native_sidecar_is_ours_with_or_without_its_name() {
    // A webhook dropped istio-proxy's restartPolicy: the errors give only its index.
    let lost = "Error creating: Pod \"web-1\" is invalid: [spec.initContainers[1].lifecycle: Forbidden: may not be set for init containers without restartPolicy=Always, spec.initContainers[1].readinessProbe: Forbidden: may not be set for init containers without restartPolicy=Always, spec.initContainers[1].startupProbe: Forbidden: may not be set for init containers without restartPolicy=Always]";
    let got = classify_failed_create("ReplicaSet", lost).expect("ours");
    assert_eq!((got.catalog, got.cause, got.container.as_str()), (None, InjectionCause::InvalidPod, ""));
    assert!(
        got.summary.starts_with("the Pod is invalid: init container 1 has a lifecycle, which only a native sidecar (restartPolicy: Always) may have: [spec.initContainers[1].lifecycle"),
        "{}",
        got.summary
    );
    assert!(got.fix.starts_with("a native sidecar reached the API server without restartPolicy: Always"));
    let single = "Error creating: Pod \"web-1\" is invalid: spec.initContainers[0].startupProbe: Forbidden: may not be set for init containers without restartPolicy=Always";
    assert!(classify_failed_create("Job", single)
        .expect("ours")
        .summary
        .contains("init container 0 has a startupProbe"));
    let unsupported = "Error creating: Pod \"web-1\" is invalid: spec.initContainers[2].restartPolicy: Unsupported value: \"OnFailure\": supported values: \"Always\"";
    assert!(classify_failed_create("ReplicaSet", unsupported)
        .expect("ours")
        .summary
        .contains("init container 2 has a restartPolicy"));

    // The message quotes a catalog container: named.
    let twice =
        "Error creating: Pod \"web-1\" is invalid: spec.initContainers[2].name: Duplicate value: \"istio-proxy\"";
    let got = classify_failed_create("ReplicaSet", twice).expect("ours");
    assert_eq!((got.catalog, got.container.as_str()), (id("istio"), "istio-proxy"));
    assert!(got.fix.starts_with("istio-proxy is added twice"), "{}", got.fix);
}

#[test]
fn an_invalid_pod_for_other_reasons_is_not_ours() {
    for errors in [
        "spec.containers[0].image: Required value",
        "spec.containers[1].name: Duplicate value: \"app\"",
        "spec.initContainers[0].resizePolicy: Invalid value: ...: must not be set for init containers",
        "spec.initContainers[x].startupProbe: Forbidden: may not be set for init containers without restartPolicy=Always",
        "spec.initContainers[0].startupProbe: Required value",
    ] {
        let message = format!("Error creating: Pod \"web-1\" is invalid: {errors}");
        assert_eq!(classify_failed_create("ReplicaSet", &message), None, "{errors}");
    }
}

#[test]
fn huge_forged_and_garbled_messages_are_cut_and_never_panic() {
    // The webhook's name after the read limit is not read.
    let padded = format!("Error creating: admission webhook \"{}", "x".repeat(FAILED_CREATE_READ_LIMIT));
    assert_eq!(classify_failed_create("ReplicaSet", &padded), None);
    // A denial whose reason is huge and multi-line: a summary of one bounded line.
    let reason = format!("line one\nline two\r\t{}", "é".repeat(10_000));
    let got = classify_failed_create(
        "ReplicaSet",
        &format!("Error creating: admission webhook \"vault.hashicorp.com\" denied the request: {reason}"),
    )
    .expect("ours");
    assert!(!got.summary.contains(['\n', '\r', '\t']), "{}", got.summary);
    assert!(got.summary.len() < 500 && got.summary.ends_with('…'), "{}", got.summary.len());
    // The limit falls inside a multi-byte character: cut before it.
    let cut = format!("Error creating: {}", "é".repeat(FAILED_CREATE_READ_LIMIT));
    assert_eq!(classify_failed_create("Job", &cut), None);
    // Escaped, unterminated and over-long quotes; truncated formats; empty.
    for message in [
        "Error creating: admission webhook \"vault.\\\"hashicorp.com\" denied the request: x".to_string(),
        "Error creating: admission webhook \"vault.hashicorp.com".to_string(),
        format!("Error creating: admission webhook \"{}.sidecar-injector.istio.io\" denied the request", "a".repeat(300)),
        "Error creating: Internal error occurred: failed calling webhook ".to_string(),
        "Error creating: pods \"x\" is forbidden: violates PodSecurity \"baseline:latest\"".to_string(),
        "Error creating: pods \"x\" is forbidden: violates PodSecurity \"baseline:latest\": privileged (containers \"istio-init".to_string(),
        "Error creating: Pod \"x\" is invalid: spec.initContainers[99999999999999999999999].startupProbe: Forbidden: may not be set for init containers without restartPolicy=Always".to_string(),
        "create Pod  in StatefulSet  failed error: ".to_string(),
        "(combined from similar events): ".to_string(),
        String::new(),
        "\"\"\"\"((((,,,, ))))".repeat(1000),
    ] {
        for kind in ["ReplicaSet", "StatefulSet", "CronJob"] {
            assert_eq!(classify_failed_create(kind, &message), None, "{kind}: {message:.120}");
        }
    }
    // Linear: a message of every separator, at the limit, classifies at once.
    let many = pod_security(&"container \"a\", ".repeat(FAILED_CREATE_READ_LIMIT));
    assert_eq!(classify_failed_create("ReplicaSet", &many), None);
}

#[test]
fn the_messages_a_real_replicaset_controller_wrote() {
    // Read back from the node suite's cluster (Kubernetes v1.37.2 and v1.33.13, the same but for
    // the StatefulSet's verb; tests/e2e_node/injection_failed.rs).
    let webhook = "Error creating: Internal error occurred: failed calling webhook \"namespace.sidecar-injector.istio.io\": failed to call webhook: Post \"https://127.0.0.1:44173/inject?timeout=10s\": dial tcp 127.0.0.1:44173: connect: connection refused";
    let got = classify_failed_create("ReplicaSet", webhook).expect("ours");
    assert_eq!(
        (got.catalog, got.cause, got.container.as_str()),
        (id("istio"), InjectionCause::WebhookUnreachable, "istio-proxy")
    );
    let meshed = "Error creating: pods \"meshed-66fcc5cb7f-rmx4c\" is forbidden: violates PodSecurity \"baseline:latest\": non-default capabilities (container \"istio-init\" must not include \"NET_ADMIN\", \"NET_RAW\" in securityContext.capabilities.add)";
    let got = classify_failed_create("ReplicaSet", meshed).expect("ours");
    assert_eq!(
        (got.catalog, got.cause, got.container.as_str()),
        (id("istio"), InjectionCause::AdmissionRejected, "istio-init")
    );
    // A StatefulSet's, by v1.33.13's controller (lower case) and v1.37.2's (title case).
    let refused = "Internal error occurred: failed calling webhook \"namespace.sidecar-injector.istio.io\": failed to call webhook: Post \"https://127.0.0.1:34911/inject?timeout=10s\": dial tcp 127.0.0.1:34911: connect: connection refused";
    for verb in ["create", "Create"] {
        let message = format!("{verb} Pod db-0 in StatefulSet db failed error: {refused}");
        assert_eq!(
            classify_failed_create("StatefulSet", &message).map(|f| f.cause),
            Some(InjectionCause::WebhookUnreachable)
        );
    }
    let app = "Error creating: pods \"privileged-app-7cf5bdb95c-kcf2c\" is forbidden: violates PodSecurity \"baseline:latest\": non-default capabilities (container \"app\" must not include \"NET_ADMIN\", \"NET_RAW\" in securityContext.capabilities.add)";
    assert_eq!(classify_failed_create("ReplicaSet", app), None);
}
