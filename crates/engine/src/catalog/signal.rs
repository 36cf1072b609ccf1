//! Each catalog product's own health or metrics signal: where it is served, whether it is on
//! by default, what switches it, and how a Pod spec that switches it off or out of
//! Prometheus's reach is recognised (`SidecarMisconfigured`'s `metrics-disabled`,
//! `metrics-unreachable` and `health-check-disabled`).

use std::collections::BTreeMap;

use sidecar_watch_api::{parse_go_bool, SignalSwitch, Switches, VAULT_TELEMETRY_PREFIX};

use crate::alert::Check;
use crate::pod::SpecFlags;

/// A product's own signal as its documentation states it. `None` where the documentation
/// does not settle a fact: the docs table says "unknown" rather than guess.
#[derive(Debug)]
pub struct Signal {
    /// The port it is served on by default.
    pub port: Option<u16>,
    /// Its path (several, comma-separated, for health endpoints).
    pub path: &'static str,
    /// Whether a stock sidecar serves it without any setting.
    pub default_on: Option<bool>,
    /// What switches it on or off, as users write it, in Markdown (annotations, flags and
    /// configuration keys in backticks): the policies guide's table shows it as it is.
    pub switch: &'static str,
    /// How the engine reads a Pod spec for it; [`Blindspot::None`] when no setting of the Pod
    /// can turn it off.
    pub blindspot: Blindspot,
}

/// How a product's signal is switched off in a Pod spec.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Blindspot {
    /// Nothing in the Pod spec turns it off (or nothing this check reads).
    None,
    /// git-sync: `/metrics` needs `--http-bind` and, from v4, `--http-metrics`.
    GitSync,
    /// Cloud SQL Auth Proxy v2: `--prometheus` and `--health-check`, served on
    /// `--http-address` (`localhost` by default).
    CloudSqlProxy,
    /// Dapr: the Pod annotation `dapr.io/enable-metrics` (on unless a value Dapr does not
    /// read as true).
    DaprAnnotation,
    /// Istio: the Pod annotation `prometheus.istio.io/merge-metrics` (`false` opts out of the
    /// merged endpoint).
    IstioMerge,
    /// Vault Agent: telemetry only through `vault.hashicorp.com/agent-telemetry-*`
    /// annotations or the agent's own configuration (`vault.hashicorp.com/agent-configmap`).
    VaultTelemetry,
}

/// The spec flags of a container's own switches (args and env), computed once per distinct
/// container spec. `version` is its image's tag.
pub(crate) fn spec_flags(blindspot: Blindspot, switches: Switches, version: Option<&str>) -> SpecFlags {
    let mut flags = SpecFlags::default();
    match blindspot {
        Blindspot::GitSync => {
            let bound = switches.get(SignalSwitch::HttpBind) == Some(true);
            // git-sync v3 serves /metrics on its endpoint by default; v4 only with
            // --http-metrics (its manual: "Enable metrics on git-sync's HTTP endpoint").
            let v3 = version.is_some_and(|v| v.starts_with("v3.") || v.starts_with("3."));
            let metrics = switches.get(SignalSwitch::HttpMetrics).unwrap_or(v3);
            flags.set(SpecFlags::METRICS_OFF, !(bound && metrics));
        }
        Blindspot::CloudSqlProxy => {
            let prometheus = switches.get(SignalSwitch::Prometheus) == Some(true);
            let reachable = switches.get(SignalSwitch::HttpAddress) == Some(true);
            flags.set(SpecFlags::METRICS_OFF, !prometheus);
            flags.set(SpecFlags::METRICS_LOCAL, prometheus && !reachable);
            flags.set(SpecFlags::HEALTH_CHECK_OFF, switches.get(SignalSwitch::HealthCheck) != Some(true));
        }
        Blindspot::None | Blindspot::DaprAnnotation | Blindspot::IstioMerge | Blindspot::VaultTelemetry => {}
    }
    flags
}

/// The checks a sidecar fails, given its spec flags and the Pod's kept annotations: each with
/// what the message says after `"Sidecar <name> in Pod <key> "`.
pub(crate) fn failed_checks(
    blindspot: Blindspot,
    flags: SpecFlags,
    annotations: &BTreeMap<String, String>,
) -> Vec<(Check, &'static str)> {
    let annotation = |key: &str| annotations.get(key).map(String::as_str);
    let mut failed = Vec::new();
    match blindspot {
        Blindspot::GitSync if flags.contains(SpecFlags::METRICS_OFF) => {
            failed.push((Check::MetricsDisabled, texts::GIT_SYNC_METRICS_OFF));
        }
        Blindspot::CloudSqlProxy => {
            if flags.contains(SpecFlags::METRICS_OFF) {
                failed.push((Check::MetricsDisabled, texts::CLOUD_SQL_METRICS_OFF));
            }
            if flags.contains(SpecFlags::METRICS_LOCAL) {
                failed.push((Check::MetricsUnreachable, texts::CLOUD_SQL_METRICS_LOCAL));
            }
            if flags.contains(SpecFlags::HEALTH_CHECK_OFF) {
                failed.push((Check::HealthCheckDisabled, texts::CLOUD_SQL_HEALTH_CHECK_OFF));
            }
        }
        Blindspot::DaprAnnotation if annotation(DAPR_ENABLE_METRICS).is_some_and(dapr_reads_false) => {
            failed.push((Check::MetricsDisabled, texts::DAPR_METRICS_OFF));
        }
        Blindspot::IstioMerge if annotation(ISTIO_MERGE_METRICS).and_then(parse_go_bool) == Some(false) => {
            failed.push((Check::MetricsUnreachable, texts::ISTIO_NOT_MERGED));
        }
        Blindspot::VaultTelemetry
            if annotation(VAULT_TELEMETRY_PREFIX).is_none() && annotation(VAULT_AGENT_CONFIGMAP).is_none() =>
        {
            failed.push((Check::MetricsDisabled, texts::VAULT_NO_TELEMETRY));
        }
        _ => {}
    }
    failed
}

