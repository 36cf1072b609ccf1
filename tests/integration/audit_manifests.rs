//! `audit` in CI, as a platform team runs it: on rendered manifests (`helm template`,
//! kustomize output), its output formats (YAML, SARIF validated against the official schema),
//! a closed pipe or a full disk, hostile text, hostile nesting.

use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Output, Stdio};

use serde_json::Value;
use sidecar_watch_testkit::audit::{json, text};

use crate::SIDECAR_WATCH;
use sidecar_watch_testkit::factory::{write_list, PodFactory};

const NOW: &str = "2025-06-03T10:30:00Z";
const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn sidecar_watch() -> Command {
    SIDECAR_WATCH.command()
}

fn audit(args: &[&str], stdin: Option<&[u8]>) -> Output {
    SIDECAR_WATCH.run(args, stdin)
}

/// `(pod, container, alertname/check, severity, identified_by, workload_kind/workload)`.
fn summary(findings: &[Value]) -> Vec<String> {
    findings
        .iter()
        .map(|f| {
            let alert = match f["check"].as_str() {
                Some(check) => format!("{}/{check}", f["alertname"].as_str().unwrap_or_default()),
                None => f["alertname"].as_str().unwrap_or_default().to_string(),
            };
            format!(
                "{} {} {alert} {} {} {}/{}",
                f["pod"].as_str().unwrap_or_default(),
                f["container"].as_str().unwrap_or_default(),
                f["severity"].as_str().unwrap_or_default(),
                f["identified_by"].as_str().unwrap_or("-"),
                f["workload_kind"].as_str().unwrap_or_default(),
                f["workload"].as_str().unwrap_or_default(),
            )
        })
        .collect()
}

#[test]
fn workload_manifests_get_the_static_checks_and_jobs_the_never_completes_warning() {
    let out = audit(&["-f", "tests/fixtures/manifests/seed-workloads.yaml", "--now", NOW, "-o", "json"], None);
    assert_eq!(out.status.code(), Some(1), "warnings fire: {}", text(&out.stderr));
    let findings = json(&out);
    assert_eq!(
        summary(&findings),
        [
            "CronJob/backup istio-proxy JobBlockedBySidecar warning catalog:istio CronJob/backup",
            "Job/report fluent-bit JobBlockedBySidecar warning catalog:fluent-bit Job/report",
            "CronJob/backup istio-proxy SidecarMisconfigured/legacy-sidecar info catalog:istio CronJob/backup",
            "Job/report fluent-bit SidecarMisconfigured/legacy-sidecar info catalog:fluent-bit Job/report",
            "Deployment/web envoy SidecarMisconfigured/main-probe-on-sidecar info native Deployment/web",
            "Deployment/web envoy SidecarMisconfigured/no-startup-probe info native Deployment/web",
        ]
    );
    let kinds: Vec<&str> = findings.iter().filter_map(|f| f["kind"].as_str()).collect();
    assert_eq!(kinds, ["CronJob", "Job", "CronJob", "Job", "Deployment", "Deployment"]);
    // A template has no clocks.
    assert!(findings.iter().all(|f| f["since"].is_null() && f["state"] == "firing"));
    let backup = &findings[0]["message"];
    assert!(backup
        .as_str()
        .is_some_and(|m| m.contains("never complete") && m.contains("sidecar.istio.io/nativeSidecar")));
    // A template-only stream with nothing wrong is clean, whatever else it holds.
    let clean = "apiVersion: v1\nkind: Service\nmetadata: {name: s}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n";
    let out = audit(&["-f", "-", "--fail-on", "info"], Some(clean.as_bytes()));
    assert_eq!((out.status.code(), text(&out.stdout)), (Some(0), "No alerts.\n".to_string()), "{}", text(&out.stderr));
}

