//! Pods (JSON) for the real node: containers of the test image ([`super::BUSYBOX_IMAGE`])
//! running shell scripts, native sidecars, exec probes and Jobs.

use serde_json::{json, Value};

/// A Pod (JSON) whose containers all run the test image; `init` are native sidecars unless
/// they set another `restartPolicy`.
pub fn pod(name: &str, init: Vec<Value>, containers: Vec<Value>) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"initContainers": init, "containers": containers, "terminationGracePeriodSeconds": 2},
    })
}

/// A container of the test image running `script` with `sh -c`, plus `extra` fields.
pub fn container(name: &str, script: &str, extra: Value) -> Value {
    let mut c = json!({"name": name, "image": super::BUSYBOX_IMAGE, "command": ["sh", "-c", script]});
    if let (Some(c), Some(extra)) = (c.as_object_mut(), extra.as_object()) {
        c.extend(extra.clone());
    }
    c
}

/// A native sidecar: [`container`] with `restartPolicy: Always`.
pub fn native(name: &str, script: &str, mut extra: Value) -> Value {
    extra["restartPolicy"] = json!("Always");
    container(name, script, extra)
}

/// A Pod whose native sidecar starts and becomes ready at once (startup and readiness probes
/// that pass) beside a main container.
pub fn healthy(name: &str) -> Value {
    pod(
        name,
        vec![native(
            "proxy",
            "exec sleep 3600",
            json!({"startupProbe": probe("true"), "readinessProbe": probe("true")}),
        )],
        vec![container("app", "exec sleep 3600", json!({}))],
    )
}

/// An exec probe running `script`, every second.
pub fn probe(script: &str) -> Value {
    json!({"exec": {"command": ["sh", "-c", script]}, "periodSeconds": 1, "timeoutSeconds": 5})
}

/// A Job (`backoffLimit: 0`, Pods `restartPolicy: Never`) of [`pod`]'s containers.
pub fn job(name: &str, init: Vec<Value>, containers: Vec<Value>) -> Value {
    let template = pod(name, init, containers);
    json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name},
        "spec": {"backoffLimit": 0, "template": {"spec": {
            "restartPolicy": "Never",
            "initContainers": template["spec"]["initContainers"],
            "containers": template["spec"]["containers"],
            "terminationGracePeriodSeconds": 2,
        }}},
    })
}
