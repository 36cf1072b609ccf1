//! The kubelet's doings to one Pod, as steps ([`Step`]): a container's new [`State`], a
//! probe result, a restart, a crash loop, the end of a termination. Each changes the
//! container statuses the way the kubelet reports it and says which kind of write it is
//! ([`Derive`]); [`PodDriver`](super::PodDriver) writes them, `recorded.rs` replays them.

use std::time::Duration;

use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting, ContainerStatus, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::now;
use super::spec::{Declared, Facts, Kind};
use super::status::{find_mut, last_terminated, put_condition, running, terminated_state, Derive};

/// A container state to set.
#[derive(Debug, Clone, PartialEq)]
pub enum State {
    /// Waiting with a reason (`CrashLoopBackOff`, `ImagePullBackOff`, ...).
    Waiting {
        /// Reason.
        reason: String,
        /// Message.
        message: Option<String>,
    },
    /// Running since now.
    Running,
    /// Terminated now.
    Terminated {
        /// Reason (`Error`, `Completed`, `OOMKilled`, ...).
        reason: String,
        /// Exit code.
        exit_code: i32,
    },
}

impl State {
    /// Waiting with `reason`.
    pub fn waiting(reason: &str) -> Self {
        State::Waiting { reason: reason.into(), message: None }
    }

    /// Terminated with `reason` and `exit_code`.
    pub fn terminated(reason: &str, exit_code: i32) -> Self {
        State::Terminated { reason: reason.into(), exit_code }
    }

    /// The Kubernetes representation, as of now (a terminated state without `startedAt`: the
    /// driver's own writes carry the run's start, see
    /// [`PodDriver::set_state`](super::PodDriver::set_state)).
    pub fn to_k8s(&self) -> ContainerState {
        self.at(&now())
    }

    /// The Kubernetes representation, as of `at`.
    fn at(&self, at: &Time) -> ContainerState {
        match self {
            State::Waiting { reason, message } => ContainerState {
                waiting: Some(ContainerStateWaiting { reason: Some(reason.clone()), message: message.clone() }),
                ..Default::default()
            },
            State::Running => ContainerState {
                running: Some(ContainerStateRunning { started_at: Some(at.clone()) }),
                ..Default::default()
            },
            State::Terminated { reason, exit_code } => {
                ContainerState { terminated: Some(terminated(reason, *exit_code, None, at)), ..Default::default() }
            }
        }
    }
}

/// An exit at `finished_at` of the run started at `started_at`.
fn terminated(reason: &str, exit_code: i32, started_at: Option<Time>, finished_at: &Time) -> ContainerStateTerminated {
    ContainerStateTerminated {
        reason: Some(reason.into()),
        exit_code,
        finished_at: Some(finished_at.clone()),
        started_at,
        ..Default::default()
    }
}

/// The start of the container's current or last run.
fn run_start(c: &ContainerStatus) -> Option<Time> {
    let state = c.state.as_ref()?;
    // `or_else`: an eager `terminated?` would return `None` for every running container.
    state.running.as_ref().and_then(|r| r.started_at.clone()).or_else(|| state.terminated.as_ref()?.started_at.clone())
}

/// A new run of the container from `at`: started unless a startup probe has yet to pass,
/// ready unless a startup or readiness probe has (recorded: without probes both at once).
fn new_run(d: &Declared, c: &mut ContainerStatus, at: &Time) {
    c.state = Some(State::Running.at(at));
    c.started = Some(!d.startup_probe);
    c.ready = !d.startup_probe && !d.readiness_probe;
}

/// A container moves to `state` the way the kubelet reports it.
pub(super) fn transition(d: &Declared, c: &mut ContainerStatus, state: &State, at: &Time) {
    let current = c.state.clone().unwrap_or_default();
    match state {
        State::Running => {
            if current.running.is_some() {
                return;
            }
            // A new instance after an exit: the exit becomes `lastState`, the count goes up.
            if let Some(t) = current.terminated {
                c.last_state = Some(ContainerState { terminated: Some(t), ..Default::default() });
                c.restart_count += 1;
            } else if current.waiting.is_some() && last_terminated(c).is_some() {
                c.restart_count += 1;
            }
            new_run(d, c, at);
        }
        State::Terminated { reason, exit_code } => {
            let started_at = current.running.and_then(|r| r.started_at);
            c.state = Some(ContainerState {
                terminated: Some(terminated(reason, *exit_code, started_at, at)),
                ..Default::default()
            });
        }
        State::Waiting { reason, message } => {
            if let Some(t) = current.terminated {
                c.last_state = Some(ContainerState { terminated: Some(t), ..Default::default() });
            }
            c.state = Some(State::Waiting { reason: reason.clone(), message: message.clone() }.at(at));
        }
    }
}

