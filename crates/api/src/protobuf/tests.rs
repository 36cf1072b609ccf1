use super::*;
use crate::LenientPod;

const PODS_PB: &[u8] = include_bytes!("../../../../tests/fixtures/protobuf/pods.pb");
const PODS_JSON: &str = include_str!("../../../../tests/fixtures/protobuf/pods.json");
const PAGE_PB: &[u8] = include_bytes!("../../../../tests/fixtures/protobuf/page.pb");
const WATCH_PB: &[u8] = include_bytes!("../../../../tests/fixtures/protobuf/watch.pb");
const NOT_FOUND_PB: &[u8] = include_bytes!("../../../../tests/fixtures/protobuf/notfound.pb");

#[derive(serde::Deserialize)]
struct List {
    metadata: serde_json::Value,
    items: Vec<LenientPod>,
}

fn pods_as_read(list: &List) -> Vec<String> {
    list.items.iter().map(|pod| format!("{pod:?}")).collect()
}

fn transcoded_list(body: &[u8]) -> List {
    let json = list_to_json(&Bytes::copy_from_slice(body)).expect("transcodes");
    serde_json::from_slice(&json).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&json)))
}

fn frames(stream: &[u8]) -> Vec<Bytes> {
    let mut pending = BytesMut::from(stream);
    std::iter::from_fn(|| take_frame(&mut pending).expect("a frame of a sane length")).collect()
}

#[test]
fn a_protobuf_list_reads_as_the_same_pods_as_its_json() {
    let from_json: List = serde_json::from_str(PODS_JSON).expect("JSON fixture");
    let from_protobuf = transcoded_list(PODS_PB);
    assert_eq!(from_protobuf.metadata, from_json.metadata);
    assert_eq!(pods_as_read(&from_protobuf), pods_as_read(&from_json));
    // What the fixture holds, so that the comparison above compares something.
    let names: Vec<_> =
        from_json.items.iter().map(|p| kube::Resource::meta(p).name.clone().unwrap_or_default()).collect();
    assert_eq!(names, ["bare", "leaving", "mesh", "rules"]);
    let LenientPod::Object(mesh) = &from_protobuf.items[2] else { panic!("mesh reads") };
    assert_eq!(mesh.spec.init_containers.len(), 2);
    assert_eq!(mesh.status.init_container_statuses[0].restart_count, 4);
    // Quantities as kube-apiserver wrote them in protobuf, read as from its JSON.
    let proxy = &mesh.spec.init_containers[0].resources;
    let list = |cpu: Option<&str>, memory: &str| crate::SlimResourceList {
        any: true,
        cpu: cpu.map(Into::into),
        memory: Some(memory.into()),
    };
    assert_eq!((&proxy.requests, &proxy.limits), (&list(Some("100m"), "1Gi"), &list(None, "1Gi")));
    let LenientPod::Object(leaving) = &from_protobuf.items[1] else { panic!("leaving reads") };
    assert!(leaving.metadata.deletion_timestamp.is_some());
    let LenientPod::Object(rules) = &from_protobuf.items[3] else { panic!("rules reads") };
    assert_eq!(
        rules.spec.containers[0].restart_policy_rules[0].exit_codes.as_ref().map(|c| c.values.clone()),
        Some(vec![42, 43])
    );
}

#[test]
fn a_page_keeps_its_continue_token_and_remaining_count() {
    let page = transcoded_list(PAGE_PB);
    assert_eq!(page.items.len(), 2);
    assert!(page.metadata["continue"].as_str().is_some_and(|c| !c.is_empty()), "{}", page.metadata);
    assert_eq!(page.metadata["remainingItemCount"], 2);
}

#[test]
fn the_json_handed_on_carries_only_what_is_read() {
    // 3,746 bytes for the 29,274 kube-apiserver writes (managedFields, annotations, env…).
    let json = list_to_json(&Bytes::from_static(PODS_PB)).expect("transcodes");
    assert!(json.len() * 7 < PODS_JSON.len(), "{} bytes of JSON from {}", json.len(), PODS_JSON.len());
}

