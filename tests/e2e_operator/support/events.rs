//! Events: counting, describing and finding them, and [`AlertEvent`], an alert Event as
//! expected.

use k8s_openapi::api::events::v1::Event;

use super::*;

/// Occurrences of an Event (counting `series.count`).
pub fn count_events(events: &[Event], object: &str, type_: &str, reason: &str) -> u32 {
    events
        .iter()
        .filter(|e| {
            e.type_.as_deref() == Some(type_)
                && e.reason.as_deref() == Some(reason)
                && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(object)
        })
        .map(|e| e.series.as_ref().map_or(1, |s| s.count.max(1) as u32))
        .sum()
}

/// A one-line summary of Events for failure messages.
pub fn describe_events(events: &[Event]) -> String {
    events
        .iter()
        .map(|e| {
            format!(
                "{}/{} on {}[{}] x{}",
                e.type_.as_deref().unwrap_or(""),
                e.reason.as_deref().unwrap_or(""),
                e.regarding.as_ref().and_then(|r| r.name.as_deref()).unwrap_or(""),
                e.regarding.as_ref().and_then(|r| r.field_path.as_deref()).unwrap_or(""),
                e.series.as_ref().map_or(1, |s| s.count)
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The single Event with `reason` regarding `object`.
pub fn the_event<'a>(events: &'a [Event], object: &str, reason: &str) -> &'a Event {
    let found: Vec<&Event> = events
        .iter()
        .filter(|e| {
            e.reason.as_deref() == Some(reason) && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(object)
        })
        .collect();
    assert_eq!(found.len(), 1, "one {reason} Event on {object}: {}", describe_events(events));
    found[0]
}

/// An alert Event as expected: `Warning` with reason `<alert>` when the alert fires, `Normal`
/// with `<alert>Resolved` when it clears, regarding the Pod's container, related to the
/// SidecarPolicy, published once (no series). A struct literal, so that every value is named
/// and an alert, a transition or a string put in the wrong place does not compile.
pub struct AlertEvent<'a> {
    /// The alert.
    pub alert: AlertName,
    /// Fired (`Warning`) or resolved (`Normal`).
    pub transition: TransitionKind,
    /// The Pod's name.
    pub pod: &'a str,
    /// The container as the Event names it: `spec.initContainers{istio-proxy}`.
    pub field_path: &'a str,
    /// The SidecarPolicy's name.
    pub policy: &'a str,
}

impl AlertEvent<'_> {
    /// Checks `e` against the expectation.
    pub fn assert_matches(&self, e: &Event) {
        let (type_, reason) = match self.transition {
            TransitionKind::Fired => ("Warning", self.alert.to_string()),
            TransitionKind::Resolved => ("Normal", format!("{}Resolved", self.alert)),
        };
        assert_eq!(e.type_.as_deref(), Some(type_), "{e:?}");
        assert_eq!(e.reason.as_deref(), Some(reason.as_str()), "{e:?}");
        assert_eq!(e.reporting_controller.as_deref(), Some("sidecar-watch"), "{e:?}");
        let regarding = e.regarding.as_ref().expect("regarding");
        assert_eq!(regarding.kind.as_deref(), Some("Pod"), "{e:?}");
        assert_eq!(regarding.name.as_deref(), Some(self.pod), "{e:?}");
        assert_eq!(regarding.field_path.as_deref(), Some(self.field_path), "{e:?}");
        let related = e.related.as_ref().expect("related");
        assert_eq!(related.kind.as_deref(), Some("SidecarPolicy"), "{e:?}");
        assert_eq!(related.name.as_deref(), Some(self.policy), "{e:?}");
        assert!(e.series.as_ref().is_none_or(|s| s.count <= 1), "a repeated Event: {e:?}");
    }
}
