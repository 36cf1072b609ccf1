//! Leader election on a `coordination.k8s.io/v1` Lease with kube-lease-manager, plus the
//! renew deadline that library lacks.
//!
//! kube-lease-manager keeps retrying a failed renewal and never reports that leadership is
//! gone, so a leader cut off from the API server would go on acting while a standby takes
//! the expired Lease: two leaders. client-go's election stops leading once it has not
//! renewed within its renew deadline. This module does the same by timing the Lease writes
//! themselves: the Lease client carries a layer that notes every successful write, and a
//! leader whose last one is older than the deadline stops leading at once (the role turns
//! to standby, so it stops exporting, writing and publishing) and reports the loss, after
//! which the process exits non-zero, as controller-runtime does.

use std::pin::Pin;
use std::sync::Arc;

use parking_lot::Mutex;
use std::task::{Context, Poll};
use std::time::Duration;

use kube::client::ClientBuilder;
use kube_lease_manager::{LeaseManager, LeaseManagerBuilder, LeaseManagerError};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::leadership::{self, RoleSender};

/// How to take part in the election.
#[derive(Clone, Debug)]
pub(crate) struct LeaseConfig {
    pub(crate) name: String,
    pub(crate) namespace: String,
    /// This replica's identity (its Pod name).
    pub(crate) identity: String,
    /// How long a lease is valid after its last renewal; a standby takes over after it.
    pub(crate) duration: Duration,
    /// A leader that has not renewed for this long stops leading.
    pub(crate) renew_deadline: Duration,
}

/// Lease flags that contradict each other (never retried).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct TimingError(String);

/// The timings derived from the lease duration, client-go's proportions (15 s / 10 s / 2 s).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LeaseTimings {
    /// Lease duration in whole seconds (kube-lease-manager's unit).
    duration_secs: u64,
    /// How long after a renewal the leader renews again.
    retry_secs: u64,
    /// The renew deadline.
    pub(crate) renew_deadline: Duration,
}

impl LeaseTimings {
    /// Checks and derives the timings: the deadline defaults to 10 s, or two thirds of a
    /// shorter lease; it must be shorter than the lease and longer than the retry period.
    pub(crate) fn new(duration: Duration, renew_deadline: Option<Duration>) -> Result<Self, String> {
        let duration_secs = duration.as_secs().max(2);
        let retry_secs = (duration_secs / 7).max(1);
        let renew_deadline =
            renew_deadline.unwrap_or_else(|| Duration::from_secs(10).min(Duration::from_secs(duration_secs) * 2 / 3));
        if renew_deadline >= Duration::from_secs(duration_secs) {
            return Err(format!(
                "--lease-renew-deadline ({renew_deadline:?}) must be shorter than --lease-duration ({duration_secs}s)"
            ));
        }
        if renew_deadline <= Duration::from_secs(retry_secs) {
            return Err(format!(
                "--lease-renew-deadline ({renew_deadline:?}) must be longer than the renewal period ({retry_secs}s)"
            ));
        }
        Ok(LeaseTimings { duration_secs, retry_secs, renew_deadline })
    }
}

/// A running election, which keeps the role's `leader` up to date; [`Election::step_down`]
/// releases the lease.
pub(crate) struct Election {
    /// Stops following the election (the lease manager then releases the lease), and the
    /// task following it; `None` without an election.
    following: Option<(oneshot::Sender<()>, JoinHandle<()>)>,
}

impl Election {
    /// No election: this replica always leads (`--leader-elect=false`).
    pub(crate) fn always_leader(role: &RoleSender) -> Self {
        leadership::set_leader(role, true);
        Election { following: None }
    }

    /// Starts competing for the lease with a client built from `config`. `lost` is
    /// cancelled when this replica led and missed its renew deadline.
    async fn start(
        config: kube::Config,
        lease: LeaseConfig,
        role: RoleSender,
        lost: CancellationToken,
    ) -> anyhow::Result<Self> {
        let timings = LeaseTimings::new(lease.duration, Some(lease.renew_deadline)).map_err(TimingError)?;
        let clock = RenewalClock::default();
        let client = ClientBuilder::try_from(config)?.with_layer(&clock.clone()).build();
        Self::start_on(client, clock, lease, timings, role, lost).await
    }

    /// [`Election::start`] on a client that already carries `clock` (the unit tests give one
    /// on an in-process API).
    async fn start_on(
        client: kube::Client,
        clock: RenewalClock,
        lease: LeaseConfig,
        timings: LeaseTimings,
        role: RoleSender,
        lost: CancellationToken,
    ) -> anyhow::Result<Self> {
        // kube-lease-manager checks each setter against the other value, so the grace goes
        // to 1 s first, then the duration, then the grace that renews every `retry_secs`.
        let manager = LeaseManagerBuilder::new(client, &lease.name)
            .with_namespace(&lease.namespace)
            .with_identity(&lease.identity)
            .with_grace(1)
            .with_duration(timings.duration_secs)
            .with_grace(timings.duration_secs - timings.retry_secs)
            // One field manager per replica: conflicting applies are what keep two replicas
            // from taking a free lease at the same time.
            .with_field_manager(format!("sidecar-watch-{}", lease.identity))
            .build()
            .await
            .map_err(|e| anyhow::anyhow!("lease {}/{}: {e}", lease.namespace, lease.name))?;
        let (leader, handle) = manager.watch().await;
        let (stop, stopped) = oneshot::channel();
        let follower = Follower { role, clock, deadline: timings.renew_deadline, lost };
        let task = tokio::spawn(follower.run(leader, handle, stopped));
        Ok(Election { following: Some((stop, task)) })
    }

