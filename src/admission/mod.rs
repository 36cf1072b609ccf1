//! `sidecar-watch admission-policy`: the static checks as a ValidatingAdmissionPolicy and its
//! binding, so that the API server itself warns at `kubectl apply` (no webhook to run).
//!
//! The policy is generated from the engine's catalog and check messages, so it recognises the
//! same sidecars and says the same as `audit` on the same object: a legacy sidecar in a Job or
//! CronJob template (`JobBlockedBySidecar`) and the checks `no-readiness-probe`,
//! `no-startup-probe`, `legacy-sidecar`, `latest-image`, `no-resources` and `sidecar-sprawl`,
//! and the blind-spot checks (`signals.rs`: the Pod's annotations, a container's flags and
//! variables, `switches.rs`);
//! and a Pod created without the sidecar its injector's markers or `spec.sidecars.required` ask
//! for (`SidecarMissing`, `missing.rs`).
//! `port-conflict` and `main-probe-on-sidecar` compare every pair of containers (named ports,
//! the catalog's undeclared ones); they stay with `audit` and the operator.
//!
//! It never stands in the way: `failurePolicy: Ignore` (an error or a cost overrun admits the
//! object), `Warn` and `Audit` unless `--deny`, and namespaces excluded by label. The binding
//! may name a `ClusterSidecarPolicy` whose sidecars, selectors and rule switches then apply;
//! see `docs/admission-policies.md` for what admission cannot honour.
//!
//! Beside `audit` in the layers: it reads the engine and the API types, nothing above.

mod cel;
mod missing;
mod policy;
mod signals;
mod switches;

use std::collections::BTreeMap;
use std::path::PathBuf;

use k8s_openapi::api::admissionregistration::v1::{
    MatchResources, ParamRef, ValidatingAdmissionPolicyBinding, ValidatingAdmissionPolicyBindingSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement, ObjectMeta};

pub(crate) use policy::{validating_admission_policy, POLICY_NAME};

#[cfg(test)]
mod tests;

/// The `check` labels of the `SidecarMisconfigured` findings the policy reports every one of
/// (it also reports `JobBlockedBySidecar` for Job and CronJob templates, and some of the
/// blind-spot checks: [`covers`]).
pub fn covered_checks() -> Vec<&'static str> {
    let mut checks: Vec<&'static str> = policy::sidecar_checks()
        .into_iter()
        .map(|(check, ..)| check)
        .filter(|check| !signals::COVERED.iter().any(|(c, ..)| c == check))
        .collect();
    checks.push("sidecar-sprawl");
    checks
}

/// Whether the policy reports the `SidecarMisconfigured` finding of `check` that `audit`
/// words `message`: every finding of a [`covered_checks`] label, and the blind-spot findings
/// (from the object's annotations, or from a container's flags and variables while they are
/// within what admission reads: [`switches::MAX_SWITCHED_SIDECARS`]).
pub fn covers(check: &str, message: &str) -> bool {
    covered_checks().contains(&check)
        || signals::COVERED.iter().any(|(c, _, text)| *c == check && message.ends_with(text))
}

/// The namespace label that turns the policies off for a namespace (`disabled`).
const OPT_OUT_LABEL: &str = "sidecarwatch.io/admission";
/// The value of [`OPT_OUT_LABEL`] that turns them off.
const OPT_OUT_VALUE: &str = "disabled";
/// Namespaces excluded unless told otherwise: the control plane's and the operator's.
const DEFAULT_EXCLUDED_NAMESPACES: [&str; 2] = ["kube-system", "sidecar-watch-system"];

/// How the binding applies the policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BindingOptions {
    /// Refuse objects with findings (`Deny` and `Audit`) instead of warning (`Warn` and `Audit`).
    deny: bool,
    /// Namespaces never checked (by their `kubernetes.io/metadata.name` label).
    excluded_namespaces: Vec<String>,
    /// The `ClusterSidecarPolicy` whose parameters apply; `None` for the built-in policy.
    cluster_sidecar_policy: Option<String>,
}

impl Default for BindingOptions {
    fn default() -> Self {
        Self {
            deny: false,
            excluded_namespaces: DEFAULT_EXCLUDED_NAMESPACES.map(String::from).to_vec(),
            cluster_sidecar_policy: None,
        }
    }
}

