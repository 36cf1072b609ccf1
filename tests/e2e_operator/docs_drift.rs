//! docs/metrics.md against the real exposition: every metric family a running operator
//! serves, with a tracked sidecar firing an alert and one that became ready, is in the guide's
//! table, and every family the table names is served (but for counters no event of this test
//! counts).

use std::collections::BTreeSet;

use serde_json::json;

use crate::support::*;

/// The families of a Prometheus text exposition (`# TYPE` lines).
fn served(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .map(String::from)
        .collect()
}

/// Labelled counters whose families appear with their first count: an undecodable object, a
/// limit reached, a `/metrics` client reviewed. None happens in this test.
const SERVED_FROM_THE_FIRST_COUNT: [&str; 3] =
    ["sidecar_watch_decode_errors_total", "sidecar_watch_limited_total", "sidecar_watch_reviews_total"];

/// The backticked metric names in the first column of the guide's table "The metric families".
fn documented(guide: &str) -> BTreeSet<String> {
    let section = guide.split("\n## ").find(|s| s.starts_with("The metric families")).expect("the families section");
    let first_cells: Vec<&str> =
        section.lines().filter_map(|l| l.strip_prefix("| ")).filter_map(|l| l.split(" | ").next()).collect();
    first_cells
        .iter()
        .flat_map(|cell| cell.split('`').skip(1).step_by(2))
        // `name{label,…}` names the family `name`.
        .map(|quoted| quoted.split('{').next().unwrap_or_default())
        .filter(|name| {
            (name.starts_with("sidecar_") || name.starts_with("process_"))
                && name.chars().all(|c| c.is_ascii_lowercase() || c == '_' || c == '*')
        })
        .map(String::from)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_family_served_is_in_the_metrics_guide() {
    let c = Cluster::start("metrics-doc").await;
    c.apply_app_policy("mesh", "web", json!({"sidecarNotReady": {"for": "1s", "severity": "warning"}})).await;
    let op = Operator::start(&c, "op-0", &[]).await;
    let broken = c.create_pod(native_pod("broken", "web", "app", "istio-proxy")).await;
    let fine = c.create_pod(native_pod("fine", "web", "app", "istio-proxy")).await;
    drive(&broken, &[("app", true), ("istio-proxy", false)]).await;
    // Watched from its start to ready: its start-up is timed.
    drive(&fine, &[("app", true), ("istio-proxy", false)]).await;
    set_ready(&fine, "istio-proxy", true).await;
    op.wait_scrape("an alert firing and a start-up timed", |s| {
        let firing = s.series_with(&[("alertstate", "firing")]);
        let timed = s.find("sidecar_startup_seconds_count", &[]).len();
        (firing > 0 && timed > 0).then_some(()).ok_or_else(|| format!("{firing} firing, {timed} start-ups timed"))
    })
    .await;
    let text = op.metrics_text().await.expect("a scrape");
    let guide = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/metrics.md")).expect("the guide");
    let documented = documented(&guide);
    let covered = |family: &String| {
        documented.contains(family)
            || documented.iter().any(|d| d.strip_suffix('*').is_some_and(|prefix| family.starts_with(prefix)))
    };
    let served = served(&text);
    let undocumented: Vec<&String> = served.iter().filter(|f| !covered(f)).collect();
    assert_eq!(undocumented, Vec::<&String>::new(), "served but not in docs/metrics.md");
    let unserved: Vec<&String> = documented
        .iter()
        .filter(|d| !d.ends_with('*') && !served.contains(*d) && !SERVED_FROM_THE_FIRST_COUNT.contains(&d.as_str()))
        .collect();
    assert_eq!(unserved, Vec::<&String>::new(), "in docs/metrics.md but not served");
}
