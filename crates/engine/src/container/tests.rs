//! The container view's layout and what it keeps of a container's spec and status.
use super::extract::truncate;
use super::*;

#[test]
fn a_view_tells_an_unreported_status_from_a_default_one() {
    let spec = ContainerSpec {
        name: Name::from("envoy"),
        kind: ContainerKind::RestartableInit,
        flags: SpecFlags::empty(),
        catalog: None,
        liveness_target: None,
        version: None,
        resources: None,
    };
    let mut view = ContainerView::new(spec.clone(), None);
    assert_eq!(view.status(), None);
    // A default status is a reported one, unlike none at all.
    assert_ne!(view, ContainerView::new(spec.clone(), Some(ContainerStatusView::default())));
    let running = ContainerStatusView::new(true, None, 3, ContainerState::Unknown);
    view.set_status(Some(running.clone()));
    assert_eq!(view.status(), Some(&running));
    view.set_status(None);
    assert_eq!(view, ContainerView::new(spec, None));
}

#[test]
fn the_basics_travel_with_every_state() {
    let states = [
        ContainerState::Waiting { reason: Some(Name::from("CrashLoopBackOff")) },
        ContainerState::Running { started_at: Some(Stamp::new(Timestamp::UNIX_EPOCH)) },
        ContainerState::Terminated(Box::default()),
        ContainerState::Unknown,
    ];
    for state in states {
        let mut status = ContainerStatusView::new(true, Some(false), u32::MAX, state);
        assert_eq!((status.ready(), status.started(), status.restart_count()), (true, Some(false), u32::MAX));
        status.set_started(None);
        status.set_restart_count(7);
        assert_eq!((status.ready(), status.started(), status.restart_count()), (true, None, 7));
    }
}

#[test]
fn latest_image_detection() {
    for (image, latest) in [
        ("envoy", true),
        ("envoyproxy/envoy:latest", true),
        ("envoyproxy/envoy:v1.30.1", false),
        ("registry:5000/envoy", true),
        ("registry:5000/envoy:1.2", false),
        ("envoy@sha256:abcd", false),
        ("gcr.io/istio-release/proxyv2:1.22.0", false),
    ] {
        assert_eq!(is_latest_image(image), latest, "{image}");
    }
}

#[test]
fn truncates_on_char_boundary() {
    assert_eq!(truncate("héllo", 2), "h…");
    assert_eq!(truncate("short", 10), "short");
}

#[test]
fn an_images_version_is_its_tag_else_its_digest_else_latest() {
    use super::extract::image_version;
    let digest = "sha256:8f3e1a0c2b7d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b0c1d2e3f4a5b6c7d8e9f";
    let cases = [
        ("docker.io/istio/proxyv2:1.24.0", "1.24.0"),
        ("registry:5000/linkerd/proxy:edge-25.1.1", "edge-25.1.1"),
        ("registry:5000/linkerd/proxy", "latest"),
        ("fluent/fluent-bit:3.0@sha256:8f3e1a0c2b7d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b0c1d2e3f4a5b6c7d8e9f", "3.0"),
        ("fluent/fluent-bit", "latest"),
        ("envoy:", "latest"),
    ];
    for (image, version) in cases {
        assert_eq!(image_version(image), version, "{image}");
    }
    assert_eq!(image_version(&format!("otel/collector@{digest}")), digest);
    assert_eq!(image_version(&format!("x:{}", "9".repeat(10_000))).len(), 128, "cut");
}

/// Requests and limits are read into millicores and bytes; a malformed quantity is ignored
/// (the Pod and the container's other quantities still read), and a container without
/// `cpu` or `memory` keeps none.
#[test]
fn resources_are_read_and_a_malformed_quantity_never_fails_the_pod() {
    let pod: sidecar_watch_api::SlimPod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "web", "namespace": "shop", "uid": "u1"},
        "spec": {"initContainers": [
            {"name": "istio-proxy", "image": "istio/proxyv2:1.24.2", "restartPolicy": "Always",
             "resources": {"requests": {"cpu": "100m", "memory": "128Mi"},
                           "limits": {"cpu": "two", "memory": "1G"}}}],
          "containers": [
            {"name": "app", "image": "shop/web:1", "resources": {"requests": {"nvidia.com/gpu": "1"}}},
            {"name": "odd", "image": "shop/odd:1", "resources": {"requests": {"cpu": {"x": 1}, "memory": 2048}}}]}
    }))
    .expect("a Pod with odd quantities decodes");
    let view = crate::PodView::from_pod(&pod);
    let proxy = view.containers[0].resources.as_deref().expect("declared");
    assert_eq!(
        *proxy,
        ContainerResources {
            requests: ResourceAmounts { cpu_millis: Some(100), memory_bytes: Some(134_217_728) },
            limits: ResourceAmounts { cpu_millis: None, memory_bytes: Some(1_000_000_000) },
        }
    );
    assert!(view.containers[1].flags.contains(SpecFlags::RESOURCES));
    assert_eq!(view.containers[1].resources, None);
    let odd = view.containers[2].resources.as_deref().expect("memory declared");
    assert_eq!(odd.requests, ResourceAmounts { cpu_millis: None, memory_bytes: Some(2048) });
}
