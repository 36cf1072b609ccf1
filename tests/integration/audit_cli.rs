//! `sidecar-watch audit` as a user runs it: exit statuses, output formats, bad input.

use std::process::Output;

use sidecar_watch_testkit::audit::text;

use crate::SIDECAR_WATCH;

const NOW: &str = "2025-06-03T10:30:00Z";

fn audit(args: &[&str], stdin: Option<&str>) -> Output {
    SIDECAR_WATCH.run(args, stdin.map(str::as_bytes))
}

fn scratch(name: &str, content: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("sidecar-watch-audit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(name);
    std::fs::write(&path, content).expect("write");
    path
}

#[test]
fn examples_audit_as_json_with_every_seed_scenario() {
    let out = audit(&["-f", "examples/pods.json", "--now", NOW, "-o", "json"], None);
    assert_eq!(
        out.status.code(),
        Some(1),
        "warnings fire, so the default --fail-on warning exits 1: {}",
        text(&out.stderr)
    );
    let findings: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).expect("JSON array");
    for field in ["alertname", "severity", "namespace", "pod", "container", "policy", "state", "since", "message"] {
        assert!(findings.iter().all(|f| f.get(field).is_some()), "every finding has {field}");
    }
    let firing = |alert: &str| findings.iter().filter(|f| f["alertname"] == alert && f["state"] == "firing").count();
    assert_eq!(firing("SidecarCrashLooping"), 1);
    assert_eq!(firing("SidecarRestartingFrequently"), 1);
    assert_eq!(firing("JobBlockedBySidecar"), 1);
    assert_eq!(firing("SidecarOOMKilled"), 1);
    assert_eq!(firing("SidecarStoppedBeforeMain"), 1);
    assert!(firing("MainStartedBeforeSidecarReady") >= 1);
    assert!(firing("SidecarContainerNotReady") >= 1);
    let checks: std::collections::BTreeSet<&str> = findings.iter().filter_map(|f| f["check"].as_str()).collect();
    assert_eq!(
        checks.into_iter().collect::<Vec<_>>(),
        [
            "init-before-proxy",
            "latest-image",
            "legacy-sidecar",
            "metrics-disabled",
            "no-readiness-probe",
            "no-resources",
            "no-startup-probe",
            "port-conflict",
            "sidecar-sprawl"
        ]
    );
    // Sorted by severity first.
    let severities: Vec<&str> = findings.iter().filter_map(|f| f["severity"].as_str()).collect();
    let rank = |s: &str| match s {
        "critical" => 0,
        "warning" => 1,
        _ => 2,
    };
    assert!(severities.windows(2).all(|w| rank(w[0]) <= rank(w[1])), "{severities:?}");
}

#[test]
fn table_output_and_fail_on_thresholds() {
    let out = audit(&["-f", "examples/pods.json", "--now", NOW, "--fail-on", "none"], None);
    assert_eq!(out.status.code(), Some(0));
    let table = text(&out.stdout);
    assert!(table.starts_with("POD "), "{table}");
    assert!(table.contains("SidecarCrashLooping"), "{table}");
    assert!(table.lines().last().is_some_and(|l| l.contains("firing")), "summary line: {table}");

    // The healthy mesh Pod alone: nothing at all.
    let out = audit(&["-f", "tests/fixtures/healthy-mesh.yaml", "--now", NOW, "--fail-on", "info"], None);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    assert_eq!(text(&out.stdout), "No alerts.\n");

    let out = audit(&["-f", "tests/fixtures/job-blocked-by-sidecar.yaml", "--now", NOW, "--fail-on", "critical"], None);
    assert_eq!(out.status.code(), Some(0), "JobBlocked is a warning, below critical");
}

