//! A policy spec checked and compiled into what evaluation needs: a label selector, a
//! sidecar matcher and every rule with its defaults filled in.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::core::{Selector, SelectorExt};

use super::pod::{ContainerView, PodView};
pub(crate) use super::rule_settings::{ForRule, Rules, SpecError, MAX_THRESHOLD};
use super::sidecar_matcher::{Identified, SidecarMatcher};
use sidecar_watch_api::bounds::*;
use sidecar_watch_api::{quote, ClusterPolicySpec, ClusterSidecarPolicy, PolicySpec, SidecarPolicy};

/// Which policy an alert comes from.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PolicyRef {
    /// The policy's namespace; `None` for a `ClusterSidecarPolicy`.
    pub namespace: Option<String>,
    /// The policy's name.
    pub name: String,
}

impl PolicyRef {
    /// A namespaced `SidecarPolicy`.
    pub fn namespaced(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self { namespace: Some(namespace.into()), name: name.into() }
    }

    /// A `ClusterSidecarPolicy`.
    pub fn cluster(name: impl Into<String>) -> Self {
        Self { namespace: None, name: name.into() }
    }

    /// The kind the reference points at.
    pub fn kind(&self) -> &'static str {
        if self.namespace.is_some() {
            "SidecarPolicy"
        } else {
            "ClusterSidecarPolicy"
        }
    }
}

impl std::fmt::Display for PolicyRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "SidecarPolicy {ns}/{}", self.name),
            None => write!(f, "ClusterSidecarPolicy {}", self.name),
        }
    }
}

/// A validated policy, ready to select Pods and evaluate them.
#[derive(Clone, Debug)]
pub struct CompiledPolicy {
    /// Which policy this is.
    pub policy: PolicyRef,
    /// The same, shared by every result that refers to it.
    shared_ref: std::sync::Arc<PolicyRef>,
    selector: Selector,
    namespace_selector: Option<Selector>,
    /// Which containers are sidecars, and the policy's minimum versions of them.
    pub(crate) sidecar_matcher: SidecarMatcher,
    /// The rules with defaults applied.
    pub rules: Rules,
    /// Whether Events are published for this policy's alerts.
    pub events: bool,
}

impl CompiledPolicy {
    /// Compiles a `SidecarPolicy` spec. Errors name the offending field.
    pub fn compile(policy: PolicyRef, spec: &PolicySpec) -> Result<CompiledPolicy, SpecError> {
        let selector = compile_selector(spec.selector.as_ref(), "spec.selector")?;
        let sidecar_matcher = SidecarMatcher::compile(spec.sidecars.as_ref())?;
        let rules = super::rule_settings::compile_rules(spec.rules.as_ref())?;
        Ok(CompiledPolicy {
            shared_ref: std::sync::Arc::new(policy.clone()),
            policy,
            selector,
            namespace_selector: None,
            sidecar_matcher,
            rules,
            events: spec.events,
        })
    }

    /// Catalog ids or container names every Pod the policy selects must run
    /// (`spec.sidecars.required`).
    pub fn required_sidecars(&self) -> &[String] {
        self.sidecar_matcher.required()
    }

    /// Compiles a `ClusterSidecarPolicy` spec.
    pub fn compile_cluster(name: &str, spec: &ClusterPolicySpec) -> Result<CompiledPolicy, SpecError> {
        let mut compiled = Self::compile(PolicyRef::cluster(name), &spec.policy)?;
        compiled.namespace_selector =
            Some(compile_selector(spec.namespace_selector.as_ref(), "spec.namespaceSelector")?);
        Ok(compiled)
    }

    /// Compiles a `SidecarPolicy` object (its namespace defaults to `default`).
    pub fn from_sidecar_policy(object: &SidecarPolicy) -> (PolicyRef, Result<CompiledPolicy, SpecError>) {
        let namespace = object.metadata.namespace.clone().unwrap_or_else(|| "default".into());
        let policy = PolicyRef::namespaced(namespace, object.metadata.name.clone().unwrap_or_default());
        let compiled = if policy.name.is_empty() {
            Err(SpecError::new("metadata.name", "missing"))
        } else {
            Self::compile(policy.clone(), &object.spec)
        };
        (policy, compiled)
    }