/// The labels of both objects.
fn labels() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_string(), "sidecar-watch".to_string()),
        ("app.kubernetes.io/component".to_string(), "admission-policy".to_string()),
    ])
}

/// The binding: the policy for every namespace but the excluded and opted-out ones.
fn binding(options: &BindingOptions) -> ValidatingAdmissionPolicyBinding {
    let not_in = |key: &str, values: Vec<String>| LabelSelectorRequirement {
        key: key.to_string(),
        operator: "NotIn".to_string(),
        values: Some(values),
    };
    let mut requirements = vec![not_in(OPT_OUT_LABEL, vec![OPT_OUT_VALUE.to_string()])];
    if !options.excluded_namespaces.is_empty() {
        requirements.insert(0, not_in("kubernetes.io/metadata.name", options.excluded_namespaces.clone()));
    }
    let actions = if options.deny { ["Deny", "Audit"] } else { ["Warn", "Audit"] };
    ValidatingAdmissionPolicyBinding {
        metadata: ObjectMeta { name: Some(POLICY_NAME.to_string()), labels: Some(labels()), ..Default::default() },
        spec: Some(ValidatingAdmissionPolicyBindingSpec {
            policy_name: Some(POLICY_NAME.to_string()),
            validation_actions: Some(actions.map(String::from).to_vec()),
            match_resources: Some(MatchResources {
                namespace_selector: Some(LabelSelector { match_expressions: Some(requirements), match_labels: None }),
                ..Default::default()
            }),
            // A named policy that does not exist checks nothing (rather than refusing objects).
            param_ref: options.cluster_sidecar_policy.as_ref().map(|name| ParamRef {
                name: Some(name.clone()),
                parameter_not_found_action: Some("Allow".to_string()),
                ..Default::default()
            }),
        }),
    }
}

/// The first line of every rendered file.
const HEADER: &str =
    "# Generated by `sidecar-watch admission-policy` from the engine's catalog and checks: do not edit.\n";

/// The policy and its binding, as the files `--out-dir` writes: (file name, YAML).
pub fn files(options: &BindingOptions) -> Result<Vec<(String, String)>, serde_norway::Error> {
    Ok(vec![
        (
            "validatingadmissionpolicy.yaml".to_string(),
            format!("{HEADER}{}", serde_norway::to_string(&validating_admission_policy())?),
        ),
        (
            "validatingadmissionpolicybinding.yaml".to_string(),
            format!("{HEADER}{}", serde_norway::to_string(&binding(options))?),
        ),
    ])
}

/// The policy and its binding as one multi-document YAML stream.
pub fn render(options: &BindingOptions) -> Result<String, serde_norway::Error> {
    Ok(files(options)?.into_iter().map(|(_, yaml)| yaml).collect::<Vec<_>>().join("---\n"))
}

/// `sidecar-watch admission-policy` arguments.
#[derive(Clone, Debug, clap::Args)]
pub struct AdmissionPolicyArgs {
    /// Refuse objects with findings (`Deny` and `Audit`) instead of only warning.
    #[arg(long)]
    deny: bool,
    /// A namespace never checked (repeatable; replaces the default kube-system and
    /// sidecar-watch-system). Any namespace labelled sidecarwatch.io/admission=disabled is
    /// skipped too.
    #[arg(long = "exclude-namespace", value_name = "NAMESPACE")]
    excluded_namespaces: Vec<String>,
    /// Take sidecars, selectors and rule switches from this ClusterSidecarPolicy (the built-in
    /// policy without it).
    #[arg(long, value_name = "NAME")]
    cluster_sidecar_policy: Option<String>,
    /// Write validatingadmissionpolicy.yaml and validatingadmissionpolicybinding.yaml into this
    /// directory instead of printing them.
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<PathBuf>,
}

impl AdmissionPolicyArgs {
    /// The binding these arguments describe.
    pub fn binding_options(&self) -> BindingOptions {
        let mut options = BindingOptions {
            deny: self.deny,
            cluster_sidecar_policy: self.cluster_sidecar_policy.clone(),
            ..BindingOptions::default()
        };
        if !self.excluded_namespaces.is_empty() {
            options.excluded_namespaces = self.excluded_namespaces.clone();
        }
        options
    }
}
