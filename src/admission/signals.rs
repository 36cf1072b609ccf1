//! The blind-spot checks admission can decide from the object alone: a catalog sidecar whose
//! own health signal the Pod's annotations switch off or move out of Prometheus's reach
//! (`SidecarMisconfigured`'s `metrics-disabled` and `metrics-unreachable`), read as the engine
//! reads them (`crates/engine/src/catalog/signal.rs`), with the engine's texts:
//! - Dapr: `dapr.io/enable-metrics` set to a value Dapr does not read as true;
//! - Istio: `prometheus.istio.io/merge-metrics` that Go reads as false;
//! - Vault Agent: no `vault.hashicorp.com/agent-telemetry-*` annotation and no
//!   `vault.hashicorp.com/agent-configmap`.
//!
//! Injected sidecars are in a Pod by the time the policy sees it (mutating admission runs
//! first), and in no workload's template, as for `audit`. The checks that read a container's
//! flags and environment (git-sync, the Cloud SQL Auth Proxy: Go flag syntax, `=` or a
//! separate word, later flags winning) stay with `audit` and the operator.

use super::cel::{self, Message};
use super::policy::sidecar_message;
use crate::api::VAULT_TELEMETRY_PREFIX;
use crate::engine::{
    signal_texts, Blindspot, CATALOG, DAPR_ENABLE_METRICS, ISTIO_MERGE_METRICS, VAULT_AGENT_CONFIGMAP,
};

/// The Pod's (or template's) annotations.
const ANNOTATIONS: &str = "variables.template.metadata.?annotations.orValue({})";

/// The blind-spot checks admission makes: (check label, how the signal is switched off, what
/// the message says after `"Sidecar <name> in Pod <key> "`).
pub(super) const COVERED: [(&str, Blindspot, &str); 3] = [
    ("metrics-disabled", Blindspot::DaprAnnotation, signal_texts::DAPR_METRICS_OFF),
    ("metrics-unreachable", Blindspot::IstioMerge, signal_texts::ISTIO_NOT_MERGED),
    ("metrics-disabled", Blindspot::VaultTelemetry, signal_texts::VAULT_NO_TELEMETRY),
];

/// The blind-spot checks on sidecar `s`, as [`super::policy::sidecar_checks`] lists checks.
pub(super) fn checks() -> Vec<(&'static str, &'static str, String, Message)> {
    COVERED
        .into_iter()
        .map(|(check, blindspot, text)| {
            // The annotation first: most Pods have none of these, and it costs less than
            // recognising the container.
            let condition =
                format!("{} && {} in {}", switched_off(blindspot), cel::catalog_id("s.container"), ids(blindspot));
            (check, "variables.sidecarsShown", condition, sidecar_message(text))
        })
        .collect()
}

/// Whether the Pod's annotations switch a `blindspot` product's signal off, in CEL.
fn switched_off(blindspot: Blindspot) -> String {
    let annotation = |key: &str| format!("{ANNOTATIONS}[?{}].orValue('')", cel::string(key));
    match blindspot {
        Blindspot::DaprAnnotation => format!(
            "[{}.trim().lowerAscii()].all(v, v != '' && !(v in ['y', 'yes', 'true', 't', 'on', '1']))",
            annotation(DAPR_ENABLE_METRICS)
        ),
        Blindspot::IstioMerge => {
            format!("{} in ['0', 'f', 'F', 'false', 'FALSE', 'False']", annotation(ISTIO_MERGE_METRICS))
        }
        Blindspot::VaultTelemetry => format!(
            "!{ANNOTATIONS}.exists(k, k.startsWith({})) && !({} in {ANNOTATIONS})",
            cel::string(VAULT_TELEMETRY_PREFIX),
            cel::string(VAULT_AGENT_CONFIGMAP)
        ),
        Blindspot::None | Blindspot::GitSync | Blindspot::CloudSqlProxy => "false".to_string(),
    }
}

/// The catalog entries whose signal `blindspot` switches off, as a CEL list of their ids.
fn ids(blindspot: Blindspot) -> String {
    let ids: Vec<String> =
        CATALOG.iter().filter(|e| e.signal.blindspot == blindspot).map(|e| cel::string(e.id)).collect();
    format!("[{}]", ids.join(", "))
}
