//! The blind-spot checks that read a container's flags and environment (git-sync's
//! `--http-bind`/`--http-metrics`, the Cloud SQL Auth Proxy's `--prometheus`,
//! `--health-check` and `--http-address`) say at admission what `audit` says, case by case:
//! flags with `=` or a separate value, one dash or two, quoted, refused values, repeated flags
//! (the last one the product accepts wins), flags inside a shell command, `args` over `command`
//! over the environment, both generations of git-sync's variables, v3's default against v4's,
//! loopback addresses in every spelling the engine knows, and separators other than a space;
//! past the words admission reads, it leaves the check to `audit`.
//!
//! The policy runs in kube-apiserver's own CEL admission library (`cel-messages`, see
//! [`sidecar_watch_harness::cel_cost::messages`]); `audit` reads the same Pods from one file.
//! `admission.rs` checks the same policy on a real kube-apiserver with the fixtures.

use std::collections::BTreeMap;
use std::path::Path;

use crate::support::scratch_dir;
use serde_json::{json, Value};
use sidecar_watch::engine::signal_texts;
use sidecar_watch_harness::cel_cost::{self, AdmissionCase};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const SIDECAR_WATCH: &str = env!("CARGO_BIN_EXE_sidecar-watch");

/// The checks these cases are about.
const CHECKS: [&str; 3] = ["metrics-disabled", "metrics-unreachable", "health-check-disabled"];

/// A container's `command`, `args` and `env`, as a case sets them.
struct Spec {
    what: String,
    command: Vec<&'static str>,
    args: Vec<&'static str>,
    env: Value,
}

fn spec(what: &str, command: &[&'static str], args: &[&'static str], env: Value) -> Spec {
    Spec { what: what.to_string(), command: command.to_vec(), args: args.to_vec(), env }
}

fn vars(pairs: &[(&str, &str)]) -> Value {
    Value::Array(pairs.iter().map(|(name, value)| json!({"name": name, "value": value})).collect())
}

/// git-sync's ways to set (or fail to set) its endpoint and `/metrics`.
fn git_sync_specs() -> Vec<Spec> {
    let none = || json!([]);
    vec![
        spec("nothing", &[], &[], none()),
        spec("both flags", &[], &["--repo=https://example.com/r", "--http-bind=:8080", "--http-metrics"], none()),
        spec("bind only", &[], &["--http-bind=:8080"], none()),
        spec("bind as a separate word, metrics false", &[], &["--http-bind", ":8080", "--http-metrics=false"], none()),
        spec("empty bind", &[], &["--http-bind=", "--http-metrics"], none()),
        spec("one dash", &[], &["-http-bind=:8080", "-http-metrics=true"], none()),
        spec("metrics turned off again", &[], &["--http-bind=:8080", "--http-metrics", "--http-metrics=0"], none()),
        spec("quoted values", &[], &["--http-bind=\":8080\"", "--http-metrics='true'"], none()),
        spec("refused metrics value", &[], &["--http-metrics=yes", "--http-bind=:1"], none()),
        spec("refused after accepted", &[], &["--http-metrics", "--http-metrics=yes", "--http-bind=:1"], none()),
        spec("bind with no value", &[], &["--http-metrics", "--http-bind"], none()),
        spec("bind, then one without value", &[], &["--http-bind=:1", "--http-metrics", "--http-bind"], none()),
        spec("one word with spaces", &[], &["--http-bind=:1 --http-metrics"], none()),
        spec("tab and newline", &[], &["--http-bind\t:8080\n--http-metrics"], none()),
        spec("no-break space", &[], &["--http-bind\u{a0}:8080", "--http-metrics"], none()),
        spec("longer flag names", &[], &["--http-bindx=:1", "--http-metricsx", "---http-bind=:1"], none()),
        spec("command and args", &["/git-sync", "--http-bind=:8080"], &["--http-metrics"], none()),
        spec("args over command", &["/git-sync", "--http-bind=:8080", "--http-metrics"], &["--http-bind="], none()),
        spec("shell command", &["sh", "-c", "exec /git-sync --http-bind=:8080 --http-metrics"], &[], none()),
        spec("v4 variables", &[], &[], vars(&[("GITSYNC_HTTP_BIND", ":8080"), ("GITSYNC_HTTP_METRICS", "true")])),
        spec("v3 variables", &[], &[], vars(&[("GIT_SYNC_HTTP_BIND", ":8080"), ("GIT_SYNC_HTTP_METRICS", " 1 ")])),
        spec("refused variable", &[], &["--http-bind=:1"], vars(&[("GITSYNC_HTTP_METRICS", "yes")])),
        spec(
            "flag over variable",
            &[],
            &["--http-metrics=false"],
            vars(&[("GITSYNC_HTTP_BIND", ":1"), ("GITSYNC_HTTP_METRICS", "true")]),
        ),
        spec(
            "empty variable after a set one",
            &[],
            &["--http-metrics"],
            vars(&[("GITSYNC_HTTP_BIND", ":1"), ("GIT_SYNC_HTTP_BIND", "  ")]),
        ),
        spec(
            "last variable wins",
            &[],
            &["--http-metrics"],
            vars(&[
                ("GITSYNC_HTTP_BIND", ":1"),
                ("GIT_SYNC_HTTP_BIND", ""),
                ("GITSYNC_HTTP_METRICS", "0"),
                ("GIT_SYNC_HTTP_METRICS", "T"),
            ]),
        ),
        spec(
            "from a ConfigMap",
            &[],
            &["--http-metrics"],
            json!([{"name": "GITSYNC_HTTP_BIND", "valueFrom": {"configMapKeyRef": {"name": "c", "key": "k"}}}]),
        ),
    ]
}

