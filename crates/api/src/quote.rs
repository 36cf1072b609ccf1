//! Quoting what tenants and users wrote, in errors, policy conditions, Events and logs.
//!
//! A policy may carry a 1.5 MB pattern where no CRD schema bounds it (an old CRD, a server
//! without the schema, an `audit --policy` file): echoed whole, one invalid value made a
//! 98 KB error line, and would make a status condition and an Event as large. Every message
//! that names an offending value quotes it through [`quote`]: at most a short prefix and the
//! full length. Messages written by other libraries, which may embed a value whole (serde's
//! `invalid type: string "…"`), go through [`clip`]; names of objects through [`mention`].

use std::borrow::Cow;
use std::fmt::Write as _;

/// Characters of an offending value that a message quotes.
pub const QUOTED_CHARS: usize = 64;

/// Characters of a message from another library kept by [`clip`] (its start and its end).
pub const CLIPPED_CHARS: usize = 240;

/// The longest start of `text` that is at most `max` bytes and ends on a character boundary:
/// where a value is cut to a byte budget.
pub fn byte_prefix(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// A name (an object's, a kind) as a message mentions it: as it is when it is short and
/// printable, as every name the API server admits is, else [`quote`]d, so that a name in a
/// hand-written manifest cannot make a message long or forge a line of its own.
pub fn mention(value: &str) -> Cow<'_, str> {
    let plain = value.chars().take(QUOTED_CHARS + 1).count() <= QUOTED_CHARS && !value.chars().any(char::is_control);
    if plain {
        Cow::Borrowed(value)
    } else {
        Cow::Owned(quote(value))
    }
}

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
/// (which usually says what was expected) with the middle elided, and on one line: control
/// characters escaped (serde writes ``unknown variant `…` `` and map keys unescaped).
pub fn clip(message: &str) -> String {
    let message = escape_control(message);
    let chars = message.chars().count();
    if chars <= CLIPPED_CHARS {
        return message.into_owned();
    }
    let head: String = message.chars().take(CLIPPED_CHARS * 2 / 3).collect();
    let tail: String = message.chars().skip(chars - CLIPPED_CHARS / 3).collect();
    format!("{head} … {tail}")
}

/// `text` with every control character written as an escape (`\x1b`, `\n`), so that a
/// value cannot move the cursor, clear the screen or retitle the terminal of whoever reads
/// it, nor begin a line of its own in a message or a log.
pub fn escape_control(text: &str) -> Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() && (c as u32) < 0x100 => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
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
        assert_eq!(clip("unknown variant `a\nb\u{1b}[2J`"), "unknown variant `a\\nb\\x1b[2J`");
    }

    #[test]
    fn byte_prefixes_end_on_a_character_boundary() {
        assert_eq!(byte_prefix("héllo", 2), "h");
        assert_eq!(byte_prefix("héllo", 3), "hé");
        assert_eq!(byte_prefix("short", 10), "short");
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(escape_control("plain"), "plain");
        assert_eq!(escape_control("\x1b]0;pwned\x07\x1b[2Jgone\nnext"), "\\x1b]0;pwned\\x07\\x1b[2Jgone\\nnext");
        assert_eq!(escape_control("c1\u{9b}31m"), "c1\\x9b31m");
    }

    #[test]
    fn names_are_mentioned_plainly_unless_long_or_unprintable() {
        assert_eq!(mention("web-7c9f8d6b5-k2x8q"), "web-7c9f8d6b5-k2x8q");
        assert_eq!(mention("a\nb"), "\"a\\nb\"");
        let long = "x".repeat(100_000);
        assert_eq!(mention(&long), format!("\"{}\"… (100000 bytes)", "x".repeat(64)));
    }
}