#[test]
fn pods_using_kubernetes_1_37_fields_decode_and_get_the_mesh_and_hook_checks() {
    // Every Pod of the file is accepted by kube-apiserver 1.37.2 (its header lists the gates);
    // restart rules, resize policies and stop signals never fail the audit.
    let out = audit(
        &["-f", "tests/fixtures/manifests/k8s-1.37-features.yaml", "--now", NOW, "-o", "json", "--fail-on", "info"],
        None,
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let findings = json(&out);
    assert_eq!(
        summary(&findings),
        [
            "init-before-proxy istio-proxy SidecarMisconfigured/init-before-proxy info native Pod/init-before-proxy",
            "prestop-quit envoy SidecarMisconfigured/native-prestop info native Pod/prestop-quit",
        ]
    );
    let message = findings[0]["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with(
            "Init container migrate in Pod billing/init-before-proxy runs before native sidecar istio-proxy"
        ),
        "{message}"
    );
    let sarif = audit(&["-f", "tests/fixtures/manifests/k8s-1.37-features.yaml", "--now", NOW, "-o", "sarif"], None);
    let sarif: Value = serde_json::from_slice(&sarif.stdout).expect("SARIF");
    let rules: Vec<&str> = sarif["runs"][0]["tool"]["driver"]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["id"].as_str())
        .collect();
    assert!(
        rules.contains(&"SidecarMisconfigured/init-before-proxy")
            && rules.contains(&"SidecarMisconfigured/native-prestop"),
        "{rules:?}"
    );
}

/// The helm binary of the project's tools script (the harness installs it when missing).
fn helm() -> std::path::PathBuf {
    sidecar_watch_harness::install::helm().expect("helm")
}

#[test]
fn helm_template_of_a_chart_with_an_injected_proxy_pipes_into_audit() {
    let rendered = Command::new(helm())
        .args(["template", "shop", "tests/fixtures/charts/meshed-app", "--namespace", "shop"])
        .current_dir(ROOT)
        .output()
        .expect("helm runs");
    assert!(rendered.status.success(), "{}", text(&rendered.stderr));
    let out = audit(&["-f", "-", "-o", "json", "--fail-on", "info"], Some(&rendered.stdout));
    assert_eq!(out.status.code(), Some(1), "info findings with --fail-on info: {}", text(&out.stderr));
    let findings = json(&out);
    assert_eq!(
        summary(&findings),
        [
            "Deployment/shop-web linkerd-proxy SidecarMisconfigured/legacy-sidecar info catalog:linkerd Deployment/shop-web",
            "Deployment/shop-web linkerd-proxy SidecarMisconfigured/no-resources info catalog:linkerd Deployment/shop-web",
        ]
    );
    assert!(findings[0]["message"].as_str().is_some_and(|m| m.contains("proxy-enable-native-sidecar")));
    // The default threshold (warning) passes the same chart in CI.
    assert_eq!(audit(&["-f", "-"], Some(&rendered.stdout)).status.code(), Some(0));
}

#[test]
fn yaml_output_is_the_json_data() {
    let args = ["-f", "examples/pods.json", "--now", NOW, "--fail-on", "none"];
    let as_json = json(&audit(&[&args[..], &["-o", "json"]].concat(), None));
    let yaml = audit(&[&args[..], &["-o", "yaml"]].concat(), None);
    assert_eq!(yaml.status.code(), Some(0), "{}", text(&yaml.stderr));
    let as_yaml: Vec<Value> = serde_norway::from_slice(&yaml.stdout).expect("YAML");
    assert!(!as_json.is_empty());
    assert_eq!(as_yaml, as_json);
    let empty = audit(&["-f", "tests/fixtures/healthy-mesh.yaml", "--now", NOW, "-o", "yaml"], None);
    assert_eq!(text(&empty.stdout), "[]\n");
}

