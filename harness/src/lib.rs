//! End-to-end support for sidecar-watch: what its end-to-end tests and its benchmark run it
//! against, and the process-level test helpers (the pure ones, Pods as JSON, seed scenarios,
//! the scrape parser, are `sidecar_watch_testkit`'s, which this crate builds on).
//!
//! A real control plane, kube-apiserver and etcd from their Go modules ([`control_plane`]), a
//! real single-node cluster with a kubelet and containerd, the operator's chart and Pods of
//! its test image ([`node`]), a Kubernetes API-server simulator for what a real server here
//! cannot do ([`sim`]: 100k-Pod benchmarks, objects a real server would refuse) and what its
//! tests against kube-apiserver share ([`both_servers`]), a fault-injecting proxy in front of
//! kube-apiserver ([`fault_proxy`]), the test environment ([`env`](mod@env): `TestEnv`, `kubectl`,
//! manifests, `wait_until`) with one HTTP client ([`http`]), the operator suite's cluster
//! ([`cluster`]) with its Event and policy helpers ([`events`], [`policy`]), the operator's
//! shipped RBAC and a token of its ServiceAccount ([`install`]), a kubelet-like Pod status
//! driver ([`kubelet`]), child processes measured from `/proc` ([`process`]), a Prometheus
//! runner ([`prometheus`]) and an Alertmanager runner with a webhook receiver
//! ([`alertmanager`]), kube-state-metrics and the seed's rules ([`ksm`]), the cost of an
//! admission policy ([`cel_cost`]) and a whole test's bound with the logs its failure shows
//! ([`backstop`]).

pub mod alertmanager;
pub mod backstop;
pub mod both_servers;
pub mod cel_cost;
pub mod cluster;
pub mod control_plane;
pub mod env;
pub mod events;
pub mod fault_proxy;
pub mod http;
pub mod install;
pub mod ksm;
pub mod kubelet;
pub mod node;
pub mod policy;
pub mod process;
pub mod prometheus;
pub mod sim;
