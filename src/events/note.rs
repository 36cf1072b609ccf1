//! What an Event says: reason, action, the container's `fieldPath` and the note.

use jiff::Timestamp;

use crate::engine::{AlertKey, AlertName, ContainerKind, PolicyRef};
use crate::index::{Transition, TransitionKind};

/// Events are at most this long (the API's limit is 1 kB).
const MAX_NOTE: usize = 1000;

/// The Event reason of a transition: the alert name, or `<alert>Resolved`.
pub(crate) fn reason(t: &Transition) -> String {
    reason_of(t.alert.name, t.kind)
}

/// The Event reason for `alert` firing or resolving.
pub(crate) fn reason_of(alert: AlertName, kind: TransitionKind) -> String {
    match kind {
        TransitionKind::Fired => alert.as_str().to_string(),
        TransitionKind::Resolved => format!("{}Resolved", alert.as_str()),
    }
}

/// The Event action: the failed check for `SidecarMisconfigured` (so that two checks on one
/// container are two Events, not one series), the missing container's name for
/// `SidecarMissing` (no `fieldPath` can name a container the Pod does not have), else `Alert`
/// or `Resolve`.
pub fn action(t: &Transition) -> String {
    action_of(&t.alert.key(), t.kind)
}

/// [`action`] from the alert's key.
pub(crate) fn action_of(alert: &AlertKey<'_>, kind: TransitionKind) -> String {
    match (alert.check, kind) {
        (Some(check), _) => check.as_str().to_string(),
        (None, _) if alert.name == AlertName::SidecarMissing => alert.container.to_string(),
        (None, TransitionKind::Fired) => "Alert".into(),
        (None, TransitionKind::Resolved) => "Resolve".into(),
    }
}

/// The `fieldPath` of a container in an ObjectReference, as the kubelet writes it.
pub(crate) fn field_path(kind: Option<ContainerKind>, container: &str) -> Option<String> {
    match kind? {
        ContainerKind::Regular => Some(format!("spec.containers{{{container}}}")),
        _ => Some(format!("spec.initContainers{{{container}}}")),
    }
}

/// The container named in a `fieldPath` written by [`field_path`].
pub(super) fn container_of(field_path: Option<&str>) -> String {
    field_path
        .and_then(|p| p.split_once('{'))
        .map(|(_, rest)| rest.strip_suffix('}').unwrap_or(rest).to_string())
        .unwrap_or_default()
}

/// The Event note: the alert's message, the Pod's workload and the policy, within the API's
/// size limit.
pub fn note(t: &Transition, now: Timestamp) -> String {
    match t.kind {
        TransitionKind::Fired => {
            truncate(format!("{} (workload {}, policy {})", t.alert.message, t.workload, t.policy))
        }
        TransitionKind::Resolved => {
            let held = t.alert.since.map(|s| u64::try_from(now.duration_since(s).as_secs()).unwrap_or(0));
            resolved_note(t.alert.name, &t.alert.container, &t.namespace, &t.pod, held, &t.policy)
        }
    }
}

/// The note of a `Resolved` Event; `held_secs` is how long the alert had held, when known.
pub(crate) fn resolved_note(
    alert: AlertName,
    container: &str,
    namespace: &str,
    pod: &str,
    held_secs: Option<u64>,
    policy: &PolicyRef,
) -> String {
    let held = held_secs
        .map(|secs| format!(" after {}", crate::api::format_duration(std::time::Duration::from_secs(secs))))
        .unwrap_or_default();
    truncate(format!(
        "{} on container {container} of Pod {namespace}/{pod} resolved{held} (policy {policy})",
        alert.as_str()
    ))
}

/// `text` within the API's limit on a note.
pub(crate) fn truncate(mut text: String) -> String {
    if text.len() > MAX_NOTE {
        // `…` takes 3 bytes.
        text.truncate(crate::api::byte_prefix(&text, MAX_NOTE - 3).len());
        text.push('…');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_note_is_cut_on_a_character_boundary_within_the_limit() {
        assert_eq!(truncate("short".into()), "short");
        let exact = "a".repeat(MAX_NOTE);
        assert_eq!(truncate(exact.clone()), exact);
        // 996 ASCII bytes, then `é` (2 bytes) would straddle byte 997: it goes whole.
        let long = format!("{}{}", "a".repeat(MAX_NOTE - 4), "é".repeat(10));
        let cut = truncate(long);
        assert_eq!(cut, format!("{}…", "a".repeat(MAX_NOTE - 4)));
        assert_eq!(cut.len(), MAX_NOTE - 1);
    }
}
