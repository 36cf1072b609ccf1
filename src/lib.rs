//! sidecar-watch: a Kubernetes operator that watches sidecar containers.
//!
//! The crate is layered like a controller should be: [`api`] holds the CRD types, [`engine`]
//! is the pure rule evaluation on Pod data and time (tested without a cluster), and the
//! kube wiring lives in `controller`, with metrics, events and HTTP serving kept apart.

pub mod api;
pub mod engine;
