//! `sidecar-watch audit`: evaluate Pods, or the Pod templates of workload manifests, against
//! policies at one instant, offline or from a live cluster.
//!
//! Input is what `kubectl get pods -A -o json|yaml` prints (a `List` or `PodList`), single
//! objects, multi-document YAML streams, or rendered manifests (`helm template`, `kubectl
//! kustomize`): Pods get every rule, Deployments, StatefulSets, DaemonSets, ReplicaSets,
//! Jobs, CronJobs and PodTemplates get the static checks on their Pod template, other kinds
//! are skipped. Objects are decoded one at a time straight into compact views, so memory
//! follows the Pods, not the input's size. Namespace objects in the input give cluster
//! policies their namespace labels; every namespace also has the label the API server puts on
//! each namespace, `kubernetes.io/metadata.name`. Controllers' `FailedCreate` Events and the
//! workload objects they name, and the Pods of rollouts, give the alerts on workloads
//! ([`workload_alerts`]). Only the timestamps in the objects are used, so the result is what
//! a freshly started operator would compute.

mod input;
mod inventory;
mod live;
mod output;
mod sarif;
mod strict;
mod unique;
mod workload_alerts;
mod workloads;
mod yaml;

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;

use jiff::Timestamp;
use serde::Serialize;

use crate::api::Severity;
use crate::engine::SidecarVersions;
use crate::engine::{
    evaluate, Alert, AlertName, AlertState, Around, CompiledPolicy, ContainerView, IdentifiedBy, NamespaceMeta,
    PodHistory, PodView, PolicyRef, DEFAULT_MAX_SIDECARS,
};

pub(crate) use input::{load_pods, load_policies};
pub use input::{read_pods, read_policies};
pub use output::render_table;
pub use sarif::log as sarif_log;

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
    /// The file is neither JSON nor YAML (or nests deeper than the parsers allow).
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
        /// `Kind namespace/name` or `document N`.
        object: String,
        /// What is wrong, with the field path.
        message: String,
    },
    /// `--now` is not an RFC 3339 timestamp.
    #[error("--now {}: not an RFC 3339 timestamp (e.g. 2026-11-22T10:00:00Z)", crate::api::quote(.0))]
    Now(String),
    /// The cluster could not be read (live audit).
    #[error("{0}")]
    Cluster(String),
    /// The result could not be written (a full disk).
    #[error("writing the result: {0}")]
    Write(std::io::Error),
    /// Standard output's reader went away (`| head -1`). Not worth a message: the caller ends
    /// the process silently by SIGPIPE, as git and kubectl do.
    #[error("standard output was closed")]
    ClosedPipe,
}

/// The threshold for a non-zero exit status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum FailOn {
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
enum OutputFormat {
    /// Aligned columns for people.
    Table,
    /// A JSON array for scripts.
    Json,
    /// The same data as YAML.
    Yaml,
    /// SARIF 2.1.0 for code-scanning tools.
    Sarif,
    /// One row per workload and sidecar: product, versions with their Pod counts, alerts.
    Inventory,
    /// The inventory as a JSON array.
    InventoryJson,
}

/// The arguments of `audit`.
#[derive(Clone, Debug, clap::Args)]
pub struct AuditArgs {
    /// Objects to audit (repeatable): `kubectl get pods -o json|yaml` output, single objects,
    /// multi-document YAML, or rendered manifests (`helm template`, `kubectl kustomize`);
    /// `-` reads standard input. Without it, the Pods of the current kubeconfig context.
    #[arg(short = 'f', long = "filename", value_name = "FILE")]
    files: Vec<PathBuf>,
    /// A file of SidecarPolicy / ClusterSidecarPolicy objects (repeatable), validated
    /// strictly. Default: the cluster's policies in a live audit, else one built-in cluster
    /// policy with every default.
    #[arg(long = "policy", value_name = "FILE")]
    policies: Vec<PathBuf>,
    /// The instant to evaluate at (RFC 3339). Default: now.
    #[arg(long, value_name = "RFC3339")]
    now: Option<String>,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value = "table")]
    output: OutputFormat,
    /// Exit with status 1 when a firing alert has at least this severity.
    #[arg(long, value_enum, default_value = "warning")]
    fail_on: FailOn,
    /// Live audit: the kubeconfig file [default: $KUBECONFIG, ~/.kube/config, in-cluster].
    #[arg(long, value_name = "FILE")]
    kubeconfig: Option<PathBuf>,
    /// Live audit: the kubeconfig context [default: the current context].
    #[arg(long, value_name = "NAME")]
    context: Option<String>,
    /// Live audit: the namespace [default: the context's namespace, else `default`].
    #[arg(short = 'n', long, value_name = "NAMESPACE", conflicts_with = "all_namespaces")]
    namespace: Option<String>,
    /// Live audit: every namespace.
    #[arg(short = 'A', long)]
    all_namespaces: bool,
}

