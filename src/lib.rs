//! sidecar-watch: a Kubernetes operator that watches sidecar containers.
//!
//! Layers, each importing only those below it (`docs/architecture.md` draws them):
//! [`controller`] wires the kube watches, the reconciler, status, leadership and the tasks
//! below; [`metrics`], [`events`] and [`server`] read the [`index`], the operator's state,
//! which evaluates Pods with the [`engine`], pure rule evaluation on the [`api`] types.
//! [`audit`] runs the engine offline; [`admission`] writes its static checks as a
//! ValidatingAdmissionPolicy for the API server to run. [`leadership`] is the one signal of
//! leadership and sync; [`paging`] the one paginated LIST, beside [`kubeconfig`].

pub mod admission;
pub mod api;
pub mod audit;
pub mod controller;
pub mod engine;
pub mod events;
pub mod index;
pub mod kubeconfig;
pub mod leadership;
pub mod logging;
pub mod memory;
pub mod metrics;
pub mod paging;
pub mod rbac;
pub mod server;
