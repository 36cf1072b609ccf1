//! End-to-end tests of `sidecar-watch run` against a real kube-apiserver and etcd built from
//! their Go modules (`harness/control-plane`), or the cluster of `E2E_KUBECONFIG`.
//!
//! The tests share one control plane, each in a namespace of its own with its own operator
//! process(es), so they run in parallel; the operator runs as its shipped ServiceAccount.
//! Tests that break, restart or compact the server, or read its audit log, start a control
//! plane of their own (`real_server.rs`, `faults.rs`, `initial_list.rs`, `rbac.rs`,
//! `audit_live.rs`, the failed-call test of `event_recorder.rs`); injected 500s, 429s and
//! dropped connections come from the fault proxy in front of it, and so does a Pod no real
//! server would store (`limits.rs`). Anything that needs kube-apiserver goes
//! here, not in `tests/integration/`, which runs without a cluster or a control-plane binary.
//!
//! Set `E2E_SHOW_LOGS=1` to print every operator's log, `E2E_OPERATOR_LOG` to change its
//! `RUST_LOG` (default `info`). Logs are always printed when a test fails.

mod admission;
mod admission_cost;
mod admission_missing;
mod admission_switches;
mod alertmanager;
mod audit_live;
mod cronjob_events;
mod event_recorder;
mod failover;
mod faults;
mod functional_health;
mod hangs;
mod initial_list;
mod injection_failed;
mod install_paths;
mod kubernetes_features;
mod leader;
mod lifecycle;
mod limits;
mod metrics_available;
mod metrics_secure;
mod policies;
mod policy_flood;
mod prometheus;
mod rbac;
mod real_server;
mod renew_deadline;
mod restart;
mod scenarios;
mod served_fields;
mod server_side;
mod sharding;
mod support;
mod workload_events;
