//! The rules: one function per row of the alert table.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

use super::alert::{Alert, AlertName, AlertState, Check};
use super::history::PodHistory;
use super::pod::{ContainerKind, ContainerState, ContainerStatusView, ContainerView, PodView, SpecFlags, Termination};
use super::policy::{CompiledPolicy, ForRule, SidecarType};
use super::stamp::Stamp;
use crate::api::{format_duration, Severity};

/// Consecutive restarts closer than this belong to one crash-loop episode: the kubelet's
/// back-off ceiling (5 minutes) plus a short run, doubled for slack.
pub const CRASH_LOOP_GAP: Duration = Duration::from_secs(600);
/// After a restart in a crash loop, a run this short still counts as part of the loop.
pub const CRASH_LOOP_BRIDGE: Duration = Duration::from_secs(300);
/// Number of sidecars in one Pod from which `sidecar-sprawl` is reported.
pub const SPRAWL_THRESHOLD: usize = 5;
/// Sidecars evaluated per Pod unless told otherwise (`--max-sidecars-per-pod`): a Pod with
/// thousands of them (a hostile or broken tenant) costs what 32 cost, and reports sprawl.
pub const DEFAULT_MAX_SIDECARS: usize = 32;

/// The result of evaluating one Pod under one policy at one instant.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Evaluation {
    /// Active alerts, in rule order then container order.
    pub alerts: Vec<Alert>,
    /// The earliest future instant at which the result can change without a new Pod
    /// state (a `for` elapsing, a restart leaving the window); requeue then.
    pub next_change: Option<Timestamp>,
    /// Conditions that hold but whose start the API does not record; the caller keeps
    /// their first-seen clocks with [`PodHistory::set_clocks`].
    pub clocked: Vec<(&'static str, String)>,
    /// The sidecars evaluated, as (index into `pod.containers`, type), in container order.
    pub sidecars: Vec<(usize, SidecarType)>,
    /// Sidecars beyond the per-Pod limit, not evaluated.
    pub sidecars_skipped: usize,
}

/// `t + d`, saturating at the end of time rather than failing on absurd inputs.
pub fn add(t: Timestamp, d: Duration) -> Timestamp {
    SignedDuration::try_from(d).ok().and_then(|sd| t.checked_add(sd).ok()).unwrap_or(Timestamp::MAX)
}

/// `t - d`, saturating at the beginning of time.
fn sub(t: Timestamp, d: Duration) -> Timestamp {
    SignedDuration::try_from(d).ok().and_then(|sd| t.checked_sub(sd).ok()).unwrap_or(Timestamp::MIN)
}

/// A human duration between two instants ("6m12s"); never negative.
fn elapsed(since: Timestamp, now: Timestamp) -> String {
    let d = now.duration_since(since);
    format_duration(Duration::from_secs(u64::try_from(d.as_secs()).unwrap_or(0)))
}

/// Evaluates every enabled rule of `policy` on `pod` at `now`, for at most
/// [`DEFAULT_MAX_SIDECARS`] sidecars.
pub fn evaluate(pod: &PodView, policy: &CompiledPolicy, history: &PodHistory, now: Timestamp) -> Evaluation {
    evaluate_capped(pod, policy, history, now, DEFAULT_MAX_SIDECARS)
}

