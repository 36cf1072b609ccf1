//! The admission policies (`sidecar-watch admission-policy`, docs/admission-policies.md) on a
//! real kube-apiserver: `kubectl apply` warns exactly `audit`'s findings of the checks the policy
//! covers, one warning each, and creates every object; nothing in excluded namespaces; a
//! 5,000-container Pod is admitted within the CEL budget; `Deny` refuses a Job that would never
//! complete and never refuses for cost. Each test starts a control plane of its own: the
//! policies are cluster-wide.
//!
//! kubectl prints the API server's warnings on stderr (`Warning: …`), which the harness'
//! `kubectl` helpers drop: `run_kubectl` (the suite's support) keeps them.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};
use sidecar_watch::admission::{covered_checks, covers};
use sidecar_watch_harness::cel_cost;
use sidecar_watch_harness::control_plane::Options;
use sidecar_watch_harness::env::{read_manifests, read_manifests_str, wait_until, TestEnv};
use sidecar_watch_harness::install;
use sidecar_watch_testkit::factory::flood_pod;

use crate::served_fields::remove_unserved_fields;
use crate::support::{run_kubectl, server_minor, Kubectl};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const SIDECAR_WATCH: &str = env!("CARGO_BIN_EXE_sidecar-watch");
/// What kubectl prints before each of the policy's messages.
const WARNING: &str =
    "Warning: Validation failed for ValidatingAdmissionPolicy 'sidecar-watch' with binding 'sidecar-watch': ";

/// The policy's messages in a kubectl run (`Kubectl` is the harness').
trait PolicyWarnings {
    /// The policy's messages, in the order kubectl printed them.
    fn warnings(&self) -> Vec<String>;
}

impl PolicyWarnings for Kubectl {
    fn warnings(&self) -> Vec<String> {
        self.stderr.lines().filter_map(|l| l.strip_prefix(WARNING)).map(str::to_string).collect()
    }
}

/// `audit`'s messages on `file` for the findings the policy covers: the covered
/// `SidecarMisconfigured` checks, `JobBlockedBySidecar` on Job and CronJob templates (on a
/// Pod it is a finding of the Pod's status, which admission does not see), and
/// `SidecarMissing` on Pods (the fixtures' Pods with markers run or pend).
fn audit_findings(file: &Path, policy: Option<&Path>) -> Vec<String> {
    let mut command = std::process::Command::new(SIDECAR_WATCH);
    command.arg("audit").arg("-f").arg(file).args(["-o", "json", "--fail-on", "none"]);
    if let Some(policy) = policy {
        command.arg("--policy").arg(policy);
    }
    let out = command.output().expect("sidecar-watch audit runs");
    assert!(out.status.success(), "audit {}: {}", file.display(), String::from_utf8_lossy(&out.stderr));
    let findings: Vec<Value> = serde_json::from_slice(&out.stdout).expect("audit -o json");
    let covered = covered_checks();
    let mut messages: Vec<String> = findings
        .iter()
        .filter(|f| match (f["alertname"].as_str(), f["check"].as_str(), f["kind"].as_str()) {
            (Some("SidecarMisconfigured"), Some(check), _) => {
                covered.contains(&check) || covers(check, f["message"].as_str().unwrap_or_default())
            }
            (Some("JobBlockedBySidecar"), _, Some(kind)) => matches!(kind, "Job" | "CronJob"),
            (Some("SidecarMissing"), _, Some("Pod")) => true,
            _ => false,
        })
        .filter_map(|f| f["message"].as_str().map(str::to_string))
        .collect();
    messages.sort();
    messages
}

/// The objects of a fixture as `kubectl create` takes them: the items of a List, without what
/// only the server writes (status, resourceVersion, uid, timestamps).
fn creatable(file: &Path) -> Vec<Value> {
    let mut objects = Vec::new();
    for doc in read_manifests(file).expect("fixture parses") {
        let items = match doc["kind"].as_str() {
            Some(kind) if kind.ends_with("List") => doc["items"].as_array().cloned().unwrap_or_default(),
            _ => vec![doc],
        };
        for mut object in items {
            if let Some(map) = object.as_object_mut() {
                map.remove("status");
            }
            if let Some(meta) = object["metadata"].as_object_mut() {
                for field in ["resourceVersion", "uid", "creationTimestamp", "managedFields", "generation"] {
                    meta.remove(field);
                }
            }
            objects.push(object);
        }
    }
    objects
}

