//! How many TokenReviews and SubjectAccessReviews `/metrics` clients may cause: a budget per
//! client address and one for all clients together, so that nobody who can reach the port
//! can turn the operator into a load generator against the API server.
//!
//! One review is one token the caches did not know: a `TokenReview` and, for a known user,
//! a `SubjectAccessReview`. The sizes ([`PER_CLIENT`], [`IN_ALL`]) rest on what a real
//! Prometheus fleet asks for: each Prometheus replica presents one token, reviewed once per
//! [`super::auth`] cache lifetime (30 s) and again when the kubelet rotates it (about every
//! 48 minutes for a one-hour projected token): about 0.03 reviews per second per replica.
//! [`IN_ALL`] (5 per second, a burst of 5, so never more than 10 in any second) lets 150
//! replicas through before the sustained budget matters; [`PER_CLIENT`] (a burst of 3, then
//! one per second) lets a replica present a new and an old token and still retry once.
//!
//! The rate limits are `governor`'s GCRA (the generic cell rate algorithm, a token bucket
//! without a refill task), on tokio's clock so that tests can pause and move it.

use parking_lot::Mutex;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::Clock;
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::HashMapStateStore;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};

/// Reviews one client address may cause: a burst of 3, then one per second.
const PER_CLIENT: Quota = Quota::per_second(nonzero(1)).allow_burst(nonzero(3));
/// Reviews all clients together may cause: a burst of 5, then five per second (so at most
/// 10 in any second).
const IN_ALL: Quota = Quota::per_second(nonzero(5)).allow_burst(nonzero(5));
/// Client addresses whose budget is remembered. Past this, addresses whose budget is full
/// again are forgotten; if every one is still in use (thousands of addresses within a few
/// seconds), all are forgotten: the budget for all clients still holds.
const REMEMBERED_CLIENTS: usize = 4096;

const fn nonzero(n: u32) -> NonZeroU32 {
    match NonZeroU32::new(n) {
        Some(n) => n,
        None => NonZeroU32::MIN,
    }
}

/// `governor`'s clock on tokio's time (paused and advanced in tests).
#[derive(Clone, Copy, Debug, Default)]
struct TokioClock;

impl Clock for TokioClock {
    type Instant = std::time::Instant;

    fn now(&self) -> std::time::Instant {
        tokio::time::Instant::now().into_std()
    }
}

type PerClient = RateLimiter<IpAddr, HashMapStateStore<IpAddr>, TokioClock, NoOpMiddleware<std::time::Instant>>;
type InAll = RateLimiter<NotKeyed, InMemoryState, TokioClock, NoOpMiddleware<std::time::Instant>>;

/// Which budget is spent, and when the next review may be tried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Spent {
    /// This client's.
    Client { retry_after: Duration },
    /// Everyone's.
    All { retry_after: Duration },
}

impl Spent {
    /// The wait to announce in `Retry-After`.
    pub(crate) fn retry_after(self) -> Duration {
        match self {
            Spent::Client { retry_after } | Spent::All { retry_after } => retry_after,
        }
    }

    /// The `limit` label of `sidecar_watch_limited_total`.
    pub(crate) fn limit(self) -> &'static str {
        match self {
            Spent::Client { .. } => "reviews-per-client",
            Spent::All { .. } => "reviews",
        }
    }
}

/// The review budgets: per client address and for all clients together.
pub(crate) struct ReviewBudget {
    /// Replaced by an empty one when too many addresses are in use at once.
    per_client: Mutex<PerClient>,
    per_client_quota: Quota,
    in_all: InAll,
}

impl Default for ReviewBudget {
    fn default() -> Self {
        Self::new(PER_CLIENT, IN_ALL)
    }
}

impl ReviewBudget {
    /// Budgets of `per_client` for each address and `in_all` for everyone.
    pub(crate) fn new(per_client: Quota, in_all: Quota) -> Self {
        ReviewBudget {
            per_client: Mutex::new(RateLimiter::hashmap_with_clock(per_client, TokioClock)),
            per_client_quota: per_client,
            in_all: RateLimiter::direct_with_clock(in_all, TokioClock),
        }
    }

    /// Takes one review from `client`'s budget and from everyone's, or says which is spent.
    pub(crate) fn take(&self, client: IpAddr) -> Result<(), Spent> {
        let client = client.to_canonical();
        let mut per_client = self.per_client.lock();
        if per_client.len() >= REMEMBERED_CLIENTS {
            per_client.retain_recent();
            per_client.shrink_to_fit();
            if per_client.len() >= REMEMBERED_CLIENTS {
                *per_client = RateLimiter::hashmap_with_clock(self.per_client_quota, TokioClock);
            }
        }
        let checked = per_client.check_key(&client);
        drop(per_client);
        checked.map_err(|no| Spent::Client { retry_after: no.wait_time_from(TokioClock.now()) })?;
        self.in_all.check().map_err(|no| Spent::All { retry_after: no.wait_time_from(TokioClock.now()) })
    }

    /// Client addresses remembered.
    #[cfg(test)]
    fn clients(&self) -> usize {
        self.per_client.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    fn client(n: u32) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n))
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_gets_its_burst_then_one_per_second() {
        let budget = ReviewBudget::default();
        for _ in 0..3 {
            budget.take(client(1)).unwrap();
        }
        let spent = budget.take(client(1)).unwrap_err();
        assert_eq!(spent, Spent::Client { retry_after: Duration::from_secs(1) });
        assert_eq!(spent.limit(), "reviews-per-client");
        tokio::time::advance(Duration::from_millis(999)).await;
        assert!(budget.take(client(1)).is_err(), "not yet a second");
        tokio::time::advance(Duration::from_millis(1)).await;
        budget.take(client(1)).expect("one more after a second");
        // Another client has its own.
        budget.take(client(2)).expect("another client");
    }

    #[tokio::test(start_paused = true)]
    async fn all_clients_together_get_at_most_ten_in_any_second() {
        let budget = ReviewBudget::default();
        let mut granted_at_ms = Vec::new();
        // 200 clients, each asking every 10 ms for 3 s, and one more client every 100 ms.
        for tick in 0..300_u32 {
            for c in (0..200).chain([1000 + tick]) {
                match budget.take(client(c)) {
                    Ok(()) => granted_at_ms.push(tick * 10),
                    Err(Spent::All { retry_after }) => assert!(retry_after <= Duration::from_millis(200)),
                    Err(Spent::Client { retry_after }) => assert!(retry_after <= Duration::from_secs(1)),
                }
            }
            tokio::time::advance(Duration::from_millis(10)).await;
        }
        for &start in &granted_at_ms {
            let in_window = granted_at_ms.iter().filter(|&&t| t >= start && t < start + 1000).count();
            assert!(in_window <= 10, "{in_window} reviews in the second from {start} ms");
        }
        // A burst of 5 and then one every 200 ms: 5 + 14 in 2.99 s.
        assert_eq!(granted_at_ms.len(), 5 + 14, "{granted_at_ms:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn many_addresses_are_forgotten_not_hoarded() {
        let budget = ReviewBudget::new(PER_CLIENT, Quota::per_second(nonzero(1_000_000)));
        for c in 0..(REMEMBERED_CLIENTS as u32 * 3) {
            let _ = budget.take(client(c));
            if c % 1000 == 999 {
                tokio::time::advance(Duration::from_secs(5)).await;
            }
        }
        assert!(budget.clients() <= REMEMBERED_CLIENTS, "{} addresses remembered", budget.clients());
    }
}