/// [`evaluate`] for at most `max_sidecars` sidecars (the first ones, in container order);
/// the rest are counted in [`Evaluation::sidecars_skipped`] and the Pod reports sprawl.
pub fn evaluate_capped(
    pod: &PodView,
    policy: &CompiledPolicy,
    history: &PodHistory,
    now: Timestamp,
    max_sidecars: usize,
) -> Evaluation {
    let mut sidecars: Vec<(usize, &ContainerView, SidecarType)> = Vec::new();
    let mut mains: Vec<&ContainerView> = Vec::new();
    let mut skipped = 0;
    for (i, c) in pod.containers.iter().enumerate() {
        match policy.sidecar_type(c) {
            Some(kind) if sidecars.len() < max_sidecars => sidecars.push((i, c, kind)),
            Some(_) => skipped += 1,
            None if c.kind == ContainerKind::Regular => mains.push(c),
            None => {}
        }
    }
    let mut ctx = Ctx { pod, history, now, out: Evaluation::default() };
    let rules = &policy.rules;
    for &(_, sidecar, kind) in &sidecars {
        if let Some(status) = &sidecar.status {
            if rules.sidecar_not_ready.enabled {
                sidecar_not_ready(&mut ctx, rules.sidecar_not_ready, sidecar, status);
            }
            if rules.main_ready_sidecar_not_ready.enabled {
                main_ready_sidecar_not_ready(&mut ctx, rules.main_ready_sidecar_not_ready, sidecar, status, &mains);
            }
            if rules.restarts.enabled {
                restarts(&mut ctx, policy, sidecar, status);
            }
            if rules.crash_loop.enabled {
                crash_loop(&mut ctx, rules.crash_loop, sidecar, status);
            }
            if rules.oom_killed.enabled {
                oom_killed(&mut ctx, policy, sidecar, status);
            }
            if rules.startup_order.enabled {
                startup_order(&mut ctx, rules.startup_order.severity, sidecar, status, &mains);
            }
            if rules.job_blocked.enabled {
                job_blocked(&mut ctx, rules.job_blocked, sidecar, status, &mains);
            }
            if rules.shutdown_order.enabled {
                shutdown_order(&mut ctx, rules.shutdown_order.severity, sidecar, status, &mains);
            }
        }
        if rules.misconfiguration.enabled {
            misconfiguration(&mut ctx, rules.misconfiguration.severity, sidecar, kind);
        }
    }
    let total = sidecars.len() + skipped;
    if rules.misconfiguration.enabled && total >= SPRAWL_THRESHOLD {
        let names: Vec<&str> = sidecars.iter().map(|(_, c, _)| c.name.as_str()).collect();
        let message = if skipped == 0 {
            format!("Pod {} runs {total} sidecars ({}); consider consolidating them", pod.key(), names.join(", "))
        } else {
            format!(
                "Pod {} runs {total} sidecars ({}, …); only the first {} are evaluated (--max-sidecars-per-pod)",
                pod.key(),
                names.join(", "),
                names.len()
            )
        };
        let since = ctx.since_or_clock(pod.created_at.map(Stamp::timestamp), AlertName::SidecarMisconfigured, "");
        ctx.fire(
            AlertName::SidecarMisconfigured,
            rules.misconfiguration.severity,
            "",
            Some(Check::SidecarSprawl),
            Some(since),
            message,
        );
    }
    let mut out = ctx.out;
    out.sidecars = sidecars.iter().map(|(i, _, kind)| (*i, *kind)).collect();
    out.sidecars_skipped = skipped;
    out.alerts.sort_by(|a, b| (a.name, &a.container, a.check).cmp(&(b.name, &b.container, b.check)));
    out
}

struct Ctx<'a> {
    pod: &'a PodView,
    history: &'a PodHistory,
    now: Timestamp,
    out: Evaluation,
}

impl Ctx<'_> {
    fn wake_at(&mut self, at: Timestamp) {
        if at > self.now {
            self.out.next_change = Some(self.out.next_change.map_or(at, |t| t.min(at)));
        }
    }

    /// The API-derived start of a condition, or the operator's first-seen clock for it.
    fn since_or_clock(&mut self, api: Option<Timestamp>, alert: AlertName, container: &str) -> Timestamp {
        if let Some(t) = api {
            return t;
        }
        self.out.clocked.push((alert.as_str(), container.to_string()));
        self.history.clock(alert.as_str(), container).unwrap_or(self.now)
    }

    fn fire(
        &mut self,
        name: AlertName,
        severity: Severity,
        container: &str,
        check: Option<Check>,
        since: Option<Timestamp>,
        message: String,
    ) {
        self.out.alerts.push(Alert {
            name,
            severity,
            container: container.to_string(),
            check,
            state: AlertState::Firing,
            since,
            message,
        });
    }

    /// A condition that must hold for `rule.for_` before firing.
    fn hold(&mut self, name: AlertName, rule: ForRule, container: &str, since: Timestamp, message: String) {
        let fires_at = add(since, rule.for_);
        let state = if self.now >= fires_at { AlertState::Firing } else { AlertState::Pending };
        self.wake_at(fires_at);
        self.out.alerts.push(Alert {
            name,
            severity: rule.severity,
            container: container.to_string(),
            check: None,
            state,
            since: Some(since),
            message,
        });
    }
}

