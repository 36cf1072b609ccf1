//! What a ValidatingAdmissionPolicy costs the API server: the `cel-cost` command of the test
//! control plane's binary (`harness/control-plane/celcost.go`) evaluates a policy on one object
//! with kube-apiserver's own CEL admission library (the module the control plane's API server
//! is built from) and reports the runtime cost of each variable and the total, which the
//! server itself never reports, and whether every expression compiles with the CEL library of
//! Kubernetes 1.30. It runs in-process: no control plane is started. The binary is the one
//! [`crate::control_plane::binary`] finds or builds.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;

use crate::control_plane;
use crate::env::{HarnessError, Result};

/// The cost of one variable of the policy.
#[derive(Clone, Debug, Deserialize)]
pub struct VariableCost {
    /// The variable's name.
    pub name: String,
    /// Cost units spent computing it (its own, not the variables it reads).
    pub cost: i64,
    /// Why it has no value (a cost limit reached, a runtime error).
    #[serde(default)]
    pub error: String,
}

/// What `sidecar-watch-control-plane cel-cost` reports.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CostReport {
    /// The API server's budget for one policy on one request (all expressions together).
    pub budget: i64,
    /// The limit of one expression (one variable, one validation).
    pub per_call_limit: i64,
    /// Each variable, in the policy's order.
    pub variables: Vec<VariableCost>,
    /// Everything the API server spends on the request: validations with the variables they
    /// read, then the messages of every validation (which compute those variables again).
    pub total_cost: i64,
    /// The messages of the failed validations, as the API server would print them.
    #[serde(default)]
    pub messages: Option<Vec<String>>,
    /// Expressions that did not compile or evaluate.
    #[serde(default)]
    pub errors: Vec<String>,
    /// The older Kubernetes whose CEL library every expression was also compiled with.
    pub compat_version: String,
    /// Expressions that do not compile there.
    #[serde(default)]
    pub compat_errors: Vec<String>,
}

fn tool_error(policy: &Path, message: String) -> HarnessError {
    HarnessError::Manifest { path: policy.to_path_buf(), message }
}

/// The binary whose `cel-cost` command this runs: the test control plane's
/// ([`crate::control_plane::binary`]: `E2E_CONTROL_PLANE_BIN`, or built once per process by
/// `harness/control-plane/build.sh`).
pub fn binary() -> Result<PathBuf> {
    Ok(control_plane::binary()?)
}

/// Evaluates the ValidatingAdmissionPolicy of `policy` (a YAML file) on `object`, with
/// `params` (a ClusterSidecarPolicy file) when given.
pub fn evaluate(policy: &Path, object: &Path, params: Option<&Path>) -> Result<CostReport> {
    run("cel-cost", policy, &[OsStr::new("-object"), object.as_os_str()], params)
}

/// Runs `command` of the control-plane binary on `policy` with `args` (and `-params`), and
/// reads the JSON it prints.
fn run<T: serde::de::DeserializeOwned>(
    command: &str,
    policy: &Path,
    args: &[&OsStr],
    params: Option<&Path>,
) -> Result<T> {
    let binary = binary()?;
    let mut process = Command::new(&binary);
    process.arg(command).arg("-policy").arg(policy).args(args);
    if let Some(params) = params {
        process.arg("-params").arg(params);
    }
    let shown = format!("{} {command}", binary.display());
    let out = process.output().map_err(|e| tool_error(policy, format!("cannot run {shown}: {e}")))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        // A binary from before the command joined it knows no such command and prints its usage.
        let hint = if stderr.starts_with("usage:") && !stderr.contains(command) {
            format!(
                " (a control-plane binary without {command}: rebuild it with harness/control-plane/build.sh or unset {})",
                control_plane::BINARY_ENV
            )
        } else {
            String::new()
        };
        return Err(tool_error(policy, format!("{shown} failed{hint}: {stderr}")));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| tool_error(policy, format!("{shown} printed no report: {e}")))
}

/// One object for [`messages`], created in a namespace with these labels and annotations.
#[derive(Clone, Debug, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AdmissionCase {
    /// The object created.
    pub object: serde_json::Value,
    /// Its namespace's labels (`kubernetes.io/metadata.name` is always set).
    pub namespace_labels: std::collections::BTreeMap<String, String>,
    /// Its namespace's annotations.
    pub namespace_annotations: std::collections::BTreeMap<String, String>,
}

/// What the policy says of one [`AdmissionCase`].
#[derive(Clone, Debug, Deserialize)]
pub struct CaseMessages {
    /// The messages of the failed validations: the warnings `kubectl` would print.
    #[serde(default)]
    pub messages: Vec<String>,
    /// Expressions that did not compile or evaluate.
    #[serde(default)]
    pub errors: Vec<String>,
}

/// The messages of the ValidatingAdmissionPolicy of `policy` on each case, in order: the
/// control plane binary's `cel-messages` command (`harness/control-plane/celmessages.go`), which
/// compiles the policy once for all of them.
pub fn messages(
    policy: &Path,
    cases: &[AdmissionCase],
    params: Option<&Path>,
    scratch: &Path,
) -> Result<Vec<CaseMessages>> {
    let file = scratch.join("cel-messages-cases.json");
    let body = serde_json::to_vec(cases).map_err(|e| tool_error(policy, format!("cases: {e}")))?;
    std::fs::write(&file, body).map_err(|e| tool_error(&file, e.to_string()))?;
    let results: Vec<CaseMessages> = run("cel-messages", policy, &[OsStr::new("-cases"), file.as_os_str()], params)?;
    if results.len() != cases.len() {
        let answered = format!("cel-messages answered {} of {} cases", results.len(), cases.len());
        return Err(tool_error(policy, answered));
    }
    Ok(results)
}