/// One line of the audit result.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Finding {
    /// The alert name.
    pub alertname: String,
    /// info, warning or critical.
    pub severity: Severity,
    /// The object's namespace.
    pub namespace: String,
    /// The Pod's name, `<Kind>/<name>` for a workload's Pod template, empty for an alert on
    /// a workload (`SidecarInjectionFailed`, `RolloutBlockedBySidecar`).
    pub pod: String,
    /// The container (empty for Pod-level checks).
    pub container: String,
    /// `Pod`, the workload kind whose Pod template was audited, or the kind of the workload
    /// an alert is on.
    pub kind: String,
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
    /// How the container was recognised as a sidecar: `native`, `names`, `pattern` or
    /// `catalog:<entry>`; null for Pod-level checks.
    pub identified_by: Option<String>,
    /// The failed check, for `SidecarMisconfigured`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub check: Option<String>,
    /// The workload's kind: the Pod's controller owner (a Deployment for its ReplicaSets'
    /// Pods), `Pod` without owner.
    pub workload_kind: String,
    /// The workload's name.
    pub workload: String,
    /// The input file the object came from (for SARIF locations); not part of JSON or YAML.
    #[serde(skip)]
    pub file: Option<String>,
}

impl Finding {
    fn new(audited: &Audited, policy: &PolicyRef, alert: Alert) -> Finding {
        let pod = &audited.view;
        let (workload_kind, workload) = pod.workload();
        Finding {
            alertname: alert.name.as_str().to_string(),
            severity: alert.severity,
            namespace: pod.namespace().to_string(),
            pod: pod.name().to_string(),
            container: alert.container,
            kind: if pod.is_template { workload_kind.to_string() } else { "Pod".to_string() },
            policy: policy.name.clone(),
            policy_namespace: policy.namespace.clone().unwrap_or_default(),
            state: alert.state,
            since: alert.since.map(|t| t.to_string()),
            message: alert.message,
            identified_by: alert.identified_by.map(|i| i.to_string()),
            check: alert.check.map(|c| c.as_str().to_string()),
            workload_kind: workload_kind.to_string(),
            workload: workload.to_string(),
            file: audited.file.clone(),
        }
    }
}

/// A Pod (or Pod template) to audit and where it came from.
pub struct Audited {
    /// Its compact view.
    pub view: PodView,
    /// The input file, when it came from one (not standard input or a cluster).
    file: Option<String>,
}

/// The objects read from the input.
#[derive(Default)]
pub struct Inventory {
    /// The Pods and Pod templates, as compact views.
    pub pods: Vec<Audited>,
    /// Namespace labels and injection annotations: from Namespace objects in the input, and
    /// for every namespace the `kubernetes.io/metadata.name` label the API server sets.
    namespaces: BTreeMap<String, NamespaceMeta>,
    /// The `concurrencyPolicy` of each CronJob in the input, by (namespace, name).
    concurrency: BTreeMap<(String, String), String>,
    /// The CronJob templates held, by (namespace, `CronJob/name`): a CronJob's and its Jobs'
    /// are one.
    cronjob_templates: HashSet<(String, String)>,
    /// `FailedCreate` Events naming a sidecar's cause and the objects they may name.
    failures: workload_alerts::Failures,
    /// What the rollouts' controllers say (their Deployments, StatefulSets, DaemonSets and
    /// ReplicaSets in the input).
    rollout_objects: crate::rollout_controller::InputObjects,
}

/// The label the API server sets on every namespace to its name.
const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

impl Inventory {
    /// Adds a Pod, or a template unless it is a CronJob's (or one of its Jobs') already held.
    /// Any other template is audited whatever else the input holds: two manifests of one
    /// Deployment (two overlays, or two teams' files, neither naming its namespace) are two
    /// things to check, and neither may hide the other.
    fn push(&mut self, audited: Audited) {
        let view = &audited.view;
        let cronjob = view.is_template && view.name().starts_with("CronJob/");
        if !cronjob || self.cronjob_templates.insert((view.namespace().to_string(), view.name().to_string())) {
            self.pods.push(audited);
        }
    }

    /// Gives every namespace of the inventory the label the API server would.
    fn label_namespaces(&mut self) {
        for pod in &self.pods {
            self.namespaces.entry(pod.view.namespace().to_string()).or_default();
        }
        for (name, meta) in &mut self.namespaces {
            meta.labels.entry(NAMESPACE_NAME_LABEL.to_string()).or_insert_with(|| name.clone());
        }
    }
}

