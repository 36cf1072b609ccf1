//! What the kubelet does after one exit of a container: starts it again, leaves it, or
//! restarts the whole Pod, as Kubernetes 1.33–1.37 runs it. Read from the spec alone while the
//! compact view is built, so that every termination in the view carries its [`ExitVerdict`].
//! Every decision here mirrors a function of the kubelet (k8s.io/kubernetes v1.37.2) or a KEP;
//! the runbooks (`docs/runbooks/SidecarRestartingFrequently.md`) cite them for users.
//!
//! - **Restart rules** (KEP-5307, `ContainerRestartRules`, beta 1.35): [`exit_verdict`] is
//!   `ContainerShouldRestart` and `FindMatchingContainerRestartRule` of `pkg/api/v1/pod/util.go`:
//!   the container's `restartPolicyRules` in order, then its own `restartPolicy`, then the Pod's.
//!   A container-level `restartPolicy` on a regular container never makes it a sidecar
//!   (`IsRestartableInitContainer` looks at init containers only).
//! - **In-place Pod restart** (KEP-5532, `RestartAllContainersOnContainerExits`, beta 1.36): a
//!   rule with action `RestartAllContainers` ([`declares_pod_restart`]) restarts every container
//!   of the Pod; each is then ended with the reason [`RESTARTING_ALL_CONTAINERS`].
//! - **Resize** (KEP-1287): a resize of a resource whose `resizePolicy` is `RestartContainer`
//!   restarts the container ([`resize_restarts`]).

use sidecar_watch_api::SlimContainer;

/// The reason the kubelet gives every container it removed for an in-place Pod restart.
pub(crate) const RESTARTING_ALL_CONTAINERS: &str = "RestartingAllContainers";

bitflags::bitflags! {
    /// What the kubelet does after one exit of a container.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
    pub struct ExitVerdict: u8 {
        /// The kubelet starts the container again: the exit does not finish it.
        const RESTARTS = 1;
        /// The exit matched a `RestartAllContainers` rule: every container of the Pod restarts.
        const RESTARTS_POD = 1 << 1;
    }
}

/// What the kubelet does after `container` exited with `exit_code` (and `reason`), in a Pod
/// whose `spec.restartPolicy` is `pod_restart_policy` (`Always` when absent).
pub(crate) fn exit_verdict(
    pod_restart_policy: Option<&str>,
    container: &SlimContainer,
    exit_code: i32,
    reason: Option<&str>,
) -> ExitVerdict {
    // A container removed for an in-place Pod restart is started again with the Pod; it is
    // not the one whose exit caused it (kubelet_pods.go getPhase treats it as restartable).
    if reason == Some(RESTARTING_ALL_CONTAINERS) {
        return ExitVerdict::RESTARTS;
    }
    if let Some(own_policy) = container.restart_policy.as_deref() {
        // Rules count only beside a container-level policy (the API requires one).
        if let Some(rule) = matching_rule(container, exit_code) {
            match rule {
                "Restart" => return ExitVerdict::RESTARTS,
                "RestartAllContainers" => return ExitVerdict::RESTARTS | ExitVerdict::RESTARTS_POD,
                // An action this version does not know: the container's policy decides.
                _ => {}
            }
        }
        match own_policy {
            "Always" => return ExitVerdict::RESTARTS,
            "OnFailure" => return restarts_if(exit_code != 0),
            "Never" => return ExitVerdict::empty(),
            _ => {}
        }
    }
    match pod_restart_policy {
        Some("OnFailure") => restarts_if(exit_code != 0),
        Some("Never") => ExitVerdict::empty(),
        _ => ExitVerdict::RESTARTS,
    }
}

fn restarts_if(restarts: bool) -> ExitVerdict {
    if restarts {
        ExitVerdict::RESTARTS
    } else {
        ExitVerdict::empty()
    }
}

/// The action of the first rule whose exit codes match, as the kubelet evaluates them.
fn matching_rule(container: &SlimContainer, exit_code: i32) -> Option<&str> {
    container.restart_policy_rules.iter().find_map(|rule| {
        let codes = rule.exit_codes.as_ref()?;
        let listed = codes.values.contains(&exit_code);
        let matches = match codes.operator.as_str() {
            "In" => listed,
            "NotIn" => !listed,
            _ => false,
        };
        matches.then_some(rule.action.as_str())
    })
}

/// Whether the container declares a rule that restarts every container of the Pod.
pub(crate) fn declares_pod_restart(container: &SlimContainer) -> bool {
    container.restart_policy_rules.iter().any(|r| r.action == "RestartAllContainers")
}

/// Whether a resize of one of the container's resources restarts it.
pub(crate) fn resize_restarts(container: &SlimContainer) -> bool {
    container.resize_policy.iter().any(|p| p.restart_policy == "RestartContainer")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(spec: serde_json::Value) -> SlimContainer {
        serde_json::from_value(spec).expect("a container")
    }

    #[test]
    fn the_verdict_follows_rules_then_the_containers_policy_then_the_pods() {
        let rules = container(serde_json::json!({"name": "train", "restartPolicy": "Never", "restartPolicyRules": [
            {"action": "Restart", "exitCodes": {"operator": "In", "values": [42]}},
            {"action": "RestartAllContainers", "exitCodes": {"operator": "In", "values": [88]}},
            {"action": "Teleport", "exitCodes": {"operator": "In", "values": [7]}},
            {"action": "Restart", "exitCodes": {"operator": "Sometimes", "values": [9]}}]}));
        let none = ExitVerdict::empty();
        let restarts = ExitVerdict::RESTARTS;
        for (code, pod_policy, expected) in [
            (42, Some("Never"), restarts),
            (88, Some("Never"), ExitVerdict::RESTARTS | ExitVerdict::RESTARTS_POD),
            (7, Some("Always"), none), // unknown action: the container's Never decides
            (9, Some("Always"), none), // unknown operator: no match
            (1, Some("Always"), none), // no rule: the container's Never, not the Pod's Always
        ] {
            assert_eq!(exit_verdict(pod_policy, &rules, code, Some("Error")), expected, "exit {code}");
        }
        let not_in = container(serde_json::json!({"name": "a", "restartPolicy": "Never", "restartPolicyRules": [
            {"action": "Restart", "exitCodes": {"operator": "NotIn", "values": [0]}}]}));
        assert_eq!((exit_verdict(None, &not_in, 0, None), exit_verdict(None, &not_in, 3, None)), (none, restarts));
        let on_failure = container(serde_json::json!({"name": "a", "restartPolicy": "OnFailure"}));
        assert_eq!(
            (exit_verdict(Some("Never"), &on_failure, 0, None), exit_verdict(Some("Never"), &on_failure, 2, None)),
            (none, restarts)
        );
        // Rules without a container-level policy are not applied (the API rejects them).
        let no_policy = container(serde_json::json!({"name": "a", "restartPolicyRules": [
            {"action": "Restart", "exitCodes": {"operator": "In", "values": [1]}}]}));
        assert_eq!(exit_verdict(Some("Never"), &no_policy, 1, None), none);
        // The Pod's policy, Always when absent.
        let plain = container(serde_json::json!({"name": "a"}));
        assert_eq!(
            [None, Some("Always"), Some("OnFailure"), Some("Never")].map(|p| exit_verdict(p, &plain, 0, None)),
            [restarts, restarts, none, none]
        );
        // A container removed by an in-place Pod restart starts again with the Pod.
        assert_eq!(exit_verdict(Some("Never"), &plain, 137, Some(RESTARTING_ALL_CONTAINERS)), restarts);
    }
}
