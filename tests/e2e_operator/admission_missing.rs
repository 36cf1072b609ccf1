//! `SidecarMissing` at admission says what `audit` says, case by case: every marker of every
//! injector in the engine's table ([`INJECTORS`]) with each value it reads (asking, opting out,
//! ignored), on the Pod and on its namespace, overruled and final, with the sidecar present as a
//! regular or a native container, on `hostNetwork`, bare, in the injector's own namespaces,
//! for each kind of owner, and with values a tenant wrote to be awkward; then
//! `spec.sidecars.required` of a bound ClusterSidecarPolicy.
//!
//! The policy runs in kube-apiserver's own CEL admission library (`cel-messages`, see
//! [`sidecar_watch_harness::cel_cost::messages`]), with each namespace's labels and annotations as
//! `namespaceObject`; `audit` reads the same Pods and Namespaces from one file.
//! `admission.rs` checks the same policy on a real kube-apiserver.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::support::scratch_dir;
use serde_json::{json, Value};
use sidecar_watch::engine::CatalogId;
use sidecar_watch::engine::{Inject, Marker, OptOut, Place, INJECTORS};
use sidecar_watch_harness::cel_cost::{self, AdmissionCase};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const SIDECAR_WATCH: &str = env!("CARGO_BIN_EXE_sidecar-watch");

/// A namespace's labels and annotations.
#[derive(Clone, Debug, Default)]
struct Namespace {
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
}

/// One Pod, alone in its namespace (`c<i>`) unless it tests the injector's own namespaces.
struct Case {
    what: String,
    namespace: String,
    ns: Namespace,
    pod: Value,
}

/// How the Pod is owned.
#[derive(Clone, Copy)]
enum Owner {
    /// A Deployment's ReplicaSet (`web-7d9f8b6c5`, with its `pod-template-hash`).
    Deployment,
    StatefulSet,
    Job,
    Bare,
}

/// What the Pod runs besides its app.
#[derive(Clone, Copy)]
enum Sidecar {
    None,
    Regular,
    Native,
}

struct Cases {
    list: Vec<Case>,
}

impl Cases {
    #[allow(clippy::too_many_arguments)]
    fn add(
        &mut self,
        what: String,
        namespace: Option<&str>,
        ns: Namespace,
        pod_labels: BTreeMap<String, String>,
        pod_annotations: BTreeMap<String, String>,
        owner: Owner,
        sidecar: (Sidecar, &str),
        host_network: bool,
    ) {
        let i = self.list.len();
        let namespace = namespace.map_or_else(|| format!("c{i}"), str::to_string);
        let mut labels = pod_labels;
        let mut metadata = json!({"name": format!("p{i}"), "namespace": namespace});
        match owner {
            Owner::Deployment => {
                labels.insert("pod-template-hash".into(), "7d9f8b6c5".into());
                metadata["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                    "name": "web-7d9f8b6c5", "uid": "u1", "controller": true}]);
            }
            Owner::StatefulSet => {
                metadata["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "db", "uid": "u2", "controller": true}]);
            }
            Owner::Job => {
                metadata["ownerReferences"] = json!([{"apiVersion": "batch/v1", "kind": "Job", "name": "report", "uid": "u3", "controller": true}]);
            }
            Owner::Bare => {}
        }
        metadata["labels"] = json!(labels);
        metadata["annotations"] = json!(pod_annotations);
        let app = json!({"name": "app", "image": "example/app:1.0"});
        let mut spec = json!({"containers": [app], "hostNetwork": host_network});
        match sidecar {
            (Sidecar::None, _) => {}
            (Sidecar::Regular, name) => {
                spec["containers"]
                    .as_array_mut()
                    .expect("containers")
                    .push(json!({"name": name, "image": "example/sidecar:1.0"}));
            }
            (Sidecar::Native, name) => {
                spec["initContainers"] =
                    json!([{"name": name, "image": "example/sidecar:1.0", "restartPolicy": "Always"}]);
            }
        }
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec});
        self.list.push(Case { what, namespace, ns, pod });
    }
}