fn as_yaml(objects: &[Value]) -> String {
    objects.iter().map(|o| serde_norway::to_string(o).expect("YAML")).collect::<Vec<_>>().join("---\n")
}

/// Creates the namespaces `objects` live in.
async fn create_namespaces(env: &TestEnv, objects: &[Value]) {
    let namespaces: BTreeSet<&str> =
        objects.iter().map(|o| o["metadata"]["namespace"].as_str().unwrap_or("default")).collect();
    for ns in namespaces {
        env.create_namespace(ns).await.unwrap_or_else(|e| panic!("namespace {ns}: {e}"));
    }
}

/// A Pod whose native sidecar has no probe: warned whenever the policy runs on `namespace`.
fn probe_pod(namespace: &str, name: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "initContainers": [{"name": "proxy", "image": "example/proxy:1.0", "restartPolicy": "Always",
                                "resources": {"requests": {"cpu": "10m"}}}],
            "containers": [{"name": "app", "image": "example/app:1.0"}],
        }
    })
}

/// Waits until the API server runs the policy: a server-side dry run of [`probe_pod`] warns
/// `expected` (the policy and binding are read by informers, a moment after they are written).
async fn wait_for_warning(env: &TestEnv, object: Value, expected: &str) {
    let yaml = as_yaml(&[object]);
    wait_until(Duration::from_secs(60), &format!("the policy warns {expected:?}"), || {
        let yaml = yaml.clone();
        async move {
            let out = run_kubectl(env, &["create", "--dry-run=server", "-f", "-"], &yaml).await;
            if out.warnings().iter().any(|w| w == expected) {
                Ok(())
            } else {
                Err(out.stderr)
            }
        }
    })
    .await
    .expect("the policy is in force");
}

/// The probe Pod's readiness-probe warning in namespace `default`.
fn probe_warning(name: &str) -> String {
    format!("Sidecar proxy in Pod default/{name} has no readinessProbe, so nothing waits for it to be ready")
}

async fn own_control_plane() -> TestEnv {
    let env = TestEnv::start_control_plane(Options::default()).await.expect("control plane");
    env.assert_reached_server().await.expect("/version");
    env
}

/// The ClusterRole docs/admission-policies.md gives whoever installs the policies.
fn documented_installer_role() -> Value {
    let doc = std::fs::read_to_string(Path::new(ROOT).join("docs/admission-policies.md")).expect("the docs");
    let block = doc
        .split("```yaml\n")
        .skip(1)
        .filter_map(|b| b.split("```").next())
        .find(|b| b.contains("name: sidecar-watch-admission-policy-installer"))
        .expect("docs/admission-policies.md shows the installer's ClusterRole");
    read_manifests_str(block, Path::new("docs/admission-policies.md")).expect("YAML").remove(0)
}

