//! A policy spec checked and compiled into what evaluation needs: a label selector, a
//! sidecar matcher and every rule with its defaults filled in.

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::core::{Selector, SelectorExt};
use regex::Regex;

use super::catalog::CatalogId;
use super::pod::{ContainerKind, ContainerView, PodView};
pub use super::rule_settings::{ForRule, InstantRule, RestartsRule, Rules, SpecError, WindowRule, MAX_THRESHOLD};
use crate::api::bounds::*;
use crate::api::{quote, ClusterPolicySpec, ClusterSidecarPolicy, PolicySpec, SidecarPolicy};

/// The sidecar name pattern used when a policy does not say which containers are sidecars.
pub const DEFAULT_SIDECAR_PATTERN: &str = ".*-sidecar|istio-proxy|envoy";

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

/// How a sidecar is declared.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SidecarType {
    /// An init container with `restartPolicy: Always`.
    Native,
    /// A regular container recognised by name or pattern.
    Legacy,
}

impl SidecarType {
    /// The value of the `sidecar_type` label.
    pub fn as_str(self) -> &'static str {
        match self {
            SidecarType::Native => "native",
            SidecarType::Legacy => "legacy",
        }
    }
}

/// How a container was recognised as a sidecar (`identified_by` in `audit`). When several
/// apply, the first in this order is reported: how it is declared, then what the policy
/// names explicitly, then the catalog, then the catch-all pattern.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IdentifiedBy {
    /// An init container with `restartPolicy: Always`.
    Native,
    /// Listed in `spec.sidecars.names`.
    Names,
    /// An entry of the built-in catalog.
    Catalog(CatalogId),
    /// Matched by `spec.sidecars.pattern`.
    Pattern,
}

impl fmt::Display for IdentifiedBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdentifiedBy::Native => f.write_str("native"),
            IdentifiedBy::Names => f.write_str("names"),
            IdentifiedBy::Catalog(id) => write!(f, "catalog:{id}"),
            IdentifiedBy::Pattern => f.write_str("pattern"),
        }
    }
}

/// A sidecar: how it is declared and how it was recognised.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Identified {
    /// Native or legacy.
    pub kind: SidecarType,
    /// What recognised it.
    pub by: IdentifiedBy,
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
    native_sidecars: bool,
    catalog: bool,
    sidecar_names: Vec<String>,
    sidecar_pattern: Option<Regex>,
    /// The rules with defaults applied.
    pub rules: Rules,
    /// Whether Events are published for this policy's alerts.
    pub events: bool,
}

impl CompiledPolicy {
    /// Compiles a `SidecarPolicy` spec. Errors name the offending field.
    pub fn compile(policy: PolicyRef, spec: &PolicySpec) -> Result<CompiledPolicy, SpecError> {
        let selector = compile_selector(spec.selector.as_ref(), "spec.selector")?;
        let (native_sidecars, catalog, sidecar_names, pattern) = match &spec.sidecars {
            None => (true, true, Vec::new(), Some(DEFAULT_SIDECAR_PATTERN.to_string())),
            Some(s) => (s.native, s.catalog, s.names.clone(), s.pattern.clone()),
        };
        SpecError::check_size("spec.sidecars.names", "names", sidecar_names.len(), MAX_SIDECAR_NAMES)?;
        for (i, name) in sidecar_names.iter().enumerate() {
            let field = format!("spec.sidecars.names[{i}]");
            if name.is_empty() {
                return Err(SpecError::new(field, "empty container name"));
            }
            SpecError::check_size(&field, "characters", name.chars().count(), MAX_CONTAINER_NAME_CHARS)?;
        }
        if let Some(pattern) = &pattern {
            SpecError::check_size("spec.sidecars.pattern", "characters", pattern.chars().count(), MAX_PATTERN_CHARS)?;
        }
        let sidecar_pattern = pattern.as_deref().map(anchored_pattern).transpose()?;
        if !native_sidecars && !catalog && sidecar_names.is_empty() && sidecar_pattern.is_none() {
            return Err(SpecError::new(
                "spec.sidecars",
                "selects no container: set native: true, catalog: true, names or pattern",
            ));
        }
        let rules = super::rule_settings::compile_rules(spec.rules.as_ref())?;
        Ok(CompiledPolicy {
            shared_ref: std::sync::Arc::new(policy.clone()),
            policy,
            selector,
            namespace_selector: None,
            native_sidecars,
            catalog,
            sidecar_names,
            sidecar_pattern,
            rules,
            events: spec.events,
        })
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
        self.selector.matches(&pod.labels)
    }

