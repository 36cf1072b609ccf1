//! [`Lenient`]: a watch item whose decoding never fails, so that one object nobody can read
//! (a tenant's, a broken controller's) is skipped instead of failing the whole list or watch
//! — which would leave every other object of its kind unwatched and the operator never ready.

use std::borrow::Cow;

use k8s_openapi::api::core::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

use super::pod::SlimPod;
use super::quote::{clip, mention};

/// An object of kind `K`, or why it could not be read.
#[derive(Clone, Debug)]
pub enum Lenient<K> {
    /// Decoded (without its managed fields, if only they stood in the way).
    Object(Box<K>),
    /// Not decodable: only its identity and the field at fault are kept.
    Undecodable(Box<Undecodable>),
}

/// A watched Pod (only the fields the engine reads).
pub type LenientPod = Lenient<SlimPod>;
/// A watched Event (a controller's `FailedCreate`, or a tenant's forgery of one).
pub type LenientEvent = Lenient<Event>;

/// An object that could not be decoded: where it is, and the field at fault, never its body.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{} cannot be decoded: {error}", self.key())]
pub struct Undecodable {
    /// Name, namespace, UID and resourceVersion when those could be read.
    pub metadata: ObjectMeta,
    /// The path of the field at fault and the kind of fault, without the value.
    pub error: String,
}

impl<K: kube::Resource> Lenient<K> {
    /// `metadata.uid`, or "" when it could not be read.
    pub fn metadata_uid(&self) -> String {
        kube::Resource::meta(self).uid.clone().unwrap_or_default()
    }

    /// The object, or why it could not be read, as an error.
    pub fn into_object(self) -> Result<K, Box<Undecodable>> {
        match self {
            Lenient::Object(object) => Ok(*object),
            Lenient::Undecodable(bad) => Err(bad),
        }
    }
}

impl Undecodable {
    /// `namespace/name` for logs, each [`mention`]ed: an object nobody could decode may carry
    /// names no API server would admit.
    pub fn key(&self) -> String {
        format!(
            "{}/{}",
            mention(self.metadata.namespace.as_deref().unwrap_or("")),
            mention(self.metadata.name.as_deref().unwrap_or("<unnamed>"))
        )
    }
}

/// Just the identity, read from an object that failed to decode as a whole.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct Identity {
    name: Option<String>,
    namespace: Option<String>,
    uid: Option<String>,
    resource_version: Option<String>,
}

impl Identity {
    fn into_meta(self) -> ObjectMeta {
        ObjectMeta {
            name: self.name,
            namespace: self.namespace,
            uid: self.uid,
            resource_version: self.resource_version,
            ..ObjectMeta::default()
        }
    }
}

#[derive(Deserialize)]
struct WithIdentity {
    #[serde(default)]
    metadata: Option<Identity>,
}

impl<'de, K: DeserializeOwned> Deserialize<'de> for Lenient<K> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // The item's text is borrowed from the response (not copied, not parsed into a tree),
        // then decoded on its own. kube-client decodes lists and watch lines from `&str`,
        // which lends out its text.
        let raw = <&RawValue>::deserialize(deserializer)?;
        if raw.get().strip_prefix("{\"").is_some_and(|rest| rest.starts_with(super::protobuf::UNDECODABLE_KEY)) {
            return Ok(Lenient::Undecodable(Box::new(undecodable_protobuf(raw.get()))));
        }
        // Decoded plainly first: tracking the path of every field costs more than the
        // decoding itself, and only a broken object needs the path
        // (docs/benchmarks.md#figures-the-codes-comments-cite).
        if let Ok(object) = serde_json::from_str::<K>(raw.get()) {
            return Ok(Lenient::Object(Box::new(object)));
        }
        if let Some(object) = without_managed_fields(raw.get()) {
            return Ok(Lenient::Object(Box::new(object)));
        }
        let mut decoder = serde_json::Deserializer::from_str(raw.get());
        match serde_path_to_error::deserialize::<_, K>(&mut decoder) {
            Ok(object) => Ok(Lenient::Object(Box::new(object))),
            Err(e) => {
                let identity = serde_json::from_str::<WithIdentity>(raw.get()).ok().and_then(|w| w.metadata);
                let metadata = identity.map(Identity::into_meta).unwrap_or_default();
                // serde_json's message quotes the offending value: keep only its category.
                let kind = match e.inner().classify() {
                    serde_json::error::Category::Data => "a value of the wrong type or out of range",
                    serde_json::error::Category::Syntax => "malformed JSON",
                    serde_json::error::Category::Eof => "truncated JSON",
                    serde_json::error::Category::Io => "an I/O error",
                };
                // The path holds map keys (`metadata.labels.<key>`), the tenant's.
                let path = clip(&e.path().to_string());
                Ok(Lenient::Undecodable(Box::new(Undecodable { metadata, error: format!("{path}: {kind}") })))
            }
        }
    }
}

/// The object of `text` decoded without its `metadata.managedFields`, if it had them: they
/// are never read here, and anyone who may update an object may write them, with a time
/// past jiff's range (kube-apiserver keeps the times a writer sends). `None` when it had
/// none, or is undecodable without them too.
fn without_managed_fields<K: DeserializeOwned>(text: &str) -> Option<K> {
    let mut value: serde_json::Value = serde_json::from_str(text).ok()?;
    value.get_mut("metadata")?.as_object_mut()?.remove("managedFields")?;
    serde_json::from_value(value).ok()
}

