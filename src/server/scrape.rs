//! One `/metrics` response body: rendered a chunk at a time, only when the client has taken
//! the previous one, each chunk under a render slot that is given back as soon as the
//! chunk exists. A client that stops reading therefore holds no slot and no lock, only its
//! place in [`super::open_scrapes`] and one chunk; everyone else's scrapes go on.
//!
//! gzip (when the client accepts it: Prometheus always does) is done in the same step as
//! the render, under the same slot, off the async workers, at [`GZIP_LEVEL`].

use std::io::Write;
use std::sync::Arc;

use axum::body::Body;
use axum::body::Bytes;
use flate2::write::GzEncoder;
use tokio::sync::Semaphore;

use super::open_scrapes::Ticket;
use crate::index::Index;
use crate::leadership::RoleReceiver;
use crate::metrics::{Metrics, Render};

/// Render steps running at once (each a blocking thread): the CPU a burst of scrapes may
/// take. A step renders one family across one index segment (and compresses it), a small
/// share of a whole scrape (docs/benchmarks.md#what-does-metrics-cost-and-can-clients-hold-it-up),
/// so a scrape waits for a slot at most a few steps.
pub(crate) const RENDER_SLOTS: usize = 2;

/// The gzip level, chosen by measurement (`cargo bench --bench index_memory -- gzip`): level
/// 1 adds a fraction of the plain render's time for a body a little larger than the default
/// level's, which takes several times the render
/// (docs/benchmarks.md#what-does-metrics-cost-and-can-clients-hold-it-up).
const GZIP_LEVEL: u32 = 1;

/// Compressed output handed on once it reaches this size (a step renders until then).
const GZIP_CHUNK: usize = 32 * 1024;

/// What a scrape renders from.
#[derive(Clone)]
pub(crate) struct Source {
    pub(crate) index: Arc<Index>,
    pub(crate) metrics: Metrics,
    pub(crate) role: RoleReceiver,
}

/// A render and its encoding, moved into a blocking thread for each step.
struct Job {
    source: Source,
    /// Started by the first step, off the async workers.
    render: Option<Render>,
    /// `Some` while gzip output is still to come.
    gzip: Option<GzEncoder<Vec<u8>>>,
    finished: bool,
}

impl Job {
    /// The next piece of the body, `None` at its end.
    fn step(&mut self) -> Option<Vec<u8>> {
        if self.finished {
            return None;
        }
        let source = &self.source;
        // A standby would duplicate the leader's per-Pod series: only the leader exports them.
        let render =
            self.render.get_or_insert_with(|| source.metrics.start_render(&source.index, source.role.borrow().leader));
        loop {
            let chunk = render.next_chunk(&source.index);
            let Some(encoder) = self.gzip.as_mut() else {
                self.finished = chunk.is_none();
                return chunk.map(String::into_bytes);
            };
            let Some(text) = chunk else {
                self.finished = true;
                // Writing into a Vec cannot fail.
                return self.gzip.take().and_then(|gzip| gzip.finish().ok());
            };
            // Writing into a Vec cannot fail.
            let _ = encoder.write_all(text.as_bytes());
            if encoder.get_ref().len() >= GZIP_CHUNK {
                return Some(std::mem::take(encoder.get_mut()));
            }
        }
    }
}

/// Whether an `Accept-Encoding` header value accepts gzip (`gzip` or `*`, with a non-zero
/// quality; an explicit `gzip;q=0` refuses it even beside `*`).
pub(crate) fn accepts_gzip(accept_encoding: &str) -> bool {
    let mut star = false;
    for entry in accept_encoding.split(',') {
        let mut parts = entry.split(';');
        let coding = parts.next().unwrap_or_default().trim();
        let quality = parts
            .filter_map(|p| p.trim().strip_prefix("q=").or_else(|| p.trim().strip_prefix("Q=")))
            .find_map(|q| q.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        if coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip") {
            return quality > 0.0;
        }
        star |= coding == "*" && quality > 0.0;
    }
    star
}

/// The body of one admitted scrape: each step waits for one of `slots`, renders (and with
/// `gzip` compresses) the next chunk in a blocking thread, and gives the slot back before
/// the chunk is handed to the connection.
pub(crate) fn body(source: Source, gzip: bool, slots: Arc<Semaphore>, ticket: Ticket) -> Body {
    let gzip = gzip.then(|| GzEncoder::new(Vec::new(), flate2::Compression::new(GZIP_LEVEL)));
    let job = Job { source, render: None, gzip, finished: false };
    let stream = futures::stream::unfold(Some((job, ticket)), move |state| {
        let slots = slots.clone();
        async move {
            let (mut job, ticket) = state?;
            ticket.progress.asked();
            // The semaphore is never closed.
            let permit = slots.acquire_owned().await.ok()?;
            let stepped = tokio::task::spawn_blocking(move || {
                let _permit = permit;
                let piece = job.step();
                (job, piece)
            })
            .await;
            match stepped {
                Ok((job, Some(piece))) => {
                    ticket.progress.handed_over();
                    Some((Ok(Bytes::from(piece)), Some((job, ticket))))
                }
                Ok((_, None)) => None,
                // A render that panicked fails the body, so that the scrape fails instead of
                // looking complete with series missing.
                Err(e) => {
                    tracing::warn!(error = %e, "rendering metrics failed");
                    Some((Err(e), None))
                }
            }
        }
    });
    Body::from_stream(stream)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_is_accepted_as_http_says() {
        for yes in ["gzip", "GZIP", "deflate, gzip", "gzip;q=0.5", "*", "br;q=1, *;q=0.1", "x-gzip", "gzip; q=1.0"] {
            assert!(accepts_gzip(yes), "{yes}");
        }
        for no in ["", "identity", "deflate, br", "gzip;q=0", "*, gzip;q=0", "*;q=0", "gzip;q=0.0"] {
            assert!(!accepts_gzip(no), "{no}");
        }
    }
}
