//! Whether this replica leads and is synced, as one signal every part reads.
//!
//! The signal is a [`Role`]: whether the replica leads its shard and whether its initial
//! lists are done.
//!
//! The election and the reconciler write it; the reconciler, the status writer, the Event
//! publisher and the HTTP server read it. Only a replica that [`Role::acts`] exports the
//! leader-only metric families, writes status and publishes Events.

use tokio::sync::watch;

/// Where this replica stands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Role {
    /// Holds (and keeps renewing) its shard's Lease, or runs without election.
    pub(crate) leader: bool,
    /// Every watcher's first list has been applied to the index (the `FailedCreate` Events'
    /// too), the rollouts judged and the controllers of those that may be blocked read (or
    /// 30 s passed): every workload alert that fires is known.
    pub(crate) synced: bool,
}

impl Role {
    /// Leads with a complete picture: may publish Events and write status.
    pub(crate) fn acts(&self) -> bool {
        self.leader && self.synced
    }
}

/// The writing side, shared by the election and the reconciler.
pub type RoleSender = std::sync::Arc<watch::Sender<Role>>;

/// The reading side: cheap to clone, `borrow()` for the current role, `changed()` to wait.
pub type RoleReceiver = watch::Receiver<Role>;

/// A new signal: not leading, not synced.
pub fn channel() -> (RoleSender, RoleReceiver) {
    let (tx, rx) = watch::channel(Role::default());
    (std::sync::Arc::new(tx), rx)
}

/// Sets whether this replica leads, waking readers only on a change.
pub fn set_leader(role: &RoleSender, leader: bool) {
    role.send_if_modified(|r| std::mem::replace(&mut r.leader, leader) != leader);
}

/// Marks the initial lists as done.
pub fn set_synced(role: &RoleSender) {
    role.send_if_modified(|r| !std::mem::replace(&mut r.synced, true));
}
