//! The one Prometheus text-format parser of the tests, the e2e suite and the benchmark:
//! samples with their labels ([`Scrape`]), sums over label matches and histogram quantiles
//! ([`Histogram`]).
//!
//! Hand-written, ~150 lines, because the crates do not read what the operator writes: fed
//! this module's test lines, `prometheus-parse` 0.2.5 (the maintained-looking one; last
//! release 2023) keeps label escapes undecoded (`x\"y` stays `x\\\"y`, `\n` stays two
//! characters), silently drops a sample whose label value holds a `}` (`pod="odd}pod"`: 0
//! samples) and silently accepts or drops bad lines (`m{a=x} 1` is read as `a="x"`,
//! `lonely` and `m abc` vanish), where the tests need each to fail naming the line;
//! `openmetrics-parser` is LGPL-3.0. Measured with a scratch binary that prints what
//! the crate `prometheus-parse` makes of those five inputs (`cargo run` against
//! `prometheus-parse = "=0.2.5"`).

use std::collections::BTreeMap;

/// Labels of one sample, by name.
pub type Labels = BTreeMap<String, String>;

/// A line of a scrape that is not a sample of the text format.
#[derive(Debug, thiserror::Error)]
#[error("bad Prometheus sample line {line:?}: {why}")]
pub struct ParseError {
    /// The offending line.
    pub line: String,
    /// What is wrong with it.
    pub why: &'static str,
}

/// One sample of the text format.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// Metric name (with its `_bucket`/`_sum`/`_count` suffix for histograms).
    pub name: String,
    pub labels: Labels,
    pub value: f64,
}

/// A parsed scrape.
#[derive(Clone, Debug)]
pub struct Scrape {
    /// The raw text.
    pub text: String,
    /// Every sample, in the order of the text.
    pub samples: Vec<Sample>,
}

impl Scrape {
    /// Parses the Prometheus text format (comments and blank lines skipped). Strict, so that
    /// a test (and the fuzz target `pod_view`, which checks every scrape with it) fails naming
    /// the line where the operator writes what Prometheus would refuse: metric and label
    /// names, label values quoted with only the `\\`, `\"` and `\n` escapes, a number.
    pub fn parse(text: &str) -> Result<Self, ParseError> {
        let mut samples = Vec::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            samples.push(parse_sample(line).map_err(|why| ParseError { line: line.to_string(), why })?);
        }
        Ok(Self { text: text.to_string(), samples })
    }

    /// Samples of metric `name` whose labels include every pair of `matching`.
    pub fn find(&self, name: &str, matching: &[(&str, &str)]) -> Vec<&Sample> {
        self.samples.iter().filter(|s| s.name == name && matches(s, matching)).collect()
    }

    /// The value of the single sample of `name` with `matching` labels, if exactly one.
    pub fn value(&self, name: &str, matching: &[(&str, &str)]) -> Option<f64> {
        match self.find(name, matching).as_slice() {
            [one] => Some(one.value),
            _ => None,
        }
    }

    /// Sum of every sample of `name` with `matching` labels (0 when there is none).
    pub fn sum(&self, name: &str, matching: &[(&str, &str)]) -> f64 {
        self.find(name, matching).iter().map(|s| s.value).sum()
    }

    /// The operator's live heap as numbers: bytes asked, bytes in the allocator's size classes
    /// (0 when not exported), allocations (0 likewise); `None` from a build that does not count.
    pub fn heap_counts(&self) -> Option<(f64, f64, f64)> {
        let asked = self.value("sidecar_watch_heap_bytes", &[("kind", "asked")])?;
        let usable = self.value("sidecar_watch_heap_bytes", &[("kind", "usable")]).unwrap_or(0.0);
        let allocations = self.value("sidecar_watch_heap_allocations", &[]).unwrap_or(0.0);
        Some((asked, usable, allocations))
    }

    /// The operator's live heap (`sidecar_watch_heap_*`, exported by a `--features
    /// heap-counts` build) in one line, or `None` from a build that does not count it.
    pub fn heap(&self) -> Option<String> {
        let (asked, usable, allocations) = self.heap_counts()?;
        let mib = |b: f64| b / 1048576.0;
        Some(format!(
            "heap: {asked:.0} B asked ({:.1} MiB), {usable:.0} B in size classes ({:.1} MiB), {allocations:.0} allocations",
            mib(asked),
            mib(usable)
        ))
    }

    /// Number of samples (series) whose labels include every pair of `matching`, any name.
    pub fn series_with(&self, matching: &[(&str, &str)]) -> usize {
        self.samples.iter().filter(|s| matches(s, matching)).count()
    }

    /// The label sets of every `sidecar_alerts` series, sorted.
    pub fn alerts(&self) -> Vec<Labels> {
        let mut out: Vec<Labels> = self.find("sidecar_alerts", &[]).into_iter().map(|s| s.labels.clone()).collect();
        out.sort();
        out
    }

    /// The per-Pod families the leader exports (alerts, container series, policy pods), sorted:
    /// what a second operator must compute identically.
    pub fn pod_series(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .samples
            .iter()
            .filter(|s| {
                ["sidecar_alerts", "sidecar_container_ready", "sidecar_container_restarts_total", "sidecar_policy_pods"]
                    .contains(&s.name.as_str())
            })
            .map(|s| format!("{}{:?} {}", s.name, s.labels, s.value))
            .collect();
        out.sort();
        out
    }
}

