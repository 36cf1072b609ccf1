//! The generator's own tests: the policy's messages are the engine's, word for word; the
//! binding never stands in the way unless told to; the output is two YAML objects. Whether
//! the API server runs the policy as intended is tested against kube-apiserver in
//! `tests/e2e_operator/admission.rs`.

use jiff::Timestamp;
use serde_json::{json, Value};

use super::cel::{self, Message};
use super::policy::{
    init_before_proxy_message, job_message, legacy_sidecar_text, sidecar_checks, sprawl_messages, JOB_REMEDIATION,
    MAX_FINDINGS_SHOWN,
};
use super::*;
use crate::api::SlimPod;
use crate::engine::{evaluate, AlertName, Around, Check, CompiledPolicy, PodHistory, PodView};
use crate::engine::{CATALOG, GENERIC_JOB_REMEDIATION};

/// The engine's findings on a Job template in namespace `batch` with these containers.
fn engine_messages(
    init_containers: Value,
    containers: Value,
    max_sidecars: usize,
) -> Vec<(AlertName, Option<Check>, String, String)> {
    let template: SlimPod =
        serde_json::from_value(json!({"metadata": {"namespace": "batch"}, "spec": {"initContainers": init_containers, "containers": containers}}))
            .expect("a Pod template");
    let view = PodView::from_template(&template, "Job", "report");
    let evaluation = evaluate(
        &view,
        &CompiledPolicy::builtin(),
        &PodHistory::default(),
        Timestamp::UNIX_EPOCH,
        Around { max_sidecars, ..Around::default() },
    );
    evaluation.alerts.into_iter().map(|a| (a.name, a.check, a.container, a.message)).collect()
}

/// A message filled with the values the API server would have for sidecar `container` of
/// `batch/Job/report`, whose catalog remediation is `remediation`.
fn filled(message: &Message, container: &str, remediation: &str, count: &str, names: &str, shown: &str) -> String {
    // `batch/Job/report` is a Job: the legacy-sidecar text is the Job's.
    let legacy = format!("{}{remediation}", crate::engine::check_texts::LEGACY_SIDECAR_IN_JOB);
    message.fill(&[
        (legacy_sidecar_text().as_str(), legacy.as_str()),
        ("s.container.name", container),
        ("variables.podKey", "batch/Job/report"),
        ("variables.podName", "Job/report"),
        (JOB_REMEDIATION, remediation),
        ("string(variables.sidecarCount)", count),
        ("variables.sidecarsShown.map(s, s.container.name).join(', ')", names),
        ("string(size(variables.sidecarsShown))", shown),
    ])
}

#[test]
fn each_message_is_the_engines_word_for_word() {
    let istio = CATALOG.iter().find(|e| e.id == "istio").expect("istio in the catalog");
    // A native sidecar failing every check it can, a legacy Istio proxy (catalog remediation)
    // and a legacy log shipper recognised by the pattern (generic remediation).
    let findings = engine_messages(
        json!([{"name": "agent", "image": "example/agent", "restartPolicy": "Always"}]),
        json!([
            {"name": "main", "image": "example/main:1"},
            {"name": "istio-proxy", "image": "docker.io/istio/proxyv2:1.22.0"},
            {"name": "log-sidecar", "image": "example/log:1", "readinessProbe": {"exec": {"command": ["true"]}},
             "resources": {"limits": {"cpu": "1"}}},
        ]),
        32,
    );
    let checks = sidecar_checks();
    let mut compared = 0;
    for (alert, check, container, message) in &findings {
        let remediation = if container == "istio-proxy" { istio.job_remediation } else { GENERIC_JOB_REMEDIATION };
        let ours = match (alert, check) {
            (AlertName::JobBlockedBySidecar, None) => job_message(),
            (AlertName::SidecarMisconfigured, Some(check)) => {
                match checks.iter().find(|(label, ..)| *label == check.as_str()) {
                    Some((_, _, _, message)) => message.clone(),
                    None => continue,
                }
            }
            _ => panic!("unexpected finding {alert} {check:?} on {container}"),
        };
        assert_eq!(&filled(&ours, container, remediation, "", "", ""), message, "{alert} {check:?} on {container}");
        compared += 1;
    }
    // Job: 2; agent: readiness, startup, latest, resources; istio-proxy: readiness, legacy,
    // resources; log-sidecar: legacy.
    assert_eq!(compared, 10, "{findings:#?}");
}

#[test]
fn sprawl_is_worded_as_the_engine_words_it_with_and_without_sidecars_left_out() {
    let containers: Vec<Value> = (0..6)
        .map(|i| {
            json!({"name": format!("s{i}-sidecar"), "image": "example/s:1", "readinessProbe": {"exec": {}},
                        "resources": {"limits": {"cpu": "1"}}})
        })
        .chain([json!({"name": "main", "image": "example/main:1"})])
        .collect();
    let (all, capped) = sprawl_messages();
    let sprawl = |max: usize| {
        engine_messages(json!([]), json!(containers), max)
            .into_iter()
            .find(|(_, check, ..)| *check == Some(Check::SidecarSprawl))
            .map(|f| f.3)
            .expect("sidecar-sprawl")
    };
    let names = "s0-sidecar, s1-sidecar, s2-sidecar, s3-sidecar, s4-sidecar, s5-sidecar";
    assert_eq!(filled(&all, "", "", "6", names, "6"), sprawl(32));
    assert_eq!(filled(&capped, "", "", "6", "s0-sidecar, s1-sidecar", "2"), sprawl(2));
}

