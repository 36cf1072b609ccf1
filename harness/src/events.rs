//! Events (`events.k8s.io/v1`): counting, describing and finding them in a list.

use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams};
use kube::Client;

/// Every Event the operator published (`reportingController: sidecar-watch`) in namespace `ns`.
///
/// # Panics
/// When the list fails: a test cannot go on without it.
pub async fn operator_events(client: &Client, ns: &str) -> Vec<Event> {
    let api: Api<Event> = Api::namespaced(client.clone(), ns);
    api.list(&ListParams::default())
        .await
        .expect("events listed")
        .items
        .into_iter()
        .filter(|e| e.reporting_controller.as_deref() == Some("sidecar-watch"))
        .collect()
}

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
///
/// # Panics
///
/// When there is none or more than one (a test assertion).
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