#[test]
fn sarif_output_validates_against_the_sarif_2_1_0_schema() {
    let out = audit(
        &[
            "-f",
            "examples/pods.json",
            "-f",
            "tests/fixtures/manifests/seed-workloads.yaml",
            "--now",
            NOW,
            "-o",
            "sarif",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let log: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let sarif = std::env::temp_dir().join(format!("audit-{}.sarif", std::process::id()));
    std::fs::write(&sarif, &out.stdout).expect("write");
    // The official schema (vendored from the @microsoft/jest-sarif npm package, MIT), checked
    // with the `jsonschema` package that scripts/deploy/install-tools.sh installs.
    let check = Command::new("python3")
        .args([
            "-c",
            "import json, sys, jsonschema\n\
             schema = json.load(open(sys.argv[1])); log = json.load(open(sys.argv[2]))\n\
             jsonschema.Draft4Validator(schema).validate(log)\nprint('valid')",
            "tests/fixtures/sarif-schema-2.1.0.json",
        ])
        .arg(&sarif)
        .current_dir(ROOT)
        .output()
        .expect("python3 runs");
    assert_eq!(text(&check.stdout).trim(), "valid", "{}", text(&check.stderr));

    let run = &log["runs"][0];
    let rules = run["tool"]["driver"]["rules"].as_array().expect("rules");
    let ids: Vec<&str> = rules.iter().filter_map(|r| r["id"].as_str()).collect();
    assert!(ids.contains(&"SidecarCrashLooping") && ids.contains(&"SidecarMisconfigured/main-probe-on-sidecar"));
    let crash = rules.iter().find(|r| r["id"] == "SidecarCrashLooping").expect("rule");
    assert!(crash["help"]["markdown"].as_str().is_some_and(|h| h.starts_with("# SidecarCrashLooping")));
    let results = run["results"].as_array().expect("results");
    let job = results.iter().find(|r| r["ruleId"] == "JobBlockedBySidecar" && r["level"] == "warning");
    let job = job.expect("a JobBlockedBySidecar result");
    assert_eq!(rules[job["ruleIndex"].as_u64().expect("index") as usize]["id"], "JobBlockedBySidecar");
    let located: Vec<(&str, &str)> = results
        .iter()
        .map(|r| {
            let location = &r["locations"][0];
            (
                location["physicalLocation"]["artifactLocation"]["uri"].as_str().unwrap_or_default(),
                location["logicalLocations"][0]["fullyQualifiedName"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert!(located.contains(&("tests/fixtures/manifests/seed-workloads.yaml", "batch/CronJob/backup")), "{located:?}");
    assert!(located.iter().any(|(file, name)| *file == "examples/pods.json" && name.contains("/Pod/")), "{located:?}");
    let critical = results.iter().filter(|r| r["level"] == "error").count();
    assert!(critical >= 2, "critical alerts are SARIF errors");
}

#[test]
fn a_closed_pipe_ends_quietly_and_a_full_disk_is_an_error() {
    // `audit … | head -1`: the reader has gone before the result is written. As git and
    // kubectl do, the process ends silently by SIGPIPE (141 in a shell), whatever it found.
    for (format, fail_on) in [("json", "none"), ("table", "warning"), ("sarif", "info")] {
        // The reader is gone before the process starts: with a pipe read only after the
        // spawn, a busy machine let the whole (small) result fit in the pipe first.
        let (reader, writer) = std::io::pipe().expect("a pipe");
        drop(reader);
        let out = sidecar_watch()
            .args(["audit", "-f", "examples/pods.json", "--now", NOW, "--fail-on", fail_on, "-o", format])
            .stdout(writer)
            .stderr(Stdio::piped())
            .output()
            .expect("runs");
        assert_eq!(
            (out.status.code(), out.status.signal()),
            (None, Some(libc::SIGPIPE)),
            "-o {format}, no panic: {}",
            text(&out.stderr)
        );
        assert!(out.stderr.is_empty(), "nothing to say: {}", text(&out.stderr));
    }
    // Through a shell pipeline whose reader stops after one line, with more output than a pipe
    // holds (2,000 Pods), so that the write after `head` exits always fails.
    let dump = std::env::temp_dir().join(format!("audit-pipe-{}.json", std::process::id()));
    let mut file = std::io::BufWriter::new(std::fs::File::create(&dump).expect("create"));
    write_list(&PodFactory::new(), 2000, &mut file).expect("write the dump");
    file.flush().expect("flush");
    drop(file);
    let pipeline = format!(
        "set -o pipefail; {} audit -f {} -o yaml --now {NOW} | head -1; echo \"status=$?\"",
        env!("CARGO_BIN_EXE_sidecar-watch"),
        dump.display()
    );
    let out = Command::new("bash").args(["-c", &pipeline]).current_dir(ROOT).output().expect("bash runs");
    let _ = std::fs::remove_file(&dump);
    let lines: Vec<String> = text(&out.stdout).lines().map(str::to_string).collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines[0].starts_with("- alertname: "), "{lines:?}");
    assert_eq!(lines[1], "status=141", "{}", text(&out.stderr));
    assert!(out.stderr.is_empty(), "{}", text(&out.stderr));

    // `> /dev/full`: exit 2 and the writer's own error, in every format.
    for format in ["table", "json", "yaml", "sarif"] {
        let full = std::fs::OpenOptions::new().write(true).open("/dev/full").expect("/dev/full");
        let out = sidecar_watch()
            .args(["audit", "-f", "examples/pods.json", "--now", NOW, "-o", format])
            .stdout(full)
            .output()
            .expect("runs");
        assert_eq!(out.status.code(), Some(2), "-o {format}: {}", text(&out.stderr));
        assert_eq!(
            text(&out.stderr),
            "sidecar-watch audit: writing the result: No space left on device (os error 28)\n",
            "-o {format}"
        );
    }
}

#[test]
fn a_termination_message_cannot_rewrite_the_terminal() {
    let hostile = "\u{1b}]0;owned\u{7}\u{1b}[2J\u{1b}[1;1Hall good";
    let pod = serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web-1", "namespace": "shop", "creationTimestamp": "2025-06-03T10:00:00Z"},
        "spec": {"containers": [{"name": "app", "image": "a:1"}, {"name": "log-sidecar", "image": "b:1"}]},
        "status": {"startTime": "2025-06-03T10:00:00Z", "containerStatuses": [
            {"name": "app", "ready": true, "restartCount": 0, "state": {"running": {"startedAt": "2025-06-03T10:00:00Z"}}},
            {"name": "log-sidecar", "ready": false, "restartCount": 4,
             "state": {"waiting": {"reason": "CrashLoopBackOff"}},
             "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "message": hostile,
                                          "startedAt": "2025-06-03T10:20:00Z", "finishedAt": "2025-06-03T10:21:00Z"}}}]}
    });
    let out = audit(&["-f", "-", "--now", NOW, "--fail-on", "none"], Some(pod.to_string().as_bytes()));
    let table = text(&out.stdout);
    assert!(!table.contains('\u{1b}') && !table.contains('\u{7}'), "{table:?}");
    assert!(table.contains("\\x1b]0;owned\\x07\\x1b[2J"), "{table}");
    // Ages read like kubectl's: 9 minutes since the crash loop began, not "9m0s ago".
    assert!(table.lines().any(|l| l.contains("SidecarCrashLooping") && l.contains(" 9m ")), "{table}");
    // No colour into a pipe.
    assert!(!table.contains("\u{1b}["), "{table:?}");
}

#[test]
fn hostile_nesting_is_refused_at_once() {
    let deep = |open: &str, close: &str| format!("{}{}", open.repeat(100_000), close.repeat(100_000));
    for (name, document, error) in [
        ("flow", format!("{}\n", deep("[", "]")), "recursion limit exceeded at line 1 column 128"),
        ("block", format!("{}x\n", "- ".repeat(100_000)), "recursion limit exceeded at line 1 column 257"),
        ("json", deep("[", "]"), "recursion limit exceeded at line 1 column 128"),
        // Flow nesting inside YAML is refused before the YAML parser sees it (it took 16 s).
        (
            "yaml value",
            format!("kind: Pod\nspec: {}\n", deep("[", "]")),
            "nested deeper than 128 levels at line 2 column 135",
        ),
        (
            "yaml List entry",
            format!("apiVersion: v1\nitems:\n- kind: Pod\n  spec: {}\nkind: List\n", deep("{a: ", "}")),
            "nested deeper than 128 levels at line 4 column 521",
        ),
    ] {
        let started = std::time::Instant::now();
        let out = audit(&["-f", "-"], Some(document.as_bytes()));
        assert_eq!(out.status.code(), Some(2), "{name}");
        assert_eq!(
            text(&out.stderr),
            format!("sidecar-watch audit: <stdin>: not valid JSON or YAML: {error}\n"),
            "{name}"
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(2), "{name} took {:?}", started.elapsed());
    }
}

/// On a terminal (a pty from util-linux's `script`) severities are coloured, unless
/// `NO_COLOR` is set; the columns stay aligned either way.
#[test]
fn colour_only_on_a_terminal_and_never_with_no_color() {
    let command =
        format!("{} audit -f examples/pods.json --now {NOW} --fail-on none", env!("CARGO_BIN_EXE_sidecar-watch"));
    let on_tty = |no_color: bool| {
        let mut script = Command::new("script");
        script.args(["-qec", &command, "/dev/null"]).current_dir(ROOT).env_remove("NO_COLOR");
        if no_color {
            script.env("NO_COLOR", "1");
        }
        let out = script.output().expect("script (util-linux) runs");
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout).replace('\r', "")
    };
    let coloured = on_tty(false);
    assert!(coloured.contains("\u{1b}[31mcritical\u{1b}[0m"), "{coloured:?}");
    let plain = on_tty(true);
    assert!(!plain.contains('\u{1b}'), "{plain:?}");
    // The same columns: colour codes do not count towards the width.
    let strip = |s: &str| {
        s.replace("\u{1b}[31m", "").replace("\u{1b}[33m", "").replace("\u{1b}[36m", "").replace("\u{1b}[0m", "")
    };
    assert_eq!(strip(&coloured), plain);
}