    /// [`Election::start`] until it reaches the Lease: an API server that is down or refuses
    /// (a 403 while RBAC is being applied) when the operator starts is waited for, as
    /// kube-runtime's watchers wait, with the delay doubling from 1 s to 30 s. A standby
    /// meanwhile: nothing is exported or written until the Lease is taken.
    pub(crate) async fn start_retrying(
        config: kube::Config,
        lease: LeaseConfig,
        role: RoleSender,
        lost: CancellationToken,
    ) -> anyhow::Result<Self> {
        let mut delay = Duration::from_secs(1);
        loop {
            match Self::start(config.clone(), lease.clone(), role.clone(), lost.clone()).await {
                Ok(election) => return Ok(election),
                // Flags that can never work are not retried.
                Err(e) if e.downcast_ref::<TimingError>().is_some() => return Err(e),
                Err(e) => tracing::warn!(error = %e, retry_in = ?delay, "cannot reach the Lease; retrying"),
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(30));
        }
    }

    /// Steps down: releases the lease and waits (briefly) for the release to be written.
    pub(crate) async fn step_down(self) {
        if let Some((stop, task)) = self.following {
            let _ = stop.send(());
            let _ = tokio::time::timeout(Duration::from_secs(3), task).await;
        }
    }
}

/// Copies the lease manager's verdict into the role and enforces the renew deadline.
struct Follower {
    role: RoleSender,
    clock: RenewalClock,
    deadline: Duration,
    lost: CancellationToken,
}

impl Follower {
    /// Runs until told to stop or the deadline is missed, then drops the receiver (which
    /// makes the manager release the lease) and, on a clean stop, waits for the release.
    async fn run(
        self,
        mut leader: watch::Receiver<bool>,
        manager: JoinHandle<Result<LeaseManager, LeaseManagerError>>,
        mut stopped: oneshot::Receiver<()>,
    ) {
        // Checked this often while leading: the role turns to standby within this of the
        // deadline.
        let mut check = tokio::time::interval(Duration::from_millis(100));
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut leading = false;
        loop {
            let now_leading = *leader.borrow_and_update();
            if now_leading && !leading {
                // The write that took the lease is the first renewal.
                self.clock.note_if_unset();
            }
            leading = now_leading;
            leadership::set_leader(&self.role, leading);
            tokio::select! {
                _ = &mut stopped => break,
                changed = leader.changed() => {
                    if changed.is_err() {
                        break;
                    }
                }
                _ = check.tick(), if leading => {
                    if self.clock.since_last().is_some_and(|since| since > self.deadline) {
                        leadership::set_leader(&self.role, false);
                        tracing::error!(
                            deadline = ?self.deadline,
                            "the Lease was not renewed within the renew deadline; stopped leading"
                        );
                        self.lost.cancel();
                        // Releasing needs the API that just failed: the manager tries it once
                        // the receiver is dropped, unawaited; failing that, the lease expires.
                        return;
                    }
                }
            }
        }
        leadership::set_leader(&self.role, false);
        drop(leader);
        match manager.await {
            Ok(Ok(_)) => tracing::info!("lease released"),
            Ok(Err(e)) => tracing::warn!(error = %e, "lease manager stopped"),
            Err(e) => tracing::warn!(error = %e, "lease task failed"),
        }
    }
}

/// When a Lease was last written successfully through the client that carries this layer.
#[derive(Clone, Debug, Default)]
struct RenewalClock(Arc<Mutex<Option<Instant>>>);

impl RenewalClock {
    /// A Lease write sent at `sent` succeeded. Counted from the sending: the Lease's
    /// `renewTime` is the request's, and standbys take over a lease duration after it, so an
    /// answer that comes late must not stretch this leader's deadline past that.
    fn note(&self, sent: Instant) {
        let mut last = self.0.lock();
        *last = Some(last.map_or(sent, |last| last.max(sent)));
    }

    fn note_if_unset(&self) {
        let mut last = self.0.lock();
        last.get_or_insert_with(Instant::now);
    }

    /// Time since the last successful Lease write, if there was one.
    fn since_last(&self) -> Option<Duration> {
        self.0.lock().map(|t| t.elapsed())
    }
}

impl<S> tower::Layer<S> for RenewalClock {
    type Service = RecordRenewals<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RecordRenewals { inner, clock: self.clone() }
    }
}

/// The service [`RenewalClock`] wraps around the Lease client's stack.
#[derive(Clone, Debug)]
struct RecordRenewals<S> {
    inner: S,
    clock: RenewalClock,
}

impl<S, ReqBody, ResBody> tower::Service<http::Request<ReqBody>> for RecordRenewals<S>
where
    S: tower::Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        let is_lease_write = request.method() != http::Method::GET && request.uri().path().contains("/leases/");
        let clock = self.clock.clone();
        let sent = Instant::now();
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await?;
            if is_lease_write && response.status().is_success() {
                clock.note(sent);
            }
            Ok(response)
        })
    }
}

#[cfg(test)]
mod tests;