/// One thing the kubelet does to a Pod's status: each method of
/// [`PodDriver`](super::PodDriver) but `update`, `get` and `set_condition`.
#[derive(Debug, Clone)]
pub(super) enum Step {
    /// The first status.
    Admit,
    /// `PodReadyToStartContainers=True`.
    SandboxReady,
    /// A container's new state.
    State(String, State),
    /// A readiness probe result.
    Ready(String, bool),
    /// A startup probe result.
    Started(String, bool),
    /// Killed and started again in one write.
    Restart { container: String, reason: String, exit_code: i32 },
    /// Exited and waiting in `CrashLoopBackOff`, in one write (a native sidecar that exited
    /// 0 stays terminated instead).
    CrashLoop { container: String, reason: String, exit_code: i32 },
    /// The end of a termination: containers' states with how long ago they were reached.
    Stop(Vec<(String, State, Duration)>),
    /// Everything running and ready.
    RunAll,
}

impl Step {
    /// Which kind of kubelet write the step is.
    pub(super) fn derive(&self) -> Derive {
        match self {
            Step::Ready(..) => Derive::Readiness,
            Step::Started(..) => Derive::Startup,
            _ => Derive::Sync,
        }
    }

    /// Applies the step; `Err` names a container the Pod does not have.
    pub(super) fn apply(&self, facts: &Facts, s: &mut PodStatus, at: &Time) -> Result<(), String> {
        let mut one = |name: &str, f: &mut dyn FnMut(&Declared, &mut ContainerStatus)| {
            let d = facts.declared(name).ok_or_else(|| name.to_string())?;
            f(d, find_mut(s, name).ok_or_else(|| name.to_string())?);
            Ok::<(), String>(())
        };
        match self {
            Step::Admit => {}
            Step::SandboxReady => {
                put_condition(s.conditions.get_or_insert_with(Vec::new), "PodReadyToStartContainers", (true, None), at)
            }
            Step::State(name, state) => one(name, &mut |d, c| transition(d, c, state, at))?,
            Step::Ready(name, ready) => one(name, &mut |_, c| c.ready = *ready && running(c))?,
            Step::Started(name, started) => one(name, &mut |_, c| c.started = Some(*started && running(c)))?,
            Step::Restart { container, reason, exit_code } => one(container, &mut |d, c| {
                c.last_state = Some(ContainerState {
                    terminated: Some(terminated(reason, *exit_code, run_start(c), at)),
                    ..Default::default()
                });
                c.restart_count += 1;
                new_run(d, c, at);
            })?,
            Step::CrashLoop { container, reason, exit_code } => one(container, &mut |d, c| {
                c.state = Some(ContainerState {
                    terminated: Some(terminated(reason, *exit_code, run_start(c), at)),
                    ..Default::default()
                });
                // Kubelet 1.34 and 1.37 leave a native sidecar that exited 0 terminated
                // (`Completed`) for its whole back-off: no `CrashLoopBackOff` is written.
                if !(d.kind == Kind::Sidecar && *exit_code == 0) {
                    transition(d, c, &State::waiting("CrashLoopBackOff"), at);
                }
            })?,
            Step::Stop(stops) => {
                for (name, state, ago) in stops {
                    let ago = jiff::SignedDuration::try_from(*ago).unwrap_or_default();
                    let finished = Time(at.0.checked_sub(ago).unwrap_or(at.0));
                    one(name, &mut |d, c| transition(d, c, state, &finished))?;
                }
                for d in &facts.containers {
                    if let Some(c) = find_mut(s, &d.name).filter(|c| running(c)) {
                        transition(d, c, &State::terminated("Completed", 0), at);
                    }
                }
            }
            Step::RunAll => {
                for d in &facts.containers {
                    let Some(c) = find_mut(s, &d.name) else { continue };
                    if d.kind == Kind::Init {
                        if terminated_state(c).is_none_or(|t| t.exit_code != 0) {
                            c.state = Some(ContainerState {
                                terminated: Some(terminated("Completed", 0, Some(at.clone()), at)),
                                ..Default::default()
                            });
                        }
                        continue;
                    }
                    transition(d, c, &State::Running, at);
                    c.started = Some(true);
                    c.ready = true;
                }
            }
        }
        Ok(())
    }
}
