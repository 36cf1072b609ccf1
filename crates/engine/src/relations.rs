//! How a Pod relates to what is around it, read once from the spec: the workload that owns it
//! (the `workload_kind`/`workload` labels), and how its containers lean on each other: ports
//! declared twice (`port-conflict`) and liveness probes aimed at another container's port
//! (`main-probe-on-sidecar`), and plain init containers that run while a mesh already redirects
//! the Pod's traffic to a proxy that has not started (`init-before-proxy`). Linear in containers
//! and ports (maps, never scans of scans): a hostile Pod may declare thousands of both.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use super::catalog::CatalogId;
use super::container::{ContainerKind, LivenessTarget};
use super::interner::Interner;
pub use super::name::Workload;
use sidecar_watch_api::{PortRef, SlimContainer};

/// A declared container, as the relations between containers need it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Declared<'a> {
    /// Its spec.
    pub spec: &'a SlimContainer,
    /// Where it is declared.
    pub kind: ContainerKind,
    /// Runs beside the others (a regular container or a native sidecar); a plain init
    /// container has finished before they start, so its ports and probes meet nobody.
    pub runs_alongside: bool,
    /// The catalog entry, for the ports a well-known sidecar serves without declaring them.
    pub catalog: Option<CatalogId>,
    /// The user it runs as: its own `securityContext.runAsUser`, else the Pod's.
    pub run_as_user: Option<i64>,
}

/// Per container: whether it declares a (port, protocol) that another container running
/// beside it declares too.
pub(crate) fn port_conflicts(declared: &[Declared]) -> Vec<bool> {
    let mut owners: HashMap<(i32, &str), usize> = HashMap::new();
    let mut conflicts = vec![false; declared.len()];
    for (i, container) in declared.iter().enumerate().filter(|(_, c)| c.runs_alongside) {
        for port in &container.spec.ports {
            let key = (port.container_port, port.protocol.as_deref().unwrap_or("TCP"));
            match owners.get(&key) {
                // One container declaring a port twice is not a clash with itself.
                Some(first) if *first == i => {}
                Some(first) => {
                    conflicts[i] = true;
                    conflicts[*first] = true;
                }
                None => {
                    owners.insert(key, i);
                }
            }
        }
    }
    conflicts
}

/// The label the Deployment controller puts on its ReplicaSets' Pods.
const POD_TEMPLATE_HASH: &str = "pod-template-hash";

/// The workload of a Pod, without watching anything but the Pod: its controller owner (else
/// its first owner), except that
/// - a ReplicaSet named `<deployment>-<pod-template-hash>` stands for its Deployment;
/// - a Job named as the CronJob controller names its Jobs stands for its CronJob (see
///   [`cronjob_of_job`] for the exact test).
///
/// `(kind, name)`, borrowed from `meta`; `None` for a Pod without owner. Sharding asks it of
/// every Pod of every shard, so it allocates nothing.
pub fn pod_workload(meta: &ObjectMeta) -> Option<(&str, &str)> {
    let owner = owner_of(meta)?;
    if owner.kind == "ReplicaSet" {
        let hash = meta.labels.as_ref().and_then(|l| l.get(POD_TEMPLATE_HASH)).filter(|h| !h.is_empty());
        let deployment = hash
            .and_then(|h| owner.name.strip_suffix(h.as_str()))
            .and_then(|rest| rest.strip_suffix('-'))
            .filter(|d| !d.is_empty());
        if let Some(deployment) = deployment {
            return Some(("Deployment", deployment));
        }
    }
    if owner.kind == "Job" && owner.api_version.starts_with("batch/") {
        let created = meta.creation_timestamp.as_ref().map(|t| t.0);
        if let Some(cronjob) = created.and_then(|created| cronjob_of_job(&owner.name, created)) {
            return Some(("CronJob", cronjob));
        }
    }
    Some((&owner.kind, &owner.name))
}

/// [`pod_workload`], interned for the Pod view.
pub(crate) fn workload_of(meta: &ObjectMeta, names: &mut Interner) -> Option<Arc<Workload>> {
    pod_workload(meta).map(|(kind, name)| names.workload(kind, name))
}

/// The longest CronJob name: the API server refuses longer ones, so that the controller's
/// `-<minutes>` suffix keeps its Job names within 63 characters
/// (kubernetes/kubernetes pkg/apis/batch/validation/validation.go, `ValidateCronJobCreate`:
/// `DNS1035LabelMaxLength-11`, "must be no more than 52 characters", and the name a
/// DNS-1123 subdomain, `NameIsDNSSubdomain`; read in v1.29.15, v1.33.13, v1.34.12, v1.35.8,
/// v1.37.2).
pub const CRONJOB_NAME_MAX: usize = 52;

