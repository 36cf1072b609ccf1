//! What a Pod belongs to and what its containers lean on, read once from the spec: the
//! workload that owns it (for the `workload_kind`/`workload` labels) and which other
//! container a liveness probe targets (for the `main-probe-on-sidecar` check).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::name::Name;
use super::pod::{ContainerKind, ContainerView};
use crate::api::{PortRef, SlimContainer};

/// The label the Deployment controller puts on its ReplicaSets' Pods.
const POD_TEMPLATE_HASH: &str = "pod-template-hash";

/// The workload a Pod belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Workload {
    /// `Deployment`, `StatefulSet`, `Job`, …
    pub kind: Name,
    /// The workload's name.
    pub name: Name,
}

/// The workload of a Pod, without watching anything but the Pod: its controller owner (else
/// its first owner), except that a ReplicaSet named `<deployment>-<pod-template-hash>` stands
/// for its Deployment. `None` for a Pod without owner.
pub fn workload_of(meta: &ObjectMeta) -> Option<Workload> {
    let owners = meta.owner_references.as_deref().unwrap_or_default();
    let owner = owners.iter().find(|o| o.controller == Some(true)).or_else(|| owners.first())?;
    if owner.kind == "ReplicaSet" {
        let hash = meta.labels.as_ref().and_then(|l| l.get(POD_TEMPLATE_HASH)).filter(|h| !h.is_empty());
        let deployment = hash
            .and_then(|h| owner.name.strip_suffix(h.as_str()))
            .and_then(|rest| rest.strip_suffix('-'))
            .filter(|d| !d.is_empty());
        if let Some(deployment) = deployment {
            return Some(Workload { kind: Name::new("Deployment"), name: Name::new(deployment) });
        }
    }
    Some(Workload { kind: Name::new(&owner.kind), name: Name::new(&owner.name) })
}

/// Another container of the Pod that a liveness probe reaches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LivenessTarget {
    /// Its index in `PodView::containers`.
    pub container: u16,
    /// The port probed.
    pub port: u16,
}

/// Istio rewrites app probes to its agent's `/app-health/<container>/…` on purpose; the agent
/// forwards them to the app, so they check the app, not the proxy.
const REWRITTEN_PROBE_PREFIX: &str = "/app-health/";

/// Sets `liveness_target` on every container whose liveness probe targets a port another
/// container declares, or a port a well-known sidecar serves without declaring it (containers
/// share the Pod's network, so a probe on the Pod IP reaches whichever container listens).
/// `declared` and `views` are the same containers in the same order.
pub fn liveness_targets(declared: &[&SlimContainer], views: &mut [ContainerView]) {
    for (prober, spec) in declared.iter().enumerate() {
        let Some(target) = spec.liveness_probe.as_ref().and_then(|p| p.target()) else { continue };
        if target.host.as_deref().is_some_and(|h| !h.is_empty())
            || target.path.as_deref().is_some_and(|p| p.starts_with(REWRITTEN_PROBE_PREFIX))
        {
            continue;
        }
        let Some(port) = target.port.as_ref() else { continue };
        // A port the prober declares itself is its own, whoever else declares it.
        if declared_port(spec, port).is_some() {
            continue;
        }
        let found = declared.iter().zip(views.iter()).enumerate().find_map(|(i, (other, view))| {
            if i == prober || view.kind == ContainerKind::Init {
                return None;
            }
            let number = declared_port(other, port).or_else(|| match port {
                PortRef::Number(n) => {
                    let n = u16::try_from(*n).ok()?;
                    view.catalog.is_some_and(|c| c.entry().ports.contains(&n)).then_some(n)
                }
                PortRef::Name(_) => None,
            })?;
            Some(LivenessTarget { container: u16::try_from(i).ok()?, port: number })
        });
        if let Some(view) = views.get_mut(prober) {
            view.liveness_target = found;
        }
    }
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
