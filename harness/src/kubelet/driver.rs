//! [`PodDriver`]: the kubelet's writes of one Pod's status, through the API server.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, PodSpec, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, PostParams};
use kube::core::{ApiResource, DynamicObject};
use kube::Client;

use super::spec::Facts;
use super::status::{ensure_statuses, Derive};
use super::steps::Step;
use super::{now, set_condition, KubeletError, Result, State};

/// Drives the status of one Pod like a kubelet would.
#[derive(Clone)]
pub struct PodDriver {
    api: Api<Pod>,
    raw: Api<DynamicObject>,
    name: String,
}

impl std::fmt::Debug for PodDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PodDriver").field("name", &self.name).finish()
    }
}

impl PodDriver {
    /// Driver for Pod `name` in `namespace`.
    pub fn new(client: Client, namespace: &str, name: &str) -> Self {
        Self {
            api: Api::namespaced(client.clone(), namespace),
            raw: Api::namespaced_with(client, namespace, &ApiResource::erase::<Pod>(&())),
            name: name.into(),
        }
    }

    /// The Pod's current state.
    pub async fn get(&self) -> Result<Pod> {
        Ok(self.api.get(&self.name).await?)
    }

    /// The Pod, and what the kubelet reads in its spec (including fields newer than the
    /// crate's Kubernetes types, such as `restartPolicyRules`).
    async fn read(&self) -> Result<(Pod, Facts)> {
        let raw = serde_json::to_value(self.raw.get(&self.name).await?).map_err(kube::Error::SerdeError)?;
        let pod: Pod = serde_json::from_value(raw.clone()).map_err(kube::Error::SerdeError)?;
        let facts = Facts::new(&pod.metadata, pod.spec.as_ref().unwrap_or(&PodSpec::default()), &raw["spec"]);
        Ok((pod, facts))
    }

    /// The kubelet's writes for one change: `f` changes the status read, `derive` says what
    /// the write derives, and the kubelet's follow-up writes come after (a held-back terminal
    /// phase, the pod sync after a startup probe result). Returns the Pod last written.
    async fn write<F>(&self, derive: Derive, mut f: F) -> Result<Pod>
    where
        F: FnMut(&Facts, &PodSpec, &mut PodStatus, &Time) -> Result<()>,
    {
        let (mut pod, mut next) = self.put(derive, &mut f, false).await?;
        while let Some(d) = next {
            (pod, next) = self.put(d, &mut |_: &Facts, _: &PodSpec, _: &mut PodStatus, _: &Time| Ok(()), true).await?;
        }
        Ok(pod)
    }

