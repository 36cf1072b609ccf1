//! A container's signal switches (`crates/api/src/switches.rs`) read in CEL, for the
//! blind-spot checks of git-sync and the Cloud SQL Auth Proxy: each switch set by a flag in
//! `args`, else in `command`, else by its environment variables, as the engine reads it.
//!
//! The engine reads a list's words token by token, split at whitespace, the last flag winning
//! (`--flag`, `--flag=value`, and for an address `--flag value`, one dash or two, values
//! stripped of quotes, a value the product refuses skipped). Here a list is joined with spaces
//! and one regular expression finds its last flag: a greedy `.*` before it puts the match at
//! the last place it can start, and the forms a refused value takes do not match at all. One
//! reading differs: the engine, as pflag, takes the word after a bare address flag as its value
//! whatever it is, so in `--http-bind --http-metrics` the second word is not a flag; here it
//! is. Nobody writes that; `audit` and the operator read it as pflag does.

use super::cel::{self, WHITESPACE};
use crate::api::{SignalSwitch, ValueKind, GO_FALSE, GO_TRUE};

/// What admission reads switches from, so that what a hostile Pod costs the API server stays
/// bounded (at the bounds: docs/admission-policies.md#cost): the first this many sidecars of a
/// Pod whose flags switch their signal (a Pod runs one or two), and only while each of their
/// `command` and `args` holds at most [`MAX_WORDS`] words of at most [`MAX_WORD_CHARS`]
/// characters and their `env` at most [`MAX_WORDS`] variables (a real proxy or git-sync has a
/// handful of each). The rest are left to `audit` and the operator.
pub(super) const MAX_SWITCHED_SIDECARS: usize = 4;
/// See [`MAX_SWITCHED_SIDECARS`].
pub(super) const MAX_WORDS: usize = 32;
/// See [`MAX_SWITCHED_SIDECARS`].
pub(super) const MAX_WORD_CHARS: usize = 128;

/// Whether container `c`'s `command`, `args` and `env` are within what admission reads.
pub(super) fn readable(c: &str) -> String {
    format!(
        "[{c}.?command.orValue([]), {c}.?args.orValue([])].all(l, size(l) <= {MAX_WORDS} && \
         l.all(w, size(w) <= {MAX_WORD_CHARS})) && size({c}.?env.orValue([])) <= {MAX_WORDS}"
    )
}

/// An address that names this host only, as [`crate::api::is_loopback`] decides it: a host
/// that is `localhost`, `127.*` or `::1` (leading `[` skipped, the host ending at `]`).
const LOOPBACK: &str = r"^\[*(?:127\.|(?:localhost|::1)(?:\].*)?$)";

/// Whether `switch` is set, and on, for container `c`: `l`, in the CEL it returns, is the list
/// of `'on'`/`'off'` of its flag in `args`, its flag in `command` and its variables, the set
/// ones only; the first decides.
fn states(c: &str, switch: SignalSwitch) -> String {
    format!(
        "[{}, {}, {}].filter(v, v != '')",
        flag(&format!("{c}.?args.orValue([])"), switch),
        flag(&format!("{c}.?command.orValue([])"), switch),
        env(c, switch)
    )
}

/// Whether `switch` is set and on for container `c`.
pub(super) fn is_on(c: &str, switch: SignalSwitch) -> String {
    format!("[{}].exists(l, size(l) > 0 && l[0] == 'on')", states(c, switch))
}

/// Whether `switch` is on for container `c`, `unset` (a CEL boolean) when nothing sets it.
pub(super) fn is_on_or(c: &str, switch: SignalSwitch, unset: &str) -> String {
    format!("[{}].exists(l, size(l) > 0 ? l[0] == 'on' : {unset})", states(c, switch))
}

