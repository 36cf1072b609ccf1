//! The seed's failure scenarios as timelines of kubelet status writes on real Pods, with a
//! native and a legacy sidecar each: what the write at offset 0 (the one that causes the
//! alert) and the writes around it do, and which sidecar-watch alert is due when.

use std::time::Duration;

use anyhow::{Context, Result};
use k8s_openapi::api::core::v1::{ContainerStatus, Pod, PodStatus};
use kube::api::{Api, DeleteParams, PostParams};
use kube::Client;
use serde_json::json;

use sidecar_watch_harness::kubelet::{self, test_pod, PodDriver, State};

/// The namespace of the scenario Pods.
pub const NAMESPACE: &str = "ksm-scenarios";
/// The sidecar's name: one the seed's regex matches (`istio-proxy`) and the catalog knows.
pub const SIDECAR: &str = "istio-proxy";

/// How the sidecar is declared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Sidecar {
    /// An init container with `restartPolicy: Always`.
    Native,
    /// A regular container.
    Legacy,
}

impl Sidecar {
    /// `native` / `legacy`.
    pub fn name(self) -> &'static str {
        match self {
            Sidecar::Native => "native",
            Sidecar::Legacy => "legacy",
        }
    }
}

/// A failure scenario of the seed articles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scenario {
    NeverReady,
    CrashLoop,
    FrequentRestarts,
    OomKill,
    JobHeldOpen,
    StartedBeforeReady,
    StoppedBeforeMain,
}

/// One status write (or deletion) of a timeline.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Step {
    /// The app runs and is ready; the sidecar runs and is not ready.
    AppReadySidecarNot,
    /// The sidecar's run ends (`Error`, exit 1) and the kubelet backs off (`CrashLoopBackOff`).
    Crash,
    /// The back-off is over: the sidecar runs again, not ready.
    RunAgain,
    /// The sidecar is restarted after `reason`; ready at once or not.
    Restart {
        reason: &'static str,
        exit_code: i32,
        ready: bool,
    },
    SidecarReady,
    /// The main container starts (not ready yet).
    MainRuns,
    MainReady,
    /// The main container exits 0.
    MainCompleted,
    /// The sidecar exits 0 (it got SIGTERM first).
    SidecarCompleted,
    /// `DELETE` with the Pod's grace period: `deletionTimestamp` is set.
    Delete,
    /// The kubelet removes the Pod (grace period 0).
    Remove,
}

impl Scenario {
    /// Every scenario, in table order.
    pub const ALL: [Scenario; 7] = [
        Scenario::NeverReady,
        Scenario::CrashLoop,
        Scenario::FrequentRestarts,
        Scenario::OomKill,
        Scenario::JobHeldOpen,
        Scenario::StartedBeforeReady,
        Scenario::StoppedBeforeMain,
    ];

