//! What the kubelet reads in a Pod's spec to write its status: each container's kind
//! (regular init container, native sidecar, regular container), its probes and restart
//! rules, the Pod's restart policy and whether it is being deleted.

use k8s_openapi::api::core::v1::{Container, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::Value;

/// Which of the kubelet's three kinds of container.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    /// A regular init container: runs to completion before the others.
    Init,
    /// An init container with `restartPolicy: Always`: a native sidecar.
    Sidecar,
    /// A container of `spec.containers`.
    Regular,
}

/// A `restartPolicyRules` entry (KEP-5307): `action` on exit codes `In`/`NotIn` `values`.
#[derive(Debug, Clone)]
struct RestartRule {
    action: String,
    not_in: bool,
    values: Vec<i32>,
}

/// A container as the kubelet's status follows from it.
#[derive(Debug)]
pub(super) struct Declared {
    pub(super) name: String,
    pub(super) kind: Kind,
    pub(super) startup_probe: bool,
    pub(super) readiness_probe: bool,
    restart_policy: Option<String>,
    rules: Vec<RestartRule>,
}

/// The Pod as far as the kubelet's status follows from it.
#[derive(Debug)]
pub(super) struct Facts {
    pub(super) containers: Vec<Declared>,
    restart_policy: String,
    pub(super) deleting: bool,
}

impl Facts {
    /// `raw_spec` is the spec as the server stored it: `restartPolicyRules` (KEP-5307) is newer
    /// than the crate's Kubernetes types, so it is read from the JSON.
    pub(super) fn new(meta: &ObjectMeta, spec: &PodSpec, raw_spec: &Value) -> Self {
        let rules = |list: &str, name: &str| -> Vec<RestartRule> {
            let container = raw_spec[list].as_array().into_iter().flatten().find(|c| c["name"] == name);
            let rules = container.and_then(|c| c["restartPolicyRules"].as_array()).cloned().unwrap_or_default();
            rules
                .iter()
                .map(|r| RestartRule {
                    action: r["action"].as_str().unwrap_or_default().to_string(),
                    not_in: r["exitCodes"]["operator"] == "NotIn",
                    values: r["exitCodes"]["values"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_i64)
                        .filter_map(|v| i32::try_from(v).ok())
                        .collect(),
                })
                .collect()
        };
        let declared = |c: &Container, kind: Kind, list: &str| Declared {
            name: c.name.clone(),
            kind,
            startup_probe: c.startup_probe.is_some(),
            readiness_probe: c.readiness_probe.is_some(),
            restart_policy: c.restart_policy.clone(),
            rules: rules(list, &c.name),
        };
        let mut containers: Vec<Declared> = spec
            .init_containers
            .iter()
            .flatten()
            .map(|c| {
                let kind = if c.restart_policy.as_deref() == Some("Always") { Kind::Sidecar } else { Kind::Init };
                declared(c, kind, "initContainers")
            })
            .collect();
        containers.extend(spec.containers.iter().map(|c| declared(c, Kind::Regular, "containers")));
        Facts {
            containers,
            restart_policy: spec.restart_policy.clone().unwrap_or_else(|| "Always".into()),
            deleting: meta.deletion_timestamp.is_some(),
        }
    }

    /// The container `name` of the spec.
    pub(super) fn declared(&self, name: &str) -> Option<&Declared> {
        self.containers.iter().find(|d| d.name == name)
    }

    /// `podutil.ContainerShouldRestart`: the container's rules, then its own restart policy,
    /// then the Pod's.
    pub(super) fn should_restart(&self, d: &Declared, exit_code: i32) -> bool {
        if let Some(policy) = &d.restart_policy {
            let matching = d.rules.iter().find(|r| r.values.contains(&exit_code) != r.not_in);
            if matching.is_some_and(|r| r.action == "Restart") {
                return true;
            }
            return match policy.as_str() {
                "Always" => true,
                "OnFailure" => exit_code != 0,
                _ => false,
            };
        }
        match self.restart_policy.as_str() {
            "Always" => true,
            "OnFailure" => exit_code != 0,
            _ => false,
        }
    }
}