#[test]
fn the_checks_are_the_engines() {
    for (label, ..) in sidecar_checks() {
        assert!(Check::from_label(label).is_some(), "{label} is not a check of the engine");
    }
}

/// The rendered objects, parsed.
fn rendered(options: &BindingOptions) -> Vec<Value> {
    let yaml = render(options).expect("renders");
    serde_norway::Deserializer::from_str(&yaml).map(|doc| serde::Deserialize::deserialize(doc).expect("YAML")).collect()
}

#[test]
fn by_default_it_warns_and_never_refuses() {
    let objects = rendered(&BindingOptions::default());
    let kinds: Vec<&str> = objects.iter().filter_map(|o| o["kind"].as_str()).collect();
    assert_eq!(kinds, ["ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"]);
    let (policy, binding) = (&objects[0], &objects[1]);
    assert_eq!(policy["spec"]["failurePolicy"], "Ignore");
    assert_eq!(
        policy["spec"]["paramKind"],
        json!({"apiVersion": "sidecarwatch.io/v1alpha1", "kind": "ClusterSidecarPolicy"})
    );
    assert_eq!(binding["spec"]["validationActions"], json!(["Warn", "Audit"]));
    assert_eq!(binding["spec"]["policyName"], policy["metadata"]["name"]);
    assert!(binding["spec"].get("paramRef").is_none(), "the built-in policy needs no ClusterSidecarPolicy");
    assert_eq!(
        binding["spec"]["matchResources"]["namespaceSelector"]["matchExpressions"],
        json!([
            {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["kube-system", "sidecar-watch-system"]},
            {"key": OPT_OUT_LABEL, "operator": "NotIn", "values": [OPT_OUT_VALUE]},
        ])
    );
    // One validation per finding shown, and the summary of the rest.
    assert_eq!(policy["spec"]["validations"].as_array().map(Vec::len), Some(MAX_FINDINGS_SHOWN + 1));
}

#[test]
fn deny_and_a_cluster_policy_are_explicit_choices() {
    let options = BindingOptions {
        deny: true,
        excluded_namespaces: vec![],
        cluster_sidecar_policy: Some("platform".to_string()),
    };
    let binding = &rendered(&options)[1];
    // The API server refuses Deny together with Warn: the refusal already says it.
    assert_eq!(binding["spec"]["validationActions"], json!(["Deny", "Audit"]));
    assert_eq!(binding["spec"]["paramRef"], json!({"name": "platform", "parameterNotFoundAction": "Allow"}));
    assert_eq!(
        binding["spec"]["matchResources"]["namespaceSelector"]["matchExpressions"],
        json!([{"key": OPT_OUT_LABEL, "operator": "NotIn", "values": [OPT_OUT_VALUE]}])
    );
}

#[test]
fn out_dir_files_are_the_printed_stream() {
    let options = BindingOptions::default();
    let names: Vec<String> = files(&options).expect("files").into_iter().map(|(name, _)| name).collect();
    assert_eq!(names, ["validatingadmissionpolicy.yaml", "validatingadmissionpolicybinding.yaml"]);
    let joined = files(&options).expect("files").into_iter().map(|(_, y)| y).collect::<Vec<_>>().join("---\n");
    assert_eq!(joined, render(&options).expect("renders"));
}

#[test]
fn init_before_proxy_is_worded_as_the_engine_words_it() {
    let istio = CATALOG.iter().find(|e| e.id == "istio").expect("istio in the catalog");
    let remediation = istio.redirect.as_ref().expect("Istio redirects").remediation;
    let proxy = "docker.io/istio/proxyv2:1.22.0";
    let message = |inits: Value| {
        engine_messages(inits, json!([{"name": "main", "image": "example/main:1"}]), 32)
            .into_iter()
            .find(|(_, check, ..)| *check == Some(Check::InitBeforeProxy))
            .map(|f| f.3)
            .expect("init-before-proxy")
    };
    let one = "size(variables.blackholed) == 1";
    let (plural, runs, they) = (
        format!("({one} ? '' : 's')"),
        format!("({one} ? 'runs' : 'run')"),
        format!("({one} ? 'it runs' : 'they run')"),
    );
    let remedy = format!("variables.redirects[{}].remediation", cel::catalog_id("s.container"));
    let ours = |names: &str, n: usize| {
        let (s, run, it) = if n == 1 { ("", "runs", "it runs") } else { ("s", "run", "they run") };
        init_before_proxy_message().fill(&[
            (&plural, s),
            ("variables.blackholed.join(', ')", names),
            ("variables.podKey", "batch/Job/report"),
            (&runs, run),
            ("s.container.name", "istio-proxy"),
            (&they, it),
            (&remedy, remediation),
        ])
    };
    let two = message(json!([
        {"name": "istio-init", "image": proxy},
        {"name": "fetch-config", "image": "example/fetch:1"},
        {"name": "migrate", "image": "example/migrate:1"},
        {"name": "istio-proxy", "image": proxy, "restartPolicy": "Always"},
    ]));
    assert_eq!(ours("fetch-config, migrate", 2), two);
    let one = message(json!([
        {"name": "istio-init", "image": proxy},
        {"name": "fetch-config", "image": "example/fetch:1"},
        {"name": "istio-proxy", "image": proxy, "restartPolicy": "Always"},
    ]));
    assert_eq!(ours("fetch-config", 1), one);
}
