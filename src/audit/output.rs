//! Writing the result: a table for people (ages like kubectl's, control characters escaped,
//! colour only on a terminal), JSON and YAML for scripts, SARIF for code scanning. A closed
//! pipe (`| head`) is told apart from any other write error (a full disk), which is reported.

use std::fmt::Write as _;
use std::io::{IsTerminal, Write};

use jiff::Timestamp;

use super::inventory::{self, InventoryRow};
use super::{sarif, AuditError, Finding, OutputFormat};
use crate::api::{escape_control, Severity};
use crate::engine::AlertState;

/// Writes to standard output what `-o format` asks for: the findings, or the inventory
/// `rows` builds from them (only then: `audit` keeps each Pod's sidecars for it).
pub(super) fn write(
    format: OutputFormat,
    findings: &[Finding],
    now: Timestamp,
    rows: impl FnOnce() -> Vec<InventoryRow>,
) -> Result<(), AuditError> {
    let stdout = std::io::stdout();
    let colour = stdout.is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let mut out = std::io::BufWriter::new(stdout.lock());
    let written = match format {
        OutputFormat::Table => out.write_all(render_table(findings, now, colour).as_bytes()),
        OutputFormat::Json => write_json(&mut out, findings),
        OutputFormat::Yaml => write_yaml(&mut out, findings),
        OutputFormat::Sarif => write_json(&mut out, &sarif::log(findings)),
        OutputFormat::Inventory => out.write_all(inventory::render(&rows()).as_bytes()),
        OutputFormat::InventoryJson => write_json(&mut out, &rows()),
    }
    .and_then(|()| out.flush());
    match written {
        // The reader has what it wanted (`| head -1`): nothing more to say.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(AuditError::ClosedPipe),
        Err(e) => Err(AuditError::Write(e)),
        Ok(()) => Ok(()),
    }
}

/// `value` as indented JSON, then a newline.
fn write_json<T: serde::Serialize + ?Sized>(out: &mut impl Write, value: &T) -> std::io::Result<()> {
    serde_json::to_writer_pretty(&mut *out, value).map_err(std::io::Error::from)?;
    out.write_all(b"\n")
}

fn write_yaml(out: &mut impl Write, findings: &[Finding]) -> std::io::Result<()> {
    // An empty list as `[]`, like kubectl prints an empty result, rather than nothing.
    if findings.is_empty() {
        return out.write_all(b"[]\n");
    }
    // The YAML emitter hides the writer's error in its own; kept here, so that a closed pipe
    // is still told from a full disk.
    let mut out = KeepError { inner: out, error: None };
    serde_norway::to_writer(&mut out, findings)
        .map_err(|e| out.error.take().unwrap_or_else(|| std::io::Error::other(e)))
}

/// A writer that keeps the first error of the writer it wraps.
struct KeepError<W> {
    inner: W,
    error: Option<std::io::Error>,
}

impl<W: Write> Write for KeepError<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.inner.write(buf).map_err(|e| self.keep(e))
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush().map_err(|e| self.keep(e))
    }
}

impl<W> KeepError<W> {
    fn keep(&mut self, error: std::io::Error) -> std::io::Error {
        let kind = error.kind();
        self.error.get_or_insert(error);
        kind.into()
    }
}

/// The widest cell that widens its column: `namespace/pod` of the longest names the API
/// server admits (63 + 1 + 253). A longer one (a hand-written manifest's) is printed whole
/// but unaligned: padding every row to it made the table rows × its width (the fuzz target
/// `audit_output`: 64 findings, one 100 KB name, 6.4 MB of blanks).
const MAX_ALIGNED_CHARS: usize = 317;

/// The width of each column: its widest cell of at most [`MAX_ALIGNED_CHARS`] characters, or
/// its header's (`headers`: their widths).
pub(super) fn column_widths<const N: usize>(headers: [usize; N], rows: &[[String; N]]) -> [usize; N] {
    let mut widths = headers;
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            let chars = cell.chars().count();
            if chars <= MAX_ALIGNED_CHARS {
                *w = (*w).max(chars);
            }
        }
    }
    widths
}

