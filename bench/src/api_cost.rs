//! What the operator costs the API server in one phase: requests and response bytes the
//! simulator served to clients whose `User-Agent` is the operator's, by kind of call.

use sidecar_watch_harness::sim::traffic::{TrafficCount, TrafficSnapshot};

/// The operator's `User-Agent` prefix (`sidecar-watch/<version>`).
pub const OPERATOR_AGENT: &str = "sidecar-watch/";

/// Requests and bytes of one phase, by kind of call.
#[derive(Debug, Default, Clone, Copy)]
pub struct ApiCost {
    /// How long the phase lasted.
    pub secs: f64,
    pub list: TrafficCount,
    pub watch: TrafficCount,
    pub get: TrafficCount,
    /// create, update, patch, delete (Events, policy status, the Lease).
    pub write: TrafficCount,
}

impl ApiCost {
    /// The operator's calls between two snapshots `secs` apart.
    pub fn between(before: &TrafficSnapshot, after: &TrafficSnapshot, secs: f64) -> Self {
        let delta = after.since(before);
        let of = |verb| delta.total(OPERATOR_AGENT, Some(verb));
        let all = delta.total(OPERATOR_AGENT, None);
        let (list, watch, get) = (of("list"), of("watch"), of("get"));
        let write = all - list - watch - get;
        ApiCost { secs, list, watch, get, write }
    }

    /// Everything together.
    pub fn total(&self) -> TrafficCount {
        [self.list, self.watch, self.get, self.write].into_iter().sum()
    }

    /// `list 201 req / 851.2 MiB; watch …; get …; writes …`.
    pub fn describe(&self) -> String {
        let one = |what: &str, c: TrafficCount| format!("{what} {} req / {}", c.requests, bytes(c.bytes));
        [one("list", self.list), one("watch", self.watch), one("get", self.get), one("writes", self.write)].join("; ")
    }

    /// Requests and bytes per minute (for a phase at rest).
    pub fn per_minute(&self) -> String {
        let t = self.total();
        let per = 60.0 / self.secs.max(1e-9);
        format!("{:.1} req/min, {}/min", t.requests as f64 * per, bytes((t.bytes as f64 * per) as u64))
    }
}

/// Bytes in B, KiB or MiB.
pub fn bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / 1048576.0),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}