#[test]
fn init_containers_before_a_mesh_proxy_are_reported_only_where_the_mesh_redirects() {
    let out = audit(&["-f", "tests/fixtures/manifests/mesh-init-order.yaml", "-o", "json", "--fail-on", "info"], None);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let findings = json(&out);
    let cut_off: Vec<(&str, &str)> = findings
        .iter()
        .map(|f| {
            let message = f["message"].as_str().unwrap_or_default();
            (f["pod"].as_str().unwrap_or_default(), message.split(" in Pod ").next().unwrap_or_default())
        })
        .collect();
    assert_eq!(
        cut_off,
        [
            ("Deployment/istio-init", "Init container migrate"),
            ("Deployment/kuma", "Init container seed"),
            ("Deployment/linkerd-cni", "Init containers wait-for-db, seed"),
        ],
        "{findings:#?}"
    );
}

/// The checks of a catalog sidecar's own signal (`metrics-disabled`, `metrics-unreachable`,
/// `health-check-disabled`) in `findings`, summarised.
fn blindspots(findings: &[Value]) -> Vec<String> {
    let checks = ["metrics-disabled", "metrics-unreachable", "health-check-disabled"];
    let blind: Vec<Value> = findings.iter().filter(|f| checks.iter().any(|c| f["check"] == *c)).cloned().collect();
    summary(&blind)
}