    /// What happens, for the table.
    pub fn title(self) -> &'static str {
        match self {
            Scenario::NeverReady => "sidecar never ready, app ready",
            Scenario::CrashLoop => "sidecar crash loop",
            Scenario::FrequentRestarts => "frequent restarts (3 in 1 min)",
            Scenario::OomKill => "sidecar OOM-killed",
            Scenario::JobHeldOpen => "Job held open by its sidecar",
            Scenario::StartedBeforeReady => "main started before sidecar ready",
            Scenario::StoppedBeforeMain => "sidecar stopped before main",
        }
    }

    fn slug(self) -> &'static str {
        match self {
            Scenario::NeverReady => "never-ready",
            Scenario::CrashLoop => "crash-loop",
            Scenario::FrequentRestarts => "restarts",
            Scenario::OomKill => "oom",
            Scenario::JobHeldOpen => "job",
            Scenario::StartedBeforeReady => "startup",
            Scenario::StoppedBeforeMain => "shutdown",
        }
    }

    /// The Pod of this scenario with this kind of sidecar.
    pub fn pod_name(self, sidecar: Sidecar) -> String {
        format!("{}-{}", self.slug(), sidecar.name())
    }

    /// The kinds of sidecar it runs with: a native sidecar cannot hold a Job open (the
    /// kubelet stops it when the main containers end), so that one is legacy only.
    pub fn sidecars(self) -> &'static [Sidecar] {
        match self {
            Scenario::JobHeldOpen => &[Sidecar::Legacy],
            _ => &[Sidecar::Native, Sidecar::Legacy],
        }
    }

    /// sidecar-watch's alerts for it and when each is due, in seconds after the causing
    /// write at the policy's defaults: the rule's `for`, or for the restart rule the restart
    /// that reaches its threshold.
    pub fn due(self) -> &'static [(&'static str, u64)] {
        match self {
            Scenario::NeverReady => &[("MainContainerReadyButSidecarNot", 120), ("SidecarContainerNotReady", 300)],
            Scenario::CrashLoop => &[("SidecarRestartingFrequently", 40), ("SidecarCrashLooping", 300)],
            Scenario::FrequentRestarts => &[("SidecarRestartingFrequently", 0)],
            Scenario::OomKill => &[("SidecarOOMKilled", 0)],
            Scenario::JobHeldOpen => &[("JobBlockedBySidecar", 300)],
            Scenario::StartedBeforeReady => &[("MainStartedBeforeSidecarReady", 0)],
            Scenario::StoppedBeforeMain => &[("SidecarStoppedBeforeMain", 0)],
        }
    }

    /// The writes, at seconds from the causing one (offset 0), up to `until`.
    pub fn timeline(self, until: f64) -> Vec<(f64, Step)> {
        match self {
            Scenario::NeverReady => vec![(0.0, Step::AppReadySidecarNot)],
            Scenario::CrashLoop => {
                // The kubelet's back-off: 10 s, doubling, at most 5 min; each run fails its
                // liveness probe after 5 s.
                let (mut t, mut backoff, mut steps) = (0.0, 10.0, Vec::new());
                while t < until {
                    steps.push((t, Step::Crash));
                    steps.push((t + backoff, Step::RunAgain));
                    t += backoff + 5.0;
                    backoff = f64::min(backoff * 2.0, 300.0);
                }
                steps.retain(|(t, _)| *t < until);
                steps
            }
            Scenario::FrequentRestarts => {
                let restart = Step::Restart { reason: "Error", exit_code: 1, ready: false };
                vec![
                    (-60.0, restart),
                    (-58.0, Step::SidecarReady),
                    (-30.0, restart),
                    (-28.0, Step::SidecarReady),
                    (0.0, restart),
                    (2.0, Step::SidecarReady),
                ]
            }
            Scenario::OomKill => vec![
                (0.0, Step::Restart { reason: "OOMKilled", exit_code: 137, ready: false }),
                (3.0, Step::SidecarReady),
            ],
            Scenario::JobHeldOpen => vec![(0.0, Step::MainCompleted)],
            Scenario::StartedBeforeReady => {
                vec![(0.0, Step::MainRuns), (5.0, Step::SidecarReady), (8.0, Step::MainReady)]
            }
            Scenario::StoppedBeforeMain => vec![
                (-1.0, Step::Delete),
                (0.0, Step::SidecarCompleted),
                (20.0, Step::MainCompleted),
                (21.0, Step::Remove),
            ],
        }
    }
}

/// The main container's name.
fn main_name(scenario: Scenario) -> &'static str {
    if scenario == Scenario::JobHeldOpen {
        "worker"
    } else {
        "app"
    }
}

/// The Pod manifest: labelled out of the benchmark's cluster policies (`logging: none`), so
/// only the scenarios' own SidecarPolicy selects it.
fn manifest(scenario: Scenario, sidecar: Sidecar, job_uid: &str) -> serde_json::Value {
    let name = scenario.pod_name(sidecar);
    let labels = [("app", scenario.slug()), ("logging", "none")];
    let main = main_name(scenario);
    let mut pod = match sidecar {
        Sidecar::Native => test_pod(&name, &labels, &[main], &[SIDECAR]),
        Sidecar::Legacy => test_pod(&name, &labels, &[SIDECAR, main], &[]),
    };
    if scenario == Scenario::JobHeldOpen {
        pod["metadata"]["ownerReferences"] = json!([{
            "apiVersion": "batch/v1", "kind": "Job", "name": "report", "uid": job_uid,
            "controller": true, "blockOwnerDeletion": true,
        }]);
        pod["spec"]["restartPolicy"] = json!("Never");
    }
    pod
}