#[test]
fn a_streamed_watch_reads_as_kube_rs_watch_events() {
    let from_json: List = serde_json::from_str(PODS_JSON).expect("JSON fixture");
    let mut lines = Vec::new();
    for frame in frames(WATCH_PB) {
        watch_event_to_json(frame, &mut lines).expect("transcodes");
    }
    let events: Vec<kube::core::WatchEvent<LenientPod>> = lines
        .split(|b| *b == b'\n')
        .filter(|line| !line.is_empty())
        .map(|line| serde_json::from_slice(line).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(line))))
        .collect();
    let mut added = Vec::new();
    let mut rest = Vec::new();
    for event in events {
        match event {
            kube::core::WatchEvent::Added(pod) => added.push(pod),
            kube::core::WatchEvent::Bookmark(b) => {
                assert_eq!(b.metadata.annotations.get("k8s.io/initial-events-end").map(String::as_str), Some("true"));
                assert!(!b.metadata.resource_version.is_empty());
                rest.push("BOOKMARK".to_string());
            }
            kube::core::WatchEvent::Deleted(pod) => rest.push(format!("DELETED {}", pod.metadata_uid().len())),
            other => panic!("unexpected {other:?}"),
        }
    }
    added.sort_by_key(|p| kube::Resource::meta(p).name.clone());
    assert_eq!(pods_as_read(&List { metadata: serde_json::Value::Null, items: added }), pods_as_read(&from_json));
    assert_eq!(rest, ["BOOKMARK", "DELETED 36"]);
}