/// Dapr's injector keeps its default for an empty value and reads any other through
/// `utils.IsTruthy` (`y`, `yes`, `true`, `t`, `on`, `1`, any case): everything else is false.
fn dapr_reads_false(value: &str) -> bool {
    let value = value.trim().to_ascii_lowercase();
    !value.is_empty() && !matches!(value.as_str(), "y" | "yes" | "true" | "t" | "on" | "1")
}

/// The annotation that switches daprd's metrics.
pub const DAPR_ENABLE_METRICS: &str = "dapr.io/enable-metrics";
/// The annotation that opts a Pod out of Istio's metrics merge.
pub const ISTIO_MERGE_METRICS: &str = "prometheus.istio.io/merge-metrics";
/// The annotation that hands Vault Agent a configuration of the user's own (its telemetry is
/// then unknown).
pub const VAULT_AGENT_CONFIGMAP: &str = "vault.hashicorp.com/agent-configmap";

/// What the blind-spot checks say after `"Sidecar <name> in Pod <namespace>/<pod> "`, one
/// text for the engine, `audit` and the admission policies.
pub mod texts {
    /// git-sync, `metrics-disabled`.
    pub const GIT_SYNC_METRICS_OFF: &str = "serves no metrics: git-sync opens its HTTP endpoint only with --http-bind (GITSYNC_HTTP_BIND) and, from v4, serves /metrics there only with --http-metrics (GITSYNC_HTTP_METRICS), so its failing syncs never reach Prometheus and SidecarSyncFailing cannot fire; add --http-bind=:8080 --http-metrics and scrape :8080/metrics";
    /// Cloud SQL Auth Proxy, `metrics-disabled`.
    pub const CLOUD_SQL_METRICS_OFF: &str = "serves no metrics: the Cloud SQL Auth Proxy serves /metrics only with --prometheus (CSQL_PROXY_PROMETHEUS), so Prometheus sees nothing of its connections; add --prometheus --http-address=0.0.0.0 and scrape :9090/metrics";
    /// Cloud SQL Auth Proxy, `metrics-unreachable`.
    pub const CLOUD_SQL_METRICS_LOCAL: &str = "serves /metrics on localhost only (--http-address defaults to localhost), where Prometheus cannot scrape it; add --http-address=0.0.0.0";
    /// Cloud SQL Auth Proxy, `health-check-disabled`.
    pub const CLOUD_SQL_HEALTH_CHECK_OFF: &str = "has no health check: the Cloud SQL Auth Proxy serves /startup, /liveness and /readiness only with --health-check (CSQL_PROXY_HEALTH_CHECK), so no probe can tell when it is ready or stuck; add --health-check --http-address=0.0.0.0 and probe :9090/readiness";
    /// Dapr, `metrics-disabled`.
    pub const DAPR_METRICS_OFF: &str = "serves no metrics: the Pod's annotation dapr.io/enable-metrics switches them off and daprd opens no metrics port, so SidecarComponentInitFailed cannot fire; remove the annotation (metrics are on by default) and scrape :9090/metrics (dapr.io/metrics-port)";
    /// Istio, `metrics-unreachable`.
    pub const ISTIO_NOT_MERGED: &str = "is in a Pod opted out of Istio's metrics merge (prometheus.istio.io/merge-metrics: false): :15020/stats/prometheus no longer carries Envoy's series, so a Prometheus that scrapes Pods by their prometheus.io annotations never sees them and the Envoy-family alerts cannot fire; remove the annotation or scrape the proxy's :15090/stats/prometheus directly";
    /// Vault Agent, `metrics-disabled`.
    pub const VAULT_NO_TELEMETRY: &str = "runs without telemetry: the Pod has no vault.hashicorp.com/agent-telemetry-* annotation (nor its own agent configuration, vault.hashicorp.com/agent-configmap), so its auth failures never reach Prometheus and SidecarSyncFailing cannot fire; add e.g. vault.hashicorp.com/agent-telemetry-prometheus_retention_time: \"30s\" and scrape the agent's /agent/v1/metrics";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dapr_reads_its_annotation_as_its_injector_does() {
        for (value, off) in [("false", true), ("FALSE", true), ("0", true), ("no", true), ("junk", true), ("", false)] {
            assert_eq!(dapr_reads_false(value), off, "{value:?}");
        }
        for value in ["true", "True", " on ", "1", "y", "YES", "t"] {
            assert!(!dapr_reads_false(value), "{value:?}");
        }
    }
}
