//! `sidecar-watch audit`: evaluate a Pod dump against policies at one instant, offline.
//!
//! Input is what `kubectl get pods -A -o json|yaml` prints (a `List` or `PodList`), a single
//! Pod, or a multi-document YAML stream; Namespace objects in the same input give cluster
//! policies their namespace labels. Every namespace also has the label the API server puts
//! on each namespace, `kubernetes.io/metadata.name`, so that a `namespaceSelector` on names
//! works on a plain Pod dump. Only the timestamps in the objects are used, so the result is
//! the same as a freshly started operator would compute.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use jiff::Timestamp;
use serde::Serialize;
use serde_json::Value;

use crate::api::{decode, ClusterSidecarPolicy, Severity, SidecarPolicy, SlimPod};
use crate::engine::{evaluate, Alert, AlertState, CompiledPolicy, PodHistory, PodView, PolicyRef};

/// Why the input could not be used (exit status 2). Every message names the file and,
/// where it applies, the object and the field.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The file could not be read.
    #[error("{file}: cannot read: {source}")]
    Read {
        /// The file.
        file: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is neither JSON nor YAML.
    #[error("{file}: not valid JSON or YAML: {message}")]
    Syntax {
        /// The file.
        file: String,
        /// The parser's message.
        message: String,
    },
    /// The file holds no object at all (empty, or only comments).
    #[error("{file}: holds no objects")]
    Empty {
        /// The file.
        file: String,
    },
    /// An object in the file is not what was expected or has an invalid field.
    #[error("{file}: {object}: {message}")]
    Object {
        /// The file.
        file: String,
        /// `kind namespace/name` or `document N`.
        object: String,
        /// What is wrong, with the field path.
        message: String,
    },
    /// `--now` is not an RFC 3339 timestamp.
    #[error("--now {0:?}: not an RFC 3339 timestamp (e.g. 2026-11-22T10:00:00Z)")]
    Now(String),
}

/// The threshold for a non-zero exit status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum FailOn {
    /// Exit 1 on any firing alert.
    Info,
    /// Exit 1 on firing warning or critical alerts.
    Warning,
    /// Exit 1 on firing critical alerts.
    Critical,
    /// Always exit 0 (unless the input is unusable).
    None,
}

impl FailOn {
    fn threshold(self) -> Option<Severity> {
        match self {
            FailOn::Info => Some(Severity::Info),
            FailOn::Warning => Some(Severity::Warning),
            FailOn::Critical => Some(Severity::Critical),
            FailOn::None => None,
        }
    }
}

/// Output formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// Aligned columns for people.
    Table,
    /// A JSON array for scripts.
    Json,
}

/// The arguments of `audit`.
#[derive(Clone, Debug, clap::Args)]
pub struct AuditArgs {
    /// Pods to audit: a file with `kubectl get pods -o json|yaml` output, one Pod, or a
    /// multi-document YAML stream; `-` reads standard input.
    #[arg(short = 'f', long = "filename", value_name = "FILE")]
    pub file: PathBuf,
    /// A file of SidecarPolicy / ClusterSidecarPolicy objects (repeatable). Default: one
    /// built-in cluster policy with every default.
    #[arg(long = "policy", value_name = "FILE")]
    pub policies: Vec<PathBuf>,
    /// The instant to evaluate at (RFC 3339). Default: now.
    #[arg(long, value_name = "RFC3339")]
    pub now: Option<String>,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value = "table")]
    pub output: OutputFormat,
    /// Exit with status 1 when a firing alert has at least this severity.
    #[arg(long, value_enum, default_value = "warning")]
    pub fail_on: FailOn,
}

/// One line of the audit result.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Finding {
    /// The alert name.
    pub alertname: String,
    /// info, warning or critical.
    pub severity: Severity,
    /// The Pod's namespace.
    pub namespace: String,
    /// The Pod's name.
    pub pod: String,
    /// The container (empty for Pod-level checks).
    pub container: String,
    /// The policy's name.
    pub policy: String,
    /// The policy's namespace; empty for cluster policies.
    pub policy_namespace: String,
    /// pending or firing.
    pub state: AlertState,
    /// Since when the condition holds (RFC 3339), if known.
    pub since: Option<String>,
    /// What is wrong, with evidence.
    pub message: String,
    /// The failed check, for `SidecarMisconfigured`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub check: Option<String>,
}

impl Finding {
    fn new(pod: &PodView, policy: &PolicyRef, alert: Alert) -> Finding {
        Finding {
            alertname: alert.name.as_str().to_string(),
            severity: alert.severity,
            namespace: pod.namespace.to_string(),
            pod: pod.name.clone(),
            container: alert.container,
            policy: policy.name.clone(),
            policy_namespace: policy.namespace.clone().unwrap_or_default(),
            state: alert.state,
            since: alert.since.map(|t| t.to_string()),
            message: alert.message,
            check: alert.check.map(|c| c.as_str().to_string()),
        }
    }
}