fn matches(s: &Sample, matching: &[(&str, &str)]) -> bool {
    matching.iter().all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
}

/// One sample line: `name{label="value",…} value [timestamp]`.
fn parse_sample(line: &str) -> Result<Sample, &'static str> {
    let name_end = line.find(['{', ' ', '\t']).ok_or("no value")?;
    let name = valid_name(&line[..name_end])?;
    let mut rest = &line[name_end..];
    let mut labels = Labels::new();
    if let Some(inside) = rest.strip_prefix('{') {
        rest = parse_labels(inside, &mut labels)?;
    }
    let value = match rest.split_whitespace().next().ok_or("no value")? {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().map_err(|_| "value is not a number")?,
    };
    Ok(Sample { name: name.to_string(), labels, value })
}

/// Reads `name="value",…}` into `labels` (blanks and a trailing comma allowed); gives what
/// follows the `}`.
fn parse_labels<'l>(mut rest: &'l str, labels: &mut Labels) -> Result<&'l str, &'static str> {
    loop {
        rest = rest.trim_start_matches([',', ' ', '\t']);
        if let Some(after) = rest.strip_prefix('}') {
            return Ok(after);
        }
        let (key, after_key) = rest.split_once('=').ok_or("label without a quoted value")?;
        let key = valid_name(key.trim())?;
        let quoted = after_key.strip_prefix('"').ok_or("label without a quoted value")?;
        let mut value = String::new();
        let mut chars = quoted.char_indices();
        let end = loop {
            match chars.next().ok_or("unterminated label value")? {
                (_, '\\') => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c @ ('\\' | '"'))) => value.push(c),
                    _ => return Err("invalid escape in a label value"),
                },
                (i, '"') => break i,
                (_, c) => value.push(c),
            }
        };
        labels.insert(key.to_string(), value);
        rest = &quoted[end + 1..];
    }
}

/// `name` when it is a valid metric or label name (`[a-zA-Z_:][a-zA-Z0-9_:]*`).
fn valid_name(name: &str) -> Result<&str, &'static str> {
    let mut chars = name.chars();
    let first = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':');
    if first && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
        Ok(name)
    } else {
        Err("invalid metric or label name")
    }
}

/// A cumulative histogram: `(upper bound, cumulative count)`, +Inf last.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Histogram {
    /// Buckets in increasing order of their bound.
    pub buckets: Vec<(f64, f64)>,
    /// `_count`.
    pub count: f64,
    /// `_sum`.
    pub sum: f64,
}

impl Histogram {
    /// Histogram `name` (without labels besides `le`) of a scrape; empty when absent.
    pub fn of(scrape: &Scrape, name: &str) -> Self {
        let mut buckets: Vec<(f64, f64)> = scrape
            .find(&format!("{name}_bucket"), &[])
            .into_iter()
            .filter_map(|s| {
                let le = s.labels.get("le")?;
                let le = if le == "+Inf" { f64::INFINITY } else { le.parse().ok()? };
                Some((le, s.value))
            })
            .collect();
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        Histogram {
            buckets,
            count: scrape.sum(&format!("{name}_count"), &[]),
            sum: scrape.sum(&format!("{name}_sum"), &[]),
        }
    }

    /// `self - earlier`, bucket by bucket (the observations made in between).
    pub fn minus(&self, earlier: &Histogram) -> Histogram {
        let buckets = self
            .buckets
            .iter()
            .map(|(le, c)| {
                let before = earlier.buckets.iter().find(|(l, _)| l == le).map_or(0.0, |(_, c)| *c);
                (*le, c - before)
            })
            .collect();
        Histogram { buckets, count: self.count - earlier.count, sum: self.sum - earlier.sum }
    }

    /// Mean observation (`sum / count`); None without observations.
    pub fn mean(&self) -> Option<f64> {
        (self.count > 0.0).then(|| self.sum / self.count)
    }

    /// The `q` quantile interpolated linearly within its bucket, like Prometheus'
    /// `histogram_quantile` (the lowest bucket starts at 0; a rank in the +Inf bucket gives
    /// the highest finite bound). None without observations.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.buckets.last()?.1;
        if total <= 0.0 {
            return None;
        }
        let rank = q * total;
        let mut prev_le = 0.0;
        let mut prev_count = 0.0;
        for (le, count) in &self.buckets {
            if *count >= rank {
                if le.is_infinite() {
                    return Some(prev_le);
                }
                let in_bucket = count - prev_count;
                let frac = if in_bucket > 0.0 { (rank - prev_count) / in_bucket } else { 1.0 };
                return Some(prev_le + (le - prev_le) * frac);
            }
            prev_le = *le;
            prev_count = *count;
        }
        Some(prev_le)
    }
}