/// How far the control plane's clocks may disagree: the Job's name is the scheduled time by
/// kube-controller-manager's clock, the Pod's `creationTimestamp` the API server's.
pub const CRONJOB_CLOCK_SKEW: Duration = Duration::from_secs(5 * 60);

/// How long before its Pod's creation a CronJob's run may have been scheduled: a run starts
/// late (`startingDeadlineSeconds` unset, a CronJob resumed) or its Job makes Pods again
/// (retries, a Pod evicted) for up to a week; past that the Pod names its Job.
pub const CRONJOB_RUN_WINDOW: Duration = Duration::from_secs(7 * 24 * 3600);

/// The CronJob whose controller made a Job named `job`, judged from the name and the time its
/// Pod was created (`created`): `None` when the name cannot be one the controller gave.
///
/// The CronJob controller names each Job `<cronjob>-<scheduled time in minutes since the
/// epoch>` (kubernetes/kubernetes pkg/controller/cronjob/cronjob_controllerv2.go `getJobName`:
/// `fmt.Sprintf("%s-%d", cj.Name, getTimeHashInMinutes(scheduledTime))`, and utils.go
/// `getTimeHashInMinutes`: `scheduledTime.Unix() / 60`; the same in v1.29.15, v1.33.13,
/// v1.34.12, v1.35.8 and v1.37.2). A plain Job's name can look like that (`migrate-1`, `backup-20240101`), so the
/// name is the CronJob's only when all of these hold:
/// - it ends in `-` and decimal digits, as `%d` prints a positive number: no sign, no leading
///   zero, and a value whose seconds fit in an `i64` (a forged huge suffix is a Job);
/// - that minute is not after the Pod's creation plus [`CRONJOB_CLOCK_SKEW`] (the controller
///   makes the Job at or after its scheduled time, and the Job its Pods after that) and not
///   more than [`CRONJOB_RUN_WINDOW`] before it;
/// - what precedes the `-` is a valid CronJob name: a DNS-1123 subdomain of at most
///   [`CRONJOB_NAME_MAX`] characters.
///
/// So `backup-20240101` (minute 20,240,101 is in 2008) and `migrate-1` (1970) stay Jobs for a
/// Pod of today. A Job named so on purpose within the window (`kubectl create job` with such
/// a name) is taken for a CronJob's: the name is all a Pod says without reading the Job.
pub fn cronjob_of_job(job: &str, created: Timestamp) -> Option<&str> {
    let (cronjob, minutes) = job.rsplit_once('-')?;
    let printed_by_percent_d = !minutes.is_empty()
        && minutes.bytes().all(|b| b.is_ascii_digit())
        && (minutes == "0" || !minutes.starts_with('0'));
    if !printed_by_percent_d || !is_cronjob_name(cronjob) {
        return None;
    }
    let scheduled = minutes.parse::<i64>().ok()?.checked_mul(60)?;
    let created = created.as_second();
    let skew = i64::try_from(CRONJOB_CLOCK_SKEW.as_secs()).ok()?;
    let window = i64::try_from(CRONJOB_RUN_WINDOW.as_secs()).ok()?;
    let in_window = scheduled <= created.saturating_add(skew) && scheduled >= created.saturating_sub(window);
    in_window.then_some(cronjob)
}

/// Whether `name` is valid for a CronJob: a DNS-1123 subdomain (`NameIsDNSSubdomain`, lower
/// case alphanumeric labels joined by `.`, `-` inside a label) of at most
/// [`CRONJOB_NAME_MAX`] characters.
fn is_cronjob_name(name: &str) -> bool {
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    !name.is_empty()
        && name.len() <= CRONJOB_NAME_MAX
        && name.split('.').all(|label| {
            let bytes = label.as_bytes();
            match (bytes.first(), bytes.last()) {
                (Some(&first), Some(&last)) => {
                    alnum(first) && alnum(last) && bytes.iter().all(|&b| alnum(b) || b == b'-')
                }
                _ => false,
            }
        })
}

/// The owner reference a Pod's workload is read from: its controller, else its first owner.
pub(crate) fn owner_of(meta: &ObjectMeta) -> Option<&OwnerReference> {
    let owners = meta.owner_references.as_deref().unwrap_or_default();
    owners.iter().find(|o| o.controller == Some(true)).or_else(|| owners.first())
}

