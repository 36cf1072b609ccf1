//! The `sidecarwatch.io/v1alpha1` API: `SidecarPolicy` and `ClusterSidecarPolicy`.
//!
//! Both kinds share [`PolicySpec`]; the cluster-scoped kind adds a namespace selector.
//! The types are deliberately lenient where the API server cannot help (regex, durations
//! are strings): [`crate::engine::CompiledPolicy::compile`] validates them and names the
//! offending field, so one bad policy never stops the others from being evaluated.

pub mod bounds;
mod container;
mod duration;
mod lenient;
mod pod;
mod policy;
mod quote;

pub use container::*;
pub use duration::{format_duration, parse_duration, DurationError, DURATION_PATTERN};
pub use lenient::{LenientPod, Undecodable};
pub use pod::*;
pub use policy::*;
pub use quote::{clip, escape_control, mention, quote};

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

/// Renders both CustomResourceDefinitions as one multi-document YAML stream, the output
/// of `sidecar-watch crd` and the content of `crds/`.
pub fn crds_yaml() -> Result<String, serde_norway::Error> {
    let mut out = String::new();
    for (i, crd) in [SidecarPolicy::crd(), ClusterSidecarPolicy::crd()].iter().enumerate() {
        if i > 0 {
            out.push_str("---\n");
        }
        out.push_str(&serde_norway::to_string(crd)?);
    }
    Ok(out)
}

/// Both CRDs with the file name each has in `crds/`.
pub fn crd_files() -> Result<Vec<(String, String)>, serde_norway::Error> {
    [SidecarPolicy::crd(), ClusterSidecarPolicy::crd()]
        .iter()
        .map(|crd| {
            // controller-gen's naming: <group>_<plural>.yaml
            Ok((format!("{}_{}.yaml", crd.spec.group, crd.spec.names.plural), serde_norway::to_string(crd)?))
        })
        .collect()
}
