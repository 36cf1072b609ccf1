//! Which scrapes may be open at once: at most [`OPEN_PER_CLIENT`] per client address and
//! [`OPEN_IN_ALL`] in all, so that memory stays bounded whatever the clients do. The excess
//! is refused at once (429 for a client over its own bound, 503 when all are taken), never
//! queued.
//!
//! A scrape whose client has not taken its output for [`STALLED_AFTER`] is stalled: a new
//! scrape that would be refused cuts the longest-stalled one of the same bound off instead,
//! so that clients that never read cannot hold the bounds against anyone (nor against the
//! same client's next, working, scrape). Every stalled scrape is cut off after
//! [`WRITE_TIMEOUT`] regardless ([`OpenScrapes::cut_off_stalled`]).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Scrapes one client address may have open.
pub(super) const OPEN_PER_CLIENT: usize = 4;
/// Scrapes open in all. Each holds at most a chunk of its render, its `sidecar_info` counts
/// so far (at most `HELD_SERIES`) and a connection's buffers (what that comes to:
/// docs/metrics.md#security-who-may-read-metrics).
pub(super) const OPEN_IN_ALL: usize = 64;
/// A scrape whose client has not taken output for this long may be cut off for another.
pub(crate) const STALLED_AFTER: Duration = Duration::from_secs(1);
/// A scrape whose client has not taken output for this long is cut off.
pub(super) const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a scrape was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The client has [`OPEN_PER_CLIENT`] scrapes open, none stalled: 429.
    Client,
    /// [`OPEN_IN_ALL`] scrapes are open, none stalled: 503.
    All,
}

impl Refused {
    /// The `limit` label of `sidecar_watch_limited_total`.
    pub(crate) fn limit(self) -> &'static str {
        match self {
            Refused::Client => "scrapes-per-client",
            Refused::All => "scrapes",
        }
    }
}

/// Whether a scrape's client is keeping up, shared by the scrape's body and [`OpenScrapes`].
#[derive(Debug, Default)]
pub(crate) struct Progress {
    /// Since when the body has waited for the client to take its output; `None` while the
    /// client waits for the body (rendering, or waiting for a render slot).
    waiting_since: Mutex<Option<Instant>>,
}

impl Progress {
    /// The client asked for more: it is not stalled.
    pub(crate) fn asked(&self) {
        *self.waiting_since.lock() = None;
    }

    /// Output was handed over: the client has to take it.
    pub(crate) fn handed_over(&self) {
        self.waiting_since.lock().get_or_insert_with(Instant::now);
    }

    /// How long the client has left output untaken.
    fn stalled_for(&self, now: Instant) -> Duration {
        self.waiting_since.lock().map_or(Duration::ZERO, |since| now - since)
    }
}

struct Open {
    client: IpAddr,
    progress: Arc<Progress>,
    /// Ends the scrape's connection.
    cut_off: CancellationToken,
}

/// The open scrapes.
#[derive(Default)]
pub(crate) struct OpenScrapes {
    open: Mutex<(u64, HashMap<u64, Open>)>,
}

/// An admitted scrape; dropping it (the response is done or the connection gone) frees its
/// place.
pub(crate) struct Ticket {
    open_scrapes: Arc<OpenScrapes>,
    id: u64,
    /// For the scrape's body to report its client's progress.
    pub(crate) progress: Arc<Progress>,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.open_scrapes.open.lock().1.remove(&self.id);
    }
}

/// The longest-stalled of `candidates`, if stalled for at least [`STALLED_AFTER`].
fn most_stalled<'a>(candidates: impl Iterator<Item = (&'a u64, &'a Open)>, now: Instant) -> Option<u64> {
    candidates
        .map(|(id, open)| (open.progress.stalled_for(now), *id))
        .filter(|(stalled, _)| *stalled >= STALLED_AFTER)
        .max()
        .map(|(_, id)| id)
}

impl OpenScrapes {
    /// Admits a scrape from `client` whose connection `cut_off` ends, cutting off a stalled
    /// scrape to make room if it must; `Ok(n)` with the number cut off (0 or 1).
    pub(crate) fn admit(
        self: &Arc<Self>,
        client: IpAddr,
        cut_off: CancellationToken,
    ) -> Result<(Ticket, usize), Refused> {
        let client = client.to_canonical();
        let now = Instant::now();
        let mut guard = self.open.lock();
        let (next_id, open) = &mut *guard;
        let mut evicted = 0;
        let mine = || open.iter().filter(|(_, o)| o.client == client);
        if mine().count() >= OPEN_PER_CLIENT {
            let victim = most_stalled(mine(), now).ok_or(Refused::Client)?;
            evicted += usize::from(cut(open, victim));
        }
        if open.len() >= OPEN_IN_ALL {
            let victim = most_stalled(open.iter(), now).ok_or(Refused::All)?;
            evicted += usize::from(cut(open, victim));
        }
        *next_id += 1;
        let progress = Arc::new(Progress::default());
        open.insert(*next_id, Open { client, progress: progress.clone(), cut_off });
        Ok((Ticket { open_scrapes: self.clone(), id: *next_id, progress }, evicted))
    }

