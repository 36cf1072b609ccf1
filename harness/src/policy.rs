//! SidecarPolicy helpers, as JSON: the resource, the `rules` object with exactly the given
//! rules enabled, and checks of a policy's status (counts, conditions).

use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{json, Value};

/// The `SidecarPolicy` resource.
pub fn policy_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("sidecarwatch.io", "v1alpha1", "SidecarPolicy"),
        "sidecarpolicies",
    )
}

/// Every rule of a policy; [`rules`] disables those not given.
pub const RULES: [&str; 11] = [
    "sidecarNotReady",
    "mainReadySidecarNotReady",
    "restarts",
    "crashLoop",
    "oomKilled",
    "startupOrder",
    "jobBlocked",
    "shutdownOrder",
    "misconfiguration",
    "injectionFailed",
    "rolloutBlocked",
];

/// A `rules` object with exactly the given rules enabled (everything else `enabled: false`),
/// so that each test asserts the exact set of alerts.
pub fn rules(enabled: Value) -> Value {
    let mut out = serde_json::Map::new();
    for name in RULES {
        let rule = enabled.get(name).cloned().unwrap_or_else(|| json!({"enabled": false}));
        out.insert(name.to_string(), rule);
    }
    Value::Object(out)
}

/// The condition of `type_` in a status.
pub fn condition<'a>(status: &'a Value, type_: &str) -> Option<&'a Value> {
    status.get("conditions")?.as_array()?.iter().find(|c| c["type"] == type_)
}

/// Checks the counts of a policy status.
pub fn status_counts(status: &Value, matched: u64, alerting: u64, firing: Value, pending: u64) -> Result<(), String> {
    let got = (
        status["matchedPods"].as_u64().unwrap_or(0),
        status["alertingPods"].as_u64().unwrap_or(0),
        status.get("firing").cloned().unwrap_or(json!({})),
        status["pendingAlerts"].as_u64().unwrap_or(0),
    );
    let want = (matched, alerting, firing, pending);
    if got == want {
        Ok(())
    } else {
        Err(format!("counts (matched, alerting, firing, pending) = {got:?}, want {want:?}"))
    }
}

/// Checks the Ready condition.
pub fn status_ready(status: &Value, value: &str, reason: &str) -> Result<(), String> {
    let c = condition(status, "Ready").ok_or("no Ready condition")?;
    if c["status"] == value && c["reason"] == reason {
        Ok(())
    } else {
        Err(format!("Ready = {c}, want {value}/{reason}"))
    }
}