/// Istio rewrites app probes to its agent's `/app-health/<container>/…` on purpose; the agent
/// forwards them to the app, so they check the app, not the proxy.
const REWRITTEN_PROBE_PREFIX: &str = "/app-health/";

/// Per container: the other container its liveness probe reaches, when the probe targets a
/// port that container declares, or a port a well-known sidecar serves without declaring it
/// (containers share the Pod's network, so a probe on the Pod IP reaches whoever listens).
pub(crate) fn liveness_targets(declared: &[Declared]) -> Vec<Option<LivenessTarget>> {
    let mut targets = vec![None; declared.len()];
    let probers: Vec<usize> = (0..declared.len())
        .filter(|i| declared[*i].runs_alongside && liveness_target_port(declared[*i].spec).is_some())
        .collect();
    if probers.is_empty() {
        return targets;
    }
    // Who serves which port: declared numbers and names first, then catalog ports; the
    // first container wins.
    let mut by_number: HashMap<i32, (usize, u16)> = HashMap::new();
    let mut by_name: HashMap<&str, (usize, u16)> = HashMap::new();
    for (i, container) in declared.iter().enumerate().filter(|(_, c)| c.runs_alongside) {
        for port in &container.spec.ports {
            let Ok(number) = u16::try_from(port.container_port) else { continue };
            by_number.entry(port.container_port).or_insert((i, number));
            if let Some(name) = port.name.as_deref() {
                by_name.entry(name).or_insert((i, number));
            }
        }
    }
    for (i, container) in declared.iter().enumerate().filter(|(_, c)| c.runs_alongside) {
        for &port in container.catalog.map(|c| c.entry().ports).unwrap_or_default() {
            by_number.entry(i32::from(port)).or_insert((i, port));
        }
    }
    for prober in probers {
        let spec = declared[prober].spec;
        let Some(port) = liveness_target_port(spec) else { continue };
        // A port the prober declares itself is its own, whoever else declares it.
        if declared_port(spec, port).is_some() {
            continue;
        }
        let owner = match port {
            PortRef::Number(n) => by_number.get(n),
            PortRef::Name(name) => by_name.get(name.as_str()),
        };
        targets[prober] = owner.filter(|(i, _)| *i != prober).and_then(|(i, number)| LivenessTarget::new(*i, *number));
    }
    targets
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

/// Per container: whether it is a plain init container that runs with no working network
/// because a mesh redirects the Pod's traffic to a native proxy declared after it. The kubelet
/// runs init containers in order and a native sidecar only starts at its own turn (KEP-753),
/// while the redirection starts earlier: at the mesh's iptables init container (`istio-init`,
/// `linkerd-init`, `kuma-init`; init containers before it still have the network), or when the
/// sandbox is created, with the mesh's CNI plugin (seen by its validation init container:
/// `istio-validation`, `linkerd-network-validator`, `kuma-validation`). The redirection spares
/// the proxy's own user, so an init container running as that user keeps its network.
pub(crate) fn inits_without_network(declared: &[Declared]) -> Vec<bool> {
    let mut blackholed = vec![false; declared.len()];
    // The first native mesh proxy only: a Pod has one mesh, and one scan keeps a hostile Pod
    // with thousands of proxy-looking containers linear.
    let proxy = declared.iter().enumerate().find_map(|(at, c)| {
        let redirect = c.catalog?.entry().redirect.as_ref()?;
        (c.kind == ContainerKind::RestartableInit).then_some((at, c, redirect))
    });
    let Some((proxy_at, proxy, redirect)) = proxy else { return blackholed };
    let before = &declared[..proxy_at];
    let position = |name: &str| before.iter().position(|c| c.kind == ContainerKind::Init && c.spec.name == name);
    let from = match (position(redirect.cni_validator), position(redirect.iptables_init)) {
        (Some(_), _) => 0,
        (None, Some(init)) => init + 1,
        (None, None) => return blackholed,
    };
    for (i, c) in before.iter().enumerate().skip(from) {
        let mesh_own = c.spec.name == redirect.iptables_init || c.spec.name == redirect.cni_validator;
        let proxy_user = c.run_as_user.is_some() && c.run_as_user == proxy.run_as_user;
        if c.kind == ContainerKind::Init && !mesh_own && !proxy_user {
            blackholed[i] = true;
        }
    }
    blackholed
}
