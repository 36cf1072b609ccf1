//! Durations in the Prometheus form used by alert rules: `30s`, `5m`, `1h30m`, `1d`.

use std::time::Duration;

/// The schema pattern for a duration: one or more `<integer><unit>` groups, units in
/// decreasing order as Prometheus writes them, or a bare `0`.
pub const DURATION_PATTERN: &str = r"^(0|([0-9]+y)?([0-9]+w)?([0-9]+d)?([0-9]+h)?([0-9]+m)?([0-9]+s)?([0-9]+ms)?)$";

/// Why a duration string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// The string is empty.
    #[error("empty duration")]
    Empty,
    /// The string is not of the form `1h30m`.
    #[error("invalid duration {}: use the Prometheus form, e.g. 30s, 5m, 1h30m", super::quote(.0))]
    Invalid(String),
    /// The value does not fit in a duration.
    #[error("duration {} is too large", super::quote(.0))]
    Overflow(String),
}

/// Parses a Prometheus duration (`ms`, `s`, `m`, `h`, `d`, `w`, `y`; integers only, units in
/// decreasing order, each at most once). Negative values cannot be written.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(DurationError::Empty);
    }
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    const UNITS: [(&str, u64); 7] = [
        ("y", 365 * 86_400_000),
        ("w", 7 * 86_400_000),
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
        ("ms", 1),
    ];
    let invalid = || DurationError::Invalid(text.to_string());
    let mut rest = text;
    let mut total_ms: u64 = 0;
    // Units must appear in decreasing order, so remember the last one used.
    let mut next_unit = 0;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(invalid());
        }
        let value: u64 = rest[..digits].parse().map_err(|_| DurationError::Overflow(text.to_string()))?;
        rest = &rest[digits..];
        // `ms` must be tried before `m`.
        let (index, (unit, scale)) = UNITS
            .iter()
            .enumerate()
            .skip(next_unit)
            .filter(|(_, (unit, _))| rest.starts_with(unit))
            .max_by_key(|(_, (unit, _))| unit.len())
            .ok_or_else(invalid)?;
        rest = &rest[unit.len()..];
        next_unit = index + 1;
        total_ms = value
            .checked_mul(*scale)
            .and_then(|ms| total_ms.checked_add(ms))
            .ok_or_else(|| DurationError::Overflow(text.to_string()))?;
    }
    Ok(Duration::from_millis(total_ms))
}

/// Formats a duration the way Prometheus does (`1h30m`, `45s`, `0s`), for messages.
pub fn format_duration(duration: Duration) -> String {
    let mut secs = duration.as_secs();
    if secs == 0 {
        let ms = duration.subsec_millis();
        return if ms == 0 { "0s".into() } else { format!("{ms}ms") };
    }
    let mut out = String::new();
    for (unit, scale) in [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)] {
        if secs >= scale {
            out.push_str(&format!("{}{unit}", secs / scale));
            secs %= scale;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_prometheus_durations() {
        let cases = [
            ("0", 0),
            ("30s", 30_000),
            ("5m", 300_000),
            ("1h30m", 5_400_000),
            ("1d", 86_400_000),
            ("1w", 604_800_000),
            ("1m30s500ms", 90_500),
            ("250ms", 250),
        ];
        for (text, ms) in cases {
            assert_eq!(parse_duration(text), Ok(Duration::from_millis(ms)), "{text}");
        }
    }

    #[test]
    fn rejects_malformed_durations() {
        for text in ["", "5", "-5m", "5 m", "m", "1.5h", "30m1h", "5mm", "5x", "1h1h"] {
            assert!(parse_duration(text).is_err(), "{text:?} should be rejected");
        }
        assert!(matches!(parse_duration("99999999999999999999y"), Err(DurationError::Overflow(_))));
    }

    #[test]
    fn schema_pattern_agrees_with_parser() {
        let pattern = regex::Regex::new(DURATION_PATTERN).expect("pattern compiles");
        for text in ["0", "30s", "1h30m", "250ms", "1d", "5", "-5m", "30m1h", "1.5h", "5x"] {
            assert_eq!(pattern.is_match(text), parse_duration(text).is_ok(), "{text:?}");
        }
    }

    #[test]
    fn formats_like_prometheus() {
        assert_eq!(format_duration(Duration::from_secs(5_400)), "1h30m");
        assert_eq!(format_duration(Duration::from_secs(45)), "45s");
        assert_eq!(format_duration(Duration::ZERO), "0s");
        assert_eq!(format_duration(Duration::from_millis(250)), "250ms");
    }
}
