//! Health rules: readiness, restarts, crash loops and OOM kills of a running sidecar.

use jiff::Timestamp;

use super::{add, describe_termination, elapsed, sub, Ctx, CRASH_LOOP_BRIDGE, CRASH_LOOP_GAP};
use crate::alert::AlertName;
use crate::container::MemoryEnd;
use crate::exit_rules::ExitVerdict;
use crate::history::PodHistory;
use crate::pod::{ContainerKind, ContainerStatusView, ContainerView, PodConditions, PodView, SpecFlags};
use crate::policy::{CompiledPolicy, ForRule};
use crate::restart_causes::{self, RestartTally};
use crate::stamp::Stamp;
use sidecar_watch_api::format_duration;

/// Since when a container has not been ready: the last time it was, as far as anything tells
/// (the readiness flip the operator observed, the Pod's `Ready=False` transition), and never
/// before the kubelet could have started it (its first run, or the end of the plain init
/// containers declared before it). Not the start of its current run: a sidecar that crash
/// loops without ever becoming ready has been not ready since long before its latest run.
/// With nothing known, the Pod's start.
fn not_ready_since(
    pod: &PodView,
    history: &PodHistory,
    container: &ContainerView,
    status: &ContainerStatusView,
) -> Option<Timestamp> {
    // Not ready now, so the last flip the operator saw made it unready.
    let observed = history.container(pod, &container.name).and_then(|h| h.ready_changed_at);
    let pod_not_ready = pod.ready_condition().filter(|c| !c.status).and_then(|c| c.since);
    let first_run = if status.restart_count() == 0 {
        status.run_start().or_else(|| status.terminated().and_then(|t| t.started_at))
    } else {
        None
    };
    [observed, pod_not_ready, first_run, startable_since(pod, container)]
        .into_iter()
        .flatten()
        .max()
        .map(Stamp::timestamp)
        .or_else(|| pod.start_time())
}

/// When the last plain init container declared before `container` finished: the kubelet
/// starts no later container before then.
fn startable_since(pod: &PodView, container: &ContainerView) -> Option<Stamp> {
    pod.containers
        .iter()
        .take_while(|c| c.name != container.name)
        .filter(|c| c.kind == ContainerKind::Init)
        .filter_map(|c| c.status()?.latest_termination()?.finished_at)
        .max()
}

/// Whether the kubelet cannot start any container yet: `PodReadyToStartContainers=False`
/// (KEP-3085) says the sandbox or its network is not ready, which is no sidecar's failure.
fn sandbox_not_ready(pod: &PodView) -> bool {
    pod.conditions.contains(PodConditions::SANDBOX_NOT_READY)
}

/// Whether the container waits (`PodInitializing`) because a container declared before it
/// holds it back: a plain init container that has not completed, or a native sidecar that has
/// not started. Not started by design, which is no failure of its own. The first container
/// has nothing to wait for, so its `PodInitializing` in a ready sandbox is still reported.
fn not_started_by_design(pod: &PodView, container: &ContainerView, status: &ContainerStatusView) -> bool {
    if status.waiting_reason() != Some("PodInitializing") {
        return false;
    }
    pod.containers.iter().take_while(|c| c.name != container.name).any(|c| match c.kind {
        ContainerKind::Init => c.status().and_then(ContainerStatusView::terminated).is_none_or(|t| t.exit_code != 0),
        ContainerKind::RestartableInit => c.status().and_then(ContainerStatusView::started) != Some(true),
        ContainerKind::Regular => false,
    })
}

