//! End-to-end support for sidecar-watch: a real control plane, kube-apiserver and etcd from
//! their Go modules ([`control_plane`]), a real single-node cluster with a kubelet and
//! containerd ([`node`]), a Kubernetes API-server simulator for what a real
//! server here cannot do ([`sim`]: 100k-Pod benchmarks, exact faults), a test harness
//! ([`harness`]) with one HTTP client ([`http`]), the operator's shipped RBAC and a token of
//! its ServiceAccount ([`install`]), a kubelet-like Pod status driver ([`kubelet`]), `/proc`
//! probes of child processes ([`process`]), a Prometheus runner ([`prometheus`]) and the cost
//! of an admission policy ([`cel_cost`]).

pub mod bench;
pub mod cel_cost;
pub mod control_plane;
pub mod harness;
pub mod http;
pub mod install;
pub mod kubelet;
pub mod node;
pub mod process;
pub mod prometheus;
pub mod sim;