/// The Cloud SQL Auth Proxy's ways to set its `/metrics`, health check and address.
fn cloud_sql_specs() -> Vec<Spec> {
    let none = || json!([]);
    vec![
        spec("nothing", &[], &["my-project:us-central1:db"], none()),
        spec("all on", &[], &["--prometheus", "--health-check", "--http-address=0.0.0.0", "p:r:i"], none()),
        spec("metrics on localhost", &[], &["--prometheus", "--health-check"], none()),
        spec("address as a separate word", &[], &["--prometheus", "--http-address", "127.0.0.1"], none()),
        spec("IPv6 loopback", &[], &["--prometheus", "--http-address=[::1]"], none()),
        spec("localhost", &[], &["--prometheus", "--http-address=localhost"], none()),
        spec("quoted address", &[], &["--prometheus", "--http-address=\"0.0.0.0\"", "--health-check=True"], none()),
        spec("127 in another spelling", &[], &["--prometheus", "--http-address=127.1.2.3"], none()),
        spec("empty address", &[], &["--prometheus", "--http-address="], none()),
        spec("off by value", &[], &["--prometheus=false", "--health-check=F"], none()),
        spec(
            "turned off again",
            &[],
            &["--prometheus", "--prometheus=FALSE", "--health-check", "--health-check=0"],
            none(),
        ),
        spec("refused value", &[], &["--health-check=yes", "--prometheus=on"], none()),
        spec("address without value last", &[], &["--prometheus", "--http-address=::", "--http-address"], none()),
        spec(
            "shell command",
            &["/bin/sh", "-c", "/cloud-sql-proxy --prometheus --http-address 0.0.0.0 --health-check p:r:i"],
            &[],
            none(),
        ),
        spec(
            "args over command",
            &["/cloud-sql-proxy", "--prometheus", "--health-check"],
            &["--prometheus=0", "--health-check=false"],
            none(),
        ),
        spec(
            "variables",
            &[],
            &["p:r:i"],
            vars(&[
                ("CSQL_PROXY_PROMETHEUS", "true"),
                ("CSQL_PROXY_HEALTH_CHECK", "1"),
                ("CSQL_PROXY_HTTP_ADDRESS", "0.0.0.0"),
            ]),
        ),
        spec(
            "loopback variable",
            &[],
            &[],
            vars(&[("CSQL_PROXY_PROMETHEUS", "t"), ("CSQL_PROXY_HTTP_ADDRESS", "127.0.0.1")]),
        ),
        spec(
            "flag over variable",
            &[],
            &["--http-address=localhost"],
            vars(&[("CSQL_PROXY_PROMETHEUS", "TRUE"), ("CSQL_PROXY_HTTP_ADDRESS", "0.0.0.0")]),
        ),
        spec("refused variables", &[], &[], vars(&[("CSQL_PROXY_PROMETHEUS", "yes"), ("CSQL_PROXY_HEALTH_CHECK", "")])),
    ]
}

