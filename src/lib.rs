//! sidecar-watch: a Kubernetes operator that watches sidecar containers.
//!
//! The crate is layered like a controller should be: [`api`] holds the CRD types, [`engine`]
//! is the pure rule evaluation on Pod data and time (tested without a cluster), [`audit`]
//! runs the engine offline on a Pod dump, and [`controller`] is the kube wiring around the
//! engine, with metrics, events and HTTP serving in their own modules.

pub mod api;
pub mod audit;
pub mod controller;
pub mod engine;
pub mod events;
pub mod logging;
pub mod memory;
pub mod metrics;
pub mod rbac;
pub mod server;