/// Checks that the single sample of `name` with `matching` labels has value `want`.
pub fn has_value(s: &Scrape, name: &str, matching: &[(&str, &str)], want: f64) -> Result<(), String> {
    match s.value(name, matching) {
        Some(v) if (v - want).abs() < 1e-9 => Ok(()),
        other => Err(format!("{name}{matching:?} = {other:?}, want {want}")),
    }
}

/// Label sets, sorted (to compare with [`Scrape::alerts`]).
pub fn sorted(mut v: Vec<Labels>) -> Vec<Labels> {
    v.sort();
    v
}

/// The `q` quantile of raw samples (nearest rank); None when empty.
pub fn sample_quantile(samples: &[f64], q: f64) -> Option<f64> {
    if samples.is_empty() {
        return None;
    }
    let mut s = samples.to_vec();
    s.sort_by(f64::total_cmp);
    let rank = ((q * s.len() as f64).ceil() as usize).clamp(1, s.len());
    Some(s[rank - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# HELP x_seconds help\n# TYPE x_seconds histogram\n\
x_seconds_bucket{le=\"0.001\"} 50\nx_seconds_bucket{le=\"0.01\"} 90\nx_seconds_bucket{le=\"0.1\"} 100\n\
x_seconds_bucket{le=\"+Inf\"} 100\nx_seconds_sum 0.5\nx_seconds_count 100\n\
y_total{result=\"dropped\",reason=\"a\"} 2\ny_total{result=\"ok\",reason=\"a\"} 5\ny_total{result=\"dropped\",reason=\"b\"} 1\n";

    #[test]
    fn histogram_quantiles_interpolate_within_buckets() {
        let h = Histogram::of(&Scrape::parse(TEXT).unwrap(), "x_seconds");
        assert_eq!(h.count, 100.0);
        assert_eq!(h.buckets.len(), 4);
        assert_eq!(h.mean(), Some(0.005));
        assert!((h.quantile(0.5).unwrap() - 0.001).abs() < 1e-12);
        // rank 70 is half-way through (0.001, 0.01].
        assert!((h.quantile(0.7).unwrap() - 0.0055).abs() < 1e-12);
        assert!((h.quantile(0.99).unwrap() - 0.091).abs() < 1e-9);
        let d = h.minus(&h);
        assert_eq!(d.quantile(0.5), None);
        assert_eq!(d.mean(), None);
    }

    #[test]
    fn sums_series_and_labels() {
        let s = Scrape::parse(TEXT).unwrap();
        assert_eq!(s.sum("y_total", &[("result", "dropped")]), 3.0);
        assert_eq!(s.value("y_total", &[("result", "ok")]), Some(5.0));
        assert_eq!(s.series_with(&[("reason", "a")]), 2);
        assert_eq!(s.samples.len(), 9);
        assert_eq!(sample_quantile(&[3.0, 1.0, 2.0, 4.0], 0.5), Some(2.0));
        assert_eq!(sample_quantile(&[3.0, 1.0, 2.0, 4.0], 0.99), Some(4.0));
    }

    #[test]
    fn escaped_label_values_and_bad_lines() {
        let s = Scrape::parse("m{a=\"x\\\"y\",b=\"1\\n2\"} 3\n").unwrap();
        assert_eq!(s.samples[0].labels["a"], "x\"y");
        assert_eq!(s.samples[0].labels["b"], "1\n2");
        let braced = Scrape::parse("m{pod=\"odd}pod\",c=\"x\"} 1\n").unwrap();
        assert_eq!((braced.samples[0].labels["pod"].as_str(), braced.samples[0].value), ("odd}pod", 1.0));
        let e = Scrape::parse("m{a=x} 1\n").unwrap_err();
        assert_eq!(e.why, "label without a quoted value");
        assert_eq!(Scrape::parse("m 1\nlonely\n").unwrap_err().line, "lonely");
        assert_eq!(Scrape::parse("m abc\n").unwrap_err().why, "value is not a number");
        let why = |line: &str| Scrape::parse(line).unwrap_err().why;
        assert_eq!(why("m{x=\"1} 1"), "unterminated label value");
        assert_eq!(why("m{x=\"\\q\"} 1"), "invalid escape in a label value");
        assert_eq!(why("m{1x=\"1\"} 1"), "invalid metric or label name");
        assert_eq!(why("m-x 1"), "invalid metric or label name");
        assert_eq!(why("m{x=\"1\"} x"), "value is not a number");
        let ok = Scrape::parse("a_b{x=\"1\", y=\"q\\\"\\\\\\n\",} 3 1700000000\nup NaN\n").unwrap();
        assert_eq!(ok.samples[0].labels["y"], "q\"\\\n");
        assert!(ok.samples[1].value.is_nan());
    }
}
