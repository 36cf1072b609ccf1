//! Lifecycle rules: the order in which sidecars and main containers start and stop, and Jobs
//! held open by a sidecar.

use jiff::Timestamp;

use super::{describe_termination, elapsed, Ctx};
use crate::alert::AlertName;
use crate::catalog::{GENERIC_JOB_REMEDIATION, GENERIC_ORDERING_REMEDIATION};
use crate::history::HistoryMarks;
use crate::pod::{ContainerKind, ContainerStatusView, ContainerView, PodConditions, PodView, SpecFlags};
use crate::policy::ForRule;
use crate::restart_causes;
use crate::sidecar_matcher::{Identified, SidecarType};
use crate::stamp::Stamp;
use sidecar_watch_api::Severity;

/// `MainStartedBeforeSidecarReady`, judged only from what the kubelet recorded: a main
/// container running while the sidecar was not ready yet.
///
/// The evidence, for a main container running now (its `startedAt` is the alert's `since`):
/// - the sidecar's `startedAt` is later than the main container's (equal seconds say nothing
///   about order);
/// - the sidecar is not ready now and nothing says its run was ready once;
/// - one Pod status the operator observed showed the main container's run running while the
///   sidecar's run, never seen ready, was running and not ready (the history's start-order
///   marks, [`HistoryMarks::START_ORDER`]): what keeps the finding once the sidecar is ready.
///
/// The moment the operator saw the sidecar's readiness flip is never compared with the main
/// container's `startedAt`: the kubelet may report `ready: true` in a status written after it
/// started the main container, even when it made that container wait for the sidecar. After
/// an operator restart (or a relist that lost the history) only the Pod is left: a sidecar
/// ready by then with no later `startedAt` than the main container's leaves no evidence, and
/// nothing fires; a restart must not invent a finding.
pub(super) fn startup_order(
    ctx: &mut Ctx,
    severity: Severity,
    sidecar: &ContainerView,
    status: &ContainerStatusView,
    mains: &[&ContainerView],
) {
    // Only a run that began with the Pod says anything about start order: the sidecar's first,
    // or the first after an in-place Pod restart (KEP-5532), which starts the Pod again from
    // its first init container. While the kubelet is still removing the containers for such a
    // restart, nothing says anything about order.
    let restarted_with_pod = status.restart_count() > 0 && restart_causes::ended_by_pod_restart(status);
    if (status.restart_count() > 0 && !restarted_with_pod)
        || ctx.pod.conditions.contains(PodConditions::ALL_CONTAINERS_RESTARTING)
        || ordered_by_hook(ctx.pod, sidecar)
        || ordered_by_probe_or_hook(sidecar)
    {
        return;
    }
    let sidecar_started = status.running_since();
    let history = ctx.history.container(ctx.pod, &sidecar.name);
    // Not ready now, and no sign that this run was ready once: no readiness flip observed,
    // and not the Pod's Ready condition turning False after the run started (it was True,
    // with every container ready, before). A terminated sidecar is not "not yet ready" (it
    // stopped; its readiness says nothing about the start).
    let was_ready_per_api = sidecar_started.is_some_and(|started| ctx.pod.ready_lost_after(started));
    let never_ready = !status.ready()
        && status.terminated().is_none()
        && !was_ready_per_api
        && history.is_none_or(|h| h.ready_changed_at.is_none());
    // The observed status: this run of the sidecar, and the main container's current run.
    // The marks hold for the run they were seen in (`observation.rs` drops them when the run
    // changes), which is the current one.
    let seen_unready =
        status.run_start().is_some() && history.is_some_and(|h| h.marks.contains(HistoryMarks::UNREADY_BESIDE_RUNNING));
    let beside = if sidecar.kind == ContainerKind::RestartableInit {
        HistoryMarks::RAN_BESIDE_UNREADY_NATIVE
    } else {
        HistoryMarks::RAN_BESIDE_UNREADY_REGULAR
    };
    let ran_beside = |main: &ContainerView, main_status: &ContainerStatusView| {
        seen_unready
            && main_status.run_start().is_some()
            && ctx.history.container(ctx.pod, &main.name).is_some_and(|h| h.marks.contains(beside))
    };
    let violation = mains
        .iter()
        .filter_map(|m| {
            let main_status = m.status()?;
            let main_started = main_status.running_since()?;
            let what = match sidecar_started {
                Some(s) if s > main_started => format!("started {} later", elapsed(main_started, s)),
                _ if never_ready => "is not ready yet".to_string(),
                _ if ran_beside(m, main_status) => format!("was reported not ready while {} was running", m.name),
                _ => return None,
            };
            Some((*m, main_started, what))
        })
        .min_by_key(|(_, main_started, _)| *main_started);
    let Some((main, main_started, what)) = violation else { return };
    let mut message = format!(
        "Main container {} in Pod {} started before sidecar {} was ready: the sidecar {what}",
        main.name,
        ctx.pod.key(),
        sidecar.name
    );
    if restarted_with_pod {
        message.push_str(" after the Pod restarted all its containers in place");
        if let Some(trigger) = restart_causes::pod_restart_trigger(ctx.pod).and_then(|i| ctx.pod.containers.get(i)) {
            message.push_str(&format!(" (the exit of {} did it)", trigger.name));
        }
    }
    let remediation = match sidecar.catalog {
        Some(c) if sidecar.kind == ContainerKind::Regular => c.entry().ordering_remediation,
        _ if sidecar.kind == ContainerKind::Regular => GENERIC_ORDERING_REMEDIATION,
        _ => "add a startupProbe so the kubelet waits for it",
    };
    message.push_str("; ");
    message.push_str(remediation);
    ctx.fire(AlertName::MainStartedBeforeSidecarReady, severity, &sidecar.name, None, Some(main_started), message);
}