/// Runs the audit; returns the process exit status (0 or 1) after printing the result.
pub fn run(args: &AuditArgs) -> Result<i32, AuditError> {
    let now = match &args.now {
        Some(text) => text.parse::<Timestamp>().map_err(|_| AuditError::Now(text.clone()))?,
        None => Timestamp::now(),
    };
    let mut policies = Vec::new();
    for file in &args.policies {
        policies.extend(load_policies(file)?);
    }
    let inventory = if args.files.is_empty() {
        let (inventory, cluster_policies) = live::load(args)?;
        if policies.is_empty() {
            policies = cluster_policies;
        }
        inventory
    } else {
        let mut inventory = Inventory::default();
        let mut names = crate::engine::Interner::default();
        for file in &args.files {
            load_pods(file, &mut inventory, &mut names)?;
        }
        inventory
    };
    if policies.is_empty() {
        policies.push(CompiledPolicy::builtin());
    }
    let keep_sidecars = matches!(args.output, OutputFormat::Inventory | OutputFormat::InventoryJson);
    let (findings, sidecars) = evaluate_all(&inventory, &policies, now, keep_sidecars);
    let failing = args
        .fail_on
        .threshold()
        .is_some_and(|min| findings.iter().any(|f| f.state == AlertState::Firing && f.severity >= min));
    let status = i32::from(failing);
    output::write(args.output, &findings, now, || inventory::rows(&inventory, &sidecars, &findings))?;
    Ok(status)
}

/// A Pod's sidecars under the policies that select it, as the evaluations identified them:
/// (index into its `view.containers`, how), each container once, under the first policy
/// that identifies it, in policy then container order.
type PodSidecars = Vec<(usize, IdentifiedBy)>;

/// Evaluates every Pod against every policy that selects it, sorted by severity (highest
/// first), then namespace, Pod, container and alert name.
pub fn audit(inventory: &Inventory, policies: &[CompiledPolicy], now: Timestamp) -> Vec<Finding> {
    evaluate_all(inventory, policies, now, false).0
}

/// The policies of `policies` that select `pod`.
fn selecting<'a>(
    inventory: &'a Inventory,
    policies: &'a [CompiledPolicy],
    pod: &'a PodView,
) -> impl Iterator<Item = &'a CompiledPolicy> + 'a {
    let namespace = inventory.namespaces.get(pod.namespace().as_str());
    policies.iter().filter(move |p| p.selects(pod, namespace.map(|ns| &ns.labels)))
}

/// [`audit`], and with `keep_sidecars` each Pod's sidecars (in `inventory.pods` order; none
/// for templates), so that the inventory does not select and identify again.
fn evaluate_all(
    inventory: &Inventory,
    policies: &[CompiledPolicy],
    now: Timestamp,
    keep_sidecars: bool,
) -> (Vec<Finding>, Vec<PodSidecars>) {
    let history = PodHistory::default();
    let mut findings = Vec::new();
    let mut sidecars = Vec::new();
    let selecting = |pod| selecting(inventory, policies, pod);
    // The sidecars the index would count: each selecting policy's first ones, up to the cap.
    let rollouts = SidecarVersions::of_pods(inventory.pods.iter().map(|a| &a.view), |pod| {
        let mut found: Vec<&ContainerView> = Vec::new();
        for policy in selecting(pod) {
            for (_, container, _) in policy.sidecars(pod).take(DEFAULT_MAX_SIDECARS) {
                if !found.iter().any(|c| std::ptr::eq(*c, container)) {
                    found.push(container);
                }
            }
        }
        found
    });
    for audited in &inventory.pods {
        let pod = &audited.view;
        let newest = rollouts.newest_of(pod);
        let around = Around {
            namespace: inventory.namespaces.get(pod.namespace().as_str()),
            newest: &newest,
            ..Around::default()
        };
        let mut pod_sidecars = PodSidecars::new();
        for policy in selecting(pod) {
            let evaluation = evaluate(pod, policy, &history, now, around);
            if keep_sidecars && !pod.is_template {
                // Past the cap the evaluation skipped sidecars the inventory still lists: the
                // rest of what the policy identifies, after the evaluated ones.
                let beyond_cap = (evaluation.sidecars_skipped > 0)
                    .then(|| policy.sidecars(pod).skip(evaluation.sidecars.len()).map(|(i, _, how)| (i, how.by)));
                let identified = evaluation.sidecars.iter().map(|&(i, how)| (i, how.by));
                for (index, by) in identified.chain(beyond_cap.into_iter().flatten()) {
                    if !pod_sidecars.iter().any(|(seen, _)| *seen == index) {
                        pod_sidecars.push((index, by));
                    }
                }
            }
            findings.extend(evaluation.alerts.into_iter().map(|mut alert| {
                // A running Job's Pod only: a template's finding is the static check, worded
                // as the admission policy words it.
                let running = !pod.is_template;
                if let (AlertName::JobBlockedBySidecar, ("CronJob", cronjob), true) =
                    (alert.name, pod.workload(), running)
                {
                    let policy = inventory.concurrency.get(&(pod.namespace().to_string(), cronjob.to_string()));
                    alert.message = workloads::with_concurrency(alert.message, cronjob, policy.map(String::as_str));
                }
                Finding::new(audited, &policy.policy, alert)
            }));
        }
        if keep_sidecars {
            sidecars.push(pod_sidecars);
        }
    }
    let on_workloads = workload_alerts::findings(inventory, policies, &findings, now);
    findings.extend(on_workloads);
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
    (findings, sidecars)
}
