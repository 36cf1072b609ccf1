//! Building a container's view from the API's container and status: the spec flags, the
//! catalog entry, and each exit with what the kubelet does after it.

use super::*;
use crate::catalog;
use crate::exit_rules;

pub(crate) fn init_kind(c: &SlimContainer) -> ContainerKind {
    if c.restart_policy.as_deref() == Some("Always") {
        ContainerKind::RestartableInit
    } else {
        ContainerKind::Init
    }
}

/// A container's spec, without what only the Pod's other containers tell, and its status;
/// `pod_restart_policy` is the Pod's `spec.restartPolicy`.
pub(crate) fn container_parts(
    c: &SlimContainer,
    kind: ContainerKind,
    status: Option<&&SlimContainerStatus>,
    pod_restart_policy: Option<&str>,
    names: &mut NamePool,
) -> (ContainerSpec, Option<ContainerStatusView>) {
    let mut flags = SpecFlags::default();
    if c.readiness_probe.is_some() {
        flags.insert(SpecFlags::READINESS_PROBE);
    }
    if c.startup_probe.is_some() {
        flags.insert(SpecFlags::STARTUP_PROBE);
    }
    if c.liveness_probe.is_some() {
        flags.insert(SpecFlags::LIVENESS_PROBE);
    }
    if c.resources.requests.any || c.resources.limits.any {
        flags.insert(SpecFlags::RESOURCES);
    }
    if c.image.as_deref().is_some_and(is_latest_image) {
        flags.insert(SpecFlags::LATEST_IMAGE);
    }
    if c.lifecycle.post_start.is_some() {
        flags.insert(SpecFlags::POST_START);
    }
    let catalog =
        catalog::CatalogId::recognise(&c.name, c.image.as_deref(), c.command.mentions_agent || c.args.mentions_agent);
    if let Some(id) = catalog {
        let version = c.image.as_deref().map(image_version);
        flags |= catalog::signal::spec_flags(id.entry().signal.blindspot, c.signal_switches(), version);
    }
    if let Some(hook) = c.lifecycle.pre_stop.as_ref().filter(|h| h.can_act()) {
        let command = hook.exec.as_ref().map(|e| e.command.as_slice()).unwrap_or_default();
        if !catalog.is_some_and(|id| id.entry().is_drain_hook(command)) {
            flags.insert(SpecFlags::ACTING_PRE_STOP);
        }
    }
    flags.set(SpecFlags::RESIZE_RESTARTS, exit_rules::resize_restarts(c));
    flags.set(SpecFlags::RESTARTS_POD, exit_rules::declares_pod_restart(c));
    let verdict =
        |t: &SlimTerminated| exit_rules::exit_verdict(pod_restart_policy, c, t.exit_code, t.reason.as_deref());
    let version = c.image.as_deref().map(|image| names.name(image_version(image)));
    let resources = ContainerResources::from_slim(&c.resources);
    let spec =
        ContainerSpec { name: names.name(&c.name), kind, flags, catalog, liveness_target: None, version, resources };
    (spec, status.filter(|_| kind != ContainerKind::Init).map(|s| status_view(s, &verdict, names)))
}

fn status_view(
    s: &SlimContainerStatus,
    verdict: &dyn Fn(&SlimTerminated) -> ExitVerdict,
    names: &mut NamePool,
) -> ContainerStatusView {
    let state = s.state.as_ref();
    let state = if let Some(w) = state.and_then(|st| st.waiting.as_ref()) {
        ContainerState::Waiting { reason: w.reason.as_deref().map(|r| names.name(r)) }
    } else if let Some(r) = state.and_then(|st| st.running.as_ref()) {
        ContainerState::Running { started_at: r.started_at.as_ref().map(|t| Stamp::new(t.0)) }
    } else if let Some(t) = state.and_then(|st| st.terminated.as_ref()) {
        ContainerState::Terminated(Box::new(termination(t, verdict(t), names)))
    } else {
        ContainerState::Unknown
    };
    let mut view = ContainerStatusView::new(s.ready, s.started, u32::try_from(s.restart_count).unwrap_or(0), state);
    view.last_termination =
        s.last_state.as_ref().and_then(|l| l.terminated.as_ref()).map(|t| Box::new(termination(t, verdict(t), names)));
    view
}

fn termination(t: &SlimTerminated, verdict: ExitVerdict, names: &mut NamePool) -> Termination {
    Termination {
        reason: t.reason.as_deref().map(|r| names.name(r)),
        exit_code: t.exit_code,
        started_at: t.started_at.as_ref().map(|x| Stamp::new(x.0)),
        finished_at: t.finished_at.as_ref().map(|x| Stamp::new(x.0)),
        message: t
            .message
            .as_deref()
            .map(str::trim)
            .filter(|m| !m.is_empty())
            .map(|m| truncate(m, MAX_MESSAGE_LEN).into()),
        verdict,
    }
}

pub(super) fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    format!("{}…", sidecar_watch_api::byte_prefix(text, max))
}

/// Versions longer than this are cut: an OCI tag has at most 128 characters, a digest fewer.
const MAX_VERSION_CHARS: usize = 128;

/// An image's version as people name it: its tag (`1.24.0` of `istio/proxyv2:1.24.0`), else
/// its digest (`sha256:…`), else `latest` (what an image without either runs).
pub(super) fn image_version(image: &str) -> &str {
    let (name, digest) = image.split_once('@').map_or((image, None), |(name, digest)| (name, Some(digest)));
    // The tag follows the last ':' after the last '/' (a ':' before it is a registry port).
    let last_segment = name.rsplit('/').next().unwrap_or(name);
    let version = match last_segment.rsplit_once(':') {
        Some((_, tag)) if !tag.is_empty() => tag,
        _ => digest.filter(|d| !d.is_empty()).unwrap_or("latest"),
    };
    match version.char_indices().nth(MAX_VERSION_CHARS) {
        Some((cut, _)) => &version[..cut],
        None => version,
    }
}

/// An image runs "latest" when it has no digest and its tag is absent or `latest`.
pub fn is_latest_image(image: &str) -> bool {
    if image.contains('@') {
        return false;
    }
    // The tag follows the last ':' after the last '/' (a ':' before it is a registry port).
    let last_segment = image.rsplit('/').next().unwrap_or(image);
    match last_segment.rsplit_once(':') {
        Some((_, tag)) => tag == "latest",
        None => true,
    }
}