/// The values a marker is tried with: each it asks with or opts out with, and two it ignores.
fn values(marker: &Marker) -> Vec<&'static str> {
    let mut out = vec!["other", ""];
    if let Inject::Of(values) = marker.inject {
        out.extend(values);
    }
    if let OptOut::Of(values) = marker.opt_out {
        out.extend(values);
    }
    if matches!(marker.inject, Inject::Any) {
        out.push("rev-1-27");
    }
    out
}

/// A value the marker asks with, if any.
fn asking(marker: &Marker) -> Option<&'static str> {
    match marker.inject {
        Inject::Never => None,
        Inject::Any => Some("rev-1-27"),
        Inject::Of(values) => values.first().copied(),
    }
}

/// A value the marker opts out with, if any.
fn opting_out(marker: &Marker) -> Option<&'static str> {
    match marker.opt_out {
        OptOut::Of(values) => values.first().copied(),
        OptOut::Otherwise => Some("other"),
    }
}

/// `marker` set to `value` on a labels or annotations map pair.
fn set(
    marker: &Marker,
    value: &str,
    labels: &mut BTreeMap<String, String>,
    annotations: &mut BTreeMap<String, String>,
) {
    let map = if marker.place == Place::Label { labels } else { annotations };
    map.insert(marker.key.to_string(), value.to_string());
}

fn ns_with(marker: &Marker, value: &str) -> Namespace {
    let mut ns = Namespace::default();
    set(marker, value, &mut ns.labels, &mut ns.annotations);
    ns
}

fn pod_with(marker: &Marker, value: &str) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
    let (mut labels, mut annotations) = (BTreeMap::new(), BTreeMap::new());
    set(marker, value, &mut labels, &mut annotations);
    (labels, annotations)
}