pub(super) fn job_blocked(
    ctx: &mut Ctx,
    rule: ForRule,
    sidecar: &ContainerView,
    status: &ContainerStatusView,
    mains: &[&ContainerView],
) {
    let restarting = ctx.pod.conditions.contains(PodConditions::ALL_CONTAINERS_RESTARTING);
    if !(ctx.pod.runs_to_completion() || ctx.pod.owned_by_job())
        || mains.is_empty()
        || !status.is_running()
        || ctx.pod.deleting_since.is_some()
        || restarting
    {
        return;
    }
    // Every main container finished (`ContainerView::finished`: restart rules of KEP-5307
    // included), and when.
    let finishes: Option<Vec<Option<Timestamp>>> = mains
        .iter()
        .map(|m| {
            let done = m.status()?.terminated().filter(|_| m.finished())?;
            Some(done.finished_at.map(Stamp::timestamp))
        })
        .collect();
    let Some(finishes) = finishes else { return };
    let api = finishes.iter().copied().collect::<Option<Vec<_>>>().and_then(|f| f.into_iter().max());
    let since = ctx.since_or_clock(api, AlertName::JobBlockedBySidecar, &sidecar.name);
    let (held, kept_waiting) = match ctx.pod.owner() {
        _ if ctx.pod.owned_by_job() => ("Job Pod".to_string(), "the Job cannot complete".to_string()),
        Some(owner) => (format!("{} Pod", owner.kind), format!("the Pod never completes and its {} waits", owner.kind)),
        None => ("Pod".to_string(), "the Pod (restartPolicy Never or OnFailure, no owner) never completes".to_string()),
    };
    let message = format!(
        "{held} {}: every main container finished {} ago but sidecar {} is still running, so {kept_waiting}; {}",
        ctx.pod.key(),
        elapsed(since, ctx.now),
        sidecar.name,
        job_remediation(sidecar)
    );
    ctx.hold(AlertName::JobBlockedBySidecar, rule, &sidecar.name, since, message);
}

pub(super) fn shutdown_order(
    ctx: &mut Ctx,
    severity: Severity,
    sidecar: &ContainerView,
    status: &ContainerStatusView,
    mains: &[&ContainerView],
) {
    let Some(deleting) = ctx.pod.deleting_since else { return };
    // The stop: the sidecar is terminated now, or it exited during the termination and the
    // kubelet started it again (KEP-4438, restartable sidecars during Pod termination): its
    // last termination ended after the deletion began.
    let restarted = status
        .last_termination
        .as_deref()
        .filter(|_| sidecar.kind == ContainerKind::RestartableInit && status.terminated().is_none())
        .filter(|t| t.finished_at.is_some_and(|f| f >= deleting));
    let Some(termination) = status.terminated().or(restarted) else { return };
    let stopped = termination.finished_at.map(Stamp::timestamp);
    // During termination the kubelet restarts no main container, whatever its rules say, so a
    // terminated main container is done.
    let outlived_by = mains.iter().find(|m| match m.status() {
        Some(s) if s.is_running() => true,
        Some(s) => match (s.terminated().and_then(|t| t.finished_at).map(Stamp::timestamp), stopped) {
            (Some(main_finished), Some(sidecar_finished)) => main_finished > sidecar_finished,
            _ => false,
        },
        None => false,
    });
    let Some(main) = outlived_by else { return };
    let since = ctx.since_or_clock(stopped, AlertName::SidecarStoppedBeforeMain, &sidecar.name);
    let mut message = format!(
        "Pod {} is terminating and sidecar {} stopped ({}) while main container {} was still running",
        ctx.pod.key(),
        sidecar.name,
        describe_termination(termination),
        main.name
    );
    if restarted.is_some() {
        message.push_str("; the kubelet started it again, but it was down meanwhile");
    }
    ctx.fire(AlertName::SidecarStoppedBeforeMain, severity, &sidecar.name, None, Some(since), message);
}