/// `'on'`, `'off'` or `''` (not set): the last flag of `switch` in the words of `list`.
fn flag(list: &str, switch: SignalSwitch) -> String {
    let name = regex::escape(&switch.flag()[2..]);
    let (gap, token) = (format!("[{WHITESPACE}]"), format!("[^{WHITESPACE}]"));
    let words = format!("{list}.join(' ')");
    let quote = r#"["']*"#;
    if switch.kind() == ValueKind::Bool {
        let any = [GO_TRUE, GO_FALSE].concat().join("|");
        let last = format!(r"^(?s:.*)(?:^|{gap})--?{name}(?:={quote}(?:{any}){quote})?(?:{gap}|$)");
        let off = format!(r"={quote}(?:{}){quote}{gap}?$", GO_FALSE.join("|"));
        return format!(
            "[{words}.find({})].map(m, m == '' ? '' : m.matches({}) ? 'off' : 'on')[0]",
            cel::string(&last),
            cel::string(&off)
        );
    }
    let last = format!(r"^(?s:.*)(?:^|{gap})--?{name}(?:={token}*|{gap}+{token}+)");
    // The match ends with the value's word: `--flag=value`, or the value after `--flag`.
    let joined = format!("^--?{name}=");
    let value = format!(
        "[m.find({})].map(w, w.matches({joined}) ? w.substring(size(w.find({joined}))) : w)[0]",
        cel::string(&format!("{token}+$")),
        joined = cel::string(&joined)
    );
    format!(
        "[{words}.find({})].map(m, m == '' ? '' : [{value}.find({})].map(v, {})[0])[0]",
        cel::string(&last),
        cel::string(r#"[^"'](?s:.*[^"'])?"#),
        reads_on("v", switch.kind())
    )
}

/// `'on'`, `'off'` or `''` (not set): the last of `switch`'s variables in container `c`'s `env`
/// whose plain value (trimmed) the product reads; a variable from a Secret or ConfigMap sets
/// nothing.
fn env(c: &str, switch: SignalSwitch) -> String {
    let read = match switch.kind() {
        ValueKind::Bool => format!("v in {}", cel::string_list([GO_TRUE, GO_FALSE].concat())),
        ValueKind::Address | ValueKind::Reachable => "v != ''".to_string(),
    };
    format!(
        "[{c}.?env.orValue([]).map(e, e.?name.orValue('') in {names} ? e.?value.orValue('').trim() : '')\
         .filter(v, {read})].map(l, size(l) == 0 ? '' : [l[size(l) - 1]].map(v, {})[0])[0]",
        reads_on("v", switch.kind()),
        names = cel::string_list(switch.env())
    )
}

/// `'on'` or `'off'`: what a value `v` the product accepts turns the switch to.
fn reads_on(v: &str, kind: ValueKind) -> String {
    let on = match kind {
        ValueKind::Bool => format!("{v} in {}", cel::string_list(GO_TRUE)),
        ValueKind::Address => format!("{v} != ''"),
        ValueKind::Reachable => format!("{v} != '' && !{v}.matches({})", cel::string(LOOPBACK)),
    };
    format!("({on} ? 'on' : 'off')")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_switch_reads_its_own_flag_and_variables() {
        for switch in SignalSwitch::ALL {
            let cel = is_on("c", switch);
            let flag = cel::string(&format!("--?{}", regex::escape(&switch.flag()[2..])));
            assert!(cel.contains(flag.trim_matches('\'')), "{switch:?}: {cel}");
            for name in switch.env() {
                assert!(cel.contains(&format!("'{name}'")), "{switch:?}: {cel}");
            }
        }
        assert!(is_on_or("c", SignalSwitch::HttpMetrics, "v3").ends_with(": v3)"));
    }

    #[test]
    fn loopback_addresses_are_the_engines() {
        // The pattern is RE2's and the `regex` crate's alike (no Unicode classes, no lookaround).
        let pattern = regex::Regex::new(LOOPBACK).expect("the pattern compiles");
        let addresses = ["localhost", "127.0.0.1", "127.1", "::1", "[::1]", "[::1]:9090", "[[127.0.0.1", "localhost]x"]
            .into_iter()
            .chain([
                "0.0.0.0",
                "",
                "localhost:9090",
                "::",
                "[::]",
                "10.0.0.1",
                "1127.0.0.1",
                "localhostx",
                "]127.0.0.1",
            ]);
        for address in addresses {
            assert_eq!(pattern.is_match(address), crate::api::is_loopback(address), "{address:?}");
        }
    }
}
