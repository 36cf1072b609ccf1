//! `SidecarMissing`: a sidecar that an injector's markers or the policy ask for is not in the
//! Pod. A Pod's containers never change, so there is nothing to wait for: it fires at once.

use super::Ctx;
use crate::alert::AlertName;
use crate::catalog::{self, CatalogId};
use crate::injection::{self, Found, NamespaceMeta, Place};
use crate::pod::PodView;
use crate::policy::CompiledPolicy;
use crate::stamp::Stamp;
use sidecar_watch_api::{quote, Severity};

use texts::{INJECTION_FAILED, REQUIRED, RESTARTABLE_KINDS};

/// The wording `SidecarMissing` shares with the admission policy, which says the same.
pub mod texts {
    /// Why an injector's sidecar is absent, said once for every injector.
    pub const INJECTION_FAILED: &str = "its injector did not add it — the injector was down or unreachable while its webhook fails open (failurePolicy: Ignore), or the marker came after the Pod was created — so the Pod runs without it";
    /// The workload kinds whose Pods `kubectl rollout restart` replaces.
    pub const RESTARTABLE_KINDS: [&str; 3] = ["Deployment", "StatefulSet", "DaemonSet"];
    /// After "which `<policy>` " when `spec.sidecars.required` names an absent sidecar.
    pub const REQUIRED: &str =
        "requires (spec.sidecars.required): add it to the workload's template, or the markers of its injector, then ";
}

/// Every expected sidecar the Pod lacks: by an injector's markers first, then by the policy's
/// `spec.sidecars.required` (a requirement an injector already reported is not reported twice).
pub(super) fn sidecar_missing(
    ctx: &mut Ctx,
    severity: Severity,
    policy: &CompiledPolicy,
    namespace: Option<&NamespaceMeta>,
) {
    let pod = ctx.pod;
    // Templates are written before injection; a finished or deleting Pod runs nothing more.
    if !pod.is_live() {
        return;
    }
    let since = pod.created_at.map(Stamp::timestamp);
    let runs = |id: CatalogId| pod.containers.iter().any(|c| c.catalog == Some(id));
    let mut reported: Vec<CatalogId> = Vec::new();
    for selection in injection::selecting(pod, namespace) {
        if runs(selection.sidecar) || reported.contains(&selection.sidecar) {
            continue;
        }
        reported.push(selection.sidecar);
        let entry = selection.sidecar.entry();
        let message = format!(
            "Pod {} runs no {} ({}), which {} asks for: {}; once the injector is healthy, {}",
            pod.key(),
            entry.names[0],
            entry.product,
            describe(&selection.by, pod),
            INJECTION_FAILED,
            replace_pod(pod),
        );
        ctx.fire(AlertName::SidecarMissing, severity, entry.names[0], None, since, message);
    }
    for required in policy.required_sidecars() {
        let id = catalog::CatalogId::by_id(required);
        let present = pod.containers.iter().any(|c| c.name == **required || (id.is_some() && c.catalog == id));
        if present || id.is_some_and(|id| reported.contains(&id)) {
            continue;
        }
        let (container, product) = match id {
            Some(id) => (id.entry().names[0], format!(" ({})", id.entry().product)),
            None => (required.as_str(), String::new()),
        };
        let message = format!(
            "Pod {} runs no {container}{product}, which {} {REQUIRED}{}",
            pod.key(),
            policy.policy,
            replace_pod(pod),
        );
        ctx.fire(AlertName::SidecarMissing, severity, container, None, since, message);
    }
}

/// "the label istio-injection=enabled on namespace shop".
fn describe(found: &Found<'_>, pod: &PodView) -> String {
    let place = match found.marker.place {
        Place::Label => "label",
        Place::Annotation => "annotation",
    };
    let object = if found.on_namespace { format!("namespace {}", pod.namespace()) } else { "the Pod".to_string() };
    format!("the {place} {}={} on {object}", found.marker.key, quote(found.value))
}

/// How to get the sidecar in: a new Pod (injection happens only at creation).
pub(super) fn replace_pod(pod: &PodView) -> String {
    let ns = pod.namespace();
    match pod.workload() {
        (kind, name) if RESTARTABLE_KINDS.contains(&kind) => {
            format!("restart the workload: kubectl rollout restart {}/{name} -n {ns}", kind.to_lowercase())
        }
        ("Pod", name) => format!("create the Pod again: kubectl replace --force -f <its manifest> (Pod {ns}/{name})"),
        (kind, name) => {
            format!(
                "delete the Pod so that its {kind} {name} creates it again: kubectl delete pod {} -n {ns}",
                pod.name()
            )
        }
    }
}

#[cfg(test)]
mod tests;