/// Since when a container has not been ready: the latest of its run start (or last
/// termination when waiting), the Pod's `Ready=False` transition and the readiness flip the
/// operator observed; with none of them, the Pod's start.
fn not_ready_since(
    pod: &PodView,
    history: &PodHistory,
    container: &ContainerView,
    status: &ContainerStatusView,
) -> Option<Timestamp> {
    let own = match &status.state {
        ContainerState::Running { started_at } => *started_at,
        ContainerState::Terminated(t) => t.finished_at,
        _ => status.last_termination.as_ref().and_then(|t| t.finished_at),
    };
    let pod_not_ready = pod.ready_condition.filter(|c| !c.status).and_then(|c| c.since);
    let observed = history.container(&container.name).filter(|h| !h.ready).and_then(|h| h.ready_changed_at);
    [own, pod_not_ready, observed].into_iter().flatten().max().map(Stamp::timestamp).or_else(|| pod.start_time())
}

fn describe_termination(t: &Termination) -> String {
    let mut text =
        format!("last terminated with reason {} (exit code {})", t.reason.as_deref().unwrap_or("unknown"), t.exit_code);
    if let Some(message) = t.message.as_deref().filter(|m| !m.is_empty()) {
        text.push_str(&format!(": {message}"));
    }
    text
}