/// Containers past what admission reads (32 words, 128 characters, 32 variables, the first 4
/// such sidecars): `audit` reports them, admission leaves them to it.
fn beyond_the_bound() -> Vec<(String, Value)> {
    let long = format!("--repo={}", "r".repeat(122));
    let many: Vec<String> = (0..33).map(|i| format!("--x{i}")).collect();
    let vars: Vec<Value> = (0..33).map(|i| json!({"name": format!("V{i}"), "value": "x"})).collect();
    [
        ("33 args", json!({"args": many})),
        ("33 command words", json!({"command": many})),
        ("a word of 129 characters", json!({"args": [long]})),
        ("33 variables", json!({"env": vars})),
    ]
    .into_iter()
    .enumerate()
    .map(|(i, (what, mut container))| {
        container["name"] = json!("git-sync");
        container["image"] = json!("registry.k8s.io/git-sync/git-sync:v4.4.0");
        container["restartPolicy"] = json!("Always");
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": format!("b{i}"), "namespace": "s"},
            "spec": {"initContainers": [container], "containers": [{"name": "app", "image": "example/app:1.0"}]}});
        (what.to_string(), pod)
    })
    .chain(std::iter::once({
        // Otherwise clean, so that the four warnings fit in one response's 4 KiB.
        let probe = json!({"tcpSocket": {"port": 8080}});
        let syncs: Vec<Value> = (0..5)
            .map(|i| {
                json!({"name": format!("sync{i}"), "image": "registry.k8s.io/git-sync/git-sync:v4.4.0",
                    "restartPolicy": "Always", "startupProbe": probe, "readinessProbe": probe,
                    "resources": {"requests": {"cpu": "10m"}}})
            })
            .collect();
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "b4", "namespace": "s"},
            "spec": {"initContainers": syncs, "containers": [{"name": "app", "image": "example/app:1.0"}]}});
        ("the fifth of five git-syncs".to_string(), pod)
    }))
    .collect()
}

/// One bare, running Pod per (image, spec, declaration): `p<i>` in namespace `s`.
fn cases() -> Vec<(String, Value)> {
    let products: [(&str, &[&str], Vec<Spec>); 2] = [
        (
            "git-sync",
            &[
                "registry.k8s.io/git-sync/git-sync:v4.4.0",
                "registry.k8s.io/git-sync/git-sync:v3.6.9",
                "k8s.gcr.io/git-sync/git-sync:3.1.2@sha256:0123",
                "localhost:5000/git-sync",
            ],
            git_sync_specs(),
        ),
        ("cloud-sql-proxy", &["gcr.io/cloud-sql-connectors/cloud-sql-proxy:2.14.1"], cloud_sql_specs()),
    ];
    let mut cases = Vec::new();
    for (product, images, specs) in products {
        for image in images {
            for spec in &specs {
                for native in [true, false] {
                    let i = cases.len();
                    // By name for native sidecars, by image for the regular ones.
                    let name = if native { product } else { "helper" };
                    let mut container = json!({"name": name, "image": image, "command": spec.command,
                        "args": spec.args, "env": spec.env});
                    let mut pod_spec = json!({"containers": [{"name": "app", "image": "example/app:1.0"}]});
                    if native {
                        container["restartPolicy"] = json!("Always");
                        pod_spec["initContainers"] = json!([container]);
                    } else {
                        pod_spec["containers"].as_array_mut().expect("containers").push(container);
                    }
                    let pod = json!({"apiVersion": "v1", "kind": "Pod",
                        "metadata": {"name": format!("p{i}"), "namespace": "s"}, "spec": pod_spec});
                    cases.push((
                        format!("{product} {image} {} ({})", spec.what, if native { "native" } else { "regular" }),
                        pod,
                    ));
                }
            }
        }
    }
    cases
}

