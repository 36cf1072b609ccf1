//! Every rule's settings with the spec's defaults filled in, and their compilation from the
//! policy spec (errors name the field).

use std::time::Duration;

use sidecar_watch_api::bounds::MAX_DURATION_CHARS;
use sidecar_watch_api::{
    clip, parse_duration, quote, DecodeError, ForRuleSpec, InstantRuleSpec, RestartsRuleSpec, RulesSpec, Severity,
    WindowRuleSpec,
};

/// A spec field that cannot be used, with the path of the field (`spec.rules.restarts.window`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct SpecError {
    /// The JSON path of the offending field.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

impl From<DecodeError> for SpecError {
    fn from(e: DecodeError) -> Self {
        SpecError::new(if e.path.is_empty() { "spec".into() } else { e.path }, e.message)
    }
}

impl SpecError {
    /// An error about `field`. Both are clipped ([`clip`]): a message that quotes a value
    /// should already do so with [`quote`], but one from another library may embed it whole,
    /// and every status condition, Event and log line shows this error.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { field: clip(&field.into()), message: clip(&message.into()) }
    }

    /// `field` holds `count` items or characters (`what`) where at most `max` are allowed:
    /// the bounds of [`sidecar_watch_api::bounds`], checked here for a policy that arrives without
    /// the CRD schema that declares them.
    pub fn check_size(field: &str, what: &str, count: usize, max: usize) -> Result<(), SpecError> {
        if count <= max {
            return Ok(());
        }
        Err(SpecError::new(field, format!("{count} {what}, at most {max} allowed")))
    }
}

/// The largest restart threshold accepted (the schema says so too).
pub(crate) const MAX_THRESHOLD: u32 = 1000;

/// The longest `for` or `window` accepted; longer ones are almost certainly mistakes.
const MAX_DURATION: Duration = Duration::from_secs(366 * 86_400);

/// A rule that fires after its condition held for `for_`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ForRule {
    /// Evaluate the rule at all.
    pub enabled: bool,
    /// The alert's severity.
    pub severity: Severity,
    /// How long the condition must hold.
    pub for_: Duration,
}

/// The restart-frequency rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RestartsRule {
    /// Evaluate the rule at all.
    pub enabled: bool,
    /// The alert's severity.
    pub severity: Severity,
    /// Restarts in `window` that fire it.
    pub threshold: u32,
    /// The counting window.
    pub window: Duration,
}

/// A rule about an event that stays relevant for `window`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WindowRule {
    /// Evaluate the rule at all.
    pub enabled: bool,
    /// The alert's severity.
    pub severity: Severity,
    /// How long the event keeps the alert active.
    pub window: Duration,
}

/// A rule that fires when its condition is seen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InstantRule {
    /// Evaluate the rule at all.
    pub enabled: bool,
    /// The alert's severity.
    pub severity: Severity,
}

/// Every rule of a policy with defaults applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rules {
    /// `SidecarContainerNotReady`.
    pub sidecar_not_ready: ForRule,
    /// `MainContainerReadyButSidecarNot`.
    pub main_ready_sidecar_not_ready: ForRule,
    /// `SidecarRestartingFrequently`.
    pub restarts: RestartsRule,
    /// `SidecarCrashLooping`.
    pub crash_loop: ForRule,
    /// `SidecarOOMKilled`.
    pub oom_killed: WindowRule,
    /// `MainStartedBeforeSidecarReady`.
    pub startup_order: InstantRule,
    /// `JobBlockedBySidecar`.
    pub job_blocked: ForRule,
    /// `SidecarStoppedBeforeMain`.
    pub shutdown_order: InstantRule,
    /// `SidecarMissing`.
    pub sidecar_missing: InstantRule,
    /// `SidecarVersionDrift`.
    pub version_drift: ForRule,
    /// `SidecarMisconfigured`.
    pub misconfiguration: InstantRule,
    /// `SidecarInjectionFailed` (on a workload).
    pub injection_failed: ForRule,
    /// `RolloutBlockedBySidecar` (on a workload).
    pub rollout_blocked: ForRule,
}

impl Default for Rules {
    fn default() -> Self {
        let for_rule = |for_secs, severity| ForRule { enabled: true, severity, for_: Duration::from_secs(for_secs) };
        let instant = |severity| InstantRule { enabled: true, severity };
        Rules {
            sidecar_not_ready: for_rule(300, Severity::Warning),
            main_ready_sidecar_not_ready: for_rule(120, Severity::Warning),
            restarts: RestartsRule {
                enabled: true,
                severity: Severity::Critical,
                threshold: 3,
                window: Duration::from_secs(900),
            },
            crash_loop: for_rule(300, Severity::Critical),
            oom_killed: WindowRule { enabled: true, severity: Severity::Warning, window: Duration::from_secs(3600) },
            startup_order: instant(Severity::Warning),
            job_blocked: for_rule(300, Severity::Warning),
            shutdown_order: instant(Severity::Warning),
            sidecar_missing: instant(Severity::Warning),
            version_drift: for_rule(3600, Severity::Warning),
            misconfiguration: instant(Severity::Info),
            // 2m: one retried failure while an injector restarts does not page.
            injection_failed: for_rule(120, Severity::Critical),
            rollout_blocked: for_rule(600, Severity::Warning),
        }
    }
}

