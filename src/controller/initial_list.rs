//! How each watcher gets its initial state (`--initial-list`), and the fall back from
//! streaming lists to paginated ones.
//!
//! A streaming list is a WATCH with `sendInitialEvents=true` (Kubernetes 1.27 and later, behind
//! the WatchList feature gate): the API server sends every object from its watch cache as an
//! event, one at a time, then a bookmark marking the end of the initial state. A paginated
//! list reads pages of objects, then watches from the list's resourceVersion.
//!
//! A server that cannot stream rejects that watch with 422 Invalid, and kube-runtime's watcher
//! would retry it with backoff forever, never getting (again) a state: [`watch_events`]
//! switches such a watcher to paginated lists for good instead, whether the rejection comes
//! at the start or at a later relist (after a `410 Gone`, once the control plane was changed
//! to one with the WatchList feature gate off, as an upgrade from 1.32 to 1.33 does).

use std::fmt::Debug;
use std::time::Duration;

use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use k8s_openapi::apimachinery::pkg::version::Info;
use kube::api::Api;
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Client, Resource};
use serde::de::DeserializeOwned;

use crate::metrics::Metrics;

/// `--initial-list`: how watchers get their initial state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum InitialList {
    /// The default: streaming lists unless the server reports a Kubernetes version before
    /// 1.27; a watcher whose server rejects them falls back to paginated lists.
    Auto,
    /// Streaming lists whatever the server's version; a watcher whose server rejects them
    /// falls back to paginated lists.
    Streaming,
    /// Paginated lists.
    Paginated,
}

/// How one watcher gets its initial state: [`InitialList`] with `auto` decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Strategy {
    /// A WATCH with `sendInitialEvents`.
    Streaming,
    /// LIST, then WATCH from the list's resourceVersion.
    Paginated,
}

impl Strategy {
    /// The `strategy` label of `sidecar_watch_initial_list`.
    fn as_str(self) -> &'static str {
        match self {
            Strategy::Streaming => "streaming",
            Strategy::Paginated => "paginated",
        }
    }
}

/// How every watcher gets its initial state: the strategy, and how long a streaming list may
/// go without ending its initial state before the watcher falls back to paginated lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Plan {
    /// Streaming or paginated lists.
    pub(crate) strategy: Strategy,
    /// `--initial-state-deadline`.
    pub(crate) deadline: Duration,
}

/// How large a collection can grow, which decides how a paginated list reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Size {
    /// Pods: one per workload replica, up to 100k and more.
    Large,
    /// Namespaces and policies: at most a few thousand small objects.
    Small,
}

/// How long `auto` waits for `/version` before it asks for streaming lists anyway.
const VERSION_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// The first Kubernetes version with streaming lists.
const STREAMING_SINCE: (u32, u32) = (1, 27);

/// Decides `auto` from the server's version; the explicit choices stand as they are.
///
/// `auto` is [`auto`] of the version `/version` reports.
pub(crate) async fn resolve(choice: InitialList, client: &Client) -> Strategy {
    match choice {
        InitialList::Streaming => Strategy::Streaming,
        InitialList::Paginated => Strategy::Paginated,
        InitialList::Auto => {
            // A start waits for no more than this: the version only spares a rejected request.
            let version = match tokio::time::timeout(VERSION_WAIT, client.apiserver_version()).await {
                Ok(version) => version.map_err(|e| e.to_string()),
                Err(_) => Err(format!("no answer within {VERSION_WAIT:?}")),
            };
            let strategy = auto(version.as_ref().ok().and_then(version_of));
            match &version {
                Ok(info) if strategy == Strategy::Paginated => {
                    tracing::info!(version = %info.git_version, "the API server predates streaming lists (1.27); using paginated lists")
                }
                Ok(info) if version_of(info).is_none() => {
                    tracing::info!(major = %info.major, minor = %info.minor, "unreadable API server version; asking for streaming lists (a rejection falls back to paginated lists)")
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::info!(error = %e, "cannot read the API server version; asking for streaming lists (a rejection falls back to paginated lists)")
                }
            }
            strategy
        }
    }
}

/// `auto` for a server reporting `version` (`None`: it could not be read).
///
/// Streaming lists from 1.27 on, where a server with the WatchList feature gate off (the
/// default of 1.27 to 1.31 and of 1.33) rejects them and [`watch_events`] falls back. Before
/// 1.27 they are not asked for at all, to spare one rejected request per watcher: such a
/// server does not know `sendInitialEvents` (1.19 to 1.26 reject the watch for its
/// `resourceVersionMatch`, which falls back too). A version that cannot be read (the server
/// is down when the operator starts, a vendor's unparsable one) asks for streaming lists
/// too: every server this operator supports either serves them or rejects them, and
/// deciding on paginated lists for good because of one failed request would make the
/// gentlest start depend on the server being up first. (Servers before 1.19, which would
/// ignore both parameters and never end the initial state, are not supported.)
fn auto(version: Option<(u32, u32)>) -> Strategy {
    match version {
        Some(version) if version < STREAMING_SINCE => Strategy::Paginated,
        _ => Strategy::Streaming,
    }
}

