//! A policy spec checked and compiled into what evaluation needs: a label selector, a
//! sidecar matcher and every rule with its defaults filled in.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::core::{Selector, SelectorExt};
use regex::Regex;

use super::pod::{ContainerKind, ContainerView, PodView};
use crate::api::{
    parse_duration, ClusterPolicySpec, ClusterSidecarPolicy, DecodeError, ForRuleSpec, InstantRuleSpec, PolicySpec,
    RestartsRuleSpec, Severity, SidecarPolicy, WindowRuleSpec,
};

/// The sidecar name pattern used when a policy does not say which containers are sidecars.
pub const DEFAULT_SIDECAR_PATTERN: &str = ".*-sidecar|istio-proxy|envoy";

/// The largest restart threshold accepted (the schema says so too).
pub const MAX_THRESHOLD: u32 = 1000;

/// The longest `for` or `window` accepted; longer ones are almost certainly mistakes.
const MAX_DURATION: Duration = Duration::from_secs(366 * 86_400);

/// A spec field that cannot be used, with the path of the field (`spec.rules.restarts.window`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct SpecError {
    /// The JSON path of the offending field.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

impl From<DecodeError> for SpecError {
    fn from(e: DecodeError) -> Self {
        SpecError { field: if e.path.is_empty() { "spec".into() } else { e.path }, message: e.message }
    }
}

impl SpecError {
    /// An error about `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { field: field.into(), message: message.into() }
    }
}

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

/// A rule that fires after its condition held for `for_`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ForRule {
    /// Evaluate the rule at all.
    pub enabled: bool,
    /// The alert's severity.
    pub severity: Severity,
    /// How long the condition must hold.
    pub for_: Duration,
}

/// The restart-frequency rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RestartsRule {
    /// Evaluate the rule at all.
    pub enabled: bool,
    /// The alert's severity.
    pub severity: Severity,
    /// Restarts in `window` that fire it.
    pub threshold: u32,
    /// The counting window.
    pub window: Duration,
}

/// A rule about an event that stays relevant for `window`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WindowRule {
    /// Evaluate the rule at all.
    pub enabled: bool,
    /// The alert's severity.
    pub severity: Severity,
    /// How long the event keeps the alert active.
    pub window: Duration,
}

/// A rule that fires when its condition is seen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InstantRule {
    /// Evaluate the rule at all.
    pub enabled: bool,
    /// The alert's severity.
    pub severity: Severity,
}

/// Every rule of a policy with defaults applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rules {
    /// `SidecarContainerNotReady`.
    pub sidecar_not_ready: ForRule,
    /// `MainContainerReadyButSidecarNot`.
    pub main_ready_sidecar_not_ready: ForRule,
    /// `SidecarRestartingFrequently`.
    pub restarts: RestartsRule,
    /// `SidecarCrashLooping`.
    pub crash_loop: ForRule,
    /// `SidecarOOMKilled`.
    pub oom_killed: WindowRule,
    /// `MainStartedBeforeSidecarReady`.
    pub startup_order: InstantRule,
    /// `JobBlockedBySidecar`.
    pub job_blocked: ForRule,
    /// `SidecarStoppedBeforeMain`.
    pub shutdown_order: InstantRule,
    /// `SidecarMisconfigured`.
    pub misconfiguration: InstantRule,
}