#[test]
fn reads_stdin_yaml_streams_and_pods_without_status() {
    let stream = "apiVersion: v1\nkind: Pod\nmetadata: {name: a, namespace: ns, creationTimestamp: '2025-06-03T10:00:00Z'}\nspec:\n  containers:\n  - {name: app, image: app:1}\n  - {name: envoy, image: envoy}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: b, namespace: ns}\nspec: {containers: [{name: app, image: app:1}]}\n";
    let out = audit(&["-f", "-", "--now", NOW, "-o", "json", "--fail-on", "none"], Some(stream));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let findings: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).expect("JSON");
    // The Pending Pod is evaluated: its legacy envoy sidecar is misconfigured.
    assert!(findings.iter().any(|f| f["pod"] == "a" && f["check"] == "legacy-sidecar"), "{findings:#?}");
}

#[test]
fn bad_input_exits_2_naming_file_object_and_field() {
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec!["-f".into(), "/nonexistent/pods.json".into()], "/nonexistent/pods.json: cannot read"),
        (vec!["-f".into(), scratch("broken.yaml", "kind: Pod\nmetadata: [unclosed\n").display().to_string()], "broken.yaml: not valid JSON or YAML"),
        // A YAML List's entries are parsed one by one; positions are still the file's.
        (
            vec!["-f".into(), scratch("list.yaml", "apiVersion: v1\nitems:\n- apiVersion: v1\n  kind: Pod\n  metadata: {name: a}\n- apiVersion: v1\n  kind: Pod\n  metadata: [name: b\n  spec: {}\nkind: List\n").display().to_string()],
            "list.yaml: not valid JSON or YAML: did not find expected ',' or ']' at line 9 column 7, while parsing a flow sequence at line 8 column 13",
        ),
        (
            vec!["-f".into(), scratch("twice.yaml", "apiVersion: v1\nkind: Pod\nmetadata: {name: web, namespace: shop}\nspec: {containers: [{name: app, image: a:1}, {name: log-sidecar, image: b:1}, {name: log-sidecar, image: b:1}]}\n").display().to_string()],
            "twice.yaml: Pod shop/web: spec.containers[2].name: duplicate container name \"log-sidecar\"",
        ),
        (
            vec!["-f".into(), scratch("deploy.yaml", "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: shop}\nspec: {template: {spec: {containers: [{name: app, image: 7}]}}}\n").display().to_string()],
            "deploy.yaml: Deployment shop/web: spec.template.spec.containers[0].image",
        ),
        (
            vec![
                "-f".into(),
                "examples/pods.json".into(),
                "--policy".into(),
                scratch("typo.yaml", "apiVersion: sidecarwatch.io/v1alpha1\nkind: SidecarPolicy\nmetadata: {name: mesh, namespace: shop}\nspec: {rules: {restarts: {restartz: 3}}}\n").display().to_string(),
            ],
            "typo.yaml: SidecarPolicy shop/mesh: spec.rules.restarts.restartz: unknown field",
        ),
        (
            vec![
                "-f".into(),
                "examples/pods.json".into(),
                "--policy".into(),
                scratch("escape.yaml", "apiVersion: sidecarwatch.io/v1alpha1\nkind: SidecarPolicy\nmetadata: {name: mesh, namespace: shop}\nspec: {sidecars: {pattern: 'nomatch)|('}}\n").display().to_string(),
            ],
            "escape.yaml: SidecarPolicy shop/mesh: spec.sidecars.pattern: invalid regular expression",
        ),
        (
            vec!["-f".into(), scratch("badpod.yaml", "apiVersion: v1\nkind: Pod\nmetadata: {name: web, namespace: shop}\nspec: {containers: [{name: 5}]}\n").display().to_string()],
            "badpod.yaml: Pod shop/web: spec.containers[0].name",
        ),
        (
            vec![
                "-f".into(),
                "examples/pods.json".into(),
                "--policy".into(),
                scratch("regex.yaml", "apiVersion: sidecarwatch.io/v1alpha1\nkind: SidecarPolicy\nmetadata: {name: mesh, namespace: shop}\nspec: {sidecars: {pattern: 'envoy('}}\n").display().to_string(),
            ],
            "regex.yaml: SidecarPolicy shop/mesh: spec.sidecars.pattern: invalid regular expression",
        ),
        (
            vec![
                "-f".into(),
                "examples/pods.json".into(),
                "--policy".into(),
                scratch("dur.yaml", "apiVersion: sidecarwatch.io/v1alpha1\nkind: ClusterSidecarPolicy\nmetadata: {name: p}\nspec: {rules: {crashLoop: {for: 5minutes}}}\n").display().to_string(),
            ],
            "dur.yaml: ClusterSidecarPolicy p: spec.rules.crashLoop.for: invalid duration",
        ),
        (vec!["-f".into(), "examples/pods.json".into(), "--now".into(), "yesterday".into()], "--now \"yesterday\""),
        (vec!["-f".into(), scratch("empty.json", "").display().to_string()], "empty.json: holds no objects"),
        (
            vec![
                "-f".into(),
                "examples/pods.json".into(),
                "--policy".into(),
                scratch("comments.yaml", "# policies to come\n").display().to_string(),
            ],
            "comments.yaml: holds no objects",
        ),
    ];
    for (args, expected) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = audit(&args, None);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: expected {expected:?} in {stderr:?}");
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr:?}");
        assert!(out.stdout.is_empty());
    }
}