/// `(major, minor)` of a `/version` document; managed clusters report minors such as "27+".
fn version_of(info: &Info) -> Option<(u32, u32)> {
    let number = |s: &str| s.trim_end_matches(|c: char| !c.is_ascii_digit()).parse::<u32>().ok();
    Some((number(&info.major)?, number(&info.minor)?))
}

/// The watcher configuration of a strategy and collection size.
///
/// Streaming lists are served from the API server's watch cache (`resourceVersion=0`,
/// `NotOlderThan`) and hold one object at a time here. They are not cheaper for every API
/// server: kube-apiserver 1.37.2 spent more CPU on a streamed start of 30k Pods than on pages,
/// which it too serves from its cache
/// (docs/benchmarks.md#what-does-the-operator-cost-the-api-server).
///
/// Paginated lists of small collections ask for `resourceVersion=0` too, in one page, so that
/// the watch cache serves them instead of etcd. Pods are listed in pages of 500 at the most
/// recent version (a quorum read from etcd before 1.34; 1.34 and later serve the pages from
/// their watch cache's snapshots), not at `resourceVersion=0`: the watch cache of many servers ignores
/// the limit there and would answer every Pod in one response, which this process would then
/// hold whole in memory (and kube sends no `resourceVersion=0` with a page limit at all, so
/// `any_semantic()` with pages would change nothing).
///
/// The trade-off of `resourceVersion=0` ("any"): with several API servers, the one answering
/// may lag behind the one that served the previous watch, so a relist can briefly show an
/// older state than already seen. The watcher then watches from the listed resourceVersion and
/// receives every later change, so the state catches up within the lag; alert `for` durations
/// absorb such a blip.
fn config(strategy: Strategy, size: Size, fields: Option<&str>) -> watcher::Config {
    let config = match (strategy, size) {
        (Strategy::Streaming, _) => watcher::Config::default().streaming_lists(),
        (Strategy::Paginated, Size::Large) => watcher::Config::default(),
        (Strategy::Paginated, Size::Small) => {
            watcher::Config { page_size: None, ..watcher::Config::default().any_semantic() }
        }
    };
    match fields {
        Some(fields) => config.fields(fields),
        None => config,
    }
}

/// The server's message when `error` is its refusal to serve streaming lists: 422 Invalid for
/// `sendInitialEvents` (the WatchList feature gate is off) or for `resourceVersionMatch`
/// (1.19 to 1.26 forbid it on watches). Anything else (403, 410, 5xx, a failed connection)
/// is `None`: retried as it is, with the same strategy.
fn streaming_rejection(error: &watcher::Error) -> Option<&str> {
    let status = match error {
        watcher::Error::WatchStartFailed(kube::Error::Api(status)) => status,
        watcher::Error::WatchError(status) => status,
        _ => return None,
    };
    let about_streaming = |text: &str| text.contains("sendInitialEvents") || text.contains("resourceVersionMatch");
    let rejected = status.code == 422
        && status.reason == "Invalid"
        && match &status.details {
            Some(details) if !details.causes.is_empty() => details.causes.iter().any(|c| about_streaming(&c.field)),
            _ => about_streaming(&status.message),
        };
    rejected.then_some(status.message.as_str())
}

/// The events of one watcher of `api` (named `what` in logs and metrics; only the objects
/// the field selector `fields` selects, if any), as `plan` says,
/// with kube-runtime's reconnects and backoff. Errors are counted and logged, not returned;
/// a rejected streaming list, at the start or at a later relist, or one that has not ended its
/// initial state by `plan.deadline`, switches this watcher to paginated lists, once, with a
/// warning.
pub(crate) fn watch_events<K>(
    api: Api<K>,
    what: &'static str,
    size: Size,
    fields: Option<&'static str>,
    plan: Plan,
    metrics: Metrics,
) -> impl Stream<Item = watcher::Event<K>> + Send
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
{
    let strategy = plan.strategy;
    tracing::info!(watch = what, initial_list = strategy.as_str(), "starting watch");
    metrics.initial_list.with_label_values(&[what, strategy.as_str()]).inc();
    let fallback = (strategy == Strategy::Streaming).then(|| {
        let api = api.clone();
        let metrics = metrics.clone();
        let paginated = move || start(api, Strategy::Paginated, size, fields);
        let report = move |reason: &str| {
            tracing::warn!(watch = what, reason, "{FALLBACK}");
            metrics.initial_list.with_label_values(&[what, Strategy::Streaming.as_str()]).dec();
            metrics.initial_list.with_label_values(&[what, Strategy::Paginated.as_str()]).inc();
        };
        Fallback { paginated, report, deadline: plan.deadline }
    });
    log_errors(with_fallback(start(api, strategy, size, fields), fallback), what, metrics)
}

