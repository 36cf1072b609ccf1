//! `SidecarVersionDrift` of one Pod: a sidecar whose image tag names a release older than the
//! policy's `spec.sidecars.minimumVersions` for its product or name, held for the rule's `for`
//! from the Pod's creation so that the old Pods of a rollout in progress are not reported; or
//! a sidecar on another version than its workload's newer Pods ([`crate::version_drift`]), held
//! for `for` from the first Pod on the newest version, longer than a rollout takes.

use super::missing::replace_pod;
use super::Ctx;
use crate::alert::AlertName;
use crate::container::ContainerView;
use crate::name::Name;
use crate::policy::{CompiledPolicy, ForRule};
use crate::stamp::Stamp;
use crate::version_drift::Newest;

/// The sidecar's version against the policy's minimum for it, if the policy sets one and the
/// version names a release (a tag that does not is unknown, never older). Returns whether
/// it is older: the Pod's one `SidecarVersionDrift` for this sidecar says so.
pub(super) fn older_than_minimum(
    ctx: &mut Ctx,
    rule: ForRule,
    policy: &CompiledPolicy,
    sidecar: &ContainerView,
) -> bool {
    let Some((key, minimum)) = policy.sidecar_matcher.minimum_version(sidecar) else { return false };
    let Some(version) = sidecar.version.as_ref() else { return false };
    if minimum.is_newer_than_tag(version.as_str()) != Some(true) {
        return false;
    }
    let product = sidecar.catalog.map(|id| format!(" ({})", id.entry().product)).unwrap_or_default();
    let message = format!(
        "Sidecar {}{product} in Pod {} runs version {}, older than {minimum}, the minimum {} sets for {key} (spec.sidecars.minimumVersions); {}",
        sidecar.name,
        ctx.pod.key(),
        sidecar_watch_api::quote(version.as_str()),
        policy.policy,
        replace_pod(ctx.pod),
    );
    if ctx.pod.is_template {
        ctx.fire(AlertName::SidecarVersionDrift, rule.severity, &sidecar.name, None, None, message);
        return true;
    }
    let since = ctx.pod.created_at.map(Stamp::timestamp).unwrap_or(ctx.now);
    ctx.hold(AlertName::SidecarVersionDrift, rule, &sidecar.name, since, message);
    true
}

/// The sidecar's version against the newest its workload's Pods run, when they run more
/// than one: a Pod on another version is held from the first Pod on the newest. A Pod
/// finishing or being deleted is on its way out and not reported.
pub(super) fn behind_its_workload(ctx: &mut Ctx, rule: ForRule, sidecar: &ContainerView, newest: &[(Name, Newest)]) {
    let Some((_, newest)) = newest.iter().find(|(name, _)| *name == sidecar.name) else { return };
    let Some(version) = sidecar.version.as_ref() else { return };
    if *version == newest.version || ctx.pod.finished() || ctx.pod.deleting_since.is_some() {
        return;
    }
    let (kind, workload) = ctx.pod.workload();
    let product = sidecar.catalog.map(|id| format!(" ({})", id.entry().product)).unwrap_or_default();
    let message = format!(
        "Sidecar {}{product} in Pod {} runs version {}, while the Pods of {kind} {workload} created since {} run {}: the workload has run more than one version of it since then; {}",
        sidecar.name,
        ctx.pod.key(),
        sidecar_watch_api::quote(version.as_str()),
        newest.since,
        sidecar_watch_api::quote(newest.version.as_str()),
        replace_pod(ctx.pod),
    );
    ctx.hold(AlertName::SidecarVersionDrift, rule, &sidecar.name, newest.since, message);
}

#[cfg(test)]
mod tests;
