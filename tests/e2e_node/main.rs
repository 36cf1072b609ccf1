//! End-to-end tests on a real node: kube-apiserver, kube-controller-manager, kube-scheduler,
//! kube-proxy, containerd, runc and a kubelet (`sidecar-watch-control-plane cluster up`),
//! with the operator installed as a platform team installs it — the Helm chart, its own
//! image built from this repository, two replicas electing a leader — and the seed
//! scenarios played by real containers: every Pod status the operator reads here was
//! written by the kubelet.
//!
//! Needs root (the kubelet, containerd and the Pod network); `scripts/test` installs the
//! Debian packages. One cluster serves the whole process; each test works in a namespace of
//! its own.

mod beside_ksm;
mod beyond_jobs;
mod chart;
mod cronjob;
mod faults;
mod injection_failed;
mod kubelet_restart;
mod kubelet_states;
mod kubernetes_features;
mod kustomize;
mod missing_sidecars;
mod rollout_blocked;
mod rollout_daemonset;
mod rollout_held;
mod saturation;
mod scenarios;
mod start_order;
mod support;
mod version_drift;
mod workload_restarts;