    /// Compiles a `ClusterSidecarPolicy` object.
    pub fn from_cluster_policy(object: &ClusterSidecarPolicy) -> (PolicyRef, Result<CompiledPolicy, SpecError>) {
        let name = object.metadata.name.clone().unwrap_or_default();
        let compiled = if name.is_empty() {
            Err(SpecError::new("metadata.name", "missing"))
        } else {
            Self::compile_cluster(&name, &object.spec)
        };
        (PolicyRef::cluster(name), compiled)
    }

    /// The built-in policy `audit` uses when no policy is given: every default of the spec.
    pub fn builtin() -> CompiledPolicy {
        let spec = PolicySpec { events: true, ..PolicySpec::default() };
        // The default spec is valid by construction; a failure here is a bug in this file.
        Self::compile(PolicyRef::cluster("default"), &spec).expect("the default policy compiles")
    }

    /// A shared reference to [`Self::policy`], so that per-Pod results need not copy it.
    pub fn shared_ref(&self) -> std::sync::Arc<PolicyRef> {
        std::sync::Arc::clone(&self.shared_ref)
    }

    /// Whether the policy covers Pods of `namespace` (with its labels, for cluster policies).
    /// `None` labels mean the namespace is unknown; a cluster policy with a non-trivial
    /// namespace selector then does not select it.
    pub fn selects_namespace(&self, namespace: &str, labels: Option<&BTreeMap<String, String>>) -> bool {
        match (&self.policy.namespace, &self.namespace_selector) {
            (Some(own), _) => own == namespace,
            (None, None) => true,
            (None, Some(sel)) if sel.selects_all() => true,
            (None, Some(sel)) => labels.is_some_and(|l| sel.matches(l)),
        }
    }

    /// Whether the namespace selector needs namespace labels at all.
    pub fn needs_namespace_labels(&self) -> bool {
        self.namespace_selector.as_ref().is_some_and(|s| !s.selects_all())
    }

    /// Whether the policy selects the Pod by labels (the namespace is checked separately).
    pub fn selects_pod_labels(&self, pod: &PodView) -> bool {
        self.selector.matches(pod.labels())
    }

    /// Whether the policy selects Pods with these labels (a workload's Pod template's; the
    /// namespace is checked separately).
    pub fn selects_template_labels(&self, labels: &BTreeMap<String, String>) -> bool {
        self.selector.matches(labels)
    }

    /// Whether the policy selects every Pod of the namespaces it covers (an empty selector):
    /// the only policies that select a workload whose Pod template's labels are unknown.
    pub fn selects_every_pod(&self) -> bool {
        self.selector.selects_all()
    }

    /// Whether the policy selects the Pod, given its namespace's labels.
    pub fn selects(&self, pod: &PodView, namespace_labels: Option<&BTreeMap<String, String>>) -> bool {
        self.selects_namespace(pod.namespace(), namespace_labels) && self.selects_pod_labels(pod)
    }

    /// Whether the catalog may name sidecars among the Pod's regular containers
    /// ([`SidecarMatcher::catalog_applies`]).
    pub fn catalog_applies(&self, pod: &PodView) -> bool {
        self.sidecar_matcher.catalog_applies(pod)
    }

    /// Whether the container is a sidecar under this policy ([`SidecarMatcher::identify`]).
    pub fn identify(&self, container: &ContainerView, catalog_applies: bool) -> Option<Identified> {
        self.sidecar_matcher.identify(container, catalog_applies)
    }

    /// Whether `other` recognises exactly the same containers as sidecars (only its rules,
    /// selector or Events differ): an edit of a policy's rules leaves its Pods' sidecars be.
    pub fn same_sidecars(&self, other: &CompiledPolicy) -> bool {
        self.sidecar_matcher.same_as(&other.sidecar_matcher)
    }

