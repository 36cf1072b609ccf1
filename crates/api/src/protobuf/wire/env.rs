//! `core/v1.EnvVar`, of which only the variables that switch a sidecar's own signal are
//! handed on.

use serde::{Serialize, Serializer};

/// `core/v1.EnvVar`: its name and plain value (`valueFrom` is not read: its value is unknown).
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct EnvVar {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

/// The variables of `env` that switch a sidecar's signal.
pub(super) fn signal_env<S: Serializer>(env: &[EnvVar], serializer: S) -> Result<S::Ok, S::Error> {
    let switches = || crate::SignalSwitch::ALL.into_iter().flat_map(|s| s.env().iter());
    serializer.collect_seq(env.iter().filter(|v| !v.value.is_empty() && switches().any(|n| *n == v.name)))
}
