#![forbid(unsafe_code)]
//! The API objects as the operator reads and serves them.
//!
//! Its own kinds, `SidecarPolicy` and `ClusterSidecarPolicy` (`sidecarwatch.io/v1alpha1`), and
//! Pods decoded slim ([`SlimPod`], [`LenientPod`]).
//!
//! Both kinds share [`PolicySpec`]; the cluster-scoped kind adds a namespace selector.
//! The types are deliberately lenient where the API server cannot help (regex, durations
//! are strings): the engine's policy compiler (crates/engine/src/policy.rs) validates them and names the
//! offending field, so one bad policy never stops the others from being evaluated.

pub mod bounds;
mod container;
mod duration;
mod field_decoders;
mod lenient;
mod markers;
mod pod;
mod policy;
pub mod protobuf;
mod quote;
mod switches;

pub use container::*;
pub use duration::{format_duration, parse_duration, DurationError, DURATION_PATTERN};
pub use lenient::{Lenient, LenientEvent, LenientPod, Undecodable};
pub use markers::{
    injection_annotations, is_injection_annotation, kept_annotation_key, marker_value, INJECTION_ANNOTATIONS,
    MAX_MARKER_VALUE_BYTES, SIGNAL_ANNOTATIONS, VAULT_TELEMETRY_PREFIX,
};
pub use pod::*;
pub use policy::*;
pub use quote::{byte_prefix, clip, escape_control, mention, quote};
pub use switches::{
    is_loopback, parse_go_bool, CommandWords, EnvSwitches, SignalSwitch, Switches, ValueKind, GO_FALSE, GO_TRUE,
};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

/// An object that does not deserialize into its type, with the path of the failing field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{message}", if path.is_empty() { String::new() } else { format!("{path}: ") })]
pub struct DecodeError {
    /// The JSON path of the field (`spec.rules.restarts.threshold`), empty for the root.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

/// Deserializes a JSON value into `T`, naming the field that fails.
pub fn decode<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> Result<T, DecodeError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        // Paths may hold map keys and messages values (serde's `invalid type: string "…"`), both
        // the tenant's: clipped, as every message that may echo what a tenant wrote.
        let path = if path == "." { String::new() } else { clip(&path) };
        DecodeError { path, message: clip(&e.into_inner().to_string()) }
    })
}

/// The API group of every kind this operator serves.
pub const GROUP: &str = "sidecarwatch.io";
/// The API version of every kind this operator serves.
pub const VERSION: &str = "v1alpha1";

/// Both CustomResourceDefinitions as the API server should store them: schemars writes the
/// Rust width of unsigned integers as their `format` (`uint32`), which Kubernetes does not
/// know; each becomes a format it knows with the type's range as bounds (`u32`: `int64`,
/// `0..=4294967295`), so the CRDs apply without a warning.
pub fn crds() -> Vec<CustomResourceDefinition> {
    [SidecarPolicy::crd(), ClusterSidecarPolicy::crd()]
        .into_iter()
        .map(|crd| {
            let mut value = serde_json::to_value(&crd).expect("a CRD serializes");
            recognised_formats(&mut value);
            serde_json::from_value(value).expect("a CRD with known formats deserializes")
        })
        .collect()
}

/// Rewrites every unsigned-integer `format` under `value` (a schema or anything holding one)
/// into one Kubernetes recognises, keeping the range as `minimum`/`maximum`.
fn recognised_formats(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(object) => {
            let integer = object.get("type").and_then(|t| t.as_str()) == Some("integer");
            let format = object.get("format").and_then(|f| f.as_str()).map(str::to_string);
            if let (true, Some(format)) = (integer, format) {
                let (known, max) = match format.as_str() {
                    "uint8" => (Some("int32"), Some(u8::MAX as u64)),
                    "uint16" => (Some("int32"), Some(u16::MAX as u64)),
                    "int8" | "int16" => (Some("int32"), None),
                    "uint32" => (Some("int64"), Some(u32::MAX as u64)),
                    // No Kubernetes format holds every u64: the bound below is all there is.
                    "uint64" | "uint" | "uint128" | "int128" => (None, None),
                    _ => (Some(format.as_str()), None),
                };
                let unsigned = format.starts_with("uint");
                match known {
                    Some(known) => {
                        object.insert("format".into(), known.into());
                    }
                    None => {
                        object.remove("format");
                    }
                }
                if let Some(max) = max {
                    object.entry("maximum").or_insert_with(|| serde_json::json!(max as f64));
                }
                if unsigned {
                    object.entry("minimum").or_insert_with(|| serde_json::json!(0.0));
                }
            }
            for child in object.values_mut() {
                recognised_formats(child);
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(recognised_formats),
        _ => {}
    }
}

/// Renders both CustomResourceDefinitions as one multi-document YAML stream, the output
/// of `sidecar-watch crd` and the content of `crds/`.
pub fn crds_yaml() -> Result<String, serde_norway::Error> {
    let mut out = String::new();
    for (i, crd) in crds().iter().enumerate() {
        if i > 0 {
            out.push_str("---\n");
        }
        out.push_str(&serde_norway::to_string(crd)?);
    }
    Ok(out)
}

/// Both CRDs with the file name each has in `crds/`.
pub fn crd_files() -> Result<Vec<(String, String)>, serde_norway::Error> {
    crds()
        .iter()
        .map(|crd| {
            // controller-gen's naming: <group>_<plural>.yaml
            Ok((format!("{}_{}.yaml", crd.spec.group, crd.spec.names.plural), serde_norway::to_string(crd)?))
        })
        .collect()
}