    /// The Pod's sidecars under this policy, in container order: (index, container, how).
    pub fn sidecars<'a>(
        &'a self,
        pod: &'a PodView,
    ) -> impl Iterator<Item = (usize, &'a ContainerView, Identified)> + 'a {
        self.sidecar_matcher.sidecars(pod)
    }
}

fn compile_selector(selector: Option<&LabelSelector>, field: &str) -> Result<Selector, SpecError> {
    match selector {
        None => Ok(Selector::default()),
        Some(s) => {
            check_selector_bounds(s, field)?;
            for (i, expr) in s.match_expressions.iter().flatten().enumerate() {
                let needs_values = matches!(expr.operator.as_str(), "In" | "NotIn");
                let values = expr.values.as_ref().map_or(0, Vec::len);
                if needs_values && values == 0 {
                    return Err(SpecError::new(
                        format!("{field}.matchExpressions[{i}].values"),
                        format!("operator {} needs at least one value", expr.operator),
                    ));
                }
            }
            Selector::try_from(s.clone()).map_err(|e| SpecError::new(field, e.to_string()))
        }
    }
}

/// The selector sizes the CRD schema declares ([`sidecar_watch_api::bounds`]).
fn check_selector_bounds(selector: &LabelSelector, field: &str) -> Result<(), SpecError> {
    let key_chars = |field: &str, key: &str| {
        if key.chars().count() <= MAX_LABEL_KEY_CHARS {
            return Ok(());
        }
        Err(SpecError::new(field, format!("label key {} longer than {MAX_LABEL_KEY_CHARS} characters", quote(key))))
    };
    let value_chars = |field: &str, value: &str| {
        SpecError::check_size(field, "characters", value.chars().count(), MAX_LABEL_VALUE_CHARS)
    };
    if let Some(labels) = &selector.match_labels {
        let field = format!("{field}.matchLabels");
        SpecError::check_size(&field, "labels", labels.len(), MAX_MATCH_LABELS)?;
        for (key, value) in labels {
            key_chars(&field, key)?;
            value_chars(&format!("{field}[{}]", quote(key)), value)?;
        }
    }
    let expressions = selector.match_expressions.as_deref().unwrap_or_default();
    SpecError::check_size(
        &format!("{field}.matchExpressions"),
        "expressions",
        expressions.len(),
        MAX_MATCH_EXPRESSIONS,
    )?;
    for (i, expression) in expressions.iter().enumerate() {
        let field = format!("{field}.matchExpressions[{i}]");
        key_chars(&format!("{field}.key"), &expression.key)?;
        let values = expression.values.as_deref().unwrap_or_default();
        SpecError::check_size(&format!("{field}.values"), "values", values.len(), MAX_EXPRESSION_VALUES)?;
        for (j, value) in values.iter().enumerate() {
            value_chars(&format!("{field}.values[{j}]"), value)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use sidecar_watch_api::{ForRuleSpec, RestartsRuleSpec, RulesSpec, SidecarSelector};
    use std::time::Duration;

    fn compile(spec: PolicySpec) -> Result<CompiledPolicy, SpecError> {
        CompiledPolicy::compile(PolicyRef::namespaced("shop", "mesh"), &spec)
    }

    #[test]
    fn invalid_fields_are_named() {
        let bad_regex = PolicySpec {
            sidecars: Some(SidecarSelector { pattern: Some("envoy(".into()), ..Default::default() }),
            ..Default::default()
        };
        assert_eq!(compile(bad_regex).unwrap_err().field, "spec.sidecars.pattern");

        let bad_window = PolicySpec {
            rules: Some(RulesSpec {
                restarts: Some(RestartsRuleSpec { window: Some("-5m".into()), ..Default::default() }),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(compile(bad_window).unwrap_err().field, "spec.rules.restarts.window");

        let zero_threshold = PolicySpec {
            rules: Some(RulesSpec {
                restarts: Some(RestartsRuleSpec { threshold: Some(0), ..Default::default() }),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(compile(zero_threshold).unwrap_err().field, "spec.rules.restarts.threshold");

        let bad_for = PolicySpec {
            rules: Some(RulesSpec {
                crash_loop: Some(ForRuleSpec { for_: Some("5 minutes".into()), ..Default::default() }),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(compile(bad_for).unwrap_err().field, "spec.rules.crashLoop.for");

        let selects_nothing = PolicySpec {
            sidecars: Some(SidecarSelector { native: false, catalog: false, ..Default::default() }),
            ..Default::default()
        };
        assert_eq!(compile(selects_nothing).unwrap_err().field, "spec.sidecars");
    }

    /// Beyond the CRD schema's bounds, a policy is invalid naming the field, and no error
    /// carries more than a short prefix of what the tenant wrote.
    #[test]
    fn oversized_specs_name_the_field_and_quote_a_prefix() {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;
        let sidecars = |names: Vec<String>, pattern: Option<String>| PolicySpec {
            sidecars: Some(SidecarSelector { names, pattern, ..Default::default() }),
            ..Default::default()
        };
        let selector = |selector: LabelSelector| PolicySpec { selector: Some(selector), ..Default::default() };
        let many = |n: usize, width: usize| -> Vec<String> { (0..n).map(|i| format!("{i:0width$}")).collect() };
        let long_key = "k".repeat(MAX_LABEL_KEY_CHARS + 1);
        let cases: Vec<(PolicySpec, &str, String)> = vec![
            (
                sidecars(vec![], Some("a".repeat(1_500_000))),
                "spec.sidecars.pattern",
                "1500000 characters, at most 1024".into(),
            ),
            (sidecars(many(20_000, 1), None), "spec.sidecars.names", "20000 names, at most 64".into()),
            (sidecars(many(2, 64), None), "spec.sidecars.names[0]", "64 characters, at most 63".into()),
            (
                selector(LabelSelector {
                    match_labels: Some(many(33, 2).into_iter().map(|k| (k, "v".into())).collect()),
                    ..Default::default()
                }),
                "spec.selector.matchLabels",
                "33 labels, at most 32".into(),
            ),
            (
                selector(LabelSelector {
                    match_labels: Some([(long_key.clone(), "v".to_string())].into()),
                    ..Default::default()
                }),
                "spec.selector.matchLabels",
                format!("label key \"{}\"… (318 bytes) longer than 317 characters", "k".repeat(64)),
            ),
            (
                selector(LabelSelector {
                    match_expressions: Some(vec![LabelSelectorRequirement {
                        key: "tier".into(),
                        operator: "In".into(),
                        values: Some(many(65, 1)),
                    }]),
                    ..Default::default()
                }),
                "spec.selector.matchExpressions[0].values",
                "65 values, at most 64".into(),
            ),
            (
                PolicySpec {
                    rules: Some(RulesSpec {
                        crash_loop: Some(ForRuleSpec { for_: Some("1".repeat(40)), ..Default::default() }),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                "spec.rules.crashLoop.for",
                "40 characters, at most 32".into(),
            ),
        ];
        for (spec, field, message) in cases {
            let error = compile(spec).expect_err(field);
            assert_eq!((error.field.as_str(), error.message.starts_with(&message)), (field, true), "{error}");
        }
        // An invalid pattern within the bound: a prefix of it and the reason, not the pattern.
        let invalid = format!("envoy({}", "a".repeat(1000));
        let error = compile(sidecars(vec![], Some(invalid))).expect_err("unclosed group");
        assert_eq!(
            error.to_string(),
            format!(
                "spec.sidecars.pattern: invalid regular expression \"envoy({}\"… (1006 bytes): unclosed group",
                "a".repeat(58)
            )
        );
    }

    #[test]
    fn defaults_match_the_product_spec() {
        let policy = compile(PolicySpec { events: true, ..Default::default() }).unwrap();
        assert_eq!(policy.rules, Rules::default());
        assert_eq!(policy.rules.restarts.threshold, 3);
        assert_eq!(policy.rules.sidecar_not_ready.for_, Duration::from_secs(300));
    }
}
