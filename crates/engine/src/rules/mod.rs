//! The rules: one function per row of the alert table.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

mod drift;
mod health;
mod missing;
mod order;
mod spec_checks;

pub use missing::texts as missing_texts;
pub use order::{cronjob_concurrency, JOB_NEVER_COMPLETES};
pub use spec_checks::texts as check_texts;

use super::alert::{Alert, AlertName, AlertState, Check};
use super::history::PodHistory;
use super::injection::NamespaceMeta;
use super::name::Name;
use super::pod::{ContainerKind, ContainerView, PodView, Termination};
use super::policy::{CompiledPolicy, ForRule};
use super::sidecar_matcher::Identified;
use super::version_drift::Newest;
use sidecar_watch_api::{format_duration, Severity};

/// Consecutive restarts closer than this belong to one crash-loop episode: the kubelet's
/// back-off ceiling (5 minutes) plus a short run, doubled for slack.
pub(crate) const CRASH_LOOP_GAP: Duration = Duration::from_secs(600);
/// After a restart in a crash loop, a run this short still counts as part of the loop.
pub(crate) const CRASH_LOOP_BRIDGE: Duration = Duration::from_secs(300);
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
    /// The sidecars evaluated, as (index into `pod.containers`, how it was identified), in
    /// container order: the first ones the policy identifies, up to the cap.
    pub sidecars: Vec<(usize, Identified)>,
    /// Sidecars beyond the per-Pod limit, not evaluated.
    pub sidecars_skipped: usize,
}

/// `t + d`, saturating at the end of time rather than failing on absurd inputs.
pub(crate) fn add(t: Timestamp, d: Duration) -> Timestamp {
    SignedDuration::try_from(d).ok().and_then(|sd| t.checked_add(sd).ok()).unwrap_or(Timestamp::MAX)
}

/// `t - d`, saturating at the beginning of time.
pub(crate) fn sub(t: Timestamp, d: Duration) -> Timestamp {
    SignedDuration::try_from(d).ok().and_then(|sd| t.checked_sub(sd).ok()).unwrap_or(Timestamp::MIN)
}

/// A human duration between two instants ("6m12s"); never negative.
pub(crate) fn elapsed(since: Timestamp, now: Timestamp) -> String {
    let d = now.duration_since(since);
    format_duration(Duration::from_secs(u64::try_from(d.as_secs()).unwrap_or(0)))
}

/// What a Pod's evaluation reads beyond the Pod itself, and how many of its sidecars it
/// evaluates. The default knows nothing around the Pod and evaluates
/// [`DEFAULT_MAX_SIDECARS`].
#[derive(Clone, Copy, Debug)]
pub struct Around<'a> {
    /// The Pod's namespace: its labels and annotations are what injectors read for
    /// `SidecarMissing`. Without it, no injector's namespace marker counts.
    pub namespace: Option<&'a NamespaceMeta>,
    /// The newest version of each sidecar the Pod's workload runs more than one version of
    /// ([`SidecarVersions::newest_of`](crate::version_drift::SidecarVersions::newest_of)), for `SidecarVersionDrift`.
    pub newest: &'a [(Name, Newest)],
    /// Sidecars evaluated at most: the first ones, in container order; the rest are counted
    /// in [`Evaluation::sidecars_skipped`] and the Pod reports sprawl.
    pub max_sidecars: usize,
}

impl Default for Around<'_> {
    fn default() -> Self {
        Around { namespace: None, newest: &[], max_sidecars: DEFAULT_MAX_SIDECARS }
    }
}