/// Installs `overlay` (a kustomization) as a ServiceAccount holding `role` (impersonated).
async fn install_as(env: &TestEnv, overlay: &str, role: &Value) -> Kubectl {
    let account = "system:serviceaccount:default:installer";
    let name = role["metadata"]["name"].as_str().expect("role name");
    let grant = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": "installer", "namespace": "default"}],
    });
    env.kubectl_apply(&as_yaml(&[role.clone(), grant])).await.expect("the installer's role");
    let rendered = as_yaml(&install::render(env, overlay).await.expect("kustomize"));
    run_kubectl(env, &["apply", "--as", account, "-f", "-"], &rendered).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_apply_warns_each_finding_once_and_creates_every_object() {
    let env = own_control_plane().await;
    // Installed with the documented RBAC, which the API server insists on: without `get` on
    // ClusterSidecarPolicies the policy is refused.
    let mut without_get = documented_installer_role();
    without_get["metadata"]["name"] = json!("installer-without-get");
    without_get["rules"].as_array_mut().expect("rules").retain(|r| r["apiGroups"][0] != "sidecarwatch.io");
    // The CRDs first, so that the refusal is about the role, not about a kind still unknown.
    env.install_crds(&Path::new(ROOT).join("crds")).await.expect("CRDs");
    let refused = install_as(&env, "config/admission-policies", &without_get).await;
    assert!(!refused.success, "installed without reading ClusterSidecarPolicies:\n{}", refused.stdout);
    assert!(
        refused.stderr.contains(
            "must have \"get\" permission on all objects of the referenced paramKind (kind=ClusterSidecarPolicy"
        ),
        "{}",
        refused.stderr
    );
    env.kubectl(["delete", "clusterrolebinding", "installer-without-get"]).await.expect("unbind");
    let policies = ["validatingadmissionpolicy", "validatingadmissionpolicybinding"];
    let left = env.kubectl(["get", &policies.join(","), "-o", "name"]).await.expect("get");
    assert!(!left.contains("validatingadmissionpolicy.admissionregistration.k8s.io/"), "{left}");
    let installed = install_as(&env, "config/admission-policies", &documented_installer_role()).await;
    assert!(installed.success, "the documented role cannot install the policies: {}", installed.stderr);
    let stored = env.kubectl(["get", &policies.join(","), "-o", "name"]).await.expect("get");
    for object in policies {
        let name = format!("{object}.admissionregistration.k8s.io/sidecar-watch");
        assert!(stored.lines().any(|l| l == name), "{name} not installed:\n{}\n{stored}", installed.stdout);
    }
    wait_for_warning(&env, probe_pod("default", "probe"), &probe_warning("probe")).await;

    // The seed workloads: one warning per finding, audit's messages, every object created.
    let seed = Path::new(ROOT).join("tests/fixtures/manifests/seed-workloads.yaml");
    let objects = creatable(&seed);
    create_namespaces(&env, &objects).await;
    let applied = run_kubectl(&env, &["apply", "-f", "-"], &as_yaml(&objects)).await;
    assert!(applied.success, "{}", applied.stderr);
    let mut warnings = applied.warnings();
    warnings.sort();
    let expected = audit_findings(&seed, None);
    assert_eq!(warnings, expected, "kubectl apply's warnings are not audit's findings:\n{}", applied.stderr);
    assert_eq!(expected.len(), 5, "the seed workloads' findings: {expected:#?}");
    assert!(
        warnings.iter().any(|w| w.starts_with("CronJob/backup runs sidecar istio-proxy in spec.containers")
            && w.contains(
                "the Job will never complete; annotate the Pod template with sidecar.istio.io/nativeSidecar"
            )),
        "{warnings:#?}"
    );
    for object in [
        "configmap/envoy-config",
        "service/web",
        "deployment.apps/web",
        "job.batch/report",
        "cronjob.batch/backup",
        "statefulset.apps/db",
    ] {
        assert!(applied.stdout.contains(&format!("{object} created")), "{object} not created:\n{}", applied.stdout);
    }
    let stored = env.kubectl(["get", "deployments,statefulsets,jobs,cronjobs", "-A", "-o", "name"]).await.expect("get");
    for object in ["deployment.apps/web", "statefulset.apps/db", "job.batch/report", "cronjob.batch/backup"] {
        assert!(stored.contains(object), "{object} not stored:\n{stored}");
    }

    // A clean manifest: created without a word.
    let healthy = creatable(&Path::new(ROOT).join("tests/fixtures/healthy-mesh.yaml"));
    create_namespaces(&env, &healthy).await;
    let clean = run_kubectl(&env, &["apply", "-f", "-"], &as_yaml(&healthy)).await;
    assert!(clean.success && clean.warnings().is_empty(), "{clean:?}");

    // Excluded namespaces: kube-system, and one labelled sidecarwatch.io/admission=disabled.
    env.create_namespace("legacy-opted-out").await.expect("namespace");
    env.kubectl(["label", "namespace", "legacy-opted-out", "sidecarwatch.io/admission=disabled"]).await.expect("label");
    for namespace in ["kube-system", "legacy-opted-out"] {
        let out = run_kubectl(&env, &["apply", "-f", "-"], &as_yaml(&[probe_pod(namespace, "probe")])).await;
        assert!(out.success, "{}", out.stderr);
        assert_eq!(out.warnings(), Vec::<String>::new(), "the policy ran in {namespace}");
    }

    // A namespace whose label asks Istio for its proxy, and no injector to add it (its webhook
    // failed open): the Pod is created, with audit's SidecarMissing word for word.
    let meshed = json!({"apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": "meshed", "labels": {"istio-injection": "enabled"}}});
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "orders", "namespace": "meshed"},
        "spec": {"containers": [{"name": "app", "image": "example/app:1.0"}]}});
    env.kubectl_apply(&as_yaml(std::slice::from_ref(&meshed))).await.expect("the meshed namespace");
    let created = run_kubectl(&env, &["create", "-f", "-"], &as_yaml(std::slice::from_ref(&pod))).await;
    assert!(created.success && created.stdout.contains("pod/orders created"), "{}", created.stderr);
    let both = env.dir().join("meshed.yaml");
    std::fs::write(&both, as_yaml(&[meshed, pod])).expect("write the namespace and the Pod");
    let missing = audit_findings(&both, None);
    assert_eq!(created.warnings(), missing, "{}", created.stderr);
    assert_eq!(missing.len(), 1, "{missing:#?}");
    assert!(missing[0].starts_with("Pod meshed/orders runs no istio-proxy (Istio), which the label istio-injection=\"enabled\" on namespace meshed asks for: "), "{missing:#?}");

    // The hostile tenant's 5,000-container Pod: admitted, with what fits in the warnings.
    let flood = flood_pod(5000);
    env.create_namespace("flood").await.expect("namespace");
    let flood_file = env.dir().join("flood.json");
    std::fs::write(&flood_file, flood.to_string()).expect("write the flood Pod");
    let created = run_kubectl(&env, &["create", "-f", "-"], &flood.to_string()).await;
    assert!(created.success && created.stdout.contains("pod/flood created"), "{}", created.stderr);
    let flood_findings = audit_findings(&flood_file, None);
    // 32 sidecars evaluated, each without readiness probe and resources, each legacy; sprawl.
    assert_eq!(flood_findings.len(), 97);
    let (summary, shown) = created.warnings().split_last().map(|(s, w)| (s.clone(), w.to_vec())).expect("warnings");
    assert!(shown.len() >= 10, "{shown:#?}");
    assert!(shown.iter().all(|w| flood_findings.contains(w)), "{shown:#?}");
    assert_eq!(
        summary,
        format!(
            "Pod flood/flood has {} more sidecar findings than one response's warnings can hold (4 KiB); sidecar-watch audit lists them all",
            97 - shown.len()
        )
    );
    let warned: usize = created.stderr.lines().filter(|l| l.starts_with("Warning: ")).map(|l| l.chars().count()).sum();
    assert!(warned <= 4096 + 9 * (shown.len() + 1), "the warnings overflow 4 KiB and were cut: {warned} characters");
}

