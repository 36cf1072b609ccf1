//! The annotations that sidecar injectors read to decide whether to inject, and the few that
//! switch a catalog sidecar's own signal: the only annotations decoded of a Pod or a
//! Namespace, so a tenant's kilobytes of annotations cost the operator nothing it keeps.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};

/// Every annotation key an injector of the engine's table reads (a test of the engine checks
/// that its table uses no other).
pub const INJECTION_ANNOTATIONS: &[&str] = &[
    "sidecar.istio.io/inject",
    "linkerd.io/inject",
    "consul.hashicorp.com/connect-inject",
    "dapr.io/enabled",
    "vault.hashicorp.com/agent-inject",
    "vault.hashicorp.com/agent-pre-populate-only",
    "sidecar.opentelemetry.io/inject",
    "gke-gcsfuse/volumes",
];

/// The Pod annotations that switch a catalog sidecar's own metrics (the engine's catalog
/// signals): Dapr's and Istio's switches, and Vault Agent's own configuration (which may hold
/// its telemetry).
pub const SIGNAL_ANNOTATIONS: &[&str] =
    &["dapr.io/enable-metrics", "prometheus.istio.io/merge-metrics", "vault.hashicorp.com/agent-configmap"];

/// Vault Agent's telemetry annotations start so (`…agent-telemetry-prometheus_retention_time`);
/// any of them is kept under this key, its value the last one's.
pub const VAULT_TELEMETRY_PREFIX: &str = "vault.hashicorp.com/agent-telemetry-";

/// The longest marker value kept: injectors read words (`enabled`) and names (a revision, a
/// collector), so a longer value is cut here, at a character boundary.
pub const MAX_MARKER_VALUE_BYTES: usize = 253;

/// Whether `key` is one of [`INJECTION_ANNOTATIONS`].
pub fn is_injection_annotation(key: &str) -> bool {
    INJECTION_ANNOTATIONS.contains(&key)
}

/// The key under which an annotation is kept: itself when an injector reads it or it is one
/// of [`SIGNAL_ANNOTATIONS`], [`VAULT_TELEMETRY_PREFIX`] for Vault's telemetry ones.
pub fn kept_annotation_key(key: &str) -> Option<&'static str> {
    INJECTION_ANNOTATIONS
        .iter()
        .chain(SIGNAL_ANNOTATIONS)
        .copied()
        .find(|k| *k == key)
        .or_else(|| key.starts_with(VAULT_TELEMETRY_PREFIX).then_some(VAULT_TELEMETRY_PREFIX))
}

/// `value` cut to [`MAX_MARKER_VALUE_BYTES`].
pub fn marker_value(value: &str) -> &str {
    crate::byte_prefix(value, MAX_MARKER_VALUE_BYTES)
}

/// The kept annotations of `annotations` ([`kept_annotation_key`]), values cut.
pub fn injection_annotations<'a>(
    annotations: impl IntoIterator<Item = (&'a String, &'a String)>,
) -> BTreeMap<String, String> {
    annotations
        .into_iter()
        .filter_map(|(k, v)| Some((kept_annotation_key(k)?.to_string(), marker_value(v).to_string())))
        .collect()
}

/// Deserializes `metadata.annotations` keeping only the injection annotations: the others'
/// keys are compared where they lie and their values skipped unallocated.
pub(crate) fn deserialize_injection_annotations<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<BTreeMap<String, String>>, D::Error> {
    struct Markers;
    impl<'de> Visitor<'de> for Markers {
        type Value = Option<BTreeMap<String, String>>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a map of annotations")
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_none<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_map(self)
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut kept = BTreeMap::new();
            while let Some(key) = map.next_key::<MarkerKey>()? {
                match key.0 {
                    Some(key) => {
                        let value: String = map.next_value()?;
                        kept.insert(key.to_string(), marker_value(&value).to_string());
                    }
                    None => {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
            }
            Ok((!kept.is_empty()).then_some(kept))
        }
    }
    deserializer.deserialize_option(Markers)
}

/// A map key: the injection annotation it is, or none.
struct MarkerKey(Option<&'static str>);

impl<'de> serde::Deserialize<'de> for MarkerKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Key;
        impl Visitor<'_> for Key {
            type Value = MarkerKey;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an annotation key")
            }
            fn visit_str<E>(self, key: &str) -> Result<MarkerKey, E> {
                Ok(MarkerKey(kept_annotation_key(key)))
            }
        }
        deserializer.deserialize_str(Key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_injection_annotations_are_kept_and_long_values_are_cut() {
        #[derive(serde::Deserialize)]
        struct Meta {
            #[serde(default, deserialize_with = "deserialize_injection_annotations")]
            annotations: Option<BTreeMap<String, String>>,
        }
        let long = "é".repeat(200);
        let json = format!(
            r#"{{"annotations": {{"kubectl.kubernetes.io/last-applied-configuration": {{"not": "a string"}},
                "linkerd.io/inject": "enabled", "sidecar.opentelemetry.io/inject": "{long}"}}}}"#
        );
        let meta: Meta = serde_json::from_str(&json).unwrap();
        let kept = meta.annotations.unwrap();
        assert_eq!(kept.len(), 2);
        assert_eq!(kept["linkerd.io/inject"], "enabled");
        let cut = &kept["sidecar.opentelemetry.io/inject"];
        assert_eq!((cut.len(), cut.chars().count()), (252, 126), "cut at a character boundary");
        let none: Meta = serde_json::from_str(r#"{"annotations": null}"#).unwrap();
        assert!(none.annotations.is_none());
        let other: Meta = serde_json::from_str(r#"{"annotations": {"a": "b"}}"#).unwrap();
        assert!(other.annotations.is_none());
        let signals: Meta = serde_json::from_str(
            r#"{"annotations": {"dapr.io/enable-metrics": "FALSE", "vault.hashicorp.com/agent-telemetry-a": "1",
                "vault.hashicorp.com/agent-telemetry-b": "2", "prometheus.istio.io/merge-metrics-x": "false"}}"#,
        )
        .unwrap();
        let kept = signals.annotations.unwrap();
        assert_eq!(kept.len(), 2, "{kept:?}");
        assert_eq!((kept["dapr.io/enable-metrics"].as_str(), kept[VAULT_TELEMETRY_PREFIX].as_str()), ("FALSE", "2"));
    }
}
