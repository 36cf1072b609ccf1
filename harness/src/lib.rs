//! End-to-end support for sidecar-watch: what its end-to-end tests and its benchmark run it
//! against.
//!
//! A real control plane, kube-apiserver and etcd from their Go modules ([`control_plane`]), a
//! real single-node cluster with a kubelet and containerd ([`node`]), a Kubernetes API-server
//! simulator for what a real server here cannot do ([`sim`]: 100k-Pod benchmarks, objects a
//! real server would refuse), a fault-injecting proxy in front of kube-apiserver ([`fault_proxy`]), a test harness ([`harness`]) with one HTTP client ([`http`]), the operator's
//! shipped RBAC and a token of its ServiceAccount ([`install`]), a kubelet-like Pod status
//! driver ([`kubelet`]), child processes measured from `/proc` ([`process`]), a Prometheus
//! runner ([`prometheus`]), kube-state-metrics and the seed's rules ([`ksm`]) and the cost of
//! an admission policy ([`cel_cost`]).

pub mod cel_cost;
pub mod control_plane;
pub mod fault_proxy;
pub mod harness;
pub mod http;
pub mod install;
pub mod ksm;
pub mod kubelet;
pub mod node;
pub mod process;
pub mod prometheus;
pub mod sim;
