//! [`WebhookReceiver`]: an HTTP server in the test process, on 127.0.0.1 and a port of the
//! kernel's choice, that records every Alertmanager webhook notification it is sent under
//! the receiver its URL path names (`POST /<receiver name>`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use serde_json::Value;

/// How many notifications a receiver keeps (bodies); past that it only counts, so that a
/// notification storm of a broken test cannot grow the test process without bound.
pub const KEPT_NOTIFICATIONS: usize = 1_000;

/// One webhook notification as received: Alertmanager's webhook document (`receiver`,
/// `status`, `alerts`, `groupLabels`, `commonLabels`, …), or the body as a JSON string when
/// it was not JSON.
#[derive(Clone, Debug)]
pub struct Notification {
    /// The receiver, from the URL path.
    pub receiver: String,
    /// The body.
    pub body: Value,
}

impl Notification {
    /// The alerts it carries.
    pub fn alerts(&self) -> &[Value] {
        self.body.get("alerts").and_then(Value::as_array).map_or(&[], Vec::as_slice)
    }

    /// One line: receiver, status, and each alert's name, status and labels.
    pub fn describe(&self) -> String {
        let alerts: Vec<String> = self
            .alerts()
            .iter()
            .map(|a| {
                format!(
                    "{} ({}) {}",
                    a.pointer("/labels/alertname").and_then(Value::as_str).unwrap_or("?"),
                    a.get("status").and_then(Value::as_str).unwrap_or("?"),
                    a.get("labels").unwrap_or(&Value::Null)
                )
            })
            .collect();
        format!(
            "{}: {} [{}]",
            self.receiver,
            self.body.get("status").and_then(Value::as_str).unwrap_or("?"),
            alerts.join("; ")
        )
    }
}

#[derive(Debug, Default)]
struct Record {
    kept: Vec<Notification>,
    counts: BTreeMap<String, u64>,
}

type Shared = Arc<Mutex<Record>>;

/// The webhook receiver; stops serving when dropped (printing its record if the test panics).
#[derive(Debug)]
pub struct WebhookReceiver {
    addr: SocketAddr,
    record: Shared,
    task: tokio::task::JoinHandle<()>,
}

async fn receive(State(record): State<Shared>, Path(receiver): Path<String>, body: Bytes) -> StatusCode {
    let body = serde_json::from_slice(&body).unwrap_or_else(|_| Value::from(String::from_utf8_lossy(&body)));
    let mut record = record.lock().unwrap_or_else(PoisonError::into_inner);
    *record.counts.entry(receiver.clone()).or_default() += 1;
    if record.kept.len() < KEPT_NOTIFICATIONS {
        record.kept.push(Notification { receiver, body });
    }
    StatusCode::OK
}

impl WebhookReceiver {
    /// Binds 127.0.0.1:0 and serves in a task of the current runtime.
    pub async fn start() -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let record = Shared::default();
        let app = Router::new().route("/{receiver}", post(receive)).with_state(record.clone());
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                eprintln!("webhook receiver on {addr} stopped: {e}");
            }
        });
        Ok(Self { addr, record, task })
    }

    /// `http://127.0.0.1:<port>`: the base of every receiver's URL.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn with<T>(&self, f: impl FnOnce(&Record) -> T) -> T {
        f(&self.record.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Every notification kept so far, in the order received.
    pub fn notifications(&self) -> Vec<Notification> {
        self.with(|r| r.kept.clone())
    }

    /// The notifications kept for `receiver`, in the order received.
    pub fn received(&self, receiver: &str) -> Vec<Notification> {
        self.with(|r| r.kept.iter().filter(|n| n.receiver == receiver).cloned().collect())
    }

    /// How many notifications `receiver` was sent (also those past [`KEPT_NOTIFICATIONS`]).
    pub fn count(&self, receiver: &str) -> u64 {
        self.with(|r| r.counts.get(receiver).copied().unwrap_or(0))
    }

    /// Notifications per receiver.
    pub fn counts(&self) -> BTreeMap<String, u64> {
        self.with(|r| r.counts.clone())
    }

    /// The record, one line per notification, for a failure message.
    pub fn describe(&self) -> String {
        self.with(|r| {
            if r.kept.is_empty() {
                return "(no notifications)".to_string();
            }
            let lines: Vec<String> = r.kept.iter().map(Notification::describe).collect();
            format!("counts {:?}\n{}", r.counts, lines.join("\n"))
        })
    }
}

impl Drop for WebhookReceiver {
    /// Stops serving; prints the record when the test panics (or `E2E_SHOW_LOGS` is set), as
    /// the operator's and Alertmanager's logs are.
    fn drop(&mut self) {
        if std::thread::panicking() || std::env::var_os("E2E_SHOW_LOGS").is_some() {
            eprintln!("----- webhook receiver {} -----\n{}\n----- end of record -----", self.addr, self.describe());
        }
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A POST as Alertmanager sends it, on a connection of its own.
    async fn post(port: u16, path: &str, body: &str) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let request = format!(
            "POST {path} HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        response
    }

    #[tokio::test]
    async fn records_by_receiver() {
        let hook = WebhookReceiver::start().await.unwrap();
        let port = hook.addr.port();
        let firing = r#"{"status":"firing","alerts":[{"status":"firing","labels":{"alertname":"X"}}]}"#;
        assert!(post(port, "/team-a", firing).await.starts_with("HTTP/1.1 200"));
        assert!(post(port, "/b", "x").await.starts_with("HTTP/1.1 200"));
        assert_eq!(hook.counts(), BTreeMap::from([("b".to_string(), 1), ("team-a".to_string(), 1)]));
        assert_eq!(hook.count("c"), 0);
        let a = hook.received("team-a");
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].alerts().len(), 1);
        assert_eq!(a[0].describe(), r#"team-a: firing [X (firing) {"alertname":"X"}]"#);
        assert_eq!(hook.received("b")[0].body, "x");
        assert_eq!(hook.notifications().len(), 2);
    }
}