    /// Whether the policy selects the Pod, given its namespace's labels.
    pub fn selects(&self, pod: &PodView, namespace_labels: Option<&BTreeMap<String, String>>) -> bool {
        self.selects_namespace(&pod.namespace, namespace_labels) && self.selects_pod_labels(pod)
    }

    /// Whether the catalog may name sidecars among the Pod's regular containers: only when
    /// one of them is not in the catalog, so the proxy of an ingress gateway or a standalone
    /// Envoy (the Pod's only job) is a main container, not a sidecar of nothing.
    pub fn catalog_applies(&self, pod: &PodView) -> bool {
        self.catalog && pod.containers.iter().any(|c| c.kind == ContainerKind::Regular && c.catalog.is_none())
    }

    /// Whether the container is a sidecar under this policy, of which type and recognised how;
    /// `catalog_applies` comes from [`Self::catalog_applies`] for the container's Pod. Plain
    /// init containers never are.
    pub fn identify(&self, container: &ContainerView, catalog_applies: bool) -> Option<Identified> {
        let kind = match container.kind {
            ContainerKind::Init => return None,
            ContainerKind::RestartableInit => SidecarType::Native,
            ContainerKind::Regular => SidecarType::Legacy,
        };
        let by = if kind == SidecarType::Native && self.native_sidecars {
            IdentifiedBy::Native
        } else if self.sidecar_names.iter().any(|n| container.name == *n) {
            IdentifiedBy::Names
        } else if let Some(id) =
            container.catalog.filter(|_| self.catalog && (catalog_applies || kind == SidecarType::Native))
        {
            IdentifiedBy::Catalog(id)
        } else if self.sidecar_pattern.as_ref().is_some_and(|p| p.is_match(&container.name)) {
            IdentifiedBy::Pattern
        } else {
            return None;
        };
        Some(Identified { kind, by })
    }

    /// Whether `other` recognises exactly the same containers as sidecars (only its rules,
    /// selector or Events differ): an edit of a policy's rules leaves its Pods' sidecars be.
    pub fn same_sidecars(&self, other: &CompiledPolicy) -> bool {
        self.native_sidecars == other.native_sidecars
            && self.catalog == other.catalog
            && self.sidecar_names == other.sidecar_names
            && self.sidecar_pattern.as_ref().map(Regex::as_str) == other.sidecar_pattern.as_ref().map(Regex::as_str)
    }

    /// The Pod's sidecars under this policy, in container order: (index, container, how).
    pub fn sidecars<'a>(
        &'a self,
        pod: &'a PodView,
    ) -> impl Iterator<Item = (usize, &'a ContainerView, Identified)> + 'a {
        let catalog_applies = self.catalog_applies(pod);
        pod.containers.iter().enumerate().filter_map(move |(i, c)| Some((i, c, self.identify(c, catalog_applies)?)))
    }
}

/// The user's pattern compiled on its own first, so that no pattern can close the anchoring
/// group early (`x)|(` would otherwise become `^(?:x)|()$`, which matches every name), then
/// anchored to match whole names.
fn anchored_pattern(pattern: &str) -> Result<Regex, SpecError> {
    let invalid = |e: regex::Error| {
        SpecError::new(
            "spec.sidecars.pattern",
            format!("invalid regular expression {}: {}", quote(pattern), reason(&e)),
        )
    };
    Regex::new(pattern).map_err(invalid)?;
    Regex::new(&format!("^(?:{pattern})$")).map_err(invalid)
}

