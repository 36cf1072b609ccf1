//! The `sidecarwatch.io/v1alpha1` API: `SidecarPolicy` and `ClusterSidecarPolicy`.
//!
//! Both kinds share [`PolicySpec`]; the cluster-scoped kind adds a namespace selector.
//! The types are deliberately lenient where the API server cannot help (regex, durations
//! are strings): [`crate::engine::CompiledPolicy::compile`] validates them and names the
//! offending field, so one bad policy never stops the others from being evaluated.

mod duration;
mod policy;

pub use duration::{format_duration, parse_duration, DurationError, DURATION_PATTERN};
pub use policy::*;

use kube::CustomResourceExt;

/// The API group of every kind this operator serves.
pub const GROUP: &str = "sidecarwatch.io";
/// The API version of every kind this operator serves.
pub const VERSION: &str = "v1alpha1";

/// Renders both CustomResourceDefinitions as one multi-document YAML stream, the output
/// of `sidecar-watch crd` and the content of `crds/`.
pub fn crds_yaml() -> Result<String, serde_yaml::Error> {
    let mut out = String::new();
    for (i, crd) in [SidecarPolicy::crd(), ClusterSidecarPolicy::crd()].iter().enumerate() {
        if i > 0 {
            out.push_str("---\n");
        }
        out.push_str(&serde_yaml::to_string(crd)?);
    }
    Ok(out)
}

/// Both CRDs with the file name each has in `crds/`.
pub fn crd_files() -> Result<Vec<(String, String)>, serde_yaml::Error> {
    [SidecarPolicy::crd(), ClusterSidecarPolicy::crd()]
        .iter()
        .map(|crd| {
            let name = crd.metadata.name.clone().unwrap_or_default();
            Ok((format!("{name}.yaml"), serde_yaml::to_string(crd)?))
        })
        .collect()
}