/// Whether the container is down between two runs: terminated with an exit the kubelet
/// restarts it for, in a Pod that is neither finished nor deleting and whose regular
/// containers have not all finished (the kubelet then stops the sidecars for good, KEP-753).
/// A native sidecar spends its whole back-off so after exiting 0 (kubelet 1.34 and 1.37 never
/// show `CrashLoopBackOff` for it), and part of each back-off after exiting non-zero (how
/// long: docs/benchmarks.md#figures-the-codes-comments-cite).
fn awaiting_restart(pod: &PodView, status: &ContainerStatusView) -> bool {
    let Some(termination) = status.terminated() else { return false };
    if !termination.verdict.contains(ExitVerdict::RESTARTS)
        || pod.deleting_since.is_some()
        || pod.conditions.contains(PodConditions::FINISHED)
    {
        return false;
    }
    let mut regular = pod.containers.iter().filter(|c| c.kind == ContainerKind::Regular).peekable();
    let all_finished = regular.peek().is_some() && regular.all(ContainerView::finished);
    !all_finished
}

pub(super) fn sidecar_not_ready(ctx: &mut Ctx, rule: ForRule, sidecar: &ContainerView, status: &ContainerStatusView) {
    let down = awaiting_restart(ctx.pod, status);
    let counts =
        status.is_running() || (status.is_waiting() && !not_started_by_design(ctx.pod, sidecar, status)) || down;
    if status.ready() || !counts || ctx.pod.deleting_since.is_some() || sandbox_not_ready(ctx.pod) {
        return;
    }
    let api = not_ready_since(ctx.pod, ctx.history, sidecar, status);
    let since = ctx.since_or_clock(api, AlertName::SidecarContainerNotReady, &sidecar.name);
    let state = match (status.waiting_reason(), status.terminated()) {
        (Some(reason), _) => format!("waiting ({reason})"),
        (None, Some(t)) if down => format!(
            "terminated ({}, exit code {}) until the kubelet restarts it",
            t.reason.as_deref().unwrap_or("unknown"),
            t.exit_code
        ),
        _ if status.is_running() => "running".to_string(),
        _ => "waiting".to_string(),
    };
    let mut message = format!(
        "Sidecar {} in Pod {} is {state} but not ready for {}",
        sidecar.name,
        ctx.pod.key(),
        elapsed(since, ctx.now)
    );
    if let Some(t) = status.last_termination.as_ref() {
        message.push_str(&format!("; {}", describe_termination(t)));
    }
    ctx.hold(AlertName::SidecarContainerNotReady, rule, &sidecar.name, since, message);
}

pub(super) fn main_ready_sidecar_not_ready(
    ctx: &mut Ctx,
    rule: ForRule,
    sidecar: &ContainerView,
    status: &ContainerStatusView,
    mains: &[&ContainerView],
) {
    if status.ready() || ctx.pod.deleting_since.is_some() || sandbox_not_ready(ctx.pod) {
        return;
    }
    // The earliest instant from which some ready main container has been ready.
    let ready_mains: Vec<&ContainerView> = mains.iter().copied().filter(|m| m.is_ready()).collect();
    let Some(first_main) = ready_mains.first() else { return };
    let main_ready_since = ready_mains
        .iter()
        .filter_map(|m| {
            let started = m.status().and_then(ContainerStatusView::running_since);
            let observed = ctx.history.container(ctx.pod, &m.name).and_then(|h| h.ready_changed_at);
            [started, observed.map(Stamp::timestamp)].into_iter().flatten().max()
        })
        .min();
    let sidecar_since = not_ready_since(ctx.pod, ctx.history, sidecar, status);
    let api = match (main_ready_since, sidecar_since) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    };
    let since = ctx.since_or_clock(api, AlertName::MainContainerReadyButSidecarNot, &sidecar.name);
    let message = format!(
        "Main container {} in Pod {} is ready but sidecar {} is not, for {}",
        first_main.name,
        ctx.pod.key(),
        sidecar.name,
        elapsed(since, ctx.now)
    );
    ctx.hold(AlertName::MainContainerReadyButSidecarNot, rule, &sidecar.name, since, message);
}

