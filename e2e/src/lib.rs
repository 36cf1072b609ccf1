//! End-to-end support for sidecar-watch: a real control plane, kube-apiserver and etcd from
//! their Go modules ([`control_plane`]), a Kubernetes API-server simulator for what a real
//! server here cannot do ([`sim`]: 100k-Pod benchmarks, exact faults), a test harness
//! ([`harness`]) with one HTTP client ([`http`]), the operator's shipped RBAC and a token of
//! its ServiceAccount ([`install`]), a kubelet-like Pod status driver ([`kubelet`]) and a
//! Prometheus runner ([`prometheus`]).

pub mod bench;
pub mod control_plane;
pub mod harness;
pub mod http;
pub mod install;
pub mod kubelet;
pub mod prometheus;
pub mod sim;
