//! What a Pod belongs to and what its containers lean on, read once from the spec: the
//! workload that owns it (for the `workload_kind`/`workload` labels) and which other
//! container a liveness probe targets (for the `main-probe-on-sidecar` check).

use std::collections::HashMap;
use std::num::NonZeroU16;
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::name::Interner;
pub use super::name::Workload;
use super::pod::{ContainerKind, ContainerView};
use crate::api::{PortRef, SlimContainer};

/// The label the Deployment controller puts on its ReplicaSets' Pods.
const POD_TEMPLATE_HASH: &str = "pod-template-hash";

/// The workload of a Pod, without watching anything but the Pod: its controller owner (else
/// its first owner), except that a ReplicaSet named `<deployment>-<pod-template-hash>` stands
/// for its Deployment. `None` for a Pod without owner.
pub fn workload_of(meta: &ObjectMeta, names: &mut Interner) -> Option<Arc<Workload>> {
    let owners = meta.owner_references.as_deref().unwrap_or_default();
    let owner = owners.iter().find(|o| o.controller == Some(true)).or_else(|| owners.first())?;
    if owner.kind == "ReplicaSet" {
        let hash = meta.labels.as_ref().and_then(|l| l.get(POD_TEMPLATE_HASH)).filter(|h| !h.is_empty());
        let deployment = hash
            .and_then(|h| owner.name.strip_suffix(h.as_str()))
            .and_then(|rest| rest.strip_suffix('-'))
            .filter(|d| !d.is_empty());
        if let Some(deployment) = deployment {
            return Some(names.workload("Deployment", deployment));
        }
    }
    Some(names.workload(&owner.kind, &owner.name))
}

/// Another container of the Pod that a liveness probe reaches. Four bytes as an `Option`
/// (the index is stored plus one), as every container of every tracked Pod has one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LivenessTarget {
    container_plus_one: NonZeroU16,
    /// The port probed.
    pub port: u16,
}

impl LivenessTarget {
    /// The probe reaches container `container` (an index into `PodView::containers`) on `port`.
    pub fn new(container: usize, port: u16) -> Option<Self> {
        let container_plus_one = NonZeroU16::new(u16::try_from(container).ok()?.checked_add(1)?)?;
        Some(LivenessTarget { container_plus_one, port })
    }

    /// Its index in `PodView::containers`.
    pub fn container(self) -> usize {
        usize::from(self.container_plus_one.get() - 1)
    }
}

/// Istio rewrites app probes to its agent's `/app-health/<container>/…` on purpose; the agent
/// forwards them to the app, so they check the app, not the proxy.
const REWRITTEN_PROBE_PREFIX: &str = "/app-health/";

/// Sets `liveness_target` on every container whose liveness probe targets a port another
/// container declares, or a port a well-known sidecar serves without declaring it (containers
/// share the Pod's network, so a probe on the Pod IP reaches whichever container listens).
/// `declared` and `views` are the same containers in the same order. Linear in the number of
/// containers and ports (maps, not scans), since a Pod may declare thousands of them.
pub fn liveness_targets(declared: &[&SlimContainer], views: &mut [ContainerView]) {
    let probers: Vec<usize> = (0..declared.len()).filter(|i| liveness_target_port(declared[*i]).is_some()).collect();
    if probers.is_empty() {
        return;
    }
    // Who serves which port: declared numbers and names first, then catalog ports; the
    // first container wins. Plain init containers have finished before probes run.
    let mut by_number: HashMap<i32, (usize, u16)> = HashMap::new();
    let mut by_name: HashMap<&str, (usize, u16)> = HashMap::new();
    for (i, (spec, view)) in declared.iter().zip(views.iter()).enumerate() {
        if view.kind == ContainerKind::Init {
            continue;
        }
        for port in &spec.ports {
            let Ok(number) = u16::try_from(port.container_port) else { continue };
            by_number.entry(port.container_port).or_insert((i, number));
            if let Some(name) = port.name.as_deref() {
                by_name.entry(name).or_insert((i, number));
            }
        }
    }
    for (i, view) in views.iter().enumerate() {
        if view.kind == ContainerKind::Init {
            continue;
        }
        for &port in view.catalog.map(|c| c.entry().ports).unwrap_or_default() {
            by_number.entry(i32::from(port)).or_insert((i, port));
        }
    }
    for prober in probers {
        let Some(port) = liveness_target_port(declared[prober]) else { continue };
        // A port the prober declares itself is its own, whoever else declares it.
        if declared_port(declared[prober], port).is_some() {
            continue;
        }
        let owner = match port {
            PortRef::Number(n) => by_number.get(n),
            PortRef::Name(name) => by_name.get(name.as_str()),
        };
        let found = owner.filter(|(i, _)| *i != prober).and_then(|(i, number)| LivenessTarget::new(*i, *number));
        if let Some(view) = views.get_mut(prober) {
            view.liveness_target = found;
        }
    }
}

/// The port a container's liveness probe sends to on the Pod's own address, if any.
fn liveness_target_port(container: &SlimContainer) -> Option<&PortRef> {
    let target = container.liveness_probe.as_ref()?.target()?;
    let elsewhere = target.host.as_deref().is_some_and(|h| !h.is_empty());
    let rewritten = target.path.as_deref().is_some_and(|p| p.starts_with(REWRITTEN_PROBE_PREFIX));
    if elsewhere || rewritten {
        return None;
    }
    target.port.as_ref()
}

/// The number of the port `port` refers to, when `container` declares it.
fn declared_port(container: &SlimContainer, port: &PortRef) -> Option<u16> {
    container
        .ports
        .iter()
        .find(|p| match port {
            PortRef::Number(n) => p.container_port == *n,
            PortRef::Name(name) => p.name.as_deref() == Some(name.as_str()),
        })
        .and_then(|p| u16::try_from(p.container_port).ok())
}