fn duration_field(value: Option<&str>, field: &str, default: Duration) -> Result<Duration, SpecError> {
    let Some(text) = value else { return Ok(default) };
    SpecError::check_size(field, "characters", text.chars().count(), MAX_DURATION_CHARS)?;
    let parsed = parse_duration(text).map_err(|e| SpecError::new(field, e.to_string()))?;
    if parsed > MAX_DURATION {
        return Err(SpecError::new(field, format!("{} is longer than a year", quote(text))));
    }
    Ok(parsed)
}

fn compile_for(spec: Option<&ForRuleSpec>, field: &str, default: ForRule) -> Result<ForRule, SpecError> {
    let Some(spec) = spec else { return Ok(default) };
    Ok(ForRule {
        enabled: spec.enabled.unwrap_or(true),
        severity: spec.severity.unwrap_or(default.severity),
        for_: duration_field(spec.for_.as_deref(), &format!("{field}.for"), default.for_)?,
    })
}

fn compile_instant(spec: Option<&InstantRuleSpec>, default: InstantRule) -> InstantRule {
    spec.map_or(default, |s| InstantRule {
        enabled: s.enabled.unwrap_or(true),
        severity: s.severity.unwrap_or(default.severity),
    })
}

fn compile_window(spec: Option<&WindowRuleSpec>, field: &str, default: WindowRule) -> Result<WindowRule, SpecError> {
    let Some(spec) = spec else { return Ok(default) };
    let window = duration_field(spec.window.as_deref(), &format!("{field}.window"), default.window)?;
    if window.is_zero() {
        return Err(SpecError::new(format!("{field}.window"), "must be longer than 0"));
    }
    Ok(WindowRule {
        enabled: spec.enabled.unwrap_or(true),
        severity: spec.severity.unwrap_or(default.severity),
        window,
    })
}

fn compile_restarts(spec: Option<&RestartsRuleSpec>, default: RestartsRule) -> Result<RestartsRule, SpecError> {
    const FIELD: &str = "spec.rules.restarts";
    let Some(spec) = spec else { return Ok(default) };
    let threshold = spec.threshold.unwrap_or(default.threshold);
    if !(1..=MAX_THRESHOLD).contains(&threshold) {
        return Err(SpecError::new(
            format!("{FIELD}.threshold"),
            format!("must be between 1 and {MAX_THRESHOLD}, got {threshold}"),
        ));
    }
    let window = duration_field(spec.window.as_deref(), &format!("{FIELD}.window"), default.window)?;
    if window.is_zero() {
        return Err(SpecError::new(format!("{FIELD}.window"), "must be longer than 0"));
    }
    Ok(RestartsRule {
        enabled: spec.enabled.unwrap_or(true),
        severity: spec.severity.unwrap_or(default.severity),
        threshold,
        window,
    })
}

/// The rules of a spec with defaults applied.
pub(crate) fn compile_rules(spec: Option<&RulesSpec>) -> Result<Rules, SpecError> {
    let d = Rules::default();
    let Some(s) = spec else { return Ok(d) };
    Ok(Rules {
        sidecar_not_ready: compile_for(
            s.sidecar_not_ready.as_ref(),
            "spec.rules.sidecarNotReady",
            d.sidecar_not_ready,
        )?,
        main_ready_sidecar_not_ready: compile_for(
            s.main_ready_sidecar_not_ready.as_ref(),
            "spec.rules.mainReadySidecarNotReady",
            d.main_ready_sidecar_not_ready,
        )?,
        restarts: compile_restarts(s.restarts.as_ref(), d.restarts)?,
        crash_loop: compile_for(s.crash_loop.as_ref(), "spec.rules.crashLoop", d.crash_loop)?,
        oom_killed: compile_window(s.oom_killed.as_ref(), "spec.rules.oomKilled", d.oom_killed)?,
        startup_order: compile_instant(s.startup_order.as_ref(), d.startup_order),
        job_blocked: compile_for(s.job_blocked.as_ref(), "spec.rules.jobBlocked", d.job_blocked)?,
        shutdown_order: compile_instant(s.shutdown_order.as_ref(), d.shutdown_order),
        sidecar_missing: compile_instant(s.sidecar_missing.as_ref(), d.sidecar_missing),
        version_drift: compile_for(s.version_drift.as_ref(), "spec.rules.versionDrift", d.version_drift)?,
        misconfiguration: compile_instant(s.misconfiguration.as_ref(), d.misconfiguration),
        injection_failed: compile_for(s.injection_failed.as_ref(), "spec.rules.injectionFailed", d.injection_failed)?,
        rollout_blocked: compile_for(s.rollout_blocked.as_ref(), "spec.rules.rolloutBlocked", d.rollout_blocked)?,
    })
}
