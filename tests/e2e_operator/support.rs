//! Support for the operator suite: a cluster (the real control plane, `E2E_KUBECONFIG`, or
//! the simulator where a test needs exact faults) with the CRDs, a namespace of its own and
//! the operator's shipped RBAC, the operator binary as a child process running as its
//! ServiceAccount, `/metrics` scraping and parsing, Events, policy status and Pod helpers.
//!
//! One module per concern, all re-exported here: tests `use crate::support::*` (or name
//! an item) as before.

use std::time::Duration;

mod cluster;
mod events;
mod metrics;
mod operator;
mod pods;
mod policy;
mod server;

pub use cluster::*;
pub use events::*;
pub use metrics::*;
pub use operator::*;
pub use pods::*;
pub use policy::*;
pub use server::*;

/// Default deadline of a wait.
pub const WAIT: Duration = Duration::from_secs(25);