impl Default for Rules {
    fn default() -> Self {
        let for_rule = |for_secs, severity| ForRule { enabled: true, severity, for_: Duration::from_secs(for_secs) };
        let instant = |severity| InstantRule { enabled: true, severity };
        Rules {
            sidecar_not_ready: for_rule(300, Severity::Warning),
            main_ready_sidecar_not_ready: for_rule(120, Severity::Warning),
            restarts: RestartsRule {
                enabled: true,
                severity: Severity::Critical,
                threshold: 3,
                window: Duration::from_secs(900),
            },
            crash_loop: for_rule(300, Severity::Critical),
            oom_killed: WindowRule { enabled: true, severity: Severity::Warning, window: Duration::from_secs(3600) },
            startup_order: instant(Severity::Warning),
            job_blocked: for_rule(300, Severity::Warning),
            shutdown_order: instant(Severity::Warning),
            misconfiguration: instant(Severity::Info),
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
    native_sidecars: bool,
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
        let (native_sidecars, sidecar_names, pattern) = match &spec.sidecars {
            None => (true, Vec::new(), Some(DEFAULT_SIDECAR_PATTERN.to_string())),
            Some(s) => (s.native, s.names.clone(), s.pattern.clone()),
        };
        if let Some(i) = sidecar_names.iter().position(|n| n.is_empty()) {
            return Err(SpecError::new(format!("spec.sidecars.names[{i}]"), "empty container name"));
        }
        let sidecar_pattern = pattern
            .map(|p| {
                Regex::new(&format!("^(?:{p})$")).map_err(|e| {
                    SpecError::new(
                        "spec.sidecars.pattern",
                        format!("invalid regular expression {p:?}: {}", first_line(&e.to_string())),
                    )
                })
            })
            .transpose()?;
        if !native_sidecars && sidecar_names.is_empty() && sidecar_pattern.is_none() {
            return Err(SpecError::new("spec.sidecars", "selects no container: set native: true, names or pattern"));
        }
        let rules = compile_rules(spec.rules.as_ref())?;
        Ok(CompiledPolicy {
            shared_ref: std::sync::Arc::new(policy.clone()),
            policy,
            selector,
            namespace_selector: None,
            native_sidecars,
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

    /// Whether the container is a sidecar under this policy, and of which type. Plain init
    /// containers never are.
    pub fn sidecar_type(&self, container: &ContainerView) -> Option<SidecarType> {
        let by_name = || {
            self.sidecar_names.iter().any(|n| container.name == *n)
                || self.sidecar_pattern.as_ref().is_some_and(|p| p.is_match(&container.name))
        };
        match container.kind {
            ContainerKind::Init => None,
            ContainerKind::RestartableInit => (self.native_sidecars || by_name()).then_some(SidecarType::Native),
            ContainerKind::Regular => by_name().then_some(SidecarType::Legacy),
        }
    }
}

fn first_line(text: &str) -> String {
    text.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" ")
}

fn compile_selector(selector: Option<&LabelSelector>, field: &str) -> Result<Selector, SpecError> {
    match selector {
        None => Ok(Selector::default()),
        Some(s) => {
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

fn duration_field(value: Option<&str>, field: &str, default: Duration) -> Result<Duration, SpecError> {
    let Some(text) = value else { return Ok(default) };
    let parsed = parse_duration(text).map_err(|e| SpecError::new(field, e.to_string()))?;
    if parsed > MAX_DURATION {
        return Err(SpecError::new(field, format!("{text:?} is longer than a year")));
    }
    Ok(parsed)
}

fn compile_for(spec: Option<&ForRuleSpec>, field: &str, default: ForRule) -> Result<ForRule, SpecError> {
    let Some(spec) = spec else { return Ok(default) };
    Ok(ForRule {
        enabled: spec.enabled.unwrap_or(true),
        severity: spec.severity.unwrap_or(default.severity),
        for_: duration_field(spec.for_.as_deref(), &format!("{field}.for"), default.for_)?,
    })
}

fn compile_instant(spec: Option<&InstantRuleSpec>, default: InstantRule) -> InstantRule {
    spec.map_or(default, |s| InstantRule {
        enabled: s.enabled.unwrap_or(true),
        severity: s.severity.unwrap_or(default.severity),
    })
}

fn compile_window(spec: Option<&WindowRuleSpec>, field: &str, default: WindowRule) -> Result<WindowRule, SpecError> {
    let Some(spec) = spec else { return Ok(default) };
    let window = duration_field(spec.window.as_deref(), &format!("{field}.window"), default.window)?;
    if window.is_zero() {
        return Err(SpecError::new(format!("{field}.window"), "must be longer than 0"));
    }
    Ok(WindowRule {
        enabled: spec.enabled.unwrap_or(true),
        severity: spec.severity.unwrap_or(default.severity),
        window,
    })
}

fn compile_restarts(spec: Option<&RestartsRuleSpec>, default: RestartsRule) -> Result<RestartsRule, SpecError> {
    const FIELD: &str = "spec.rules.restarts";
    let Some(spec) = spec else { return Ok(default) };
    let threshold = spec.threshold.unwrap_or(default.threshold);
    if !(1..=MAX_THRESHOLD).contains(&threshold) {
        return Err(SpecError::new(
            format!("{FIELD}.threshold"),
            format!("must be between 1 and {MAX_THRESHOLD}, got {threshold}"),
        ));
    }
    let window = duration_field(spec.window.as_deref(), &format!("{FIELD}.window"), default.window)?;
    if window.is_zero() {
        return Err(SpecError::new(format!("{FIELD}.window"), "must be longer than 0"));
    }
    Ok(RestartsRule {
        enabled: spec.enabled.unwrap_or(true),
        severity: spec.severity.unwrap_or(default.severity),
        threshold,
        window,
    })
}

fn compile_rules(spec: Option<&crate::api::RulesSpec>) -> Result<Rules, SpecError> {
    let d = Rules::default();
    let Some(s) = spec else { return Ok(d) };
    Ok(Rules {
        sidecar_not_ready: compile_for(
            s.sidecar_not_ready.as_ref(),
            "spec.rules.sidecarNotReady",
            d.sidecar_not_ready,
        )?,
        main_ready_sidecar_not_ready: compile_for(
            s.main_ready_sidecar_not_ready.as_ref(),
            "spec.rules.mainReadySidecarNotReady",
            d.main_ready_sidecar_not_ready,
        )?,
        restarts: compile_restarts(s.restarts.as_ref(), d.restarts)?,
        crash_loop: compile_for(s.crash_loop.as_ref(), "spec.rules.crashLoop", d.crash_loop)?,
        oom_killed: compile_window(s.oom_killed.as_ref(), "spec.rules.oomKilled", d.oom_killed)?,
        startup_order: compile_instant(s.startup_order.as_ref(), d.startup_order),
        job_blocked: compile_for(s.job_blocked.as_ref(), "spec.rules.jobBlocked", d.job_blocked)?,
        shutdown_order: compile_instant(s.shutdown_order.as_ref(), d.shutdown_order),
        misconfiguration: compile_instant(s.misconfiguration.as_ref(), d.misconfiguration),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{RulesSpec, SidecarSelector};

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
            sidecars: Some(SidecarSelector { native: false, names: vec![], pattern: None }),
            ..Default::default()
        };
        assert_eq!(compile(selects_nothing).unwrap_err().field, "spec.sidecars");
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

    #[test]
    fn pattern_matches_whole_names_only() {
        let policy = compile(PolicySpec::default()).unwrap();
        let view =
            |name: &str, kind| ContainerView { name: name.into(), kind, flags: Default::default(), status: None };
        assert_eq!(policy.sidecar_type(&view("envoy", ContainerKind::Regular)), Some(SidecarType::Legacy));
        assert_eq!(policy.sidecar_type(&view("log-sidecar", ContainerKind::Regular)), Some(SidecarType::Legacy));
        assert_eq!(policy.sidecar_type(&view("envoy-config", ContainerKind::Regular)), None);
        assert_eq!(policy.sidecar_type(&view("app", ContainerKind::Regular)), None);
        assert_eq!(policy.sidecar_type(&view("envoy", ContainerKind::Init)), None);
        assert_eq!(policy.sidecar_type(&view("anything", ContainerKind::RestartableInit)), Some(SidecarType::Native));
    }
}
