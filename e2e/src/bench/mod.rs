//! Support for the `sidecar-watch-bench` binary: realistic Pods ([`pods`]), Prometheus text
//! parsing with histogram quantiles ([`prom`]) and process/HTTP probes ([`sys`]).

pub mod pods;
pub mod prom;
pub mod sys;