/// A policy file too large for the CRD schema, or invalid and huge: the error names the
/// field and quotes at most a short prefix of the value, never the value itself.
#[test]
fn oversized_policy_values_are_named_and_quoted_short() {
    let policy = |spec: serde_json::Value| {
        serde_json::json!({"apiVersion": "sidecarwatch.io/v1alpha1", "kind": "SidecarPolicy",
                           "metadata": {"name": "mesh", "namespace": "shop"}, "spec": spec})
        .to_string()
    };
    // Invalid and 98 KB: the schema's 1024 would refuse it, so the operator-side bound names
    // it first; within the bound, an invalid pattern is quoted by its prefix.
    let invalid_huge = format!("envoy({}", "a".repeat(98_298));
    let invalid_short = format!("envoy({}", "b".repeat(900));
    let names: Vec<String> = (0..20_000).map(|i| format!("c{i}")).collect();
    let cases = [
        (
            policy(serde_json::json!({"sidecars": {"pattern": invalid_huge}})),
            "spec.sidecars.pattern: 98304 characters, at most 1024 allowed".to_string(),
        ),
        (
            policy(serde_json::json!({"sidecars": {"pattern": invalid_short}})),
            format!(
                "spec.sidecars.pattern: invalid regular expression \"envoy({}\"… (906 bytes): unclosed group",
                "b".repeat(58)
            ),
        ),
        (
            policy(serde_json::json!({"sidecars": {"names": names}})),
            "spec.sidecars.names: 20000 names, at most 64 allowed".to_string(),
        ),
        (
            policy(serde_json::json!({"rules": {"restarts": {"threshold": "x".repeat(50_000)}}})),
            "spec.rules.restarts.threshold: invalid type: string \"xxx".to_string(),
        ),
    ];
    for (i, (file, expected)) in cases.iter().enumerate() {
        let path = scratch(&format!("huge-{i}.json"), file);
        let out = audit(&["-f", "examples/pods.json", "--policy", &path.display().to_string()], None);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(expected.as_str()), "expected {expected:?} in {stderr:?}");
        assert!(stderr.len() < 600, "{} bytes of error: {stderr}", stderr.len());
    }
}

/// The example policies, given as two files: the namespaced one applies in `shop` only, the
/// cluster one everywhere but `shop` through `kubernetes.io/metadata.name`, which a plain
/// Pod dump does not carry and `audit` supplies like the API server does.
#[test]
fn policies_from_several_files_with_namespace_scoping() {
    let text_of =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/policies.yaml")).expect("read");
    let (mesh, platform) = text_of.split_once("\n---\n").expect("two documents");
    let mesh = scratch("mesh.yaml", mesh);
    let platform = scratch("platform.yaml", platform);
    let args = [
        "-f",
        "examples/pods.json",
        "--now",
        NOW,
        "-o",
        "json",
        "--fail-on",
        "none",
        "--policy",
        mesh.to_str().expect("utf-8"),
        "--policy",
        platform.to_str().expect("utf-8"),
    ];
    let out = audit(&args, None);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let findings: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).expect("JSON");
    assert!(!findings.is_empty());
    for f in &findings {
        let expected = if f["namespace"] == "shop" { "mesh" } else { "platform" };
        assert_eq!(f["policy"], expected, "{f:#}");
    }
    assert!(findings.iter().any(|f| f["namespace"] == "shop"), "the shop Pods are audited");
    assert!(findings.iter().any(|f| f["namespace"] != "shop"), "and the others");
    // The shop policy turned the misconfiguration checks off.
    assert!(findings.iter().all(|f| f["namespace"] != "shop" || f["alertname"] != "SidecarMisconfigured"));
}