/// Every case of the injector table.
fn injector_cases() -> Vec<Case> {
    let mut cases = Cases { list: Vec::new() };
    let none = (Sidecar::None, "");
    for injector in INJECTORS {
        let id = injector.catalog_id;
        let sidecar_name = CatalogId::by_id(id).map(|c| c.entry().names[0]).expect("catalog entry");
        // A namespace key that lets the Pod's markers count (Kuma), set to a value it ignores.
        let key_only = injector.namespace.first().map(|m| ns_with(m, "other")).unwrap_or_default();
        for marker in injector.namespace {
            for value in values(marker) {
                let what = format!("{id}: namespace {}={value:?}", marker.key);
                let (ns, owner) = (ns_with(marker, value), Owner::Deployment);
                cases.add(what, None, ns, BTreeMap::new(), BTreeMap::new(), owner, none, false);
            }
        }
        for marker in injector.pod {
            for value in values(marker) {
                let (labels, annotations) = pod_with(marker, value);
                let what = format!("{id}: Pod {}={value:?}", marker.key);
                cases.add(
                    what.clone(),
                    None,
                    Namespace::default(),
                    labels.clone(),
                    annotations.clone(),
                    Owner::Deployment,
                    none,
                    false,
                );
                if injector.pod_needs_namespace_key {
                    let what = format!("{what}, namespace keyed");
                    cases.add(what, None, key_only.clone(), labels, annotations, Owner::Deployment, none, false);
                }
            }
        }
        // The namespace asks, the Pod opts out (and the other way round); a final opt-out.
        for ns_marker in injector.namespace {
            for pod_marker in injector.pod {
                let pairs = [(asking(ns_marker), opting_out(pod_marker)), (opting_out(ns_marker), asking(pod_marker))];
                for (ns_value, pod_value) in pairs {
                    let (Some(ns_value), Some(pod_value)) = (ns_value, pod_value) else { continue };
                    let (labels, annotations) = pod_with(pod_marker, pod_value);
                    let what =
                        format!("{id}: namespace {}={ns_value:?}, Pod {}={pod_value:?}", ns_marker.key, pod_marker.key);
                    let ns = ns_with(ns_marker, ns_value);
                    cases.add(what, None, ns, labels, annotations, Owner::Deployment, none, false);
                }
            }
        }
        // What an asking Pod marker meets: each owner, the sidecar present, hostNetwork, the
        // injector's own namespaces.
        let Some((marker, value)) = injector.pod.iter().find_map(|m| asking(m).map(|v| (m, v))) else { continue };
        let ns = if injector.pod_needs_namespace_key { key_only.clone() } else { Namespace::default() };
        let (labels, annotations) = pod_with(marker, value);
        let base = format!("{id}: Pod {}={value:?}", marker.key);
        for (owner, what) in [(Owner::StatefulSet, "StatefulSet"), (Owner::Job, "Job"), (Owner::Bare, "bare")] {
            let what = format!("{base}, {what}");
            cases.add(what, None, ns.clone(), labels.clone(), annotations.clone(), owner, none, false);
        }
        for (sidecar, what) in [(Sidecar::Regular, "regular"), (Sidecar::Native, "native")] {
            let what = format!("{base}, {sidecar_name} {what}");
            let present = (sidecar, sidecar_name);
            cases.add(what, None, ns.clone(), labels.clone(), annotations.clone(), Owner::Deployment, present, false);
        }
        let what = format!("{base}, hostNetwork");
        cases.add(what, None, ns.clone(), labels.clone(), annotations.clone(), Owner::Deployment, none, true);
        if let Some(own) = injector.skipped_namespaces.first() {
            let what = format!("{base}, in {own}");
            cases.add(what, Some(own), Namespace::default(), labels, annotations, Owner::Deployment, none, false);
        }
    }
    // Values a tenant wrote to be awkward, on the one injector that takes any value.
    let otel = INJECTORS.iter().find(|i| i.catalog_id == "otel-collector").expect("the OpenTelemetry injector");
    for value in ["a\"quoted\\value", &"x".repeat(100), &"y\"".repeat(40)] {
        let (labels, annotations) = pod_with(&otel.pod[0], value);
        let what = format!("otel-collector: Pod value {value:?}");
        cases.add(what, None, Namespace::default(), labels, annotations, Owner::Bare, none, false);
    }
    cases.list
}

/// The Namespaces and Pods of `cases` as `audit` reads them: running Pods, each namespace once.
fn audit_file(cases: &[Case], dir: &Path) -> PathBuf {
    let mut docs = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for case in cases {
        if seen.insert(case.namespace.clone()) {
            docs.push(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": case.namespace,
                "labels": case.ns.labels, "annotations": case.ns.annotations}}));
        }
        let mut pod = case.pod.clone();
        pod["status"] = json!({"phase": "Running"});
        docs.push(pod);
    }
    let path = dir.join("cases.json");
    std::fs::write(&path, json!({"apiVersion": "v1", "kind": "List", "items": docs}).to_string()).expect("write");
    path
}

/// `audit`'s SidecarMissing messages by Pod name.
fn audit_messages(file: &Path, policy: Option<&Path>) -> BTreeMap<String, Vec<String>> {
    let mut command = std::process::Command::new(SIDECAR_WATCH);
    command.arg("audit").arg("-f").arg(file).args(["-o", "json", "--fail-on", "none"]);
    if let Some(policy) = policy {
        command.arg("--policy").arg(policy);
    }
    let out = command.output().expect("sidecar-watch audit runs");
    assert!(out.status.success(), "audit: {}", String::from_utf8_lossy(&out.stderr));
    let findings: Vec<Value> = serde_json::from_slice(&out.stdout).expect("audit -o json");
    let mut by_pod: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for f in findings.iter().filter(|f| f["alertname"] == "SidecarMissing") {
        let (pod, message) = (f["pod"].as_str().expect("pod"), f["message"].as_str().expect("message"));
        by_pod.entry(pod.to_string()).or_default().push(message.to_string());
    }
    by_pod
}

