//! Logging set-up for `sidecar-watch run`: human-readable text, or one flat JSON object per
//! line in the shape of structured Kubernetes logs (`ts`, `level`, `msg`, then the event's own
//! fields at the top level — never nested under `fields`).
//!
//! The level filter comes from `RUST_LOG` (default `info`).
//!
//! The JSON event format is written here ([`FlatJson`], ~150 lines) because
//! tracing-subscriber's own (`fmt().json().flatten_event(true)`) is not that shape: on the
//! same event it writes `timestamp`, `level":"INFO"`, `message` and `target`, and a `?list`
//! field as one string (`"[\"shop\"]"`) instead of an array; it cannot rename its keys. The
//! test `tracing_subscribers_own_json_is_another_shape` measures that on every build.

use std::fmt;

use serde_json::Value;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// Log output formats (`--log-format`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One flat JSON object per line: `ts`, `level`, `msg`, `logger`, then the event's fields.
    Json,
}

/// kube-client logs a whole response body at WARN when it cannot decode it (a list of every
/// Pod, environment values included). Pods are decoded one at a time now, so that should not
/// happen; should it, the body stays out of the log whatever `RUST_LOG` says, as this more
/// specific directive wins over any broader one.
const NO_BODIES: &str = "kube_client::client=error";

/// Installs the global subscriber; a second call (tests, embedding) keeps the first one.
pub(crate) fn init(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info".into())
        .add_directive(NO_BODIES.parse().expect("a valid directive"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.event_format(FlatJson).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// The one line a fatal error prints before the process exits: `msg` plus `error` (the
/// outermost message) and `errorChain` (every cause once, outermost first).
///
/// Printed directly instead of through `tracing`, so that it also appears when the error
/// happened before (or while) the subscriber was installed.
pub fn fatal_line(format: LogFormat, msg: &str, error: &anyhow::Error) -> String {
    let chain = error_chain(&**error);
    match format {
        LogFormat::Text => format!("{msg}: {}", chain.join(": ")),
        LogFormat::Json => {
            let fields = [
                ("error".to_string(), Value::from(chain.first().cloned().unwrap_or_default())),
                ("errorChain".to_string(), Value::from(chain)),
            ];
            json_line(&jiff::Timestamp::now().to_string(), "error", msg, "sidecar_watch", &fields)
        }
    }
}

/// The messages of an error and its causes, each once: many errors repeat their source's
/// message in their own (`"reading x: No such file or directory"` above
/// `"No such file or directory"`), and a chain that says the same thing three times hides
/// what went wrong.
fn error_chain(error: &(dyn std::error::Error + 'static)) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for cause in std::iter::successors(Some(error), |e| e.source()) {
        let text = cause.to_string();
        if out.last().is_some_and(|outer| outer.contains(&text)) {
            continue;
        }
        out.push(text);
    }
    out
}

/// The JSON event format: flat keys, `msg` for the message, RFC 3339 `ts`, lowercase
/// `level`, `logger` for the target.
struct FlatJson;

impl<S, N> FormatEvent<S, N> for FlatJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, _ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        let mut fields = FieldCollector::default();
        event.record(&mut fields);
        let meta = event.metadata();
        let level = meta.level().as_str().to_ascii_lowercase();
        let line =
            json_line(&jiff::Timestamp::now().to_string(), &level, &fields.message, meta.target(), &fields.fields);
        writeln!(writer, "{line}")
    }
}

/// One JSON object with the fixed keys first (a reader's eye and `jq` both look there), then
/// the fields in the order they were logged.
fn json_line(ts: &str, level: &str, msg: &str, logger: &str, fields: &[(String, Value)]) -> String {
    let fixed = [("ts", ts), ("level", level), ("msg", msg), ("logger", logger)];
    let own = fields.iter().map(|(key, value)| {
        // A field named like a fixed key would make the object ambiguous: prefix it.
        let key = if fixed.iter().any(|(fixed, _)| fixed == key) { format!("field.{key}") } else { key.clone() };
        (Value::from(key), value.to_string())
    });
    let members: Vec<String> = fixed
        .iter()
        .map(|(key, value)| (Value::from(*key), Value::from(*value).to_string()))
        .chain(own)
        .map(|(key, value)| format!("{key}:{value}"))
        .collect();
    format!("{{{}}}", members.join(","))
}

/// Collects an event's fields as JSON values; `message` goes apart.
#[derive(Default)]
struct FieldCollector {
    message: String,
    fields: Vec<(String, Value)>,
}

impl FieldCollector {
    fn push(&mut self, field: &Field, value: Value) {
        if field.name() == "message" {
            self.message = match value {
                Value::String(s) => s,
                other => other.to_string(),
            };
        } else {
            self.fields.push((field.name().to_string(), value));
        }
    }
}

impl Visit for FieldCollector {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let text = format!("{value:?}");
        // `?list` of strings or numbers: Rust's Debug of a Vec is JSON for such elements, so
        // it is logged as a JSON array, not as the string "[]".
        if text.starts_with('[') {
            if let Ok(array @ Value::Array(_)) = serde_json::from_str::<Value>(&text) {
                self.push(field, array);
                return;
            }
        }
        self.push(field, Value::String(text));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.push(field, Value::from(value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.push(field, Value::from(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.push(field, Value::from(value));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.push(field, Value::from(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.push(field, Value::from(value));
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.push(field, Value::from(error_chain(value).join(": ")));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_chain_drops_causes_repeated_in_their_parent() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file or directory (os error 2)");
        let error = anyhow::Error::new(io)
            .context("reading /tmp/nope: No such file or directory (os error 2)")
            .context("loading the kubeconfig");
        assert_eq!(
            error_chain(&*error),
            ["loading the kubeconfig", "reading /tmp/nope: No such file or directory (os error 2)"]
        );
    }

    #[test]
    fn fatal_line_is_one_flat_json_object_with_the_chain() {
        let error = anyhow::anyhow!("file not found").context("loading the kubeconfig");
        let line = fatal_line(LogFormat::Json, "sidecar-watch failed", &error);
        assert!(!line.contains('\n'), "{line}");
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["level"], "error");
        assert_eq!(v["msg"], "sidecar-watch failed");
        assert_eq!(v["error"], "loading the kubeconfig");
        assert_eq!(v["errorChain"], serde_json::json!(["loading the kubeconfig", "file not found"]));
        assert!(v["ts"].as_str().unwrap().ends_with('Z'), "{line}");
        assert_eq!(
            fatal_line(LogFormat::Text, "sidecar-watch failed", &error),
            "sidecar-watch failed: loading the kubeconfig: file not found"
        );
    }

    use parking_lot::Mutex;
    use std::sync::Arc;
    use tracing_subscriber::fmt::MakeWriter;

    /// Where a test's subscriber writes.
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    impl<'a> MakeWriter<'a> for Buffer {
        type Writer = Buffer;
        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    /// The start-up line, as `subscriber` writes it, and parsed.
    fn start_up_line(subscriber: impl tracing::Subscriber + Send + Sync, buffer: &Buffer) -> (String, Value) {
        let namespaces: Vec<String> = vec!["shop".into(), "pay\"ments".into()];
        let none: Vec<String> = Vec::new();
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(identity = "sw-0", shard = 2u32, namespaces = ?namespaces, empty = ?none, "starting sidecar-watch");
        });
        let text = String::from_utf8(buffer.0.lock().clone()).unwrap();
        let v: Value = serde_json::from_str(text.trim()).unwrap();
        (text, v)
    }

    /// Why [`FlatJson`] exists: the same event through tracing-subscriber's flattened JSON.
    #[test]
    fn tracing_subscribers_own_json_is_another_shape() {
        let buffer = Buffer::default();
        let subscriber = tracing_subscriber::fmt().json().flatten_event(true).with_writer(buffer.clone()).finish();
        let (text, v) = start_up_line(subscriber, &buffer);
        assert_eq!((v.get("ts"), v.get("msg"), v.get("logger")), (None, None, None), "{text}");
        assert_eq!(v["message"], "starting sidecar-watch");
        assert_eq!(v["level"], "INFO");
        assert!(v["timestamp"].is_string() && v["target"].is_string(), "{text}");
        assert_eq!(v["namespaces"], "[\"shop\", \"pay\\\"ments\"]", "a list logged as a string");
    }

    #[test]
    fn events_are_flat_with_lists_as_arrays() {
        let buffer = Buffer::default();
        let subscriber = tracing_subscriber::fmt().event_format(FlatJson).with_writer(buffer.clone()).finish();
        let (text, v) = start_up_line(subscriber, &buffer);
        assert_eq!(v["msg"], "starting sidecar-watch");
        assert_eq!(v["level"], "info");
        assert_eq!(v["identity"], "sw-0");
        assert_eq!(v["shard"], 2);
        assert_eq!(v["namespaces"], serde_json::json!(["shop", "pay\"ments"]));
        assert_eq!(v["empty"], serde_json::json!([]));
        assert!(v.get("fields").is_none(), "{text}");
        assert!(text.starts_with("{\"ts\":"), "{text}");
    }
}