/// The times of a container's own restarts, oldest first, and how its restarts split between
/// it and the kubelet (see [`restart_causes::tally_restarts`]: restarts the kubelet made itself are
/// not the sidecar's failures). Own restarts are those the operator observed, the last
/// termination, and the rest (times unknown) placed at the Pod's start, the earliest they can
/// have happened, so they leave any window as early as possible.
fn restart_times(
    pod: &PodView,
    history: &PodHistory,
    (index, container): (usize, &ContainerView),
    status: &ContainerStatusView,
) -> (Vec<Timestamp>, RestartTally) {
    let observed = history.container_at(index);
    let tally = restart_causes::tally_restarts(pod, index, container, status, observed);
    let mut known: Vec<Timestamp> =
        observed.map(|h| h.restarts.iter().map(|s| s.timestamp()).collect()).unwrap_or_default();
    if tally.own > 0 && tally.last_by_kubelet.is_none() {
        if let Some(finished) = status.last_termination.as_ref().and_then(|t| t.finished_at).map(Stamp::timestamp) {
            if !known.contains(&finished) {
                known.push(finished);
            }
        }
    }
    known.sort();
    let excess = known.len().saturating_sub(tally.own as usize);
    known.drain(..excess);
    // Restarts beyond this many cannot change any rule (thresholds stop at MAX_THRESHOLD),
    // and a huge restartCount must not cost a huge allocation.
    let unknown = (tally.own as usize - known.len()).min(crate::policy::MAX_THRESHOLD as usize + 1);
    let times = match pod.start_time() {
        Some(start) => {
            let mut all = vec![start; unknown];
            all.extend(known);
            all.sort();
            all
        }
        None => known,
    };
    (times, tally)
}

/// What the restart messages add about restarts that are not the sidecar's failures, and about
/// a sidecar whose exits restart the whole Pod.
fn kubelet_restarts_note(pod: &PodView, index: usize, sidecar: &ContainerView, tally: RestartTally) -> String {
    let mut note = String::new();
    if tally.by_kubelet > 0 {
        note.push_str(&format!(
            "; {} of the {} were made by the kubelet itself (in-place Pod restarts, resizes or restarts during termination) and are not counted",
            tally.by_kubelet,
            tally.own + tally.by_kubelet
        ));
    }
    if sidecar.flags.contains(SpecFlags::RESTARTS_POD)
        && restart_causes::pod_restarted(pod)
        && restart_causes::pod_restart_trigger(pod) == Some(index)
    {
        note.push_str("; its exits match its restartPolicyRules action RestartAllContainers, so each one restarted every container of the Pod");
    }
    note
}

pub(super) fn restarts(
    ctx: &mut Ctx,
    policy: &CompiledPolicy,
    (index, sidecar): (usize, &ContainerView),
    status: &ContainerStatusView,
) {
    let rule = policy.rules.restarts;
    let window_start = sub(ctx.now, rule.window);
    let (times, tally) = restart_times(ctx.pod, ctx.history, (index, sidecar), status);
    let in_window: Vec<Timestamp> = times.into_iter().filter(|t| *t > window_start && *t <= ctx.now).collect();
    let count = in_window.len();
    let threshold = rule.threshold as usize;
    if count < threshold {
        return;
    }
    // The alert holds until enough of the counted restarts have left the window.
    ctx.wake_at(add(in_window[count - threshold], rule.window));
    let since = in_window[threshold - 1];
    let mut message = format!(
        "Sidecar {} in Pod {} restarted {count} times in the last {} (threshold {}; {} restarts in total)",
        sidecar.name,
        ctx.pod.key(),
        format_duration(rule.window),
        rule.threshold,
        status.restart_count()
    );
    message.push_str(&kubelet_restarts_note(ctx.pod, index, sidecar, tally));
    if let Some(t) = status.latest_termination() {
        message.push_str(&format!("; {}", describe_termination(t)));
    }
    ctx.fire(AlertName::SidecarRestartingFrequently, rule.severity, &sidecar.name, None, Some(since), message);
}