/// The policy's SidecarMissing messages on each case, next to audit's; the cases that differ.
fn disagreements(cases: &[Case], dir: &Path, params: Option<&Path>) -> (Vec<String>, usize) {
    let policy = Path::new(ROOT).join("config/components/admission-policies/validatingadmissionpolicy.yaml");
    let expected = audit_messages(&audit_file(cases, dir), params);
    let admitted: Vec<AdmissionCase> = cases
        .iter()
        .map(|c| AdmissionCase {
            object: c.pod.clone(),
            namespace_labels: c.ns.labels.clone(),
            namespace_annotations: c.ns.annotations.clone(),
        })
        .collect();
    let answers = cel_cost::messages(&policy, &admitted, params, dir).expect("cel-messages");
    let mut wrong = Vec::new();
    let mut fired = 0;
    for (case, answer) in cases.iter().zip(answers) {
        assert!(answer.errors.is_empty(), "{}: {:?}", case.what, answer.errors.first());
        let mut got: Vec<String> = answer.messages.into_iter().filter(|m| m.contains(" runs no ")).collect();
        got.sort();
        let name = case.pod["metadata"]["name"].as_str().expect("name");
        let mut want = expected.get(name).cloned().unwrap_or_default();
        want.sort();
        fired += want.len();
        if got != want {
            wrong.push(format!("{}:\n  admission {got:#?}\n  audit     {want:#?}", case.what));
        }
    }
    (wrong, fired)
}

#[test]
fn every_injector_marker_is_judged_at_admission_as_audit_judges_it() {
    let dir = scratch_dir("admission-missing");
    let cases = injector_cases();
    let (wrong, fired) = disagreements(&cases, &dir, None);
    eprintln!("{} cases, {fired} SidecarMissing findings, {} different", cases.len(), wrong.len());
    assert!(wrong.is_empty(), "{} of {} cases differ:\n{}", wrong.len(), cases.len(), wrong.join("\n"));
    // Enough of both answers that agreement means something.
    assert!(cases.len() >= 120 && fired >= 40 && fired + 40 <= cases.len(), "{} cases, {fired} fired", cases.len());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_bound_cluster_policys_required_sidecars_are_judged_as_audit_judges_them() {
    let dir = scratch_dir("admission-required");
    let policy = dir.join("platform.yaml");
    std::fs::write(
        &policy,
        "apiVersion: sidecarwatch.io/v1alpha1\nkind: ClusterSidecarPolicy\nmetadata: {name: platform}\n\
         spec:\n  sidecars:\n    required: [fluent-bit, log-shipper, linkerd]\n",
    )
    .expect("write the policy");
    let linkerd = INJECTORS.iter().find(|i| i.catalog_id == "linkerd").expect("Linkerd");
    let mut cases = Cases { list: Vec::new() };
    let none = (Sidecar::None, "");
    let (labels, annotations) = pod_with(&linkerd.pod[0], "enabled");
    let plain = || (BTreeMap::new(), BTreeMap::new());
    let (l, a) = plain();
    cases.add("nothing required runs".into(), None, Namespace::default(), l, a, Owner::Deployment, none, false);
    let (l, a) = plain();
    let shipper = (Sidecar::Native, "log-shipper");
    cases.add("a log-shipper by name".into(), None, Namespace::default(), l, a, Owner::Job, shipper, false);
    let (l, a) = plain();
    let fluent = (Sidecar::Regular, "fluent-bit");
    cases.add("fluent-bit by its catalog name".into(), None, Namespace::default(), l, a, Owner::Bare, fluent, false);
    let what = "linkerd asked for by the Pod, reported once".to_string();
    cases.add(what, None, Namespace::default(), labels, annotations, Owner::StatefulSet, none, false);
    let (wrong, fired) = disagreements(&cases.list, &dir, Some(&policy));
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    assert_eq!(fired, 3 + 2 + 2 + 3, "each Pod's absent required sidecars");
    let _ = std::fs::remove_dir_all(&dir);
}
