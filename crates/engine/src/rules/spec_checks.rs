//! `SidecarMisconfigured`: static checks of the Pod spec.

use super::{Ctx, SPRAWL_THRESHOLD};
use crate::alert::{AlertName, Check};
use crate::catalog::{signal, GENERIC_JOB_REMEDIATION, GENERIC_NATIVE_REMEDIATION};
use crate::pod::{ContainerKind, ContainerView, SpecFlags};
use crate::sidecar_matcher::{Identified, SidecarType};
use crate::stamp::Stamp;
use sidecar_watch_api::Severity;

/// What the per-sidecar checks say after `"Sidecar <name> in Pod <namespace>/<pod> "`: one text
/// for the engine and for the admission policies (`sidecar-watch`'s `admission`), which build the same
/// messages in CEL.
pub mod texts {
    /// `no-readiness-probe`.
    pub const NO_READINESS_PROBE: &str = "has no readinessProbe, so nothing waits for it to be ready";
    /// `no-startup-probe`.
    pub const NO_STARTUP_PROBE: &str =
        "is a native sidecar with neither a startupProbe nor a postStart hook, so main containers start almost in parallel with it";
    /// `legacy-sidecar` in a Job's Pod (or a Job or CronJob template), followed by the
    /// sidecar's Job remediation.
    pub const LEGACY_SIDECAR_IN_JOB: &str =
        "is declared in spec.containers: it keeps running after the main containers finish, so the Job never completes; ";
    /// `legacy-sidecar` in any other Pod (a Deployment's, a StatefulSet's, a DaemonSet's, a
    /// bare Pod), followed by the sidecar's native remediation: such a Pod is never held
    /// open, what goes wrong is the order of start and stop.
    pub const LEGACY_SIDECAR: &str = "is declared in spec.containers: the kubelet starts and stops it alongside the main containers in no guaranteed order, so the app can start before it is ready and lose it while still shutting down; ";
    /// `latest-image`.
    pub const LATEST_IMAGE: &str = "uses an unpinned image (no tag, or :latest)";
    /// `no-resources`.
    pub const NO_RESOURCES: &str = "declares no resource requests or limits";
    /// `init-before-proxy`, between `"… in Pod <key> run(s)"` and the proxy's name.
    pub const INIT_BEFORE_PROXY: &str = " before native sidecar ";
    /// `init-before-proxy`, after the proxy's name and before "it runs" or "they run".
    pub const PROXY_REDIRECTS: &str = ", while the mesh already redirects the Pod's traffic to it: ";
    /// `init-before-proxy`, before the mesh's remedy.
    pub const NO_NETWORK: &str = " with no working network, as connections go to a proxy that has not started; ";
}