/// A native sidecar with a `startupProbe` or a `postStart` hook: the kubelet starts the next
/// container only once the sidecar's `started` is true, which needs the probe to pass and the
/// hook to return, so the main containers wait for it. Its `ready` may still reach the API in
/// a later status write than the main container's start, which says nothing about order. On a
/// regular container a `startupProbe` holds nothing back.
fn ordered_by_probe_or_hook(sidecar: &ContainerView) -> bool {
    sidecar.kind == ContainerKind::RestartableInit
        && sidecar.flags.intersects(SpecFlags::STARTUP_PROBE | SpecFlags::POST_START)
}

/// A legacy sidecar whose `postStart` hook runs before the main containers start: the kubelet
/// starts containers in order and waits for each hook, so the app cannot start first (Istio's
/// `holdApplicationUntilProxyStarts`, Linkerd's `proxy-await`). The kubelet's readiness flag
/// may still lag the proxy's real readiness, so the rule would only report noise here.
fn ordered_by_hook(pod: &PodView, sidecar: &ContainerView) -> bool {
    if sidecar.kind != ContainerKind::Regular || !sidecar.flags.contains(SpecFlags::POST_START) {
        return false;
    }
    let mut regular = pod.containers.iter().filter(|c| c.kind == ContainerKind::Regular);
    // Containers before it in spec.containers start before its hook runs.
    regular.next().is_some_and(|first| first.name == sidecar.name)
        || pod
            .containers
            .iter()
            .take_while(|c| c.name != sidecar.name)
            .filter(|c| c.kind == ContainerKind::Regular)
            .all(|c| c.flags.contains(SpecFlags::POST_START))
}

fn job_remediation(sidecar: &ContainerView) -> &'static str {
    sidecar.catalog.map_or(GENERIC_JOB_REMEDIATION, |c| c.entry().job_remediation)
}

/// What a Job or CronJob template with a legacy sidecar is told after `"<Kind>/<name> runs
/// sidecar <name> "`, before the remediation; shared with the admission policies.
pub const JOB_NEVER_COMPLETES: &str =
    "in spec.containers: it keeps running after the main containers finish, so the Job will never complete; ";

/// What a CronJob's `spec.concurrencyPolicy` does to its later runs while a sidecar holds one
/// of its Jobs open, as one sentence (said after `JobBlockedBySidecar` on the CronJob);
/// `None` for a value the API does not define. The three values and what they do:
/// kubernetes/kubernetes pkg/apis/batch/types.go (`AllowConcurrent`, `ForbidConcurrent`,
/// `ReplaceConcurrent`) and pkg/controller/cronjob/cronjob_controllerv2.go (`Forbid` with an
/// active Job: the run is skipped; `Replace`: the active Jobs are deleted), read in v1.29.15, v1.33.13, v1.35.8, v1.37.2.
pub fn cronjob_concurrency(cronjob: &str, policy: &str) -> Option<String> {
    let effect = match policy {
        "Forbid" => "every later run is skipped while this Job runs",
        "Replace" => "the next run replaces this Job",
        "Allow" => "later runs start beside it",
        _ => return None,
    };
    Some(format!("CronJob {cronjob} has concurrencyPolicy {policy}: {effect}"))
}

/// A Job or CronJob template (`audit` of manifests) with a legacy sidecar: every Pod it makes
/// will keep running after its main containers finish, so the Job never completes.
pub(super) fn job_template_blocked(
    ctx: &mut Ctx,
    severity: Severity,
    sidecar: &ContainerView,
    how: Identified,
    mains: &[&ContainerView],
) {
    if !ctx.pod.owned_by_job() || how.kind != SidecarType::Legacy || mains.is_empty() {
        return;
    }
    let message =
        format!("{} runs sidecar {} {JOB_NEVER_COMPLETES}{}", ctx.pod.name(), sidecar.name, job_remediation(sidecar));
    ctx.fire(AlertName::JobBlockedBySidecar, severity, &sidecar.name, None, None, message);
}

#[cfg(test)]
mod tests;