/// The warning of a watcher falling back to paginated lists.
const FALLBACK: &str = "the API server does not serve streaming lists; this watch uses paginated lists from now on";

type Events<K> = BoxStream<'static, Result<watcher::Event<K>, watcher::Error>>;

/// What a streaming watcher falls back to: `paginated()` after `report(why)`, once a streaming
/// list is refused or has not ended its initial state `deadline` after it began.
struct Fallback<P, R> {
    paginated: P,
    report: R,
    deadline: Duration,
}

/// `events` until they bring a [streaming-list rejection](streaming_rejection), whenever it
/// comes (at the start, or at a relist after a complete initial state), or until an initial
/// state (`Init`) goes without its end (`InitDone`) for the fallback's deadline; from then on
/// the events of `paginated()`, after `report(why)`. Without a `fallback`, `events` as they are.
///
/// The paginated watcher starts with a list of its own (`Init` … `InitDone`), so a switch at
/// a relist forgets what went meanwhile just as the relist would have. A later relist during
/// a rolling change of the control plane might have reached a server that streams again;
/// switching for good costs at most paginated lists until the operator restarts, where
/// retrying the rejection would leave the watcher without a state for as long as the
/// control plane keeps the gate off. A server that accepts the watch but ignores
/// `sendInitialEvents` (an older server, or a proxy in front of one that drops the parameter)
/// sends the objects as a plain watch does and never the bookmark that ends the initial
/// state: without the deadline the operator would wait for it, not ready, without a word.
fn with_fallback<K, P, R>(
    events: Events<K>,
    fallback: Option<Fallback<P, R>>,
) -> impl Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send
where
    K: Send + 'static,
    P: FnOnce() -> Events<K> + Send + 'static,
    R: FnOnce(&str) + Send + 'static,
{
    let initial_since: Option<tokio::time::Instant> = None;
    futures::stream::unfold(
        (events, fallback, initial_since),
        |(mut events, mut fallback, mut initial_since)| async move {
            loop {
                let deadline = fallback.as_ref().zip(initial_since).map(|(f, since)| since + f.deadline);
                let next = match deadline {
                    Some(at) => match tokio::time::timeout_at(at, events.next()).await {
                        Ok(next) => next,
                        Err(_) => {
                            if let Some(Fallback { paginated, report, deadline }) = fallback.take() {
                                report(&format!(
                                    "the initial state of a streaming list did not end within {}: the API server (or a \
                                     proxy in front of it) accepted the watch but ignores sendInitialEvents",
                                    crate::api::format_duration(deadline)
                                ));
                                events = paginated();
                            }
                            initial_since = None;
                            continue;
                        }
                    },
                    None => events.next().await,
                };
                let item = next?;
                match &item {
                    Ok(watcher::Event::Init) => initial_since = Some(tokio::time::Instant::now()),
                    Ok(watcher::Event::InitDone) => initial_since = None,
                    _ => {}
                }
                if let Some(reason) = item.as_ref().err().and_then(streaming_rejection) {
                    if let Some(Fallback { paginated, report, .. }) = fallback.take() {
                        report(reason);
                        events = paginated();
                        initial_since = None;
                        continue;
                    }
                }
                return Some((item, (events, fallback, initial_since)));
            }
        },
    )
}

fn start<K>(api: Api<K>, strategy: Strategy, size: Size, fields: Option<&str>) -> Events<K>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
{
    watcher(api, config(strategy, size, fields)).default_backoff().boxed()
}

/// Counts and logs watch errors; kube-runtime's backoff retries them.
fn log_errors<K, S>(stream: S, what: &'static str, metrics: Metrics) -> impl Stream<Item = watcher::Event<K>>
where
    S: Stream<Item = Result<watcher::Event<K>, watcher::Error>>,
{
    stream.filter_map(move |item| {
        if let Err(e) = &item {
            metrics.watch_restarts.inc();
            tracing::warn!(watch = what, error = %e, "watch failed; retrying with backoff");
        }
        std::future::ready(item.ok())
    })
}

#[cfg(test)]
mod tests;