/// The objects read from the input.
#[derive(Default)]
pub struct Inventory {
    /// The Pods, as compact views.
    pub pods: Vec<PodView>,
    /// Namespace labels: from Namespace objects in the input, and for every namespace the
    /// `kubernetes.io/metadata.name` label the API server sets.
    pub namespaces: BTreeMap<String, BTreeMap<String, String>>,
}

/// Runs the audit; returns the process exit status (0 or 1) after printing the result.
pub fn run(args: &AuditArgs) -> Result<i32, AuditError> {
    let now = match &args.now {
        Some(text) => text.parse::<Timestamp>().map_err(|_| AuditError::Now(text.clone()))?,
        None => Timestamp::now(),
    };
    let inventory = load_pods(&args.file)?;
    let mut policies = Vec::new();
    for file in &args.policies {
        policies.extend(load_policies(file)?);
    }
    if policies.is_empty() {
        policies.push(CompiledPolicy::builtin());
    }
    let findings = audit(&inventory, &policies, now);
    let output = match args.output {
        OutputFormat::Json => serde_json::to_string_pretty(&findings).unwrap_or_else(|_| "[]".into()) + "\n",
        OutputFormat::Table => render_table(&findings, now),
    };
    print!("{output}");
    let failing = args
        .fail_on
        .threshold()
        .is_some_and(|min| findings.iter().any(|f| f.state == AlertState::Firing && f.severity >= min));
    Ok(i32::from(failing))
}

/// Evaluates every Pod against every policy that selects it, sorted by severity (highest
/// first), then namespace, Pod, container and alert name.
pub fn audit(inventory: &Inventory, policies: &[CompiledPolicy], now: Timestamp) -> Vec<Finding> {
    let history = PodHistory::default();
    let mut findings = Vec::new();
    for pod in &inventory.pods {
        let labels = inventory.namespaces.get(pod.namespace.as_str());
        for policy in policies.iter().filter(|p| p.selects(pod, labels)) {
            let evaluation = evaluate(pod, policy, &history, now);
            findings.extend(evaluation.alerts.into_iter().map(|a| Finding::new(pod, &policy.policy, a)));
        }
    }
    findings.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then_with(|| {
                (&a.namespace, &a.pod, &a.container, &a.alertname, &a.check).cmp(&(
                    &b.namespace,
                    &b.pod,
                    &b.container,
                    &b.alertname,
                    &b.check,
                ))
            })
            .then_with(|| (&a.policy_namespace, &a.policy).cmp(&(&b.policy_namespace, &b.policy)))
    });
    findings
}

fn read_input(path: &Path) -> Result<(String, String), AuditError> {
    let name = if path == Path::new("-") { "<stdin>".to_string() } else { path.display().to_string() };
    let mut text = String::new();
    let result = if path == Path::new("-") {
        std::io::stdin().read_to_string(&mut text).map(|_| ())
    } else {
        std::fs::read_to_string(path).map(|t| text = t)
    };
    result.map_err(|source| AuditError::Read { file: name.clone(), source })?;
    Ok((name, text))
}