    /// One read-modify-write (`PUT /status` with the resourceVersion read), retried on 409
    /// Conflict; a follow-up that changes nothing is not written.
    async fn put<F>(&self, derive: Derive, f: &mut F, follow_up: bool) -> Result<(Pod, Option<Derive>)>
    where
        F: FnMut(&Facts, &PodSpec, &mut PodStatus, &Time) -> Result<()>,
    {
        for _ in 0..20 {
            let (mut pod, facts) = self.read().await?;
            let before = pod.status.clone();
            let at = now();
            let spec = pod.spec.clone().unwrap_or_default();
            let status = pod.status.get_or_insert_with(Default::default);
            ensure_statuses(&spec, status);
            f(&facts, &spec, status, &at)?;
            let next = derive.apply(&facts, status, &at);
            if follow_up && pod.status == before {
                return Ok((pod, next));
            }
            match self.api.replace_status(&self.name, &PostParams::default(), &pod).await {
                Ok(p) => return Ok((p, next)),
                Err(kube::Error::Api(s)) if s.code == 409 => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(KubeletError::Conflicts(self.name.clone()))
    }

    /// The kubelet's writes for `step`.
    async fn step(&self, step: Step) -> Result<Pod> {
        let pod = self.name.clone();
        self.write(step.derive(), |facts, _, status, at| {
            step.apply(facts, status, at)
                .map_err(|container| KubeletError::NoSuchContainer { pod: pod.clone(), container })
        })
        .await
    }

    /// Read-modify-write of the Pod status (`PUT /status`), retried on 409 Conflict.
    /// Status entries for every container in the spec are created on first use (the
    /// kubelet's first status); after `f`, what the kubelet derives from the container
    /// statuses in a pod sync is written with them (see the module's documentation). A Pod
    /// that finishes (`Succeeded`, `Failed`) without being deleted gets its phase in a second
    /// write, as from the kubelet.
    pub async fn update<F>(&self, mut f: F) -> Result<Pod>
    where
        F: FnMut(&PodSpec, &mut PodStatus) -> Result<()>,
    {
        self.write(Derive::Sync, |_, spec, status, _| f(spec, status)).await
    }

    /// The kubelet's first status of the Pod: every container waiting (`PodInitializing` or
    /// `ContainerCreating`), phase `Pending`, `startTime`, and its conditions False but
    /// `Initialized` of a Pod without init containers.
    pub async fn admit(&self) -> Result<Pod> {
        self.step(Step::Admit).await
    }

    /// The sandbox is up (`PodReadyToStartContainers=True`), no container runs yet: the
    /// kubelet's second status (recorded 0.5–1.5 s after its first).
    pub async fn sandbox_ready(&self) -> Result<Pod> {
        self.step(Step::SandboxReady).await
    }

    /// Container `container` moves to `state`, in one write, as the kubelet reports it:
    /// - `Running`: started, and ready, unless the spec has a startup probe (not started yet,
    ///   see [`Self::set_started`]) or a readiness probe (not ready yet, [`Self::set_ready`]).
    ///   After an exit (terminated, or waiting with a `lastState`), a new instance: the exit
    ///   becomes `lastState.terminated` and `restartCount` goes up by one. Already running:
    ///   nothing changes.
    /// - `Terminated`: finished now, `startedAt` the run's start; not started, not ready (a
    ///   regular init container that completed is ready); `restartCount` unchanged.
    /// - `Waiting`: after an exit, the exit moves to `lastState`; `restartCount` unchanged.
    pub async fn set_state(&self, container: &str, state: State) -> Result<Pod> {
        self.step(Step::State(container.into(), state)).await
    }

    /// A readiness probe result: `ready` of a running, started container (the kubelet takes
    /// none from a container that does not run or has not started), with `Ready` and
    /// `ContainersReady` in the same write and nothing else.
    pub async fn set_ready(&self, container: &str, ready: bool) -> Result<Pod> {
        self.step(Step::Ready(container.into(), ready)).await
    }

    /// A startup probe result: `started` of a running container, alone in its write (not
    /// started: not ready); the pod sync that follows writes what it implies (`Initialized`).
    pub async fn set_started(&self, container: &str, started: bool) -> Result<Pod> {
        self.step(Step::Started(container.into(), started)).await
    }

    /// The container is killed and started again in one write, as the kubelet does when no
    /// back-off holds it (a failed liveness probe: `Error`, 137): `lastState.terminated` gets
    /// the exit (`startedAt` the run's start, finished now), `restartCount` goes up by one
    /// and a new run starts now, started and ready as in [`Self::set_state`]. (A container
    /// that exits by itself is reported exited first: `set_state` with `Terminated`, then
    /// with `Running`.)
    pub async fn restart(&self, container: &str, reason: &str, exit_code: i32) -> Result<Pod> {
        self.step(Step::Restart { container: container.into(), reason: reason.into(), exit_code }).await
    }

    /// The container exits (`reason`, `exit_code`) and waits in `CrashLoopBackOff`, in one
    /// write, as the kubelet writes a liveness kill under back-off: the exit is
    /// `lastState.terminated`, `restartCount` unchanged (it goes up when the next run starts:
    /// `set_state(.., State::Running)`), not started, not ready. A native sidecar that exited
    /// 0 stays `terminated` (`Completed`) instead, as kubelet 1.34 and 1.37 leave it for its
    /// whole back-off.
    pub async fn crash_loop(&self, container: &str, reason: &str, exit_code: i32) -> Result<Pod> {
        self.step(Step::CrashLoop { container: container.into(), reason: reason.into(), exit_code }).await
    }

    /// The kubelet's one write at the end of a Pod's termination (it writes nothing while it
    /// stops the containers; recorded): each container of `stops` in its state reached `ago`
    /// before this write, every other still running one `Completed` (0) now; then the phase
    /// (`Succeeded`, or `Failed` if a regular container failed), the sandbox down. The kubelet
    /// then deletes the Pod with grace period 0 (the test's part).
    pub async fn stop(&self, stops: &[(&str, State, Duration)]) -> Result<Pod> {
        self.step(Step::Stop(stops.iter().map(|(n, s, ago)| (n.to_string(), s.clone(), *ago)).collect())).await
    }

    /// Sets a Pod condition in a pod sync (one the kubelet writes beside its own, such as
    /// `PodResizeInProgress`); `lastTransitionTime` changes only when the status changes.
    pub async fn set_condition(&self, type_: &str, status: bool, reason: Option<&str>) -> Result<Pod> {
        self.update(|_, s| {
            set_condition(s, type_, status, reason);
            Ok(())
        })
        .await
    }

    /// Makes the Pod fully running: regular init containers completed, every container and
    /// sidecar running, started and ready (probes passed), phase `Running`, every condition
    /// True.
    pub async fn run_all(&self) -> Result<Pod> {
        self.step(Step::RunAll).await
    }
}
