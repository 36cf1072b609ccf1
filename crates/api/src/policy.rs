//! The CRD types. Field docs become the schema descriptions `kubectl explain` shows.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::{CustomResource, KubeSchema};
use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Serialize};

use super::bounds::*;
use super::DURATION_PATTERN;

/// Selects Pods in the policy's own namespace and says which of their containers are
/// sidecars and which alert rules apply to them.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "sidecarwatch.io",
    version = "v1alpha1",
    kind = "SidecarPolicy",
    doc = "A namespaced sidecar policy: selects Pods in its own namespace.",
    plural = "sidecarpolicies",
    shortname = "scp",
    namespaced,
    status = "PolicyStatus",
    category = "sidecarwatch",
    printcolumn = r#"{"name":"Matched","type":"integer","description":"Pods selected by the policy","jsonPath":".status.matchedPods"}"#,
    printcolumn = r#"{"name":"Alerting","type":"integer","description":"Pods with at least one firing alert","jsonPath":".status.alertingPods"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","description":"Whether the policy is valid and evaluated","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","description":"Why the policy is (not) ready: Evaluating, InvalidSpec or TooManyPolicies","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Pending","type":"integer","priority":1,"description":"Alerts whose condition holds but whose `for` has not elapsed yet","jsonPath":".status.pendingAlerts"}"#,
    printcolumn = r#"{"name":"Last Evaluated","type":"date","priority":1,"description":"When the operator last evaluated the policy","jsonPath":".status.lastEvaluationTime"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct PolicySpec {
    /// Pods the policy applies to, by label. Empty or absent selects every Pod in scope.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "label_selector_schema")]
    pub selector: Option<LabelSelector>,
    /// Which containers are sidecars (the union of native, catalog, names and pattern). Absent
    /// means native sidecars, the built-in catalog and the pattern `.*-sidecar|istio-proxy|envoy`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sidecars: Option<SidecarSelector>,
    /// The alert rules; each rule absent here runs with its defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rules: Option<RulesSpec>,
    /// Publish Kubernetes Events on Pods when alerts fire and resolve.
    #[serde(default = "default_true")]
    pub events: bool,
}

impl Default for PolicySpec {
    fn default() -> Self {
        Self { selector: None, sidecars: None, rules: None, events: true }
    }
}

/// Cluster-wide policy for platform teams: like `SidecarPolicy`, with Pods selected across
/// every namespace that matches `namespaceSelector`.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "sidecarwatch.io",
    version = "v1alpha1",
    kind = "ClusterSidecarPolicy",
    doc = "A cluster-wide sidecar policy: selects Pods in every namespace its namespaceSelector matches.",
    plural = "clustersidecarpolicies",
    shortname = "cscp",
    status = "PolicyStatus",
    category = "sidecarwatch",
    printcolumn = r#"{"name":"Matched","type":"integer","description":"Pods selected by the policy","jsonPath":".status.matchedPods"}"#,
    printcolumn = r#"{"name":"Alerting","type":"integer","description":"Pods with at least one firing alert","jsonPath":".status.alertingPods"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","description":"Whether the policy is valid and evaluated","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","description":"Why the policy is (not) ready: Evaluating, InvalidSpec or TooManyPolicies","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Pending","type":"integer","priority":1,"description":"Alerts whose condition holds but whose `for` has not elapsed yet","jsonPath":".status.pendingAlerts"}"#,
    printcolumn = r#"{"name":"Last Evaluated","type":"date","priority":1,"description":"When the operator last evaluated the policy","jsonPath":".status.lastEvaluationTime"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ClusterPolicySpec {
    /// Namespaces whose Pods the policy applies to, by label. Empty or absent selects every
    /// namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "label_selector_schema")]
    pub namespace_selector: Option<LabelSelector>,
    /// The policy itself, as in `SidecarPolicy`.
    #[serde(flatten)]
    pub policy: PolicySpec,
}