/// Every static check of one sidecar (`index` into the Pod's containers).
pub(super) fn misconfiguration(
    ctx: &mut Ctx,
    severity: Severity,
    (index, sidecar, how): (usize, &ContainerView, Identified),
    mains: &[&ContainerView],
) {
    let flags = sidecar.flags;
    // A legacy sidecar holds a Job's Pod open; any other Pod it only leaves unordered.
    let legacy_advice = if ctx.pod.owned_by_job() {
        format!(
            "{}{}",
            texts::LEGACY_SIDECAR_IN_JOB,
            sidecar.catalog.map_or(GENERIC_JOB_REMEDIATION, |c| c.entry().job_remediation)
        )
    } else {
        format!(
            "{}{}",
            texts::LEGACY_SIDECAR,
            sidecar.catalog.map_or(GENERIC_NATIVE_REMEDIATION, |c| c.entry().native_remediation)
        )
    };
    let waits_for_it = flags.intersects(SpecFlags::STARTUP_PROBE | SpecFlags::POST_START);
    let checks: [(bool, Check, &str); 6] = [
        (!flags.contains(SpecFlags::READINESS_PROBE), Check::NoReadinessProbe, texts::NO_READINESS_PROBE),
        (how.kind == SidecarType::Native && !waits_for_it, Check::NoStartupProbe, texts::NO_STARTUP_PROBE),
        (how.kind == SidecarType::Legacy, Check::LegacySidecar, &legacy_advice),
        (flags.contains(SpecFlags::LATEST_IMAGE), Check::LatestImage, texts::LATEST_IMAGE),
        (!flags.contains(SpecFlags::RESOURCES), Check::NoResources, texts::NO_RESOURCES),
        (
            flags.contains(SpecFlags::PORT_CONFLICT),
            Check::PortConflict,
            "declares a container port that another container of the Pod declares too",
        ),
    ];
    for (failed, check, text) in checks {
        if failed {
            let message = format!("Sidecar {} in Pod {} {text}", sidecar.name, ctx.pod.key());
            report(ctx, severity, &sidecar.name, check, message);
        }
    }
    let prober = mains.iter().find_map(|m| m.liveness_target.filter(|t| t.container() == index).map(|t| (m, t)));
    if let Some((main, target)) = prober {
        let message = format!(
            "Main container {} in Pod {} has a livenessProbe on port {} of sidecar {}: whenever the sidecar fails, the kubelet restarts the app; probe the app's own endpoint and let the sidecar's own probes watch the sidecar",
            main.name,
            ctx.pod.key(),
            target.port,
            sidecar.name
        );
        report(ctx, severity, &sidecar.name, Check::MainProbeOnSidecar, message);
    }
    if let Some(id) = sidecar.catalog {
        let failed = signal::failed_checks(id.entry().signal.blindspot, flags, ctx.pod.injection_annotations());
        for (check, text) in failed {
            let message = format!("Sidecar {} in Pod {} {text}", sidecar.name, ctx.pod.key());
            report(ctx, severity, &sidecar.name, check, message);
        }
    }
    if how.kind == SidecarType::Native {
        init_before_proxy(ctx, severity, index, sidecar);
        if flags.contains(SpecFlags::ACTING_PRE_STOP) {
            let message = format!(
                "Sidecar {} in Pod {} is a native sidecar with a preStop hook: the kubelet runs it as soon as the Pod starts terminating, while the main containers still run, and sends the sidecar SIGTERM only after they have exited; a hook that stops or drains the sidecar cuts them off during their own shutdown, so let the hook only wait (or remove it: the kubelet already stops native sidecars last)",
                sidecar.name,
                ctx.pod.key()
            );
            report(ctx, severity, &sidecar.name, Check::NativePreStop, message);
        }
    }
}

/// `init-before-proxy` on a native mesh proxy: the plain init containers declared before it that
/// run with the Pod's traffic already redirected to it (see [`inits_without_network`](crate::relations::inits_without_network)).
fn init_before_proxy(ctx: &mut Ctx, severity: Severity, index: usize, proxy: &ContainerView) {
    let Some(redirect) = proxy.catalog.and_then(|c| c.entry().redirect.as_ref()) else { return };
    let blackholed: Vec<&str> = ctx.pod.containers[..index]
        .iter()
        .filter(|c| c.kind == ContainerKind::Init && c.flags.contains(SpecFlags::NO_NETWORK))
        .map(|c| c.name.as_str())
        .collect();
    if blackholed.is_empty() {
        return;
    }
    let (them, run) = if blackholed.len() == 1 { ("it", "runs") } else { ("they", "run") };
    let message = format!(
        "Init container{} {} in Pod {} {run}{}{}{}{them} {run}{}{}",
        if blackholed.len() == 1 { "" } else { "s" },
        blackholed.join(", "),
        ctx.pod.key(),
        texts::INIT_BEFORE_PROXY,
        proxy.name,
        texts::PROXY_REDIRECTS,
        texts::NO_NETWORK,
        redirect.remediation
    );
    report(ctx, severity, &proxy.name, Check::InitBeforeProxy, message);
}

/// `sidecar-sprawl` on the Pod: `names` were evaluated, `skipped` more were not.
pub(super) fn sprawl(ctx: &mut Ctx, severity: Severity, names: &[&str], skipped: usize) {
    let total = names.len() + skipped;
    if total < SPRAWL_THRESHOLD {
        return;
    }
    let message = if skipped == 0 {
        format!("Pod {} runs {total} sidecars ({}); consider consolidating them", ctx.pod.key(), names.join(", "))
    } else {
        format!(
            "Pod {} runs {total} sidecars ({}, …); only the first {} are evaluated (--max-sidecars-per-pod)",
            ctx.pod.key(),
            names.join(", "),
            names.len()
        )
    };
    report(ctx, severity, "", Check::SidecarSprawl, message);
}

/// Fires one check. A spec finding holds since the Pod's creation; a template has no clocks.
fn report(ctx: &mut Ctx, severity: Severity, container: &str, check: Check, message: String) {
    let since = if ctx.pod.is_template {
        None
    } else {
        Some(ctx.since_or_clock(ctx.pod.created_at.map(Stamp::timestamp), AlertName::SidecarMisconfigured, container))
    };
    ctx.fire(AlertName::SidecarMisconfigured, severity, container, Some(check), since, message);
}
