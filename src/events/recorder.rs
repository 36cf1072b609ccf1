//! Publishes Events (events.k8s.io/v1) and folds a repeat into its predecessor's `series`.
//!
//! This does what kube-runtime's `Recorder` does — the same Event fields, the same key for
//! "the same Event", the same six minutes within which a repeat is folded — with a cache
//! the operator can afford at 100k Pods. The `Recorder` keeps every recent Event whole, key
//! and object, and sweeps the whole cache on every publish; after an initial sync its caches
//! were a large share of the operator's memory (docs/benchmarks.md#figures-the-codes-comments-cite).
//! Here a recent Event is 48 bytes: its key's hash, when it was created (which names it)
//! and its series; expired ones are swept at most once a [`SWEEP_EVERY`], so a burst costs O(E).

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher, RandomState};

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::{Event as K8sEvent, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::events::{Event, EventType};
use kube::Client;

use crate::api::Lenient;

/// How long a repeat is folded into the earlier Event (kube-runtime's and client-go's).
pub const SERIES_WINDOW: SignedDuration = SignedDuration::from_mins(6);
/// Expired entries are swept at most this often.
pub const SWEEP_EVERY: SignedDuration = SignedDuration::from_secs(30);
/// Recent Events remembered at most by default (~6 MiB with the table): beyond, a repeat is
/// published as an Event of its own instead of being folded, so a flood of distinct Events
/// (many tenants' Pods failing at once) cannot grow the cache without bound.
const MAX_REMEMBERED: usize = 100_000;
/// Longest object name the API server accepts (a DNS subdomain).
const MAX_NAME: usize = 253;

/// An Event published in the last [`SERIES_WINDOW`].
#[derive(Clone, Copy, Debug)]
struct Recent {
    /// When it was created: its name's suffix.
    created: Timestamp,
    /// Occurrences so far (1: no series yet).
    count: i32,
    last_observed: Timestamp,
}

impl Recent {
    /// Whether a repeat at `now` is folded into this Event.
    fn folds_at(&self, now: Timestamp) -> bool {
        now.duration_since(self.last_observed) < SERIES_WINDOW
    }
}

/// Publishes Events for one reporting controller and instance.
pub struct Recorder {
    client: Client,
    controller: String,
    instance: String,
    /// Recent Events by the hash of their key. The hasher is keyed at random per process, so
    /// no tenant can choose names that collide; an accidental collision among thousands of
    /// 64-bit hashes (~10⁻¹²) would fold one Event's repeat into another's series.
    recent: HashMap<u64, Recent>,
    /// At most this many entries in `recent`.
    max_remembered: usize,
    keys: RandomState,
    last_sweep: Timestamp,
    /// The latest creation time given to an Event: two Events about one object published in
    /// the same clock tick must not get the same name.
    last_created: Timestamp,
}

impl Recorder {
    /// A recorder publishing as `controller` (`reportingController`), `instance`
    /// (`reportingInstance`).
    pub fn new(client: Client, controller: impl Into<String>, instance: impl Into<String>) -> Self {
        Recorder {
            client,
            controller: controller.into(),
            instance: instance.into(),
            recent: HashMap::new(),
            max_remembered: MAX_REMEMBERED,
            keys: RandomState::new(),
            last_sweep: Timestamp::UNIX_EPOCH,
            last_created: Timestamp::UNIX_EPOCH,
        }
    }

    /// Publishes `event` about `regarding` at `now`: a new Event, or, when the same Event
    /// (type, action, reason, regarding and related object) was published in the last
    /// [`SERIES_WINDOW`], a patch raising that Event's `series.count`. A repeat whose Event
    /// is gone from the cluster (expired, deleted) is published anew.
    pub async fn publish(&mut self, event: &Event, regarding: &ObjectReference, now: Timestamp) -> kube::Result<()> {
        self.forget_expired(now);
        let key = self.key_of(event, regarding);
        let namespace = regarding.namespace.as_deref().unwrap_or("default");
        let api: Api<K8sEvent> = Api::namespaced(self.client.clone(), namespace);
        if let Some(recent) = self.recent.get(&key).copied().filter(|r| r.folds_at(now)) {
            let name = self.event_name(regarding, recent.created);
            let count = recent.count.saturating_add(1);
            let series = EventSeries { count, last_observed_time: MicroTime(now) };
            let patch = serde_json::json!({ "series": series });
            // Its answer read leniently: anyone who may write Events in the namespace may have
            // edited this one since, with a time nobody can decode; the patch took anyway.
            let folded: Api<Lenient<K8sEvent>> = Api::namespaced(self.client.clone(), namespace);
            match folded.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await {
                Ok(_) => {
                    self.recent.insert(key, Recent { count, last_observed: now, ..recent });
                    return Ok(());
                }
                Err(kube::Error::Api(status)) if status.code == 404 => {
                    self.recent.remove(&key);
                }
                Err(e) => return Err(e),
            }
        }
        let created = self.unique_creation(now);
        api.create(&PostParams::default(), &self.new_event(event, regarding, now, created)).await?;
        // A full cache still replaces this key's expired entry.
        if self.recent.len() < self.max_remembered || self.recent.contains_key(&key) {
            self.recent.insert(key, Recent { created, count: 1, last_observed: now });
        }
        Ok(())
    }

    /// Remembers at most `max` recent Events (default [`MAX_REMEMBERED`]).
    pub fn remembering_at_most(mut self, max: usize) -> Self {
        self.max_remembered = max;
        self
    }

    /// Forgets the Events whose window has passed (at most once a [`SWEEP_EVERY`]).
    pub fn forget_expired(&mut self, now: Timestamp) {
        if now.duration_since(self.last_sweep) < SWEEP_EVERY {
            return;
        }
        self.last_sweep = now;
        self.recent.retain(|_, r| r.folds_at(now));
        if self.recent.capacity() > 4 * self.recent.len().max(64) {
            // After a burst: the table would otherwise stay at its largest.
            self.recent.shrink_to_fit();
        }
    }

    /// Events remembered for folding repeats.
    pub fn remembered(&self) -> usize {
        self.recent.len()
    }

    fn key_of(&self, event: &Event, regarding: &ObjectReference) -> u64 {
        let mut hasher = self.keys.build_hasher();
        event.type_.hash(&mut hasher);
        event.action.hash(&mut hasher);
        event.reason.hash(&mut hasher);
        hash_reference(regarding, &mut hasher);
        event.secondary.is_some().hash(&mut hasher);
        if let Some(related) = &event.secondary {
            hash_reference(related, &mut hasher);
        }
        hasher.finish()
    }

    /// `<regarding name>.<creation in hex nanoseconds>`, as kube-runtime and client-go name
    /// Events; the object's name is shortened when the whole would pass 253 characters.
    fn event_name(&self, regarding: &ObjectReference, created: Timestamp) -> String {
        let suffix = format!(".{:x}", created.as_nanosecond());
        let base = regarding.name.as_deref().unwrap_or(&self.controller);
        // A DNS label ends with a letter or digit.
        let base = crate::api::byte_prefix(base, MAX_NAME.saturating_sub(suffix.len()))
            .trim_end_matches(|c: char| !c.is_ascii_alphanumeric());
        format!("{base}{suffix}")
    }

    /// `now`, or a nanosecond after the last creation time given, whichever is later.
    fn unique_creation(&mut self, now: Timestamp) -> Timestamp {
        let next = self.last_created.checked_add(SignedDuration::from_nanos(1)).unwrap_or(now);
        self.last_created = now.max(next);
        self.last_created
    }

    fn new_event(&self, event: &Event, regarding: &ObjectReference, now: Timestamp, created: Timestamp) -> K8sEvent {
        K8sEvent {
            metadata: ObjectMeta {
                name: Some(self.event_name(regarding, created)),
                namespace: regarding.namespace.clone(),
                ..ObjectMeta::default()
            },
            action: Some(event.action.clone()),
            reason: Some(event.reason.clone()),
            note: event.note.clone(),
            type_: Some(
                match event.type_ {
                    EventType::Normal => "Normal",
                    EventType::Warning => "Warning",
                }
                .into(),
            ),
            event_time: Some(MicroTime(now)),
            regarding: Some(regarding.clone()),
            related: event.secondary.clone(),
            reporting_controller: Some(self.controller.clone()),
            reporting_instance: Some(self.instance.clone()),
            ..K8sEvent::default()
        }
    }
}

/// Every field of the reference, as kube-runtime's key compares them: the field path tells
/// one container's Event from another's on the same Pod.
fn hash_reference(reference: &ObjectReference, hasher: &mut impl Hasher) {
    reference.api_version.hash(hasher);
    reference.field_path.hash(hasher);
    reference.resource_version.hash(hasher);
    reference.kind.hash(hasher);
    reference.name.hash(hasher);
    reference.namespace.hash(hasher);
    reference.uid.hash(hasher);
}

#[cfg(test)]
mod tests;