/// How sidecar containers are recognised in a Pod.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.native || self.catalog || size(self.names) > 0 || has(self.pattern)").message("sidecars selects nothing: set native: true, catalog: true, names or pattern"))]
pub struct SidecarSelector {
    /// Init containers with `restartPolicy: Always` (native sidecars, Kubernetes 1.29+).
    #[serde(default = "default_true")]
    pub native: bool,
    /// Well-known sidecars (Istio, Linkerd, Envoy, Vault Agent, ...) recognised by container
    /// name or image repository from the built-in catalog.
    #[serde(default = "default_true")]
    pub catalog: bool,
    /// Exact container names.
    #[serde(default)]
    #[schemars(length(max = MAX_SIDECAR_NAMES), inner(length(min = 1, max = MAX_CONTAINER_NAME_CHARS)))]
    pub names: Vec<String>,
    /// A regular expression that must match the whole container name (RE2 syntax).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = MAX_PATTERN_CHARS))]
    pub pattern: Option<String>,
    /// Catalog ids (`istio`, `linkerd`, …) or container names that every selected Pod must
    /// run; a running or pending Pod without one is `SidecarMissing`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = MAX_SIDECAR_NAMES), inner(length(min = 1, max = MAX_CONTAINER_NAME_CHARS)))]
    pub required: Vec<String>,
    /// Per catalog id or container name, the oldest version allowed (`{istio: "1.25"}`): a
    /// sidecar whose image tag names an older release is `SidecarVersionDrift`; a tag that
    /// names no release (`latest`, a digest) is unknown, never older.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "minimum_versions_schema")]
    pub minimum_versions: BTreeMap<String, String>,
}

impl Default for SidecarSelector {
    fn default() -> Self {
        Self {
            native: true,
            catalog: true,
            names: Vec::new(),
            pattern: None,
            required: Vec::new(),
            minimum_versions: BTreeMap::new(),
        }
    }
}

/// Alert severity, copied into the `severity` label of every series and alert.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth knowing; no action needed now.
    Info,
    /// Needs attention soon.
    Warning,
    /// Needs attention now.
    Critical,
}

impl Severity {
    /// The lowercase name used in labels and output.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The alert rules of a policy; see the README's alert table for what each one means.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RulesSpec {
    /// `SidecarContainerNotReady`: a sidecar is running or waiting but not ready (default for 5m, warning).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sidecar_not_ready: Option<ForRuleSpec>,
    /// `MainContainerReadyButSidecarNot` (default for 2m, warning).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub main_ready_sidecar_not_ready: Option<ForRuleSpec>,
    /// `SidecarRestartingFrequently`: at least `threshold` restarts within `window` (default 3 in 15m, critical).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restarts: Option<RestartsRuleSpec>,
    /// `SidecarCrashLooping`: waiting in `CrashLoopBackOff` (default for 5m, critical).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crash_loop: Option<ForRuleSpec>,
    /// `SidecarOOMKilled`: last termination `OOMKilled` within `window` (default 1h, warning).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oom_killed: Option<WindowRuleSpec>,
    /// `MainStartedBeforeSidecarReady` (default warning).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub startup_order: Option<InstantRuleSpec>,
    /// `JobBlockedBySidecar`: a Job's main containers are done, a sidecar still runs (default for 5m, warning).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_blocked: Option<ForRuleSpec>,
    /// `SidecarStoppedBeforeMain`: on shutdown a sidecar stopped while a main container ran (default warning).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shutdown_order: Option<InstantRuleSpec>,
    /// `SidecarMissing`: a running or pending Pod lacks a sidecar that its injector's markers
    /// or `spec.sidecars.required` ask for (default warning).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sidecar_missing: Option<InstantRuleSpec>,
    /// `SidecarVersionDrift`: a sidecar runs a release older than `spec.sidecars.minimumVersions`,
    /// or an older version than the newer Pods of its workload (default for 1h, warning).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_drift: Option<ForRuleSpec>,
    /// `SidecarMisconfigured`: static checks of the Pod spec (default info).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub misconfiguration: Option<InstantRuleSpec>,
    /// `SidecarInjectionFailed`, on a workload: its controller cannot create Pods because of a
    /// sidecar or its injector (default for 2m, critical).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub injection_failed: Option<ForRuleSpec>,
    /// `RolloutBlockedBySidecar`, on a workload: every Pod of its newest revision has the same
    /// sidecar failing while older Pods still run (default for 10m, warning).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout_blocked: Option<ForRuleSpec>,
}

/// A rule whose condition must hold for a duration before it fires.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ForRuleSpec {
    /// Evaluate this rule (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Severity of the alert.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<Severity>,
    /// How long the condition must hold before the alert fires, e.g. `5m`.
    #[serde(rename = "for", default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "duration_schema")]
    pub for_: Option<String>,
}

/// The restart-count rule.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RestartsRuleSpec {
    /// Evaluate this rule (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Severity of the alert.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<Severity>,
    /// Restarts within `window` that fire the alert (1 to 1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub threshold: Option<u32>,
    /// The sliding window restarts are counted in, e.g. `15m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "duration_schema")]
    pub window: Option<String>,
}

/// A rule about an event that stays relevant for a window of time.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WindowRuleSpec {
    /// Evaluate this rule (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Severity of the alert.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<Severity>,
    /// How long after the event the alert stays active, e.g. `1h`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "duration_schema")]
    pub window: Option<String>,
}

