//! End-to-end tests of `sidecar-watch run` against the simulator (or `E2E_KUBECONFIG`).