#[test]
fn workload_templates_that_switch_a_sidecars_signal_off_get_exactly_those_checks() {
    let file = "tests/fixtures/manifests/signals-off.yaml";
    let out = audit(&["-f", file, "--now", NOW, "-o", "json", "--fail-on", "info"], None);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let findings = json(&out);
    assert_eq!(
        summary(&findings),
        [
            "Deployment/catalogue istio-proxy SidecarMisconfigured/metrics-unreachable info native Deployment/catalogue",
            "Deployment/docs git-sync SidecarMisconfigured/metrics-disabled info native Deployment/docs",
            "Deployment/orders daprd SidecarMisconfigured/metrics-disabled info native Deployment/orders",
            "Deployment/reports cloud-sql-proxy SidecarMisconfigured/health-check-disabled info native Deployment/reports",
            "Deployment/reports cloud-sql-proxy SidecarMisconfigured/metrics-disabled info native Deployment/reports",
        ]
    );
    let dapr = format!(
        "Sidecar daprd in Pod shop/Deployment/orders {}",
        sidecar_watch::engine::signal_texts::DAPR_METRICS_OFF
    );
    assert_eq!(findings[2]["message"], dapr.as_str());
}

#[test]
fn stock_injected_fixtures_get_no_blind_spot_check_but_vault_agents_default() {
    let mut files: Vec<String> = ["tests/fixtures", "tests/fixtures/manifests"]
        .iter()
        .flat_map(|dir| std::fs::read_dir(format!("{ROOT}/{dir}")).unwrap_or_else(|e| panic!("{dir}: {e}")).flatten())
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|e| e == "yaml") && !path.ends_with("signals-off.yaml"))
        .map(|path| path.display().to_string())
        .collect();
    files.sort();
    assert!(files.len() > 15, "{files:?}");
    let mut found = Vec::new();
    for file in &files {
        let out = audit(&["-f", file, "--now", NOW, "-o", "json"], None);
        assert!(matches!(out.status.code(), Some(0 | 1)), "{file}: {}", text(&out.stderr));
        found.extend(blindspots(&json(&out)));
    }
    // Istio, Linkerd, Kuma, Envoy and Fluent Bit as injected or documented keep their signal;
    // Vault Agent's injector configures no telemetry unless asked (docs/policies.md's table).
    assert_eq!(
        found,
        ["legacy-shop-7f8e9d0c1-b2n3m vault-agent SidecarMisconfigured/metrics-disabled info native Deployment/legacy-shop"]
    );
}

