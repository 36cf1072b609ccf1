//! What a ValidatingAdmissionPolicy costs the API server: `e2e/cel-cost` evaluates a policy on
//! one object with kube-apiserver's own CEL admission library (the version the test control
//! plane runs) and reports the runtime cost of each variable and the total, which the server
//! itself never reports, and whether every expression compiles with the CEL library of
//! Kubernetes 1.30. Built once per process with `go build` (Go's build cache shares the
//! control plane's modules, so a build takes seconds).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde::Deserialize;

use crate::harness::{HarnessError, Result};

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

/// What `cel-cost` reports.
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

fn tool_error(message: String) -> HarnessError {
    HarnessError::Manifest { path: PathBuf::from("e2e/cel-cost"), message }
}

/// Builds `cel-cost` (once per process) into `<target>/cel-cost/`.
pub fn binary() -> Result<PathBuf> {
    static BINARY: OnceLock<std::result::Result<PathBuf, String>> = OnceLock::new();
    BINARY
        .get_or_init(|| {
            let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("cel-cost");
            let target = std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
            let out = target.join("cel-cost/cel-cost");
            let built = Command::new("go")
                .args(["build", "-o"])
                .arg(&out)
                .arg(".")
                .current_dir(&source)
                .env("GOTOOLCHAIN", "local")
                .env("GOFLAGS", "-mod=mod")
                .output()
                .map_err(|e| {
                    format!(
                        "cannot run go ({e}): Go 1.26 or newer is needed to build e2e/cel-cost (https://go.dev/dl/)"
                    )
                })?;
            if !built.status.success() {
                return Err(format!("go build in e2e/cel-cost failed: {}", String::from_utf8_lossy(&built.stderr)));
            }
            Ok(out)
        })
        .clone()
        .map_err(tool_error)
}

/// Evaluates the ValidatingAdmissionPolicy of `policy` (a YAML file) on `object`, with
/// `params` (a ClusterSidecarPolicy file) when given.
pub fn evaluate(policy: &Path, object: &Path, params: Option<&Path>) -> Result<CostReport> {
    let mut command = Command::new(binary()?);
    command.arg("-policy").arg(policy).arg("-object").arg(object);
    if let Some(params) = params {
        command.arg("-params").arg(params);
    }
    let out = command.output().map_err(|e| tool_error(format!("cannot run cel-cost: {e}")))?;
    if !out.status.success() {
        return Err(tool_error(format!("cel-cost failed: {}", String::from_utf8_lossy(&out.stderr))));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| tool_error(format!("cel-cost printed no report: {e}")))
}
