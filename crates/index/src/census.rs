//! How many tracked Pods run each sidecar container name per namespace, so that per-name
//! series kept outside the index (`sidecar_startup_seconds{namespace, container}`) can be
//! dropped once the last such Pod is gone instead of piling up with every unique name.

use parking_lot::Mutex;
use std::collections::HashMap;

use sidecar_watch_engine::Name;

/// A sidecar container name in a namespace.
pub type SidecarName = (Name, Name);

/// Counts per [`SidecarName`], and the names whose count fell to zero since last asked.
#[derive(Debug, Default)]
pub(super) struct Census {
    inner: Mutex<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    pods: HashMap<SidecarName, u32>,
    gone: Vec<SidecarName>,
}

impl Census {
    /// One Pod's sidecar names change from `before` to `after`.
    pub(super) fn replace(&self, before: &[SidecarName], after: &[SidecarName]) {
        if before == after {
            return;
        }
        let mut counts = self.inner.lock();
        for name in after {
            *counts.pods.entry(name.clone()).or_default() += 1;
        }
        for name in before {
            if let Some(n) = counts.pods.get_mut(name) {
                *n -= 1;
                if *n == 0 {
                    counts.pods.remove(name);
                    counts.gone.push(name.clone());
                }
            }
        }
    }

    /// The names no tracked Pod runs any more, since the last call.
    pub(super) fn take_gone(&self) -> Vec<SidecarName> {
        let mut counts = self.inner.lock();
        let Counts { pods, gone } = &mut *counts;
        // A name that came back since it went is not gone.
        gone.retain(|name| !pods.contains_key(name));
        std::mem::take(gone)
    }
}