/// Two manifests of one Deployment (two overlays, or two teams' files, neither naming its
/// namespace) are two things to check: each is audited, in either order, and neither hides
/// the other. A List nested in a List, which kubectl applies whole, is audited whole.
#[test]
fn every_manifest_of_one_name_is_audited_and_nested_lists_are_read() {
    let deployment = |init: &str| {
        format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: web}}\nspec:\n  selector: {{matchLabels: {{app: web}}}}\n  \
             template:\n    metadata: {{labels: {{app: web}}}}\n    spec:\n      initContainers: [{init}]\n      \
             containers: [{{name: app, image: shop/web:1}}]\n"
        )
    };
    let dir = std::env::temp_dir().join(format!("audit-overlays-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let clean = dir.join("clean.yaml");
    let native = dir.join("native.yaml");
    std::fs::write(&clean, deployment("")).expect("write");
    std::fs::write(&native, deployment("{name: envoy, image: envoyproxy/envoy:v1.30.1, restartPolicy: Always}"))
        .expect("write");
    let (clean, native) = (clean.to_str().expect("utf-8"), native.to_str().expect("utf-8"));
    let findings = |files: &[&str]| {
        let mut args: Vec<&str> = files.iter().flat_map(|f| ["-f", *f]).collect();
        args.extend(["--now", NOW, "-o", "json"]);
        summary(&json(&audit(&args, None)))
    };
    let alone = findings(&[native]);
    let check = |check: &str| format!("Deployment/web envoy SidecarMisconfigured/{check} info native Deployment/web");
    assert_eq!(alone, ["no-readiness-probe", "no-resources", "no-startup-probe"].map(check));
    assert_eq!(findings(&[clean, native]), alone, "the clean one read first hides nothing");
    assert_eq!(findings(&[native, clean]), alone);

    let pod: Value =
        serde_norway::from_str(&deployment("{name: envoy, image: envoyproxy/envoy:v1.30.1, restartPolicy: Always}"))
            .expect("YAML");
    let nested = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": [{"apiVersion": "v1", "kind": "List", "items": [pod]}]});
    let out = audit(&["-f", "-", "--now", NOW, "-o", "json"], Some(nested.to_string().as_bytes()));
    assert_eq!(summary(&json(&out)), alone, "{}", text(&out.stderr));
    std::fs::remove_dir_all(&dir).ok();
}