fn sidecar_not_ready(ctx: &mut Ctx, rule: ForRule, sidecar: &ContainerView, status: &ContainerStatusView) {
    let running_or_waiting = status.is_running() || matches!(status.state, ContainerState::Waiting { .. });
    if status.ready || !running_or_waiting || ctx.pod.deleting_since.is_some() {
        return;
    }
    let api = not_ready_since(ctx.pod, ctx.history, sidecar, status);
    let since = ctx.since_or_clock(api, AlertName::SidecarContainerNotReady, &sidecar.name);
    let state = match status.waiting_reason() {
        Some(reason) => format!("waiting ({reason})"),
        None if status.is_running() => "running".to_string(),
        None => "waiting".to_string(),
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

fn main_ready_sidecar_not_ready(
    ctx: &mut Ctx,
    rule: ForRule,
    sidecar: &ContainerView,
    status: &ContainerStatusView,
    mains: &[&ContainerView],
) {
    if status.ready || ctx.pod.deleting_since.is_some() {
        return;
    }
    // The earliest instant from which some ready main container has been ready.
    let ready_mains: Vec<&ContainerView> = mains.iter().copied().filter(|m| m.is_ready()).collect();
    let Some(first_main) = ready_mains.first() else { return };
    let main_ready_since = ready_mains
        .iter()
        .filter_map(|m| {
            let started = m.status.as_ref().and_then(ContainerStatusView::running_since);
            let observed = ctx.history.container(&m.name).filter(|h| h.ready).and_then(|h| h.ready_changed_at);
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

/// The times of every restart of a container, oldest first: those the operator observed,
/// the last termination, and the rest (times unknown) placed at the Pod's start, the
/// earliest they can have happened, so they leave any window as early as possible.
fn restart_times(
    pod: &PodView,
    history: &PodHistory,
    container: &ContainerView,
    status: &ContainerStatusView,
) -> Vec<Timestamp> {
    let mut known: Vec<Timestamp> = history.container(&container.name).map(|h| h.restarts.clone()).unwrap_or_default();
    if status.restart_count > 0 {
        if let Some(finished) = status.last_termination.as_ref().and_then(|t| t.finished_at).map(Stamp::timestamp) {
            if !known.contains(&finished) {
                known.push(finished);
            }
        }
    }
    known.sort();
    let excess = known.len().saturating_sub(status.restart_count as usize);
    known.drain(..excess);
    // Restarts beyond this many cannot change any rule (thresholds stop at MAX_THRESHOLD),
    // and a huge restartCount must not cost a huge allocation.
    let unknown = (status.restart_count as usize - known.len()).min(crate::engine::policy::MAX_THRESHOLD as usize + 1);
    match pod.start_time() {
        Some(start) => {
            let mut all = vec![start; unknown];
            all.extend(known);
            all.sort();
            all
        }
        None => known,
    }
}

fn restarts(ctx: &mut Ctx, policy: &CompiledPolicy, sidecar: &ContainerView, status: &ContainerStatusView) {
    let rule = policy.rules.restarts;
    let window_start = sub(ctx.now, rule.window);
    let in_window: Vec<Timestamp> = restart_times(ctx.pod, ctx.history, sidecar, status)
        .into_iter()
        .filter(|t| *t > window_start && *t <= ctx.now)
        .collect();
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
        status.restart_count
    );
    if let Some(t) = status.latest_termination() {
        message.push_str(&format!("; {}", describe_termination(t)));
    }
    ctx.fire(AlertName::SidecarRestartingFrequently, rule.severity, &sidecar.name, None, Some(since), message);
}

fn crash_loop(ctx: &mut Ctx, rule: ForRule, sidecar: &ContainerView, status: &ContainerStatusView) {
    let times = restart_times(ctx.pod, ctx.history, sidecar, status);
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
    let in_back_off = status.waiting_reason() == Some("CrashLoopBackOff");
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
        status.restart_count,
        elapsed(since, ctx.now)
    );
    if let Some(t) = status.latest_termination() {
        message.push_str(&format!("; {}", describe_termination(t)));
    }
    ctx.hold(AlertName::SidecarCrashLooping, rule, &sidecar.name, since, message);
}

fn oom_killed(ctx: &mut Ctx, policy: &CompiledPolicy, sidecar: &ContainerView, status: &ContainerStatusView) {
    let rule = policy.rules.oom_killed;
    let Some(termination) = status.latest_termination().filter(|t| t.reason.as_deref() == Some("OOMKilled")) else {
        return;
    };
    let since =
        ctx.since_or_clock(termination.finished_at.map(Stamp::timestamp), AlertName::SidecarOomKilled, &sidecar.name);
    let until = add(since, rule.window);
    if until <= ctx.now {
        return;
    }
    ctx.wake_at(until);
    let message = format!(
        "Sidecar {} in Pod {} was OOMKilled {} ago (exit code {}); raise its memory limit or find the leak",
        sidecar.name,
        ctx.pod.key(),
        elapsed(since, ctx.now),
        termination.exit_code
    );
    ctx.fire(AlertName::SidecarOomKilled, rule.severity, &sidecar.name, None, Some(since), message);
}

fn startup_order(
    ctx: &mut Ctx,
    severity: Severity,
    sidecar: &ContainerView,
    status: &ContainerStatusView,
    mains: &[&ContainerView],
) {
    // Only the sidecar's first run says anything about start order.
    if status.restart_count > 0 {
        return;
    }
    let sidecar_started = status.running_since();
    let history = ctx.history.container(&sidecar.name);
    let first_ready = history
        .filter(|h| {
            h.watched_run_started_at.is_some() && h.watched_run_started_at.map(Stamp::timestamp) == sidecar_started
        })
        .and_then(|h| h.first_ready_at)
        .map(Stamp::timestamp);
    // Never seen ready: not ready now, no readiness flip observed, and no sign in the API that
    // this run was ready once: the Pod's Ready condition turning False after the run started
    // means it was True, with every container ready, before. A terminated sidecar is not "not
    // yet ready" (it stopped; its readiness says nothing about the start).
    let was_ready_per_api = sidecar_started
        .zip(ctx.pod.ready_condition.filter(|c| !c.status).and_then(|c| c.since).map(Stamp::timestamp))
        .is_some_and(|(started, not_ready_since)| not_ready_since > started);
    let never_ready = !status.ready
        && status.terminated().is_none()
        && !was_ready_per_api
        && history.is_none_or(|h| h.ready_changed_at.is_none());
    let violation = mains
        .iter()
        .filter_map(|m| Some((*m, m.status.as_ref()?.running_since()?)))
        .filter(|(_, main_started)| {
            first_ready.is_some_and(|ready| *main_started < ready)
                || sidecar_started.is_some_and(|s| s > *main_started)
                || never_ready
        })
        .min_by_key(|(_, main_started)| *main_started);
    let Some((main, main_started)) = violation else { return };
    let what = match (first_ready, sidecar_started) {
        (Some(ready), _) => format!("became ready {} later", elapsed(main_started, ready)),
        (None, Some(s)) if s > main_started => format!("started {} later", elapsed(main_started, s)),
        _ => "is not ready yet".to_string(),
    };
    let mut message = format!(
        "Main container {} in Pod {} started before sidecar {} was ready: the sidecar {what}",
        main.name,
        ctx.pod.key(),
        sidecar.name
    );
    if sidecar.kind == ContainerKind::RestartableInit && !sidecar.flags.contains(SpecFlags::STARTUP_PROBE) {
        message.push_str("; add a startupProbe so the kubelet waits for it");
    }
    ctx.fire(AlertName::MainStartedBeforeSidecarReady, severity, &sidecar.name, None, Some(main_started), message);
}

fn job_blocked(
    ctx: &mut Ctx,
    rule: ForRule,
    sidecar: &ContainerView,
    status: &ContainerStatusView,
    mains: &[&ContainerView],
) {
    if !ctx.pod.owned_by_job || mains.is_empty() || !status.is_running() || ctx.pod.deleting_since.is_some() {
        return;
    }
    let finishes: Option<Vec<Option<Timestamp>>> = mains
        .iter()
        .map(|m| m.status.as_ref().and_then(|s| s.terminated()).map(|t| t.finished_at.map(Stamp::timestamp)))
        .collect();
    let Some(finishes) = finishes else { return };
    let api = finishes.iter().copied().collect::<Option<Vec<_>>>().and_then(|f| f.into_iter().max());
    let since = ctx.since_or_clock(api, AlertName::JobBlockedBySidecar, &sidecar.name);
    let message = format!(
        "Job Pod {}: every main container finished {} ago but sidecar {} is still running, so the Job cannot complete; make it a native sidecar (initContainers with restartPolicy: Always)",
        ctx.pod.key(),
        elapsed(since, ctx.now),
        sidecar.name
    );
    ctx.hold(AlertName::JobBlockedBySidecar, rule, &sidecar.name, since, message);
}

fn shutdown_order(
    ctx: &mut Ctx,
    severity: Severity,
    sidecar: &ContainerView,
    status: &ContainerStatusView,
    mains: &[&ContainerView],
) {
    if ctx.pod.deleting_since.is_none() {
        return;
    }
    let Some(termination) = status.terminated() else { return };
    let stopped = termination.finished_at.map(Stamp::timestamp);
    let outlived_by = mains.iter().find(|m| match m.status.as_ref() {
        Some(s) if s.is_running() => true,
        Some(s) => match (s.terminated().and_then(|t| t.finished_at).map(Stamp::timestamp), stopped) {
            (Some(main_finished), Some(sidecar_finished)) => main_finished > sidecar_finished,
            _ => false,
        },
        None => false,
    });
    let Some(main) = outlived_by else { return };
    let since = ctx.since_or_clock(stopped, AlertName::SidecarStoppedBeforeMain, &sidecar.name);
    let message = format!(
        "Pod {} is terminating and sidecar {} stopped ({}) while main container {} was still running",
        ctx.pod.key(),
        sidecar.name,
        describe_termination(termination),
        main.name
    );
    ctx.fire(AlertName::SidecarStoppedBeforeMain, severity, &sidecar.name, None, Some(since), message);
}

fn misconfiguration(ctx: &mut Ctx, severity: Severity, sidecar: &ContainerView, kind: SidecarType) {
    let flags = sidecar.flags;
    let checks = [
        (!flags.contains(SpecFlags::READINESS_PROBE), Check::NoReadinessProbe, "has no readinessProbe, so nothing waits for it to be ready"),
        (
            kind == SidecarType::Native && !flags.contains(SpecFlags::STARTUP_PROBE),
            Check::NoStartupProbe,
            "is a native sidecar without a startupProbe, so main containers start almost in parallel with it",
        ),
        (
            kind == SidecarType::Legacy,
            Check::LegacySidecar,
            "is declared in spec.containers: it has no start or stop ordering and keeps Jobs running; declare it in initContainers with restartPolicy: Always",
        ),
        (flags.contains(SpecFlags::LATEST_IMAGE), Check::LatestImage, "uses an unpinned image (no tag, or :latest)"),
        (!flags.contains(SpecFlags::RESOURCES), Check::NoResources, "declares no resource requests or limits"),
        (flags.contains(SpecFlags::PORT_CONFLICT), Check::PortConflict, "declares a container port that another container of the Pod declares too"),
    ];
    for (failed, check, text) in checks {
        if !failed {
            continue;
        }
        let since = ctx.since_or_clock(
            ctx.pod.created_at.map(Stamp::timestamp),
            AlertName::SidecarMisconfigured,
            &sidecar.name,
        );
        let message = format!("Sidecar {} in Pod {} {text}", sidecar.name, ctx.pod.key());
        ctx.fire(AlertName::SidecarMisconfigured, severity, &sidecar.name, Some(check), Some(since), message);
    }
}
