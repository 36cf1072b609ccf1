//! Quoting what tenants and users wrote, in errors, policy conditions, Events and logs.
//!
//! A policy may carry a 1.5 MB pattern where no CRD schema bounds it (an old CRD, a server
//! without the schema, an `audit --policy` file): echoed whole, one invalid value made a
//! 98 KB error line, and would make a status condition and an Event as large. Every message
//! that names an offending value quotes it through [`quote`]: at most a short prefix and the
//! full length. Messages written by other libraries, which may embed a value whole (serde's
//! `invalid type: string "…"`), go through [`clip`].

/// Characters of an offending value that a message quotes.
pub const QUOTED_CHARS: usize = 64;

/// Characters of a message from another library kept by [`clip`] (its start and its end).
pub const CLIPPED_CHARS: usize = 240;

/// `value` quoted for a message: Rust string syntax (control characters escaped), at most
/// its first [`QUOTED_CHARS`] characters, and when it is longer the cut and the full length:
/// `"envoy(aaaa"… (98304 bytes)`.
pub fn quote(value: &str) -> String {
    match value.char_indices().nth(QUOTED_CHARS) {
        None => format!("{value:?}"),
        Some((cut, _)) => format!("{:?}… ({} bytes)", &value[..cut], value.len()),
    }
}

/// A message built elsewhere, at most [`CLIPPED_CHARS`] characters: its start and its end
/// (which usually says what was expected) with the middle elided.
pub fn clip(message: &str) -> String {
    let chars = message.chars().count();
    if chars <= CLIPPED_CHARS {
        return message.to_string();
    }
    let head: String = message.chars().take(CLIPPED_CHARS * 2 / 3).collect();
    let tail: String = message.chars().skip(chars - CLIPPED_CHARS / 3).collect();
    format!("{head} … {tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_values_are_quoted_whole_long_ones_by_a_prefix() {
        assert_eq!(quote("envoy("), "\"envoy(\"");
        assert_eq!(quote("a\nb"), "\"a\\nb\"");
        let long = format!("envoy({}", "a".repeat(98_298));
        assert_eq!(quote(&long), format!("\"envoy({}\"… (98304 bytes)", "a".repeat(58)));
        // Cut on a character boundary, counted in characters.
        let wide = "é".repeat(100);
        assert_eq!(quote(&wide), format!("\"{}\"… (200 bytes)", "é".repeat(64)));
    }

    #[test]
    fn clipped_messages_keep_their_start_and_end() {
        let message = format!("invalid type: string \"{}\", expected u32", "x".repeat(1_000_000));
        let clipped = clip(&message);
        assert!(clipped.chars().count() <= CLIPPED_CHARS + 3, "{clipped}");
        assert!(clipped.starts_with("invalid type: string \"xxx"), "{clipped}");
        assert!(clipped.ends_with("\", expected u32"), "{clipped}");
        assert_eq!(clip("short"), "short");
    }
}