pub(super) fn crash_loop(
    ctx: &mut Ctx,
    rule: ForRule,
    (index, sidecar): (usize, &ContainerView),
    status: &ContainerStatusView,
) {
    let (times, tally) = restart_times(ctx.pod, ctx.history, (index, sidecar), status);
    // The current episode: the newest run of restarts with no gap longer than CRASH_LOOP_GAP.
    let mut episode_start = times.len();
    while episode_start > 0 {
        let i = episode_start - 1;
        if i + 1 < times.len() && add(times[i], CRASH_LOOP_GAP) < times[i + 1] {
            break;
        }
        episode_start = i;
    }
    let episode = &times[episode_start..];
    // In back-off: `CrashLoopBackOff`, or down again soon after its last restart and about to
    // be restarted (a native sidecar's back-off, see [`awaiting_restart`]).
    let down_again = status.terminated().and_then(|t| t.finished_at).map_or(ctx.now, Stamp::timestamp);
    let in_back_off = status.waiting_reason() == Some("CrashLoopBackOff")
        || (awaiting_restart(ctx.pod, status)
            && episode.last().is_some_and(|last| add(*last, CRASH_LOOP_GAP) >= down_again));
    // A short run between two back-offs of a loop does not end the episode.
    let bridging_until = status
        .running_since()
        .filter(|_| episode.len() >= 2)
        .filter(|_| episode.last().is_some_and(|last| add(*last, CRASH_LOOP_GAP) >= ctx.now))
        .map(|started| add(started, CRASH_LOOP_BRIDGE))
        .filter(|until| *until > ctx.now);
    if !in_back_off && bridging_until.is_none() {
        return;
    }
    if let Some(until) = bridging_until {
        ctx.wake_at(until);
    }
    let api = episode.first().copied();
    let since = ctx.since_or_clock(api, AlertName::SidecarCrashLooping, &sidecar.name);
    let mut message = format!(
        "Sidecar {} in Pod {} is crash looping ({} restarts in this episode, {} in total) for {}",
        sidecar.name,
        ctx.pod.key(),
        episode.len(),
        status.restart_count(),
        elapsed(since, ctx.now)
    );
    message.push_str(&kubelet_restarts_note(ctx.pod, index, sidecar, tally));
    if let Some(t) = status.latest_termination() {
        message.push_str(&format!("; {}", describe_termination(t)));
    }
    ctx.hold(AlertName::SidecarCrashLooping, rule, &sidecar.name, since, message);
}

pub(super) fn oom_killed(
    ctx: &mut Ctx,
    policy: &CompiledPolicy,
    sidecar: &ContainerView,
    status: &ContainerStatusView,
) {
    let rule = policy.rules.oom_killed;
    let Some((termination, end)) = status.latest_termination().and_then(|t| Some((t, t.memory_end()?))) else {
        return;
    };
    let since =
        ctx.since_or_clock(termination.finished_at.map(Stamp::timestamp), AlertName::SidecarOomKilled, &sidecar.name);
    let until = add(since, rule.window);
    if until <= ctx.now {
        return;
    }
    ctx.wake_at(until);
    let reason = termination.reason.as_deref().unwrap_or("unknown");
    let said = termination.message.as_deref().unwrap_or_default();
    let how = match end {
        MemoryEnd::OomKilled => "was OOMKilled".to_string(),
        MemoryEnd::KilledWhileStarting => {
            format!("was killed by its memory limit while it started (reason {reason}: {said})")
        }
        MemoryEnd::BelowStartingUsage => format!(
            "could not start: its memory limit is below what the runtime uses to start it (reason {reason}: {said})"
        ),
    };
    let message = format!(
        "Sidecar {} in Pod {} {how} {} ago (exit code {}); raise its memory limit or find the leak",
        sidecar.name,
        ctx.pod.key(),
        elapsed(since, ctx.now),
        termination.exit_code
    );
    ctx.fire(AlertName::SidecarOomKilled, rule.severity, &sidecar.name, None, Some(since), message);
}

#[cfg(test)]
mod tests;