/// Parses a JSON document or a YAML stream into its top-level objects, flattening `List`s.
pub fn parse_objects(file: &str, text: &str) -> Result<Vec<Value>, AuditError> {
    let syntax = |e: &dyn std::fmt::Display| AuditError::Syntax { file: file.to_string(), message: e.to_string() };
    let mut documents = Vec::new();
    if text.trim_start().starts_with(['{', '[']) {
        documents.push(serde_json::from_str::<Value>(text).map_err(|e| syntax(&e))?);
    } else {
        for document in serde_norway::Deserializer::from_str(text) {
            let value = <serde_norway::Value as serde::Deserialize>::deserialize(document).map_err(|e| syntax(&e))?;
            if value.is_null() {
                continue;
            }
            documents.push(serde_json::to_value(value).map_err(|e| syntax(&e))?);
        }
    }
    if documents.is_empty() {
        // Most likely a failed redirect; "No alerts." would hide it.
        return Err(AuditError::Empty { file: file.to_string() });
    }
    let mut objects = Vec::new();
    for (index, document) in documents.into_iter().enumerate() {
        match document {
            Value::Array(items) => objects.extend(items),
            Value::Object(ref map) if map.get("kind").and_then(Value::as_str).is_some_and(|k| k.ends_with("List")) => {
                match map.get("items") {
                    Some(Value::Array(items)) => objects.extend(items.iter().cloned()),
                    Some(Value::Null) | None => {}
                    Some(_) => {
                        return Err(AuditError::Object {
                            file: file.to_string(),
                            object: format!("document {}", index + 1),
                            message: "items: expected a list".into(),
                        })
                    }
                }
            }
            Value::Object(_) => objects.push(document),
            other => {
                return Err(AuditError::Object {
                    file: file.to_string(),
                    object: format!("document {}", index + 1),
                    message: format!("expected a Kubernetes object, found {}", json_type(&other)),
                })
            }
        }
    }
    Ok(objects)
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// `Kind namespace/name`, for error messages.
pub fn describe_object(value: &Value, index: usize) -> String {
    let kind = value.get("kind").and_then(Value::as_str).unwrap_or("object");
    let meta = value.get("metadata");
    let name = meta.and_then(|m| m.get("name")).and_then(Value::as_str);
    let namespace = meta.and_then(|m| m.get("namespace")).and_then(Value::as_str);
    match (namespace, name) {
        (Some(ns), Some(n)) => format!("{kind} {ns}/{n}"),
        (None, Some(n)) => format!("{kind} {n}"),
        _ => format!("{kind} #{}", index + 1),
    }
}

/// Reads the Pods (and Namespace labels) to audit.
pub fn load_pods(path: &Path) -> Result<Inventory, AuditError> {
    let (file, text) = read_input(path)?;
    let mut inventory = Inventory::default();
    // Replicas share their names and label sets, as in the operator's index.
    let mut names = crate::engine::Interner::default();
    for (index, object) in parse_objects(&file, &text)?.into_iter().enumerate() {
        let what = describe_object(&object, index);
        let error = |message: String| AuditError::Object { file: file.clone(), object: what.clone(), message };
        match object.get("kind").and_then(Value::as_str) {
            Some("Pod") => {
                let pod: SlimPod = decode(object).map_err(|e| error(e.to_string()))?;
                inventory.pods.push(PodView::from_pod_in(&pod, &mut names));
            }
            Some("Namespace") => {
                let ns: k8s_openapi::api::core::v1::Namespace = decode(object).map_err(|e| error(e.to_string()))?;
                let name = ns.metadata.name.unwrap_or_default();
                inventory.namespaces.insert(name, ns.metadata.labels.unwrap_or_default());
            }
            Some(kind) => return Err(error(format!("kind {kind} is not a Pod"))),
            None => return Err(error("kind: missing, expected Pod".into())),
        }
    }
    for pod in &inventory.pods {
        inventory.namespaces.entry(pod.namespace.to_string()).or_default();
    }
    for (name, labels) in &mut inventory.namespaces {
        labels.entry(NAMESPACE_NAME_LABEL.to_string()).or_insert_with(|| name.clone());
    }
    Ok(inventory)
}

/// The label the API server sets on every namespace to its name.
const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// Reads and compiles the policies in a file.
pub fn load_policies(path: &Path) -> Result<Vec<CompiledPolicy>, AuditError> {
    let (file, text) = read_input(path)?;
    let mut policies = Vec::new();
    for (index, object) in parse_objects(&file, &text)?.into_iter().enumerate() {
        let what = describe_object(&object, index);
        let error = |message: String| AuditError::Object { file: file.clone(), object: what.clone(), message };
        let compiled = match object.get("kind").and_then(Value::as_str) {
            Some("SidecarPolicy") => {
                let policy: SidecarPolicy = decode(object).map_err(|e| error(e.to_string()))?;
                CompiledPolicy::from_sidecar_policy(&policy).1
            }
            Some("ClusterSidecarPolicy") => {
                let policy: ClusterSidecarPolicy = decode(object).map_err(|e| error(e.to_string()))?;
                CompiledPolicy::from_cluster_policy(&policy).1
            }
            Some(kind) => return Err(error(format!("kind {kind} is not a SidecarPolicy or ClusterSidecarPolicy"))),
            None => return Err(error("kind: missing".into())),
        };
        policies.push(compiled.map_err(|e| error(e.to_string()))?);
    }
    if policies.is_empty() {
        // Falling back to the built-in policy would audit with rules the user did not ask for.
        return Err(AuditError::Empty { file });
    }
    Ok(policies)
}

/// Renders findings as aligned columns, most severe first.
pub fn render_table(findings: &[Finding], now: Timestamp) -> String {
    if findings.is_empty() {
        return "No alerts.\n".to_string();
    }
    let headers = ["POD", "CONTAINER", "ALERT", "SEVERITY", "STATE", "SINCE", "MESSAGE"];
    let rows: Vec<[String; 7]> = findings
        .iter()
        .map(|f| {
            let alert = match &f.check {
                Some(check) => format!("{}/{check}", f.alertname),
                None => f.alertname.clone(),
            };
            let since = f
                .since
                .as_deref()
                .and_then(|s| s.parse::<Timestamp>().ok())
                .map(|t| {
                    let secs = u64::try_from(now.duration_since(t).as_secs()).unwrap_or(0);
                    format!("{} ago", crate::api::format_duration(std::time::Duration::from_secs(secs)))
                })
                .unwrap_or_else(|| "-".into());
            [
                format!("{}/{}", f.namespace, f.pod),
                if f.container.is_empty() { "-".into() } else { f.container.clone() },
                alert,
                f.severity.to_string(),
                f.state.as_str().to_string(),
                since,
                f.message.clone(),
            ]
        })
        .collect();
    let mut widths = headers.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let last = cells.len() - 1;
        for (i, cell) in cells.iter().enumerate() {
            if i == last {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<width$}  ", width = widths[i]));
            }
        }
        out.push('\n');
    };
    line(headers.to_vec());
    for row in &rows {
        line(row.iter().map(String::as_str).collect());
    }
    let firing = findings.iter().filter(|f| f.state == AlertState::Firing).count();
    out.push_str(&format!("\n{} alerts ({firing} firing, {} pending)\n", findings.len(), findings.len() - firing));
    out
}
