//! The three ways a user hears of a scenario, each watched from the benchmark with the first
//! instant it was seen: an alert firing in Prometheus from one rule set (polled every
//! 250 ms), sidecar-watch's Warning Event (a watch on Events), and its
//! `sidecar_alerts{alertstate="firing"}` series (its `/metrics` polled every 250 ms).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::events::v1::Event;
use kube::api::Api;
use kube::runtime::watcher;
use kube::Client;
use serde_json::Value;
use sidecar_watch_harness::ksm::rules::RuleSet;
use sidecar_watch_harness::prometheus::Prometheus;
use tokio::task::JoinSet;

use super::scenarios::NAMESPACE;
use crate::operator::scrape;
use crate::prom::Scrape;

/// Something seen about a scenario Pod.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Seen {
    /// A Prometheus alert of `RuleSet` named `alert` firing for Pod `pod`.
    Rule { set: RuleSet, pod: String, alert: String },
    /// sidecar-watch's Warning Event with reason `alert` on Pod `pod`.
    Event { pod: String, alert: String },
    /// sidecar-watch's `sidecar_alerts{alertstate="firing"}` series of `alert` for `pod`.
    Series { pod: String, alert: String },
}

/// First sightings, shared by the watchers.
#[derive(Debug, Default)]
pub struct Sightings {
    first: Mutex<HashMap<Seen, Instant>>,
}

impl Sightings {
    fn see(&self, what: Seen, at: Instant) {
        if let Ok(mut first) = self.first.lock() {
            first.entry(what).or_insert(at);
        }
    }

    /// When `what` was first seen.
    pub fn first(&self, what: &Seen) -> Option<Instant> {
        self.first.lock().ok()?.get(what).copied()
    }

    /// Every alert of `set` seen firing for `pod`, earliest first.
    pub fn rule_alerts(&self, set: RuleSet, pod: &str) -> Vec<(String, Instant)> {
        let Ok(first) = self.first.lock() else { return Vec::new() };
        let mut found: Vec<(String, Instant)> = first
            .iter()
            .filter_map(|(k, t)| match k {
                Seen::Rule { set: s, pod: p, alert } if *s == set && p == pod => Some((alert.clone(), *t)),
                _ => None,
            })
            .collect();
        found.sort_by_key(|(_, t)| *t);
        found
    }
}

const POLL: Duration = Duration::from_millis(250);

/// Polls Prometheus' alerting rules: every firing alert of the scenario namespace.
async fn prometheus(prom: Arc<Prometheus>, seen: Arc<Sightings>) {
    loop {
        if let Ok(data) = prom.alerting_rules().await {
            let at = Instant::now();
            for group in data["groups"].as_array().into_iter().flatten() {
                let Some(set) = group["file"].as_str().and_then(RuleSet::of_file) else { continue };
                for rule in group["rules"].as_array().into_iter().flatten() {
                    for alert in rule["alerts"].as_array().into_iter().flatten() {
                        let label = |k: &str| alert["labels"][k].as_str().unwrap_or_default().to_string();
                        if alert["state"] == "firing" && label("namespace") == NAMESPACE {
                            seen.see(Seen::Rule { set, pod: label("pod"), alert: label("alertname") }, at);
                        }
                    }
                }
            }
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Polls the operator's `/metrics` for firing alert series of the scenario namespace.
async fn series(port: u16, seen: Arc<Sightings>) {
    let namespace = format!("namespace=\"{NAMESPACE}\"");
    loop {
        if let Ok(r) = scrape(port).await {
            let at = Instant::now();
            let lines: String = r
                .body
                .lines()
                .filter(|l| {
                    l.starts_with("sidecar_alerts{") && l.contains("alertstate=\"firing\"") && l.contains(&namespace)
                })
                .flat_map(|l| [l, "\n"])
                .collect();
            if let Ok(parsed) = Scrape::parse(&lines) {
                for s in parsed.samples {
                    let label = |k: &str| s.labels.get(k).cloned().unwrap_or_default();
                    seen.see(Seen::Series { pod: label("pod"), alert: label("alertname") }, at);
                }
            }
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Watches Events in the scenario namespace: each Warning is noted when it arrives.
async fn events(client: Client, seen: Arc<Sightings>) {
    let api: Api<Event> = Api::namespaced(client, NAMESPACE);
    let mut stream = watcher(api, watcher::Config::default()).boxed();
    while let Some(item) = stream.next().await {
        let at = Instant::now();
        let (watcher::Event::Apply(e) | watcher::Event::InitApply(e)) = (match item {
            Ok(e) => e,
            Err(_) => continue,
        }) else {
            continue;
        };
        if e.type_.as_deref() == Some("Warning") {
            let pod = e.regarding.as_ref().and_then(|r| r.name.clone()).unwrap_or_default();
            seen.see(Seen::Event { pod, alert: e.reason.clone().unwrap_or_default() }, at);
        }
    }
}

/// The three watchers; they stop when this is dropped.
pub struct Watchers {
    pub seen: Arc<Sightings>,
    _tasks: JoinSet<()>,
}

impl Watchers {
    /// Starts watching Prometheus, the operator's `/metrics` on `operator_port` and Events.
    pub fn start(prom: Arc<Prometheus>, operator_port: u16, client: Client) -> Self {
        let seen = Arc::new(Sightings::default());
        let mut tasks = JoinSet::new();
        tasks.spawn(prometheus(prom, seen.clone()));
        tasks.spawn(series(operator_port, seen.clone()));
        tasks.spawn(events(client, seen.clone()));
        Self { seen, _tasks: tasks }
    }
}

/// Prometheus' view of its targets: `job → health`, for the log.
pub async fn target_health(prom: &Prometheus) -> Vec<(String, String)> {
    let Ok(data) = prom.targets().await else { return Vec::new() };
    data["activeTargets"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t: &Value| {
            let get = |k: &str| t[k].as_str().unwrap_or_default().to_string();
            (
                t["labels"]["job"].as_str().unwrap_or_default().to_string(),
                format!("{} {}", get("health"), get("lastError")),
            )
        })
        .collect()
}
