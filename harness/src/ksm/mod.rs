//! kube-state-metrics, the user's real alternative to the operator: its process, built from
//! the pinned Go module of `harness/ksm/` and run as a careful user runs it ([`exporter`]), and the
//! rules a user alerts with on its series, the seed's PrometheusRule and the same rules fixed
//! for native sidecars, as Prometheus rule files and configuration ([`rules`]).

pub mod exporter;
pub mod rules;