/// Renders findings as aligned columns, most severe first; `colour` marks the severity.
pub fn render_table(findings: &[Finding], now: Timestamp, colour: bool) -> String {
    if findings.is_empty() {
        return "No alerts.\n".to_string();
    }
    let headers = ["POD", "CONTAINER", "ALERT", "SEVERITY", "STATE", "AGE", "MESSAGE"];
    let rows: Vec<[String; 7]> = findings
        .iter()
        .map(|f| {
            let alert = match &f.check {
                Some(check) => format!("{}/{check}", f.alertname),
                None => f.alertname.clone(),
            };
            let age = f
                .since
                .as_deref()
                .and_then(|s| s.parse::<Timestamp>().ok())
                .map_or_else(|| "-".to_string(), |t| human_age(now.duration_since(t).as_secs()));
            // An alert on a workload names no Pod: the workload, as a template's row does.
            let object = if f.pod.is_empty() {
                format!("{}/{}/{}", f.namespace, f.workload_kind, f.workload)
            } else {
                format!("{}/{}", f.namespace, f.pod)
            };
            [
                escape_control(&object).into_owned(),
                if f.container.is_empty() { "-".into() } else { escape_control(&f.container).into_owned() },
                alert,
                f.severity.to_string(),
                f.state.as_str().to_string(),
                age,
                escape_control(&f.message).into_owned(),
            ]
        })
        .collect();
    let widths = column_widths(headers.map(str::len), &rows);
    let mut out = String::new();
    let mut line = |cells: [&str; 7], severity: Option<Severity>| {
        for (i, cell) in cells.iter().enumerate() {
            let painted = match (i, severity) {
                (3, Some(s)) if colour => paint(cell, s),
                _ => (*cell).to_string(),
            };
            if i == cells.len() - 1 {
                out.push_str(&painted);
            } else {
                // Pad by the visible width, not the escape codes'.
                let pad = widths[i].saturating_sub(cell.chars().count());
                let _ = write!(out, "{painted}{:pad$}  ", "");
            }
        }
        out.push('\n');
    };
    line(headers, None);
    for (row, finding) in rows.iter().zip(findings) {
        line(row.each_ref().map(String::as_str), Some(finding.severity));
    }
    let firing = findings.iter().filter(|f| f.state == AlertState::Firing).count();
    let _ = writeln!(out, "\n{} alerts ({firing} firing, {} pending)", findings.len(), findings.len() - firing);
    out
}

fn paint(text: &str, severity: Severity) -> String {
    let code = match severity {
        Severity::Critical => "31",
        Severity::Warning => "33",
        Severity::Info => "36",
    };
    format!("\x1b[{code}m{text}\x1b[0m")
}

/// How long ago, the way kubectl prints ages (`k8s.io/apimachinery`'s `HumanDuration`): two
/// units while they matter (`6m12s`, `5h3m`, `3d4h`), one after (`537d`, `3y`).
fn human_age(seconds: i64) -> String {
    if seconds < -1 {
        return "<invalid>".into();
    }
    let seconds = seconds.max(0);
    let (minutes, hours, days) = (seconds / 60, seconds / 3600, seconds / 86_400);
    let two = |big: i64, unit: &str, small: i64, small_unit: &str| {
        if small == 0 {
            format!("{big}{unit}")
        } else {
            format!("{big}{unit}{small}{small_unit}")
        }
    };
    if seconds < 120 {
        format!("{seconds}s")
    } else if minutes < 10 {
        two(minutes, "m", seconds % 60, "s")
    } else if minutes < 180 {
        format!("{minutes}m")
    } else if hours < 8 {
        two(hours, "h", minutes % 60, "m")
    } else if hours < 48 {
        format!("{hours}h")
    } else if hours < 24 * 8 {
        two(days, "d", hours % 24, "h")
    } else if hours < 24 * 365 * 2 {
        format!("{days}d")
    } else if hours < 24 * 365 * 8 {
        two(days / 365, "y", days % 365, "d")
    } else {
        format!("{}y", days / 365)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_like_kubectl() {
        for (seconds, age) in [
            (-5, "<invalid>"),
            (0, "0s"),
            (45, "45s"),
            (119, "119s"),
            (372, "6m12s"),
            (600, "10m"),
            (3 * 3600 + 1200, "3h20m"),
            (5 * 3600, "5h"),
            (20 * 3600, "20h"),
            (3 * 86_400 + 4 * 3600, "3d4h"),
            (537 * 86_400 + 3600 + 11 * 60 + 26, "537d"),
            (3 * 365 * 86_400 + 10 * 86_400, "3y10d"),
            (9 * 365 * 86_400, "9y"),
        ] {
            assert_eq!(human_age(seconds), age, "{seconds}");
        }
    }
}