/// `kubectl get pods -o json` of one namespace prints a `PodList`-like `List`; a single Pod
/// as JSON is accepted too.
#[test]
fn reads_pod_lists_and_single_json_pods() {
    let pods: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/pods.json")).expect("read"),
    )
    .expect("JSON");
    let items = pods["items"].as_array().expect("items");
    let list = serde_json::json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": items});
    let all = audit(&["-f", "-", "--now", NOW, "-o", "json", "--fail-on", "none"], Some(&list.to_string()));
    assert_eq!(all.status.code(), Some(0), "{}", text(&all.stderr));
    let all: Vec<serde_json::Value> = serde_json::from_slice(&all.stdout).expect("JSON");
    let first = &items[0];
    let one = audit(&["-f", "-", "--now", NOW, "-o", "json", "--fail-on", "none"], Some(&first.to_string()));
    assert_eq!(one.status.code(), Some(0), "{}", text(&one.stderr));
    let one: Vec<serde_json::Value> = serde_json::from_slice(&one.stdout).expect("JSON");
    let name = first["metadata"]["name"].as_str().expect("name");
    let expected: Vec<&serde_json::Value> = all.iter().filter(|f| f["pod"] == name).collect();
    assert_eq!(one.iter().collect::<Vec<_>>(), expected, "the Pod alone gives its own findings");
    let empty = serde_json::json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": []});
    let none = audit(&["-f", "-", "--now", NOW], Some(&empty.to_string()));
    assert_eq!((none.status.code(), text(&none.stdout)), (Some(0), "No alerts.\n".to_string()), "an empty namespace");
}

/// `kubectl get ns,pods -A -o json`: a namespace labelled for Istio's injection and a Pod in it
/// without the proxy. The same Pod without its Namespace object, and a Deployment's template
/// in that namespace (written before injection), report nothing.
#[test]
fn namespace_objects_in_the_input_supply_the_injectors_markers() {
    let namespace = serde_json::json!({"apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": "shop", "labels": {"istio-injection": "enabled"}}});
    let pod = serde_json::json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web-1", "namespace": "shop", "uid": "u1", "creationTimestamp": "2025-06-03T10:00:00Z"},
        "spec": {"containers": [{"name": "app", "image": "shop/web:1"}]},
        "status": {"phase": "Running", "startTime": "2025-06-03T10:00:00Z"}});
    let deployment = serde_json::json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {"template": {"spec": {"containers": [{"name": "app", "image": "shop/web:1"}]}}}});
    let list = |items: Vec<&serde_json::Value>| {
        serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items}).to_string()
    };
    let missing = |input: String| -> Vec<(String, String, String)> {
        let out = audit(&["-f", "-", "--now", NOW, "-o", "json", "--fail-on", "none"], Some(&input));
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        let findings: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).expect("JSON array");
        findings
            .iter()
            .filter(|f| f["alertname"] == "SidecarMissing")
            .map(|f| {
                let field = |k: &str| f[k].as_str().unwrap_or_default().to_string();
                (field("pod"), field("container"), field("state"))
            })
            .collect()
    };
    assert_eq!(
        missing(list(vec![&namespace, &pod, &deployment])),
        [("web-1".to_string(), "istio-proxy".to_string(), "firing".to_string())]
    );
    assert!(missing(list(vec![&pod, &deployment])).is_empty(), "no Namespace object, no namespace marker");
}