/// The scenarios' policy: every rule at its default, durations divided by `scale`.
pub fn policy(scale: u32) -> serde_json::Value {
    let d =
        |text: &str| sidecar_watch_harness::ksm::rules::scale_duration(text, scale).unwrap_or_else(|| text.to_string());
    json!({
        "apiVersion": "sidecarwatch.io/v1alpha1", "kind": "SidecarPolicy",
        "metadata": {"name": "scenarios", "namespace": NAMESPACE},
        "spec": {"rules": {
            "sidecarNotReady": {"for": d("5m")},
            "mainReadySidecarNotReady": {"for": d("2m")},
            "restarts": {"threshold": 3, "window": d("15m")},
            "crashLoop": {"for": d("5m")},
            "oomKilled": {"window": d("1h")},
            "jobBlocked": {"for": d("5m")},
        }}
    })
}

/// A suspended Job the Job scenario's Pod names as its owner (no controller runs).
pub fn job() -> serde_json::Value {
    json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": "report", "namespace": NAMESPACE},
        "spec": {"suspend": true, "template": {"spec": {"restartPolicy": "Never",
            "containers": [{"name": "worker", "image": "busybox"}]}}},
    })
}

fn find<'a>(s: &'a mut PodStatus, name: &str) -> Option<&'a mut ContainerStatus> {
    s.container_statuses
        .iter_mut()
        .flatten()
        .chain(s.init_container_statuses.iter_mut().flatten())
        .find(|c| c.name == name)
}

/// Creates and binds the scenario's Pod and writes its status before the timeline: nothing
/// for the never-ready Pod (its first status is the causing write), the sidecar started and
/// not ready for the start-order one, everything running and ready for the others.
pub async fn set_up(client: &Client, scenario: Scenario, sidecar: Sidecar, job_uid: &str) -> Result<PodDriver> {
    let name = scenario.pod_name(sidecar);
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    let pod: Pod = serde_json::from_value(manifest(scenario, sidecar, job_uid))?;
    pods.create(&PostParams::default(), &pod).await.with_context(|| format!("creating Pod {name}"))?;
    kubelet::bind(client, NAMESPACE, &name).await.with_context(|| format!("binding Pod {name}"))?;
    let driver = PodDriver::new(client.clone(), NAMESPACE, &name);
    match scenario {
        Scenario::NeverReady => {}
        Scenario::StartedBeforeReady => {
            driver
                .update(|_, s| {
                    if let Some(c) = find(s, SIDECAR) {
                        c.state = Some(State::Running.to_k8s());
                        c.started = Some(true);
                    }
                    Ok(())
                })
                .await?;
        }
        _ => {
            driver.run_all().await?;
        }
    }
    Ok(driver)
}

/// Applies one step to the scenario's Pod, again after a broken connection but not after an
/// answer from the server. kube-apiserver closes connections idle for 90 s (its
/// `IdleTimeout`), about as long as the client keeps one pooled, so a timeline that waited
/// that long can send on a connection the server is closing: seen once in a 10k run.
pub async fn apply(
    client: &Client,
    driver: &PodDriver,
    scenario: Scenario,
    sidecar: Sidecar,
    step: Step,
) -> Result<()> {
    let mut attempt = 0;
    loop {
        match apply_once(client, driver, scenario, sidecar, step).await {
            Err(e) if attempt < 3 && e.chain().any(is_transport_error) => {
                attempt += 1;
                say!("scenarios: {step:?} on Pod {} again after: {e:#}", scenario.pod_name(sidecar));
            }
            other => return other,
        }
    }
}

