//! End-to-end support for sidecar-watch: a Kubernetes API-server simulator ([`sim`]),
//! a test harness ([`harness`]) with one HTTP client ([`http`]), a kubelet-like Pod status driver ([`kubelet`]) and a
//! Prometheus runner ([`prometheus`]).

pub mod bench;
pub mod harness;
pub mod http;
pub mod kubelet;
pub mod prometheus;
pub mod sim;
