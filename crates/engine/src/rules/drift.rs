//! `SidecarVersionDrift` of one Pod: a sidecar whose image tag names a release older than the
//! policy's `spec.sidecars.minimumVersions` for its product or name. Held for the rule's `for`
//! from the Pod's creation, so that the old Pods of a rollout in progress are not reported.

use super::missing::replace_pod;
use super::Ctx;
use crate::alert::AlertName;
use crate::container::ContainerView;
use crate::policy::{CompiledPolicy, ForRule};
use crate::stamp::ApiTime;

/// The sidecar's version against the policy's minimum for it, if the policy sets one and the
/// version names a release (a tag that does not is unknown, never older).
pub(super) fn older_than_minimum(ctx: &mut Ctx, rule: ForRule, policy: &CompiledPolicy, sidecar: &ContainerView) {
    let Some((key, minimum)) = policy.minimum_version(sidecar) else { return };
    let Some(version) = sidecar.version.as_ref() else { return };
    if minimum.is_newer_than_tag(version.as_str()) != Some(true) {
        return;
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
        return;
    }
    let since = ctx.pod.created_at.map(ApiTime::timestamp).unwrap_or(ctx.now);
    ctx.hold(AlertName::SidecarVersionDrift, rule, &sidecar.name, since, message);
}

#[cfg(test)]
mod tests;
