//! The blind-spot checks admission can decide from the object alone: a catalog sidecar whose
//! own health signal the Pod's annotations switch off or move out of Prometheus's reach
//! (`SidecarMisconfigured`'s `metrics-disabled` and `metrics-unreachable`), read as the engine
//! reads them (`crates/engine/src/catalog/signal.rs`), with the engine's texts:
//! - Dapr: `dapr.io/enable-metrics` set to a value Dapr does not read as true;
//! - Istio: `prometheus.istio.io/merge-metrics` that Go reads as false;
//! - Vault Agent: no `vault.hashicorp.com/agent-telemetry-*` annotation and no
//!   `vault.hashicorp.com/agent-configmap`;
//! - git-sync without `--http-bind` and (from v4) `--http-metrics`, and the Cloud SQL Auth
//!   Proxy without `--prometheus`, `--health-check` or a reachable `--http-address`: flags and
//!   variables read as the engine reads them ([`super::switches`]).
//!
//! Injected sidecars are in a Pod by the time the policy sees it (mutating admission runs
//! first), and in no workload's template, as for `audit`.

use k8s_openapi::api::admissionregistration::v1::Variable;

use super::cel::{self, variable, Message};
use super::policy::{indices, sidecar_message};
use super::switches::{is_on, is_on_or, readable, MAX_SWITCHED_SIDECARS};
use crate::api::{SignalSwitch, GO_FALSE, VAULT_TELEMETRY_PREFIX};
use crate::engine::{
    signal_texts, Blindspot, CATALOG, DAPR_ENABLE_METRICS, ISTIO_MERGE_METRICS, VAULT_AGENT_CONFIGMAP,
};

/// The Pod's (or template's) annotations.
const ANNOTATIONS: &str = "variables.template.metadata.?annotations.orValue({})";

/// The blind-spot checks admission makes: (check label, how the signal is switched off, what
/// the message says after `"Sidecar <name> in Pod <key> "`), every one the engine makes.
pub(super) const COVERED: [(&str, Blindspot, &str); 7] = [
    ("metrics-disabled", Blindspot::DaprAnnotation, signal_texts::DAPR_METRICS_OFF),
    ("metrics-unreachable", Blindspot::IstioMerge, signal_texts::ISTIO_NOT_MERGED),
    ("metrics-disabled", Blindspot::VaultTelemetry, signal_texts::VAULT_NO_TELEMETRY),
    ("metrics-disabled", Blindspot::GitSync, signal_texts::GIT_SYNC_METRICS_OFF),
    ("metrics-disabled", Blindspot::CloudSqlProxy, signal_texts::CLOUD_SQL_METRICS_OFF),
    ("metrics-unreachable", Blindspot::CloudSqlProxy, signal_texts::CLOUD_SQL_METRICS_LOCAL),
    ("health-check-disabled", Blindspot::CloudSqlProxy, signal_texts::CLOUD_SQL_HEALTH_CHECK_OFF),
];

/// The blind-spot checks on sidecar `s`, as [`super::policy::sidecar_checks`] lists checks.
pub(super) fn checks() -> Vec<(&'static str, &'static str, String, Message)> {
    COVERED
        .into_iter()
        .map(|(check, blindspot, text)| match container_switched_off(check, blindspot) {
            Some(off) => {
                let condition = format!("s.catalog in {} && {off}", ids(blindspot));
                (check, "variables.switchedShown", condition, sidecar_message(text))
            }
            None => {
                // The annotation first: most Pods have none of these, and it costs less than
                // recognising the container.
                let recognised = format!("{} in {}", cel::catalog_id("s.container"), ids(blindspot));
                let condition = format!("{} && {recognised}", switched_off(blindspot));
                (check, "variables.sidecarsShown", condition, sidecar_message(text))
            }
        })
        .collect()
}

/// The products whose own flags and variables switch their signal.
const SWITCHED: [Blindspot; 2] = [Blindspot::GitSync, Blindspot::CloudSqlProxy];

/// `switchedShown`: the sidecars shown whose flags are read, with their catalog entries.
pub(super) fn variables() -> Vec<Variable> {
    let ids: Vec<String> = SWITCHED.iter().map(|b| ids(*b)).collect();
    let ids = ids.join(" + ");
    vec![variable(
        "switchedShown",
        &format!(
            "the first {MAX_SWITCHED_SIDECARS} sidecars shown whose own flags switch their signal, within the words \
             admission reads, with their catalog entries"
        ),
        format!(
            "[variables.sidecarsShown.map(s, {{'container': s.container, 'catalog': dyn({})}})\n\
             .filter(s, s.catalog in {ids} && {})]\n\
             .map(l, {}.filter(i, i < size(l)).map(i, l[i]))[0]",
            cel::catalog_id("s.container"),
            readable("s.container"),
            indices(MAX_SWITCHED_SIDECARS)
        ),
    )]
}

/// Whether container `s.container`'s flags or variables fail `check` for a `blindspot`
/// product, in CEL, as the engine's `spec_flags` decides it; `None` where the Pod's annotations
/// decide.
fn container_switched_off(check: &str, blindspot: Blindspot) -> Option<String> {
    let c = "s.container";
    Some(match (blindspot, check) {
        (Blindspot::GitSync, _) => {
            // v3 serves /metrics on its endpoint unless told not to; v4 only when told to.
            let v3 = format!("has({c}.image) && {c}.image.find('^[^@]*').matches({})", cel::string(r":v?3\.[^:/]*$"));
            format!(
                "!({} && {})",
                is_on(c, SignalSwitch::HttpBind),
                is_on_or(c, SignalSwitch::HttpMetrics, &format!("({v3})"))
            )
        }
        (Blindspot::CloudSqlProxy, "metrics-unreachable") => {
            format!("{} && !{}", is_on(c, SignalSwitch::Prometheus), is_on(c, SignalSwitch::HttpAddress))
        }
        (Blindspot::CloudSqlProxy, "health-check-disabled") => format!("!{}", is_on(c, SignalSwitch::HealthCheck)),
        (Blindspot::CloudSqlProxy, _) => format!("!{}", is_on(c, SignalSwitch::Prometheus)),
        _ => return None,
    })
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
            format!("{} in {}", annotation(ISTIO_MERGE_METRICS), cel::string_list(GO_FALSE))
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
    cel::string_list(CATALOG.iter().filter(|e| e.signal.blindspot == blindspot).map(|e| e.id))
}
