//! The strategy's choice and the fall back to paginated lists, on hand-made event streams.
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
    run_fallback_of(futures::stream::iter(streaming).boxed(), paginated).await
}

/// [`run_fallback`] of a stream, with the default deadline of five minutes.
async fn run_fallback_of(streaming: Events<String>, paginated: Vec<Item>) -> (Vec<String>, Vec<String>) {
    let reports = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let reported = reports.clone();
    let fallback = Some(Fallback {
        paginated: move || futures::stream::iter(paginated).boxed(),
        report: move |reason: &str| reported.lock().unwrap().push(reason.to_string()),
        deadline: Duration::from_secs(300),
    });
    let seen = with_fallback(streaming, fallback)
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
    streaming.push(Err(watcher::Error::WatchError(Box::new(status(410, "Expired", "too old resource version", &[])))));
    streaming.push(Err(gate_off()));
    streaming.push(Ok(watcher::Event::Apply("never".into())));
    let (seen, reports) = run_fallback(streaming, listing("c")).await;
    assert_eq!(seen, ["Init", "InitApply a", "InitDone", "Apply b", "Err other", "Init", "InitApply c", "InitDone"]);
    assert_eq!(reports, [GATE_OFF]);
}

#[tokio::test]
async fn without_a_fallback_rejections_pass_as_they_are() {
    let streaming = vec![Err(gate_off()), Ok(watcher::Event::Apply("a".into()))];
    type NoFallback = Fallback<fn() -> Events<String>, fn(&str)>;
    let fallback: Option<NoFallback> = None;
    let seen: Vec<bool> =
        with_fallback(futures::stream::iter(streaming).boxed(), fallback).map(|item| item.is_ok()).collect().await;
    assert_eq!(seen, [false, true]);
}

/// A streaming watch whose server sends the objects but never the bookmark that ends the
/// initial state: `events`, then nothing, ever.
fn never_ending(events: Vec<Item>) -> Events<String> {
    futures::stream::iter(events).chain(futures::stream::pending()).boxed()
}

#[tokio::test(start_paused = true)]
async fn an_initial_state_that_never_ends_falls_back_at_the_deadline() {
    let started = tokio::time::Instant::now();
    let streaming = never_ending(vec![Ok(watcher::Event::Init), Ok(watcher::Event::InitApply("a".into()))]);
    let mut paginated = listing("b");
    paginated.push(Ok(watcher::Event::Apply("c".into())));
    let (seen, reports) = run_fallback_of(streaming, paginated).await;
    assert_eq!(seen, ["Init", "InitApply a", "Init", "InitApply b", "InitDone", "Apply c"]);
    assert_eq!(
        reports,
        ["the initial state of a streaming list did not end within 5m: the API server (or a proxy in front of \
          it) accepted the watch but ignores sendInitialEvents"]
    );
    assert_eq!(started.elapsed(), Duration::from_secs(300));
}

#[tokio::test(start_paused = true)]
async fn an_ended_initial_state_has_no_deadline() {
    // Streamed and ended; then quiet for an hour (no changes): no fall back.
    let (seen, reports) =
        tokio::time::timeout(Duration::from_secs(3600), run_fallback_of(never_ending(listing("a")), listing("never")))
            .await
            .unwrap_or_else(|_| (vec!["quiet".into()], vec![]));
    assert_eq!((seen, reports), (vec!["quiet".to_string()], vec![]));
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
    assert_eq!(config(Strategy::Paginated, Size::Large, None).page_size, Some(500));
    assert_eq!(config(Strategy::Paginated, Size::Small, None).page_size, None);
    assert_eq!(config(Strategy::Paginated, Size::Small, None).list_semantic, watcher::ListSemantic::Any);
    assert_eq!(
        config(Strategy::Streaming, Size::Large, None).initial_list_strategy,
        watcher::InitialListStrategy::StreamingList
    );
}