/// A Pod the protobuf reader could not decode: its identity and the reader's reason.
fn undecodable_protobuf(text: &str) -> Undecodable {
    #[derive(Deserialize)]
    struct Marked {
        #[serde(rename = "sidecarWatchUndecodable", default)]
        why: String,
        #[serde(default)]
        metadata: Option<Identity>,
    }
    let marked = serde_json::from_str::<Marked>(text).ok();
    let (why, identity) = marked.map(|m| (m.why, m.metadata)).unwrap_or_default();
    Undecodable { metadata: identity.map(Identity::into_meta).unwrap_or_default(), error: clip(&why) }
}

/// The API endpoint of `K`'s: a list or watch of `Lenient<K>` asks for `K`s.
impl<K: kube::Resource> kube::Resource for Lenient<K> {
    type DynamicType = K::DynamicType;
    type Scope = K::Scope;

    fn kind(dt: &K::DynamicType) -> Cow<'_, str> {
        K::kind(dt)
    }
    fn group(dt: &K::DynamicType) -> Cow<'_, str> {
        K::group(dt)
    }
    fn version(dt: &K::DynamicType) -> Cow<'_, str> {
        K::version(dt)
    }
    fn plural(dt: &K::DynamicType) -> Cow<'_, str> {
        K::plural(dt)
    }
    fn meta(&self) -> &ObjectMeta {
        match self {
            Lenient::Object(object) => object.meta(),
            Lenient::Undecodable(u) => &u.metadata,
        }
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        match self {
            Lenient::Object(object) => object.meta_mut(),
            Lenient::Undecodable(u) => &mut u.metadata,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_unreadable_pod_does_not_fail_the_list() {
        let list = r#"{"items": [
            {"metadata": {"name": "ok", "namespace": "shop", "uid": "u1"}},
            {"metadata": {"name": "evil", "namespace": "flood", "uid": "u2", "resourceVersion": "9"},
             "status": {"containerStatuses": [{"name": "a", "restartCount": "SECRET-VALUE"}]}},
            {"metadata": {"name": "future", "namespace": "shop", "uid": "u3"},
             "status": {"startTime": "9999-12-31T23:59:59Z"}}
        ]}"#;
        #[derive(Deserialize)]
        struct List {
            items: Vec<LenientPod>,
        }
        let list: List = serde_json::from_str(list).expect("the list decodes");
        assert!(matches!(&list.items[0], LenientPod::Object(p) if p.metadata.name.as_deref() == Some("ok")));
        let LenientPod::Undecodable(evil) = &list.items[1] else { panic!("{:?}", list.items[1]) };
        assert_eq!(evil.key(), "flood/evil");
        assert_eq!(evil.metadata.resource_version.as_deref(), Some("9"));
        assert_eq!(evil.error, "status.containerStatuses[0].restartCount: a value of the wrong type or out of range");
        assert!(!format!("{evil:?}").contains("SECRET"), "the body stays out of the error");
        assert!(matches!(&list.items[2], LenientPod::Object(_)), "an out-of-range timestamp is clamped, not an error");
    }

    #[test]
    fn an_event_past_the_range_of_time_is_named_not_the_list() {
        let list = r#"{"items": [
            {"metadata": {"name": "forged", "namespace": "flood", "uid": "e1"}, "reason": "FailedCreate",
             "involvedObject": {}, "message": "SECRET", "lastTimestamp": "9999-12-31T23:59:59Z"},
            {"metadata": {"name": "real", "namespace": "shop", "uid": "e2"}, "reason": "FailedCreate",
             "involvedObject": {}, "lastTimestamp": "2026-01-01T00:00:00Z"}
        ]}"#;
        #[derive(Deserialize)]
        struct List {
            items: Vec<LenientEvent>,
        }
        let list: List = serde_json::from_str(list).expect("the list decodes");
        let LenientEvent::Undecodable(forged) = &list.items[0] else { panic!("{:?}", list.items[0]) };
        assert_eq!((forged.key(), forged.metadata.uid.as_deref()), ("flood/forged".to_string(), Some("e1")));
        assert_eq!(forged.error, "lastTimestamp: a value of the wrong type or out of range");
        assert!(matches!(&list.items[1], LenientEvent::Object(e) if e.metadata.name.as_deref() == Some("real")));
    }

    #[test]
    fn managed_fields_past_the_range_of_time_are_not_read() {
        let event = r#"{"metadata": {"name": "e", "namespace": "shop", "uid": "e1",
            "managedFields": [{"manager": "tenant", "operation": "Update", "time": "9999-12-31T23:59:59Z"}]},
            "involvedObject": {}, "reason": "FailedCreate"}"#;
        let LenientEvent::Object(event) = serde_json::from_str::<LenientEvent>(event).expect("never fails") else {
            panic!("an Event with odd managed fields is skipped");
        };
        assert_eq!((event.metadata.name.as_deref(), event.metadata.managed_fields), (Some("e"), None));
    }
}