/// Evaluates every enabled rule of `policy` on `pod` at `now`, with the Pod's history and
/// what is known `around` it. The index, `audit` and the tests all evaluate this way.
pub fn evaluate(
    pod: &PodView,
    policy: &CompiledPolicy,
    history: &PodHistory,
    now: Timestamp,
    around: Around<'_>,
) -> Evaluation {
    let max_sidecars = around.max_sidecars;
    let namespace = around.namespace;
    let mut sidecars: Vec<(usize, &ContainerView, Identified)> = Vec::new();
    let mut skipped = 0;
    let catalog_applies = policy.catalog_applies(pod);
    let mut mains: Vec<&ContainerView> = Vec::new();
    for (i, c) in pod.containers.iter().enumerate() {
        match policy.identify(c, catalog_applies) {
            Some(how) if sidecars.len() < max_sidecars => sidecars.push((i, c, how)),
            Some(_) => skipped += 1,
            None if c.kind == ContainerKind::Regular => mains.push(c),
            None => {}
        }
    }
    let mut ctx = Ctx { pod, history, now, out: Evaluation::default() };
    let rules = &policy.rules;
    for &(index, sidecar, how) in &sidecars {
        if let Some(status) = sidecar.status() {
            if rules.sidecar_not_ready.enabled {
                health::sidecar_not_ready(&mut ctx, rules.sidecar_not_ready, sidecar, status);
            }
            if rules.main_ready_sidecar_not_ready.enabled {
                health::main_ready_sidecar_not_ready(
                    &mut ctx,
                    rules.main_ready_sidecar_not_ready,
                    sidecar,
                    status,
                    &mains,
                );
            }
            if rules.restarts.enabled {
                health::restarts(&mut ctx, policy, (index, sidecar), status);
            }
            if rules.crash_loop.enabled {
                health::crash_loop(&mut ctx, rules.crash_loop, (index, sidecar), status);
            }
            if rules.oom_killed.enabled {
                health::oom_killed(&mut ctx, policy, sidecar, status);
            }
            if rules.startup_order.enabled {
                order::startup_order(&mut ctx, rules.startup_order.severity, sidecar, status, &mains);
            }
            if rules.job_blocked.enabled {
                order::job_blocked(&mut ctx, rules.job_blocked, sidecar, status, &mains);
            }
            if rules.shutdown_order.enabled {
                order::shutdown_order(&mut ctx, rules.shutdown_order.severity, sidecar, status, &mains);
            }
        } else if pod.is_template && rules.job_blocked.enabled {
            order::job_template_blocked(&mut ctx, rules.job_blocked.severity, sidecar, how, &mains);
        }
        if rules.version_drift.enabled && !drift::older_than_minimum(&mut ctx, rules.version_drift, policy, sidecar) {
            drift::behind_its_workload(&mut ctx, rules.version_drift, sidecar, around.newest);
        }
        if rules.misconfiguration.enabled {
            spec_checks::misconfiguration(&mut ctx, rules.misconfiguration.severity, (index, sidecar, how), &mains);
        }
    }
    if rules.sidecar_missing.enabled {
        missing::sidecar_missing(&mut ctx, rules.sidecar_missing.severity, policy, namespace);
    }
    if rules.misconfiguration.enabled {
        let names: Vec<&str> = sidecars.iter().map(|(_, c, _)| c.name.as_str()).collect();
        spec_checks::sprawl(&mut ctx, rules.misconfiguration.severity, &names, skipped);
    }
    let mut out = ctx.out;
    for alert in &mut out.alerts {
        alert.identified_by =
            sidecars.iter().find(|(_, c, _)| !alert.container.is_empty() && c.name == alert.container).map(|s| s.2.by);
    }
    out.sidecars = sidecars.iter().map(|(i, _, how)| (*i, *how)).collect();
    out.sidecars_skipped = skipped;
    out.alerts.sort_by(|a, b| a.key().cmp(&b.key()));
    out
}

pub(crate) struct Ctx<'a> {
    pod: &'a PodView,
    history: &'a PodHistory,
    now: Timestamp,
    out: Evaluation,
}

impl Ctx<'_> {
    pub(crate) fn wake_at(&mut self, at: Timestamp) {
        if at > self.now {
            self.out.next_change = Some(self.out.next_change.map_or(at, |t| t.min(at)));
        }
    }

    /// The API-derived start of a condition, or the operator's first-seen clock for it.
    pub(crate) fn since_or_clock(&mut self, api: Option<Timestamp>, alert: AlertName, container: &str) -> Timestamp {
        if let Some(t) = api {
            return t;
        }
        self.out.clocked.push((alert.as_str(), container.to_string()));
        self.history.clock(alert.as_str(), container).unwrap_or(self.now)
    }

    pub(crate) fn fire(
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
            identified_by: None,
        });
    }

    /// A condition that must hold for `rule.for_` before firing.
    pub(crate) fn hold(&mut self, name: AlertName, rule: ForRule, container: &str, since: Timestamp, message: String) {
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
            identified_by: None,
        });
    }
}

pub(crate) fn describe_termination(t: &Termination) -> String {
    let mut text =
        format!("last terminated with reason {} (exit code {})", t.reason.as_deref().unwrap_or("unknown"), t.exit_code);
    if let Some(message) = t.message.as_deref().filter(|m| !m.is_empty()) {
        text.push_str(&format!(": {message}"));
    }
    text
}