/// `audit`'s blind-spot messages by Pod name.
fn audit_messages(cases: &[(String, Value)], dir: &Path) -> BTreeMap<String, Vec<String>> {
    let items: Vec<Value> = cases
        .iter()
        .map(|(_, pod)| {
            let mut pod = pod.clone();
            pod["status"] = json!({"phase": "Running"});
            pod
        })
        .collect();
    let file = dir.join("cases.json");
    std::fs::write(&file, json!({"apiVersion": "v1", "kind": "List", "items": items}).to_string()).expect("write");
    let out = std::process::Command::new(SIDECAR_WATCH)
        .arg("audit")
        .arg("-f")
        .arg(&file)
        .args(["-o", "json", "--fail-on", "none"])
        .output()
        .expect("sidecar-watch audit runs");
    assert!(out.status.success(), "audit: {}", String::from_utf8_lossy(&out.stderr));
    let findings: Vec<Value> = serde_json::from_slice(&out.stdout).expect("audit -o json");
    let mut by_pod: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for f in findings.iter().filter(|f| CHECKS.iter().any(|c| f["check"] == *c)) {
        let (pod, message) = (f["pod"].as_str().expect("pod"), f["message"].as_str().expect("message"));
        by_pod.entry(pod.to_string()).or_default().push(message.to_string());
    }
    by_pod
}

#[test]
fn flags_and_variables_are_read_at_admission_as_audit_reads_them() {
    let dir = scratch_dir("admission-switches");
    let cases = cases();
    let beyond = beyond_the_bound();
    let expected = audit_messages(&[cases.as_slice(), beyond.as_slice()].concat(), &dir);
    let policy = Path::new(ROOT).join("config/components/admission-policies/validatingadmissionpolicy.yaml");
    let admitted: Vec<AdmissionCase> = cases
        .iter()
        .chain(&beyond)
        .map(|(_, pod)| AdmissionCase {
            object: pod.clone(),
            namespace_labels: BTreeMap::new(),
            namespace_annotations: BTreeMap::new(),
        })
        .collect();
    let answers = cel_cost::messages(&policy, &admitted, None, &dir).expect("cel-messages");
    let texts = [
        signal_texts::GIT_SYNC_METRICS_OFF,
        signal_texts::CLOUD_SQL_METRICS_OFF,
        signal_texts::CLOUD_SQL_METRICS_LOCAL,
        signal_texts::CLOUD_SQL_HEALTH_CHECK_OFF,
    ];
    let (mut wrong, mut fired, mut silent) = (Vec::new(), 0, 0);
    let (answers, past) = answers.split_at(cases.len());
    for ((what, pod), answer) in beyond.iter().zip(past) {
        let name = pod["metadata"]["name"].as_str().expect("name");
        let audit = expected.get(name).map(Vec::as_slice).unwrap_or_default();
        let admission = answer.messages.iter().filter(|m| m.ends_with(signal_texts::GIT_SYNC_METRICS_OFF)).count();
        let (want_audit, want_admission) = if name == "b4" { (5, 4) } else { (1, 0) };
        assert_eq!((audit.len(), admission), (want_audit, want_admission), "{what}: {audit:?} {:?}", answer.messages);
    }
    for ((what, pod), answer) in cases.iter().zip(answers.iter().cloned()) {
        assert!(answer.errors.is_empty(), "{what}: {:?}", answer.errors.first());
        let mut got: Vec<String> =
            answer.messages.into_iter().filter(|m| texts.iter().any(|t| m.ends_with(t))).collect();
        got.sort();
        let name = pod["metadata"]["name"].as_str().expect("name");
        let mut want = expected.get(name).cloned().unwrap_or_default();
        want.sort();
        fired += want.len();
        silent += usize::from(want.is_empty());
        if got != want {
            wrong.push(format!("{what}:\n  admission {got:#?}\n  audit     {want:#?}"));
        }
    }
    eprintln!("{} cases, {fired} findings, {silent} cases without, {} different", cases.len(), wrong.len());
    assert!(wrong.is_empty(), "{} of {} cases differ:\n{}", wrong.len(), cases.len(), wrong.join("\n"));
    // Enough of both answers that agreement means something.
    assert!(cases.len() >= 200 && fired >= 80 && silent >= 40, "{} cases, {fired} fired, {silent} silent", cases.len());
    let _ = std::fs::remove_dir_all(&dir);
}
