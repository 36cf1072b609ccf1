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
pub enum InitialList {
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
pub enum Strategy {
    /// A WATCH with `sendInitialEvents`.
    Streaming,
    /// LIST, then WATCH from the list's resourceVersion.
    Paginated,
}

impl Strategy {
    /// The `strategy` label of `sidecar_watch_initial_list`.
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Streaming => "streaming",
            Strategy::Paginated => "paginated",
        }
    }
}

/// How large a collection can grow, which decides how a paginated list reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Size {
    /// Pods: one per workload replica, up to 100k and more.
    Large,
    /// Namespaces and policies: at most a few thousand small objects.
    Small,
}

/// The first Kubernetes version with streaming lists.
const STREAMING_SINCE: (u32, u32) = (1, 27);

/// Decides `auto` from the server's version; the explicit choices stand as they are.
///
/// `auto` is [`auto`] of the version `/version` reports.
pub async fn resolve(choice: InitialList, client: &Client) -> Strategy {
    match choice {
        InitialList::Streaming => Strategy::Streaming,
        InitialList::Paginated => Strategy::Paginated,
        InitialList::Auto => {
            let version = client.apiserver_version().await;
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
/// server: kube-apiserver 1.37.2 spent about twice the CPU on a streamed start of 10k Pods as
/// on pages, which it too serves from its cache (docs/benchmarks.md).
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
fn config(strategy: Strategy, size: Size) -> watcher::Config {
    match (strategy, size) {
        (Strategy::Streaming, _) => watcher::Config::default().streaming_lists(),
        (Strategy::Paginated, Size::Large) => watcher::Config::default(),
        (Strategy::Paginated, Size::Small) => {
            watcher::Config { page_size: None, ..watcher::Config::default().any_semantic() }
        }
    }
}

/// The server's message when `error` is its refusal to serve streaming lists: 422 Invalid for
/// `sendInitialEvents` (the WatchList feature gate is off) or for `resourceVersionMatch`
/// (1.19 to 1.26 forbid it on watches). Anything else (403, 410, 5xx, a failed connection)
/// is `None`: retried as it is, with the same strategy.
pub fn streaming_rejection(error: &watcher::Error) -> Option<&str> {
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

/// The events of one watcher of `api` (named `what` in logs and metrics), with `strategy`
/// and kube-runtime's reconnects and backoff. Errors are counted and logged, not returned;
/// a rejected streaming list, at the start or at a later relist, switches this watcher
/// to paginated lists, once, with a warning.
pub fn watch_events<K>(
    api: Api<K>,
    what: &'static str,
    size: Size,
    strategy: Strategy,
    metrics: Metrics,
) -> impl Stream<Item = watcher::Event<K>> + Send
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
{
    tracing::info!(watch = what, initial_list = strategy.as_str(), "starting watch");
    metrics.initial_list.with_label_values(&[what, strategy.as_str()]).inc();
    let fallback = (strategy == Strategy::Streaming).then(|| {
        let api = api.clone();
        let metrics = metrics.clone();
        let paginated = move || start(api, Strategy::Paginated, size);
        let report = move |reason: &str| {
            tracing::warn!(watch = what, reason, "{FALLBACK}");
            metrics.initial_list.with_label_values(&[what, Strategy::Streaming.as_str()]).dec();
            metrics.initial_list.with_label_values(&[what, Strategy::Paginated.as_str()]).inc();
        };
        (paginated, report)
    });
    log_errors(with_fallback(start(api, strategy, size), fallback), what, metrics)
}

/// The warning of a watcher falling back to paginated lists.
const FALLBACK: &str = "the API server does not serve streaming lists; this watch uses paginated lists from now on";

type Events<K> = BoxStream<'static, Result<watcher::Event<K>, watcher::Error>>;

/// `events` until they bring a [streaming-list rejection](streaming_rejection), whenever it
/// comes (at the start, or at a relist after a complete initial state); from then on the
/// events of `paginated()`, after `report(server's message)`. Without a `fallback`, `events`
/// as they are.
///
/// The paginated watcher starts with a list of its own (`Init` … `InitDone`), so a switch at
/// a relist forgets what went meanwhile just as the relist would have. A later relist during
/// a rolling change of the control plane might have reached a server that streams again;
/// switching for good costs at most paginated lists until the operator restarts, where
/// retrying the rejection would leave the watcher without a state for as long as the
/// control plane keeps the gate off.
fn with_fallback<K, P, R>(
    events: Events<K>,
    fallback: Option<(P, R)>,
) -> impl Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send
where
    K: Send + 'static,
    P: FnOnce() -> Events<K> + Send + 'static,
    R: FnOnce(&str) + Send + 'static,
{
    futures::stream::unfold((events, fallback), |(mut events, mut fallback)| async move {
        loop {
            let item = events.next().await?;
            if let Some(reason) = item.as_ref().err().and_then(streaming_rejection) {
                if let Some((paginated, report)) = fallback.take() {
                    report(reason);
                    events = paginated();
                    continue;
                }
            }
            return Some((item, (events, fallback)));
        }
    })
}

fn start<K>(api: Api<K>, strategy: Strategy, size: Size) -> Events<K>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
{
    watcher(api, config(strategy, size)).default_backoff().boxed()
}

/// Counts and logs watch errors; kube-runtime's backoff retries them.
fn log_errors<K, S>(stream: S, what: &'static str, metrics: Metrics) -> impl Stream<Item = watcher::Event<K>>
where
    S: Stream<Item = Result<watcher::Event<K>, watcher::Error>>,
{
    stream.filter_map(move |item| {
        let metrics = metrics.clone();
        async move {
            match item {
                Ok(event) => Some(event),
                Err(e) => {
                    metrics.watch_restarts.inc();
                    tracing::warn!(watch = what, error = %e, "watch failed; retrying with backoff");
                    None
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use kube::core::response::{StatusCause, StatusDetails};
    use kube::core::Status;

    use super::*;

    fn status(code: u16, reason: &str, message: &str, fields: &[&str]) -> Status {
        let details = (!fields.is_empty()).then(|| StatusDetails {
            name: String::new(),
            group: "meta.k8s.io".into(),
            kind: "ListOptions".into(),
            uid: String::new(),
            causes: fields
                .iter()
                .map(|f| StatusCause {
                    reason: "FieldValueForbidden".into(),
                    message: message.into(),
                    field: f.to_string(),
                })
                .collect(),
            retry_after_seconds: 0,
        });
        Status { code, reason: reason.into(), message: message.into(), details, ..Status::default() }
    }

    fn start_failed(status: Status) -> watcher::Error {
        watcher::Error::WatchStartFailed(kube::Error::Api(Box::new(status)))
    }

    fn is_rejection(error: &watcher::Error) -> bool {
        streaming_rejection(error).is_some()
    }

    const GATE_OFF: &str = "ListOptions.meta.k8s.io \"\" is invalid: sendInitialEvents: Forbidden: sendInitialEvents is forbidden for watch unless the WatchList feature gate is enabled";
    const BEFORE_1_27: &str = "ListOptions.meta.k8s.io \"\" is invalid: resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden for watch";

    #[test]
    fn rejections_of_streaming_lists_fall_back() {
        assert!(is_rejection(&start_failed(status(422, "Invalid", GATE_OFF, &["sendInitialEvents"]))));
        assert!(is_rejection(&start_failed(status(422, "Invalid", BEFORE_1_27, &["resourceVersionMatch"]))));
        // A Status without causes is judged by its message.
        assert!(is_rejection(&start_failed(status(422, "Invalid", GATE_OFF, &[]))));
        // The same refusal as an ERROR event of the watch.
        assert!(is_rejection(&watcher::Error::WatchError(Box::new(status(
            422,
            "Invalid",
            GATE_OFF,
            &["sendInitialEvents"]
        )))));
    }

    #[test]
    fn other_errors_keep_the_strategy() {
        let keep = [
            start_failed(status(403, "Forbidden", "pods is forbidden: User \"x\" cannot watch resource \"pods\"", &[])),
            start_failed(status(500, "InternalError", "sendInitialEvents: etcd timed out", &[])),
            start_failed(status(503, "ServiceUnavailable", "", &[])),
            start_failed(status(429, "TooManyRequests", "", &[])),
            watcher::Error::WatchError(Box::new(status(410, "Expired", "too old resource version: 1 (5)", &[]))),
            // Invalid, but for another parameter.
            start_failed(status(422, "Invalid", "labelSelector: Invalid value", &["labelSelector"])),
            // A LIST is no streaming list.
            watcher::Error::InitialListFailed(kube::Error::Api(Box::new(status(
                422,
                "Invalid",
                GATE_OFF,
                &["sendInitialEvents"],
            )))),
            watcher::Error::NoResourceVersion,
        ];
        for error in keep {
            assert!(!is_rejection(&error), "{error:?}");
        }
    }

    type Item = Result<watcher::Event<String>, watcher::Error>;

    fn gate_off() -> watcher::Error {
        start_failed(status(422, "Invalid", GATE_OFF, &["sendInitialEvents"]))
    }

    /// What `with_fallback` yields from `streaming`, falling back to `paginated`: each event
    /// (errors by their message) and the reasons reported.
    async fn run_fallback(streaming: Vec<Item>, paginated: Vec<Item>) -> (Vec<String>, Vec<String>) {
        let reports = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let reported = reports.clone();
        let fallback = Some((
            move || futures::stream::iter(paginated).boxed(),
            move |reason: &str| reported.lock().unwrap().push(reason.to_string()),
        ));
        let seen = with_fallback(futures::stream::iter(streaming).boxed(), fallback)
            .map(|item| match item {
                Ok(watcher::Event::Init) => "Init".to_string(),
                Ok(watcher::Event::InitApply(o)) => format!("InitApply {o}"),
                Ok(watcher::Event::InitDone) => "InitDone".to_string(),
                Ok(watcher::Event::Apply(o)) => format!("Apply {o}"),
                Ok(watcher::Event::Delete(o)) => format!("Delete {o}"),
                Err(e) => format!("Err {}", streaming_rejection(&e).map_or("other", |_| "rejection")),
            })
            .collect::<Vec<_>>()
            .await;
        let reports = reports.lock().unwrap().clone();
        (seen, reports)
    }

    fn listing(name: &str) -> Vec<Item> {
        vec![Ok(watcher::Event::Init), Ok(watcher::Event::InitApply(name.to_string())), Ok(watcher::Event::InitDone)]
    }

    #[tokio::test]
    async fn a_rejection_before_the_first_initial_state_switches_once_for_good() {
        let forbidden = || start_failed(status(403, "Forbidden", "pods is forbidden", &[]));
        // A 403 is passed on (kube-runtime retries it); the rejection after it switches.
        let streaming = vec![Err(forbidden()), Err(gate_off()), Ok(watcher::Event::Apply("never".into()))];
        let mut paginated = listing("a");
        // A rejection from the paginated watcher is no reason to switch again.
        paginated.push(Err(gate_off()));
        let (seen, reports) = run_fallback(streaming, paginated).await;
        assert_eq!(seen, ["Err other", "Init", "InitApply a", "InitDone", "Err rejection"]);
        assert_eq!(reports, [GATE_OFF]);
    }

    #[tokio::test]
    async fn a_rejection_at_a_later_relist_switches_too() {
        // Streamed once; then the control plane is changed to one with the gate off (1.32 to
        // 1.33), the watch falls behind (410) and its relist is rejected: the watcher lists
        // instead of retrying the rejection forever without a state.
        let mut streaming = listing("a");
        streaming.push(Ok(watcher::Event::Apply("b".into())));
        streaming.push(Err(watcher::Error::WatchError(Box::new(status(
            410,
            "Expired",
            "too old resource version",
            &[],
        )))));
        streaming.push(Err(gate_off()));
        streaming.push(Ok(watcher::Event::Apply("never".into())));
        let (seen, reports) = run_fallback(streaming, listing("c")).await;
        assert_eq!(
            seen,
            ["Init", "InitApply a", "InitDone", "Apply b", "Err other", "Init", "InitApply c", "InitDone"]
        );
        assert_eq!(reports, [GATE_OFF]);
    }

    #[tokio::test]
    async fn without_a_fallback_rejections_pass_as_they_are() {
        let streaming = vec![Err(gate_off()), Ok(watcher::Event::Apply("a".into()))];
        type Fallback = (fn() -> Events<String>, fn(&str));
        let fallback: Option<Fallback> = None;
        let seen: Vec<bool> =
            with_fallback(futures::stream::iter(streaming).boxed(), fallback).map(|item| item.is_ok()).collect().await;
        assert_eq!(seen, [false, true]);
    }

    #[test]
    fn auto_streams_unless_the_server_reports_a_version_before_1_27() {
        assert_eq!(auto(Some((1, 37))), Strategy::Streaming);
        assert_eq!(auto(Some((1, 33))), Strategy::Streaming, "gate off by default there: the rejection falls back");
        assert_eq!(auto(Some((1, 27))), Strategy::Streaming);
        assert_eq!(auto(Some((2, 0))), Strategy::Streaming);
        assert_eq!(auto(Some((1, 26))), Strategy::Paginated);
        assert_eq!(auto(Some((1, 19))), Strategy::Paginated);
        // Not known (the server was down, or its version unparsable): asked; a refusal falls back.
        assert_eq!(auto(None), Strategy::Streaming);
    }

    #[test]
    fn the_default_is_auto() {
        use clap::CommandFactory;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            run: crate::controller::RunArgs,
        }
        // The declared default, whatever SIDECAR_WATCH_INITIAL_LIST the test runs with.
        let command = Cli::command();
        let arg = command.get_arguments().find(|a| a.get_id() == "initial_list").expect("--initial-list");
        assert_eq!(arg.get_default_values(), ["auto"]);
        assert_eq!(<InitialList as clap::ValueEnum>::from_str("auto", false), Ok(InitialList::Auto));
    }

    #[test]
    fn versions_with_vendor_suffixes() {
        let info = |major: &str, minor: &str| Info { major: major.into(), minor: minor.into(), ..Info::default() };
        assert_eq!(version_of(&info("1", "27")), Some((1, 27)));
        assert_eq!(version_of(&info("1", "26+")), Some((1, 26)));
        assert_eq!(version_of(&info("1", "")), None);
        assert!(version_of(&info("1", "27+")).unwrap() >= STREAMING_SINCE);
        assert!(version_of(&info("1", "26")).unwrap() < STREAMING_SINCE);
    }

    #[test]
    fn pods_are_never_listed_unpaginated() {
        assert_eq!(config(Strategy::Paginated, Size::Large).page_size, Some(500));
        assert_eq!(config(Strategy::Paginated, Size::Small).page_size, None);
        assert_eq!(config(Strategy::Paginated, Size::Small).list_semantic, watcher::ListSemantic::Any);
        assert_eq!(
            config(Strategy::Streaming, Size::Large).initial_list_strategy,
            watcher::InitialListStrategy::StreamingList
        );
    }
}