    /// Cuts off every scrape whose client has not taken output for [`WRITE_TIMEOUT`];
    /// returns how many.
    pub(crate) fn cut_off_stalled(&self) -> usize {
        let now = Instant::now();
        let mut guard = self.open.lock();
        let open = &mut guard.1;
        let expired: Vec<u64> =
            open.iter().filter(|(_, o)| o.progress.stalled_for(now) >= WRITE_TIMEOUT).map(|(id, _)| *id).collect();
        expired.into_iter().filter(|id| cut(open, *id)).count()
    }

    /// Scrapes open.
    #[cfg(test)]
    pub(crate) fn count(&self) -> usize {
        self.open.lock().1.len()
    }
}

/// Ends the connection of scrape `id` and forgets it.
fn cut(open: &mut HashMap<u64, Open>, id: u64) -> bool {
    let Some(scrape) = open.remove(&id) else { return false };
    tracing::debug!(client = %scrape.client, "cutting off a /metrics client that does not read");
    scrape.cut_off.cancel();
    true
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    fn client(n: u32) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n))
    }

    #[tokio::test(start_paused = true)]
    async fn bounds_per_client_and_in_all_refuse_at_once() {
        let open_scrapes = Arc::new(OpenScrapes::default());
        let mut tickets = Vec::new();
        for _ in 0..OPEN_PER_CLIENT {
            tickets.push(open_scrapes.admit(client(1), CancellationToken::new()).expect("within the bound").0);
        }
        assert_eq!(open_scrapes.admit(client(1), CancellationToken::new()).err(), Some(Refused::Client));
        for c in 2..=(OPEN_IN_ALL - OPEN_PER_CLIENT + 1) as u32 {
            tickets.push(open_scrapes.admit(client(c), CancellationToken::new()).expect("within the bound").0);
        }
        assert_eq!(open_scrapes.count(), OPEN_IN_ALL);
        assert_eq!(open_scrapes.admit(client(999), CancellationToken::new()).err(), Some(Refused::All));
        tickets.pop();
        assert!(open_scrapes.admit(client(999), CancellationToken::new()).is_ok(), "a finished scrape frees its place");
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_scrape_is_cut_off_for_a_new_one_and_after_the_write_timeout() {
        let open_scrapes = Arc::new(OpenScrapes::default());
        let mut stalled = Vec::new();
        for _ in 0..OPEN_PER_CLIENT {
            let cut_off = CancellationToken::new();
            let (ticket, _) = open_scrapes.admit(client(1), cut_off.clone()).expect("admitted");
            ticket.progress.handed_over();
            stalled.push((ticket, cut_off));
        }
        // A scrape the server is still rendering is never cut off.
        stalled[0].0.progress.asked();
        tokio::time::advance(STALLED_AFTER - Duration::from_millis(1)).await;
        assert_eq!(open_scrapes.admit(client(1), CancellationToken::new()).err(), Some(Refused::Client));
        tokio::time::advance(Duration::from_millis(1)).await;
        let (_new, evicted) = open_scrapes.admit(client(1), CancellationToken::new()).expect("room made");
        assert_eq!(evicted, 1);
        assert_eq!(stalled.iter().filter(|(_, c)| c.is_cancelled()).count(), 1);
        assert!(!stalled[0].1.is_cancelled(), "the busy one stays");

        // The write timeout cuts off whoever still does not read, and nobody else.
        tokio::time::advance(WRITE_TIMEOUT).await;
        assert_eq!(open_scrapes.cut_off_stalled(), 2);
        assert_eq!(stalled.iter().filter(|(_, c)| c.is_cancelled()).count(), 3);
        assert_eq!(open_scrapes.count(), 2, "the busy one and the new one");
    }

    #[tokio::test(start_paused = true)]
    async fn stalled_clients_cannot_hold_every_place() {
        let open_scrapes = Arc::new(OpenScrapes::default());
        let mut held = Vec::new();
        for c in 0..OPEN_IN_ALL as u32 {
            let (ticket, _) = open_scrapes.admit(client(c), CancellationToken::new()).expect("admitted");
            ticket.progress.handed_over();
            held.push(ticket);
        }
        tokio::time::advance(STALLED_AFTER).await;
        let (_prometheus, evicted) = open_scrapes.admit(client(1000), CancellationToken::new()).expect("admitted");
        assert_eq!(evicted, 1);
        assert_eq!(open_scrapes.count(), OPEN_IN_ALL);
    }
}