#[test]
fn a_status_reads_as_kube_rs_reads_an_error() {
    let json = list_to_json(&Bytes::from_static(NOT_FOUND_PB)).expect("transcodes");
    let status: kube::core::Status = serde_json::from_slice(&json).expect("a Status");
    assert_eq!((status.code, status.reason.as_str()), (404, "NotFound"));
    assert_eq!(status.message, r#"pods "nope" not found"#);

    // A watch's 410 ERROR event, as kube-apiserver writes it when a resourceVersion is gone.
    let gone = wire::Status {
        status: "Failure".into(),
        message: "too old resource version: 1 (261)".into(),
        reason: "Expired".into(),
        details: None,
        code: 410,
    };
    let frame =
        wire::WatchEvent { kind: "ERROR".into(), object: Some(wire::RawExtension { raw: envelope("Status", &gone) }) };
    let mut line = Vec::new();
    watch_event_to_json(Bytes::from(frame.encode_to_vec()), &mut line).expect("transcodes");
    let event: kube::core::WatchEvent<LenientPod> = serde_json::from_slice(&line).expect("an event");
    let kube::core::WatchEvent::Error(error) = event else { panic!("{}", String::from_utf8_lossy(&line)) };
    assert_eq!((error.code, error.reason.as_str()), (410, "Expired"));
}

fn envelope(kind: &str, message: &impl Message) -> Bytes {
    let unknown = wire::Unknown {
        type_meta: Some(wire::TypeMeta { api_version: "v1".into(), kind: kind.into() }),
        raw: Bytes::from(message.encode_to_vec()),
    };
    let mut out = MAGIC.to_vec();
    out.extend(unknown.encode_to_vec());
    Bytes::from(out)
}

#[test]
fn one_unreadable_pod_is_reported_by_name_and_the_rest_of_the_list_reads() {
    let good = wire::Pod {
        metadata: Some(wire::ObjectMeta {
            name: "ok".into(),
            namespace: "shop".into(),
            uid: "u1".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    // `status` (tag 3) as a number where a message belongs: what a schema change would look like.
    let mut evil = wire::PodIdentity {
        metadata: Some(wire::ObjectMeta {
            name: "evil".into(),
            namespace: "flood".into(),
            uid: "u2".into(),
            ..Default::default()
        }),
    }
    .encode_to_vec();
    evil.extend([3 << 3, 7]);
    let list = wire::PodList { metadata: None, items: vec![Bytes::from(good.encode_to_vec()), Bytes::from(evil)] };
    let read = transcoded_list(&envelope("PodList", &list));
    assert!(matches!(&read.items[0], LenientPod::Object(p) if p.metadata.name.as_deref() == Some("ok")));
    let LenientPod::Undecodable(bad) = &read.items[1] else { panic!("{:?}", read.items[1]) };
    assert_eq!(bad.key(), "flood/evil");
    assert!(bad.error.starts_with("protobuf: "), "{}", bad.error);
    assert!(bad.error.contains("wire type"), "{}", bad.error);
}

#[test]
fn what_is_not_a_pod_list_is_an_error_not_a_panic() {
    for body in [&b""[..], b"{\"kind\":\"PodList\"}", b"k8s\0", b"k8s\0\x0a\xff", &PODS_PB[..PODS_PB.len() / 2]] {
        assert!(list_to_json(&Bytes::copy_from_slice(body)).is_err(), "{body:?}");
    }
    let secret = envelope("Secret", &wire::Status::default());
    assert!(matches!(list_to_json(&secret), Err(TranscodeError::UnexpectedKind(k)) if k == "Secret"));
    for (event, kind) in [("ADDED", "Secret"), ("ERROR", "Pod"), ("BOOKMARK", "Status"), ("GONE", "Pod")] {
        let frame = wire::WatchEvent {
            kind: event.into(),
            object: Some(wire::RawExtension { raw: envelope(kind, &wire::Pod::default()) }),
        };
        let result = watch_event_to_json(Bytes::from(frame.encode_to_vec()), &mut Vec::new());
        assert!(matches!(&result, Err(TranscodeError::UnexpectedEvent(e, k)) if e == event && k == kind), "{result:?}");
    }
    let no_object = wire::WatchEvent { kind: "ADDED".into(), object: None }.encode_to_vec();
    assert!(matches!(watch_event_to_json(Bytes::from(no_object), &mut Vec::new()), Err(TranscodeError::NoObject(_))));
}

#[test]
fn times_read_as_go_writes_them_in_json() {
    let time = |seconds: i64| Some(wire::Timestamp { seconds }.encode_to_vec());
    let running = |started_at| serde_json::to_string(&wire::Running { started_at }).expect("JSON");
    assert_eq!(running(time(1_764_043_200)), r#"{"startedAt":"2025-11-25T04:00:00Z"}"#);
    assert_eq!(running(Some(Vec::new())), r#"{"startedAt":null}"#, "Go's zero time");
    assert_eq!(running(None), "{}");
    assert_eq!(running(time(i64::MAX)), r#"{"startedAt":"9999-12-31T23:59:59Z"}"#);
    assert_eq!(running(time(i64::MIN)), r#"{"startedAt":"-9999-01-01T00:00:00Z"}"#);
}

#[test]
fn env_and_signal_annotations_read_as_from_json_and_nothing_else_is_handed_on() {
    use crate::SignalSwitch::{HealthCheck, HttpAddress, Prometheus};

    let huge = "x".repeat(100_000);
    let env = |name: &str, value: &str| wire::EnvVar { name: name.into(), value: value.into() };
    let proxy = wire::Container {
        name: "cloud-sql-proxy".into(),
        image: "gcr.io/cloud-sql-connectors/cloud-sql-proxy:2.14.1".into(),
        // The flag wins over CSQL_PROXY_HEALTH_CHECK, as in the proxy.
        args: vec!["--health-check=false".into()],
        env: vec![
            env("CSQL_PROXY_PROMETHEUS", "true"),
            env("CSQL_PROXY_HEALTH_CHECK", "true"),
            // valueFrom (no plain value): unknown, so it sets nothing.
            env("CSQL_PROXY_HTTP_ADDRESS", ""),
            env("UNRELATED", &huge),
        ],
        ..Default::default()
    };
    let annotations = [("dapr.io/enable-metrics", "FALSE"), ("unrelated", huge.as_str())]
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .into();
    let pod = wire::Pod {
        metadata: Some(wire::ObjectMeta {
            name: "reports".into(),
            namespace: "shop".into(),
            uid: "u1".into(),
            annotations,
            ..Default::default()
        }),
        spec: Some(wire::PodSpec { containers: vec![proxy], ..Default::default() }),
        ..Default::default()
    };
    let list = wire::PodList { metadata: None, items: vec![Bytes::from(pod.encode_to_vec())] };
    let body = envelope("PodList", &list);
    let json = list_to_json(&body).expect("transcodes");
    assert!(json.len() < 1_000, "{} bytes handed on: {}", json.len(), String::from_utf8_lossy(&json));
    let from_protobuf = transcoded_list(&body);
    let LenientPod::Object(read) = &from_protobuf.items[0] else { panic!("{:?}", from_protobuf.items[0]) };
    let switches = read.spec.containers[0].signal_switches();
    assert_eq!([Prometheus, HealthCheck, HttpAddress].map(|s| switches.get(s)), [Some(true), Some(false), None]);
    assert_eq!(
        read.metadata.annotations.iter().flatten().map(|(k, v)| (k.as_str(), v.as_str())).collect::<Vec<_>>(),
        [("dapr.io/enable-metrics", "FALSE")]
    );

    let pod_json = serde_json::json!({"metadata": {}, "items": [{
        "metadata": {"name": "reports", "namespace": "shop", "uid": "u1",
                     "annotations": {"dapr.io/enable-metrics": "FALSE", "unrelated": huge}},
        "spec": {"containers": [{"name": "cloud-sql-proxy", "image": "gcr.io/cloud-sql-connectors/cloud-sql-proxy:2.14.1",
            "args": ["--health-check=false"],
            "env": [{"name": "CSQL_PROXY_PROMETHEUS", "value": "true"}, {"name": "CSQL_PROXY_HEALTH_CHECK", "value": "true"},
                    {"name": "CSQL_PROXY_HTTP_ADDRESS", "valueFrom": {"configMapKeyRef": {"name": "c", "key": "k"}}},
                    {"name": "UNRELATED", "value": huge}]}]}
    }]});
    // As the watch reads it: from the bytes.
    let from_json: List = serde_json::from_str(&pod_json.to_string()).expect("the same Pod in JSON");
    assert_eq!(pods_as_read(&from_protobuf), pods_as_read(&from_json));
}
