//! Minimal Prometheus text-format parsing: sums of samples and histogram quantiles.

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
    /// Reads histogram `name` (without labels besides `le`) from a scrape.
    pub fn parse(text: &str, name: &str) -> Self {
        let bucket = format!("{name}_bucket{{");
        let count = format!("{name}_count");
        let sum = format!("{name}_sum");
        let mut h = Histogram::default();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix(&bucket) {
                let le = rest.split("le=\"").nth(1).and_then(|r| r.split('"').next()).unwrap_or("");
                let le = if le == "+Inf" { f64::INFINITY } else { le.parse().unwrap_or(f64::NAN) };
                h.buckets.push((le, value(line)));
            } else if line.starts_with(&count) && line[count.len()..].starts_with([' ', '{']) {
                h.count = value(line);
            } else if line.starts_with(&sum) && line[sum.len()..].starts_with([' ', '{']) {
                h.sum = value(line);
            }
        }
        h.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        h
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

fn value(line: &str) -> f64 {
    line.rsplit(' ').next().and_then(|v| v.parse().ok()).unwrap_or(0.0)
}

/// Sum of every sample of metric `name` whose line contains all of `label_parts`.
pub fn sum(text: &str, name: &str, label_parts: &[&str]) -> f64 {
    text.lines()
        .filter(|l| {
            l.strip_prefix(name).is_some_and(|r| r.starts_with([' ', '{'])) && label_parts.iter().all(|p| l.contains(p))
        })
        .map(value)
        .sum()
}

/// Number of samples (non-comment, non-empty lines).
pub fn series_count(text: &str) -> usize {
    text.lines().filter(|l| !l.is_empty() && !l.starts_with('#')).count()
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
        let h = Histogram::parse(TEXT, "x_seconds");
        assert_eq!(h.count, 100.0);
        assert_eq!(h.buckets.len(), 4);
        assert!((h.quantile(0.5).unwrap() - 0.001).abs() < 1e-12);
        // rank 70 is half-way through (0.001, 0.01].
        assert!((h.quantile(0.7).unwrap() - 0.0055).abs() < 1e-12);
        assert!((h.quantile(0.99).unwrap() - 0.091).abs() < 1e-9);
        let d = h.minus(&h);
        assert_eq!(d.quantile(0.5), None);
    }

    #[test]
    fn sums_and_series() {
        assert_eq!(sum(TEXT, "y_total", &["result=\"dropped\""]), 3.0);
        assert_eq!(series_count(TEXT), 9);
        assert_eq!(sample_quantile(&[3.0, 1.0, 2.0, 4.0], 0.5), Some(2.0));
        assert_eq!(sample_quantile(&[3.0, 1.0, 2.0, 4.0], 0.99), Some(4.0));
    }
}
