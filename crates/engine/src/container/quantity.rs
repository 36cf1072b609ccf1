//! Kubernetes resource quantities (`100m`, `1`, `128Mi`, `1G`, `1e3`) read into whole units:
//! millicores for CPU, bytes for memory, rounded up as the API's `MilliValue` and `Value` do.
//! Anything that is not a quantity, is negative or does not fit is `None`: a container's
//! resources never fail its Pod.

/// Digits kept of a quantity's number: more cannot change a sum in `u64` units, and keep the
/// arithmetic in `u128`.
const MAX_DIGITS: usize = 36;

/// `text` in units of 10^`unit_exponent` (3 for millicores, 0 for bytes), rounded up.
pub(crate) fn parse_quantity(text: &str, unit_exponent: i32) -> Option<u64> {
    let text = text.trim();
    let text = text.strip_prefix('+').unwrap_or(text);
    let number_end = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(text.len());
    let (number, suffix) = text.split_at(number_end);
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && fraction.is_empty() || fraction.contains('.') {
        return None;
    }
    let (binary_power, decimal_exponent) = suffix_scale(suffix)?;
    let digits = format!("{}{}", whole.trim_start_matches('0'), fraction);
    let digits = digits.trim_start_matches('0');
    let kept = digits.trim_end_matches('0');
    let mut exponent = decimal_exponent
        .checked_sub(i32::try_from(fraction.len()).ok()?)?
        .checked_add(i32::try_from(digits.len() - kept.len()).ok()?)?
        .checked_add(unit_exponent)?;
    if kept.is_empty() {
        return Some(0);
    }
    if kept.len() > MAX_DIGITS {
        return None;
    }
    let mut value: u128 = kept.parse().ok()?;
    value = value.checked_mul(1u128.checked_shl(binary_power)?)?;
    while exponent > 0 {
        value = value.checked_mul(10)?;
        exponent -= 1;
    }
    if exponent < 0 {
        let divisor = 10u128.checked_pow(exponent.unsigned_abs());
        value = divisor.map_or(1, |d| value.div_ceil(d));
    }
    u64::try_from(value).ok()
}

/// The power of two and the power of ten a suffix multiplies by: binary (`Ki` … `Ei`), decimal
/// (`n` … `E`) or an exponent (`e3`, `E-2`).
fn suffix_scale(suffix: &str) -> Option<(u32, i32)> {
    Some(match suffix {
        "" => (0, 0),
        "Ki" => (10, 0),
        "Mi" => (20, 0),
        "Gi" => (30, 0),
        "Ti" => (40, 0),
        "Pi" => (50, 0),
        "Ei" => (60, 0),
        "n" => (0, -9),
        "u" => (0, -6),
        "m" => (0, -3),
        "k" => (0, 3),
        "M" => (0, 6),
        "G" => (0, 9),
        "T" => (0, 12),
        "P" => (0, 15),
        "E" => (0, 18),
        _ => {
            let exponent = suffix.strip_prefix(['e', 'E'])?;
            let digits = exponent.strip_prefix(['+', '-']).unwrap_or(exponent);
            if digits.is_empty() || digits.len() > 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            (0, exponent.parse().ok()?)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::parse_quantity;

    #[test]
    fn cpu_in_millicores_rounded_up() {
        for (text, millis) in [
            ("100m", Some(100)),
            ("1", Some(1000)),
            ("0.5", Some(500)),
            (".25", Some(250)),
            ("2.", Some(2000)),
            ("1e3", Some(1_000_000)),
            ("1E-3", Some(1)),
            ("250000u", Some(250)),
            ("1n", Some(1)),
            ("0", Some(0)),
            ("+1.5", Some(1500)),
            ("1k", Some(1_000_000)),
            ("0.0001", Some(1)),
            ("  3 ", Some(3000)),
        ] {
            assert_eq!(parse_quantity(text, 3), millis, "{text}");
        }
    }

    #[test]
    fn memory_in_bytes() {
        for (text, bytes) in [
            ("128Mi", Some(134_217_728)),
            ("1G", Some(1_000_000_000)),
            ("1Gi", Some(1_073_741_824)),
            ("1e3", Some(1000)),
            ("1.5Ki", Some(1536)),
            ("129M", Some(129_000_000)),
            ("123", Some(123)),
            ("8Ei", Some(9_223_372_036_854_775_808)),
            ("100m", Some(1)),
        ] {
            assert_eq!(parse_quantity(text, 0), bytes, "{text}");
        }
    }

    /// What is no quantity, negative, or too large for the sum's unit is ignored.
    #[test]
    fn malformed_quantities_are_none() {
        for text in [
            "",
            "m",
            "-1",
            "1.2.3",
            "1x",
            "1Mi ",
            "1 Mi",
            "abc",
            "1e",
            "1e+",
            "1e99999",
            "1ki",
            "NaN",
            "1e30",
            "99999999999999999999999999999999999999999",
            "１",
            "1\u{0}",
        ] {
            let trimmed_ok = text == "1Mi ";
            assert_eq!(parse_quantity(text, 0).is_some(), trimmed_ok, "{text:?}");
        }
        assert_eq!(parse_quantity("16Ei", 0), None, "past u64");
    }
}
