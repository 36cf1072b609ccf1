//! The Pod fields each Kubernetes release serves, for the tests that create the fixtures on an
//! older API server (`admission.rs`, on the 1.33 control plane CI runs too).

use serde_json::Value;

/// Removes from `value` (an object, or any part of one) the container fields a 1.`minor` server
/// does not take: `restartPolicyRules` and a regular container's `restartPolicy` (KEP-5307,
/// ContainerRestartRules: not in the API before 1.34, dropped by its alpha gate in 1.34, beta
/// from 1.35) and, on an init container,
/// KEP-5532's `RestartAllContainers` rules (from 1.36; 1.35 forbids rules on a native
/// sidecar), and `lifecycle.stopSignal` (KEP-4960, in the API from 1.33). Returns whether it
/// removed any.
pub fn remove_unserved_fields(value: &mut Value, minor: u32) -> bool {
    let mut removed = false;
    match value {
        Value::Object(map) => {
            for (list, since) in [("containers", 35), ("initContainers", 36)] {
                if minor >= since {
                    continue;
                }
                for container in map.get_mut(list).and_then(Value::as_array_mut).into_iter().flatten() {
                    let Some(c) = container.as_object_mut() else { continue };
                    removed |= c.remove("restartPolicyRules").is_some();
                    if list == "containers" {
                        removed |= c.remove("restartPolicy").is_some();
                    }
                    if minor < 33 {
                        let lifecycle = c.get_mut("lifecycle").and_then(Value::as_object_mut);
                        removed |= lifecycle.is_some_and(|l| l.remove("stopSignal").is_some());
                    }
                }
            }
            for child in map.values_mut() {
                removed |= remove_unserved_fields(child, minor);
            }
        }
        Value::Array(items) => {
            for item in items {
                removed |= remove_unserved_fields(item, minor);
            }
        }
        _ => {}
    }
    removed
}
