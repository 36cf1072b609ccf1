//! Shorthands of the operator suite: a test Pod with a native sidecar, and status writes
//! that run and ready its containers (they panic when the write fails: test helpers).

use k8s_openapi::api::core::v1::Pod;
use serde_json::Value;

use super::{test_pod, PodDriver, State};

/// A test Pod with a native sidecar (`initContainers`, `restartPolicy: Always`).
pub fn native_pod(name: &str, app: &str, main: &str, sidecar: &str) -> Value {
    test_pod(name, &[("app", app)], &[main], &[sidecar])
}

/// Brings every container of the Pod to running and started; `ready` says which are ready.
/// One status write; the driver derives the phase and the conditions as the kubelet does
/// (`Ready` only when all are ready).
pub async fn drive(pod: &PodDriver, ready: &[(&str, bool)]) -> Pod {
    pod.update(|_, s| {
        for c in s.container_statuses.iter_mut().flatten().chain(s.init_container_statuses.iter_mut().flatten()) {
            if c.state.as_ref().and_then(|st| st.running.as_ref()).is_none() {
                c.state = Some(State::Running.to_k8s());
            }
            c.started = Some(true);
            if let Some((_, r)) = ready.iter().find(|(n, _)| *n == c.name) {
                c.ready = *r;
            }
        }
        Ok(())
    })
    .await
    .expect("pod status written")
}

/// Sets `ready` of one container (a readiness probe's result); the driver updates the Pod
/// conditions in the same write, as the kubelet does.
pub async fn set_ready(pod: &PodDriver, container: &str, ready: bool) -> Pod {
    pod.set_ready(container, ready).await.expect("pod status written")
}