/// A ClusterSidecarPolicy that changes every parameter the policy reads: `namespaceSelector`
/// (not `billing`), `selector` (an `app` label), sidecars only by name and pattern (no native,
/// no catalog).
const PLATFORM_POLICY: &str = "\
apiVersion: sidecarwatch.io/v1alpha1
kind: ClusterSidecarPolicy
metadata: {name: platform}
spec:
  namespaceSelector:
    matchExpressions: [{key: kubernetes.io/metadata.name, operator: NotIn, values: [billing]}]
  selector:
    matchExpressions: [{key: app, operator: Exists}]
  sidecars:
    native: false
    catalog: false
    names: [audit-logger, fluent-bit, istio-proxy, audit-probe]
    pattern: \".*-(sidecar|shipper)\"
";

/// Every manifest of the project's fixtures.
fn fixtures() -> Vec<PathBuf> {
    let mut files = Vec::new();
    for dir in ["tests/fixtures", "tests/fixtures/manifests"] {
        for entry in std::fs::read_dir(Path::new(ROOT).join(dir)).expect("fixtures").flatten() {
            if entry.path().extension().is_some_and(|e| e == "yaml") {
                files.push(entry.path());
            }
        }
    }
    files.sort();
    files
}

/// For every fixture: the warnings of a server-side dry run are exactly audit's covered findings.
/// On a server older than the fixture (the 1.37 features' on 1.33, which CI runs too), the
/// fields it does not know are left out, as the users of that release write their Pods, and
/// audit reads the same objects; on 1.33 the fixture as written is refused naming the field.
async fn assert_agreement(env: &TestEnv, policy: Option<&Path>) -> usize {
    let minor = server_minor(env).await;
    let mut findings = 0;
    for fixture in fixtures() {
        let mut objects = creatable(&fixture);
        let mut removed = false;
        for object in &mut objects {
            removed |= remove_unserved_fields(object, minor);
        }
        create_namespaces(env, &objects).await;
        let file = if removed {
            if minor < 34 {
                let written = as_yaml(&creatable(&fixture));
                let out = run_kubectl(env, &["create", "--dry-run=server", "-f", "-"], &written).await;
                assert!(
                    !out.success && out.stderr.contains("unknown field") && out.stderr.contains(".restartPolicyRules"),
                    "1.{minor} took {}: {}",
                    fixture.display(),
                    out.stderr
                );
            }
            let name = fixture.file_name().expect("a file name").to_string_lossy().into_owned();
            let path = env.dir().join(format!("for-1.{minor}-{name}"));
            std::fs::write(&path, as_yaml(&objects)).expect("write the fixture for this server");
            path
        } else {
            fixture.clone()
        };
        let out = run_kubectl(env, &["create", "--dry-run=server", "-f", "-"], &as_yaml(&objects)).await;
        assert!(out.success, "{}: {}", file.display(), out.stderr);
        let mut warnings = out.warnings();
        warnings.sort();
        let expected = audit_findings(&file, policy);
        assert_eq!(warnings, expected, "{} (policy {policy:?}):\n{}", file.display(), out.stderr);
        findings += expected.len();
    }
    findings
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fixture_gets_audits_findings_with_the_builtin_policy_and_a_cluster_policy() {
    let env = own_control_plane().await;
    env.install_crds(&Path::new(ROOT).join("crds")).await.expect("CRDs");
    // The chart's rendering this time, with the built-in policy.
    let helm = install::helm().expect("helm");
    let render = |extra: &[&str]| {
        let out = std::process::Command::new(&helm)
            .args(["template", "sidecar-watch", "charts/sidecar-watch", "--namespace", install::OPERATOR_NAMESPACE])
            .args(["--show-only", "templates/admission-policy.yaml", "--set", "admissionPolicies.enabled=true"])
            .args(extra)
            .current_dir(ROOT)
            .output()
            .expect("helm runs");
        assert!(out.status.success(), "helm template: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    env.kubectl_apply(&render(&[])).await.expect("the chart's policy and binding");
    wait_for_warning(&env, probe_pod("default", "probe"), &probe_warning("probe")).await;
    let builtin = assert_agreement(&env, None).await;
    assert!(builtin >= 18, "the fixtures have fewer findings than expected: {builtin}");

    // Bound to a ClusterSidecarPolicy: its selectors and sidecars apply.
    let policy_file = env.dir().join("platform.yaml");
    std::fs::write(&policy_file, PLATFORM_POLICY).expect("write the policy");
    env.kubectl_apply(PLATFORM_POLICY).await.expect("the ClusterSidecarPolicy");
    env.kubectl_apply(&render(&["--set", "admissionPolicies.clusterSidecarPolicy=platform"])).await.expect("bound");
    // A regular container named as the policy names it, with an app label: only the bound
    // policy makes it a sidecar.
    let named = json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "named", "namespace": "default", "labels": {"app": "x"}},
        "spec": {"containers": [{"name": "app", "image": "example/app:1.0"},
                                {"name": "audit-probe", "image": "example/audit:1.0", "readinessProbe": {"exec": {"command": ["true"]}},
                                 "resources": {"requests": {"cpu": "10m"}}}]}
    });
    let legacy = "Sidecar audit-probe in Pod default/named is declared in spec.containers: the kubelet starts and stops it alongside the main containers in no guaranteed order, so the app can start before it is ready and lose it while still shutting down; make it a native sidecar (in initContainers with restartPolicy: Always, Kubernetes 1.29+, or through its injector's native-sidecar setting): the kubelet then starts it before the main containers and stops it after them";
    wait_for_warning(&env, named, legacy).await;
    let with_policy = assert_agreement(&env, Some(&policy_file)).await;
    assert!(with_policy > 0 && with_policy != builtin, "the ClusterSidecarPolicy changed nothing: {with_policy}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deny_refuses_a_job_that_would_never_complete_but_never_for_cost() {
    let env = own_control_plane().await;
    // The CRDs before the policy, which the API server runs only once it knows their kinds.
    env.install_crds(&Path::new(ROOT).join("crds")).await.expect("CRDs");
    let rendered = install::render(&env, "config/admission-policies-deny").await.expect("kustomize");
    env.kubectl_apply(&as_yaml(&rendered)).await.expect("the Deny policies");
    env.create_namespace("batch").await.expect("namespace");
    let seed = creatable(&Path::new(ROOT).join("tests/fixtures/manifests/seed-workloads.yaml"));
    let job = seed.iter().find(|o| o["kind"] == "Job").expect("the seed Job").clone();
    let message = "Job/report runs sidecar fluent-bit in spec.containers: it keeps running after the main containers finish, so the Job will never complete; declare it in initContainers with restartPolicy: Always (a native sidecar, Kubernetes 1.29+): the kubelet stops it once the main containers have finished";
    let job_yaml = as_yaml(std::slice::from_ref(&job));
    wait_until(Duration::from_secs(60), "the policy refuses the Job", || {
        let (env, yaml) = (&env, job_yaml.clone());
        async move {
            let out = run_kubectl(env, &["apply", "--dry-run=server", "-f", "-"], &yaml).await;
            if out.success {
                Err(out.stdout)
            } else {
                Ok(())
            }
        }
    })
    .await
    .expect("the policy is in force");
    let refused = run_kubectl(&env, &["apply", "-f", "-"], &job_yaml).await;
    assert!(!refused.success, "admitted: {}", refused.stdout);
    assert!(
        refused.stderr.contains(&format!(
            "jobs.batch \"report\" is forbidden: ValidatingAdmissionPolicy 'sidecar-watch' with binding 'sidecar-watch' denied request: {message}"
        )),
        "{}",
        refused.stderr
    );
    assert!(refused.warnings().is_empty(), "Deny does not warn as well: {}", refused.stderr);

    // The same Job with a native sidecar (probes, resources, a pinned image): admitted.
    let mut fixed = job.clone();
    let sidecar = json!({"name": "fluent-bit", "image": "cr.fluentbit.io/fluent/fluent-bit:3.0.4", "restartPolicy": "Always",
                          "readinessProbe": {"httpGet": {"path": "/api/v1/health", "port": 2020}},
                          "startupProbe": {"httpGet": {"path": "/api/v1/health", "port": 2020}},
                          "resources": {"requests": {"cpu": "50m"}}});
    fixed["spec"]["template"]["spec"]["initContainers"] = json!([sidecar]);
    fixed["spec"]["template"]["spec"]["containers"] = json!([{"name": "worker", "image": "batch/report:2.0"}]);
    let admitted = run_kubectl(&env, &["apply", "-f", "-"], &as_yaml(&[fixed])).await;
    assert!(admitted.success && admitted.stdout.contains("job.batch/report created"), "{}", admitted.stderr);

    // A Pod too costly to evaluate (5,000 containers with 63-character names and 400-character
    // image references run past the per-expression limit): admitted even with Deny, since
    // failurePolicy is Ignore.
    env.create_namespace("flood").await.expect("namespace");
    let mut costly = flood_pod(5000);
    let image = format!("registry.example/{}/flood:1.0", "x".repeat(380));
    for (i, container) in costly["spec"]["containers"].as_array_mut().expect("containers").iter_mut().enumerate() {
        container["name"] = json!(format!("c{i:04}-{}", "x".repeat(57)));
        container["image"] = json!(image);
    }
    let file = env.dir().join("costly.json");
    std::fs::write(&file, costly.to_string()).expect("write");
    let policy = env.dir().join("policy.yaml");
    std::fs::write(&policy, as_yaml(&rendered)).expect("write");
    let report = cel_cost::evaluate(&policy, &file, None).expect("cel-cost");
    assert!(report.errors.iter().any(|e| e.contains("cost")), "the Pod is not over the limit: {report:#?}");
    let out = run_kubectl(&env, &["create", "--dry-run=server", "-f", "-"], &costly.to_string()).await;
    assert!(out.success && out.stdout.contains("pod/flood created (server dry run)"), "{}", out.stderr);
}