/// A rule that fires as soon as its condition is seen.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InstantRuleSpec {
    /// Evaluate this rule (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Severity of the alert.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<Severity>,
}

/// What the operator last computed for a policy (`kubectl get scp` shows the counts).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyStatus {
    /// The `metadata.generation` this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Pods and alerts, summed over every shard.
    #[serde(flatten)]
    pub counts: PolicyCounts,
    /// When the operator last evaluated the policy (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_evaluation_time: Option<String>,
    /// Per-shard counts when the operator runs sharded (`--shard-count` > 1), keyed by the
    /// shard index; the counts above are their sums.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = MAX_SHARDS))]
    pub shards: BTreeMap<String, ShardStatus>,
    /// `Ready`: the spec is valid and being evaluated (reason `Evaluating`), or not (reason
    /// `InvalidSpec`, with the field in the message).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = MAX_CONDITIONS))]
    pub conditions: Vec<Condition>,
}

/// Pod and alert counts of a policy: over every shard in `status`, one shard's share in
/// `status.shards`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyCounts {
    /// Pods the policy selects.
    #[serde(default)]
    pub matched_pods: u32,
    /// Selected Pods with at least one firing alert.
    #[serde(default)]
    pub alerting_pods: u32,
    /// Firing alerts by alert name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = MAX_FIRING_NAMES))]
    pub firing: BTreeMap<String, u32>,
    /// Pending alerts (condition holds, `for` not yet elapsed).
    #[serde(default)]
    pub pending_alerts: u32,
}

impl PolicyCounts {
    /// Adds another shard's counts.
    pub fn add(&mut self, other: &PolicyCounts) {
        self.matched_pods += other.matched_pods;
        self.alerting_pods += other.alerting_pods;
        self.pending_alerts += other.pending_alerts;
        for (alert, n) in &other.firing {
            *self.firing.entry(alert.clone()).or_default() += n;
        }
    }
}

/// What one shard of a sharded operator counted for a policy.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ShardStatus {
    /// This shard's counts.
    #[serde(flatten)]
    pub counts: PolicyCounts,
    /// How many shards there were when this was written (entries of another shard count
    /// are ignored).
    #[serde(default)]
    pub shard_count: u32,
}

fn default_true() -> bool {
    true
}

fn minimum_versions_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "maxProperties": MAX_SIDECAR_NAMES,
        "additionalProperties": {"type": "string", "minLength": 1, "maxLength": MAX_RELEASE_CHARS},
        "description": "Per catalog id or container name, the oldest release allowed, e.g. {istio: \"1.25\"}."
    })
}

fn duration_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "string",
        "minLength": 1,
        "maxLength": MAX_DURATION_CHARS,
        "pattern": DURATION_PATTERN,
        "description": "A duration in the Prometheus form, e.g. 30s, 5m, 1h30m."
    })
}

/// A label selector (Pods or namespaces) with the sizes of [`super::bounds`]; operators are
/// the four the API knows. Nullable, as the field is optional.
fn label_selector_schema(generator: &mut SchemaGenerator) -> Schema {
    let mut schema = LabelSelector::json_schema(generator);
    schema.insert("nullable".into(), true.into());
    let mut set = |pointer: &str, key: &str, value: serde_json::Value| {
        if let Some(object) = schema.pointer_mut(pointer).and_then(serde_json::Value::as_object_mut) {
            object.insert(key.into(), value);
        }
    };
    set("/properties/matchLabels", "maxProperties", MAX_MATCH_LABELS.into());
    // Keys of a map cannot have a maxLength in a structural schema: a CEL rule, bounded in
    // cost by maxProperties (size() is constant time).
    set(
        "/properties/matchLabels",
        "x-kubernetes-validations",
        serde_json::json!([{
            "rule": format!("self.all(k, size(k) <= {MAX_LABEL_KEY_CHARS})"),
            "message": format!("label keys are at most {MAX_LABEL_KEY_CHARS} characters"),
        }]),
    );
    set("/properties/matchLabels/additionalProperties", "maxLength", MAX_LABEL_VALUE_CHARS.into());
    set("/properties/matchExpressions", "maxItems", MAX_MATCH_EXPRESSIONS.into());
    let requirement = "/properties/matchExpressions/items/properties";
    set(&format!("{requirement}/key"), "maxLength", MAX_LABEL_KEY_CHARS.into());
    set(&format!("{requirement}/operator"), "enum", serde_json::json!(["In", "NotIn", "Exists", "DoesNotExist"]));
    set(&format!("{requirement}/values"), "maxItems", MAX_EXPRESSION_VALUES.into());
    set(&format!("{requirement}/values/items"), "maxLength", MAX_LABEL_VALUE_CHARS.into());
    schema
}
