//! Leader election on a `coordination.k8s.io/v1` Lease with kube-lease-manager.

use std::time::Duration;

use kube::Client;
use kube_lease_manager::LeaseManagerBuilder;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How to take part in the election.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    /// The Lease's name.
    pub name: String,
    /// The Lease's namespace.
    pub namespace: String,
    /// This replica's identity (its Pod name).
    pub identity: String,
    /// How long a lease is valid after its last renewal; a standby takes over after it.
    pub duration: Duration,
}

/// A running election: `leader` says whether this replica leads; dropping the receiver
/// (shutdown) releases the lease.
pub struct Election {
    /// Whether this replica leads.
    pub leader: watch::Receiver<bool>,
    task: Option<JoinHandle<()>>,
}

impl Election {
    /// No election: this replica always leads (`--leader-elect=false`).
    pub fn always_leader() -> Self {
        let (tx, rx) = watch::channel(true);
        // Keep the sender alive for the life of the process.
        let task = tokio::spawn(async move {
            tx.closed().await;
        });
        Election { leader: rx, task: Some(task) }
    }

    /// Starts competing for the lease.
    pub async fn start(client: Client, config: LeaseConfig) -> anyhow::Result<Self> {
        let duration = config.duration.as_secs().max(2);
        // Renew a third of the duration before expiry, so a slow API server does not cost
        // the lease.
        let grace = (duration / 3).max(1);
        let manager = LeaseManagerBuilder::new(client, &config.name)
            .with_namespace(&config.namespace)
            .with_identity(&config.identity)
            .with_duration(duration)
            .with_grace(grace)
            // One field manager per replica: conflicting applies are what keep two replicas
            // from taking a free lease at the same time.
            .with_field_manager(format!("sidecar-watch-{}", config.identity))
            .build()
            .await
            .map_err(|e| anyhow::anyhow!("lease {}/{}: {e}", config.namespace, config.name))?;
        let (rx, handle) = manager.watch().await;
        let task = tokio::spawn(async move {
            match handle.await {
                Ok(Ok(_)) => tracing::info!("lease released"),
                Ok(Err(e)) => tracing::warn!(error = %e, "lease manager stopped"),
                Err(e) => tracing::warn!(error = %e, "lease task failed"),
            }
        });
        Ok(Election { leader: rx, task: Some(task) })
    }

    /// Steps down: releases the lease and waits (briefly) for the release to be written.
    pub async fn step_down(mut self, leader: watch::Receiver<bool>) {
        drop(leader);
        drop(self.leader);
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(3), task).await;
        }
    }
}