/// What is wrong with a pattern, without the pattern: the regex crate's syntax errors print
/// it whole with a caret under the fault, then the reason on a line `error: …` of their own
/// (the pattern's lines are indented, so a pattern cannot forge that line).
fn reason(error: &regex::Error) -> String {
    let text = error.to_string();
    match text.lines().rev().find_map(|l| l.strip_prefix("error: ")) {
        Some(reason) => reason.trim().to_string(),
        None => text.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" "),
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

/// The selector sizes the CRD schema declares ([`crate::api::bounds`]).
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
    use crate::api::{ForRuleSpec, RestartsRuleSpec, RulesSpec, SidecarSelector};
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
            sidecars: Some(SidecarSelector { native: false, catalog: false, names: vec![], pattern: None }),
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
        assert!(policy.native_sidecars);
        assert_eq!(policy.sidecar_pattern.as_ref().map(Regex::as_str), Some("^(?:.*-sidecar|istio-proxy|envoy)$"));
    }

    fn view(name: &str, kind: ContainerKind) -> ContainerView {
        ContainerView {
            name: name.into(),
            kind,
            flags: Default::default(),
            catalog: crate::engine::catalog::recognise(name, None, false),
            liveness_target: None,
            status: None,
        }
    }

    fn identified_by(policy: &CompiledPolicy, name: &str, kind: ContainerKind) -> Option<String> {
        policy.identify(&view(name, kind), true).map(|i| i.by.to_string())
    }

    #[test]
    fn pattern_matches_whole_names_only() {
        let policy = compile(PolicySpec { sidecars: None, ..Default::default() }).unwrap();
        let kind = |name, k| policy.identify(&view(name, k), true).map(|i| i.kind);
        assert_eq!(kind("envoy", ContainerKind::Regular), Some(SidecarType::Legacy));
        assert_eq!(kind("log-sidecar", ContainerKind::Regular), Some(SidecarType::Legacy));
        assert_eq!(kind("envoy-config", ContainerKind::Regular), None);
        assert_eq!(kind("app", ContainerKind::Regular), None);
        assert_eq!(kind("envoy", ContainerKind::Init), None);
        assert_eq!(kind("anything", ContainerKind::RestartableInit), Some(SidecarType::Native));
    }

    #[test]
    fn a_pattern_cannot_escape_its_anchors() {
        for escaping in ["nomatch)|(", "x)|(?:y", ")|("] {
            let spec = PolicySpec {
                sidecars: Some(SidecarSelector { pattern: Some(escaping.into()), ..Default::default() }),
                ..Default::default()
            };
            let error = compile(spec).expect_err(escaping);
            assert_eq!(error.field, "spec.sidecars.pattern", "{escaping}");
        }
    }

    #[test]
    fn identification_reports_declaration_then_names_then_catalog_then_pattern() {
        let spec = PolicySpec {
            sidecars: Some(SidecarSelector {
                names: vec!["istio-proxy".into()],
                pattern: Some(".*-sidecar|linkerd-proxy".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let policy = compile(spec).unwrap();
        assert_eq!(identified_by(&policy, "linkerd-proxy", ContainerKind::RestartableInit).as_deref(), Some("native"));
        assert_eq!(identified_by(&policy, "istio-proxy", ContainerKind::Regular).as_deref(), Some("names"));
        assert_eq!(identified_by(&policy, "linkerd-proxy", ContainerKind::Regular).as_deref(), Some("catalog:linkerd"));
        assert_eq!(identified_by(&policy, "log-sidecar", ContainerKind::Regular).as_deref(), Some("pattern"));
        assert_eq!(identified_by(&policy, "app", ContainerKind::Regular), None);
        // With the catalog off, only the pattern is left for linkerd-proxy.
        let no_catalog = compile(PolicySpec {
            sidecars: Some(SidecarSelector {
                catalog: false,
                pattern: Some("linkerd-proxy".into()),
                ..Default::default()
            }),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(identified_by(&no_catalog, "linkerd-proxy", ContainerKind::Regular).as_deref(), Some("pattern"));
    }
}