fn is_transport_error(e: &(dyn std::error::Error + 'static)) -> bool {
    let kube_error = e.downcast_ref::<kube::Error>().or_else(|| match e.downcast_ref::<kubelet::KubeletError>() {
        Some(kubelet::KubeletError::Kube(k)) => Some(k),
        _ => None,
    });
    matches!(kube_error, Some(kube::Error::HyperError(_) | kube::Error::Service(_)))
}

async fn apply_once(
    client: &Client,
    driver: &PodDriver,
    scenario: Scenario,
    sidecar: Sidecar,
    step: Step,
) -> Result<()> {
    let name = scenario.pod_name(sidecar);
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    let main = main_name(scenario);
    match step {
        Step::Delete => {
            pods.delete(&name, &DeleteParams::default()).await?;
            return Ok(());
        }
        Step::Remove => {
            pods.delete(&name, &DeleteParams::default().grace_period(0)).await?;
            return Ok(());
        }
        _ => {}
    }
    driver
        .update(|_, s| {
            match step {
                Step::AppReadySidecarNot => {
                    for (c, ready) in [(main, true), (SIDECAR, false)] {
                        if let Some(c) = find(s, c) {
                            c.state = Some(State::Running.to_k8s());
                            c.started = Some(true);
                            c.ready = ready;
                        }
                    }
                }
                Step::Crash => {
                    if let Some(c) = find(s, SIDECAR) {
                        c.last_state = Some(State::terminated("Error", 1).to_k8s());
                        c.restart_count += 1;
                        c.state = Some(
                            State::Waiting {
                                reason: "CrashLoopBackOff".into(),
                                message: Some(format!("back-off restarting failed container {SIDECAR}")),
                            }
                            .to_k8s(),
                        );
                        c.started = Some(false);
                        c.ready = false;
                    }
                }
                Step::RunAgain => {
                    if let Some(c) = find(s, SIDECAR) {
                        c.state = Some(State::Running.to_k8s());
                        c.started = Some(true);
                        c.ready = false;
                    }
                }
                Step::Restart { reason, exit_code, ready } => {
                    if let Some(c) = find(s, SIDECAR) {
                        c.last_state = Some(State::terminated(reason, exit_code).to_k8s());
                        c.restart_count += 1;
                        c.state = Some(State::Running.to_k8s());
                        c.started = Some(true);
                        c.ready = ready;
                    }
                }
                Step::SidecarReady | Step::MainReady => {
                    let who = if step == Step::MainReady { main } else { SIDECAR };
                    if let Some(c) = find(s, who) {
                        c.ready = true;
                    }
                }
                Step::MainRuns => {
                    if let Some(c) = find(s, main) {
                        c.state = Some(State::Running.to_k8s());
                        c.started = Some(true);
                        c.ready = false;
                    }
                }
                Step::MainCompleted | Step::SidecarCompleted => {
                    let who = if step == Step::MainCompleted { main } else { SIDECAR };
                    if let Some(c) = find(s, who) {
                        c.state = Some(State::terminated("Completed", 0).to_k8s());
                        c.started = Some(false);
                        c.ready = false;
                    }
                }
                Step::Delete | Step::Remove => {}
            }
            Ok(())
        })
        .await
        .with_context(|| format!("{step:?} on Pod {name}"))?;
    Ok(())
}

/// How long the timeline runs before its causing write (its earliest step, at least 0).
pub fn lead(scenario: Scenario) -> Duration {
    let first = scenario.timeline(0.0).first().map_or(0.0, |(t, _)| *t);
    Duration::from_secs_f64((-first).max(0.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crash_loop_backs_off_like_the_kubelet() {
        let steps = Scenario::CrashLoop.timeline(480.0);
        let crashes: Vec<f64> = steps.iter().filter(|(_, s)| *s == Step::Crash).map(|(t, _)| *t).collect();
        assert_eq!(crashes, [0.0, 15.0, 40.0, 85.0, 170.0, 335.0]);
        // The third restart is the one that reaches the restart rule's threshold.
        assert_eq!(Scenario::CrashLoop.due()[0], ("SidecarRestartingFrequently", 40));
    }

    #[test]
    fn every_scenario_has_a_causing_write_at_zero() {
        for s in Scenario::ALL {
            assert!(s.timeline(480.0).iter().any(|(t, _)| *t == 0.0), "{s:?}");
            assert!(!s.due().is_empty());
        }
        assert_eq!(lead(Scenario::FrequentRestarts), Duration::from_secs(60));
        assert_eq!(policy(10)["spec"]["rules"]["crashLoop"]["for"], "30s");
        assert_eq!(policy(1)["spec"]["rules"]["restarts"]["window"], "900s");
    }
}
