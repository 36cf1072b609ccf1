//! The few command-line flags and environment variables that switch a catalog sidecar's own
//! metrics or health endpoint on or off (the engine's `metrics-disabled`,
//! `metrics-unreachable` and `health-check-disabled` checks). A container's `command`, `args`
//! and `env` are read for these only, where they lie: nothing of them is kept but two bytes.

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

/// A setting that turns a sidecar's own signal on or off. The flag names are the products'
/// own (pflag/cobra long flags, git-sync and the Cloud SQL Auth Proxy v2); a flag overrides
/// the environment variable, as in both.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignalSwitch {
    /// git-sync `--http-bind`: the address of its HTTP endpoint; none when empty.
    HttpBind,
    /// git-sync `--http-metrics`: `/metrics` on that endpoint.
    HttpMetrics,
    /// Cloud SQL Auth Proxy `--prometheus`: `/metrics` on its HTTP server.
    Prometheus,
    /// Cloud SQL Auth Proxy `--health-check`: `/startup`, `/liveness`, `/readiness`.
    HealthCheck,
    /// Cloud SQL Auth Proxy `--http-address`: where that server listens (`localhost` by
    /// default); "on" when it is not a loopback address.
    HttpAddress,
}

/// How a switch's value reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueKind {
    /// A boolean flag: bare is true; Go's `strconv.ParseBool` words otherwise.
    Bool,
    /// An address: on when not empty.
    Address,
    /// An address: on when not empty and not loopback.
    Reachable,
}

impl SignalSwitch {
    /// Every switch.
    pub const ALL: [SignalSwitch; 5] = [
        SignalSwitch::HttpBind,
        SignalSwitch::HttpMetrics,
        SignalSwitch::Prometheus,
        SignalSwitch::HealthCheck,
        SignalSwitch::HttpAddress,
    ];

    /// The flag as users write it.
    pub fn flag(self) -> &'static str {
        match self {
            SignalSwitch::HttpBind => "--http-bind",
            SignalSwitch::HttpMetrics => "--http-metrics",
            SignalSwitch::Prometheus => "--prometheus",
            SignalSwitch::HealthCheck => "--health-check",
            SignalSwitch::HttpAddress => "--http-address",
        }
    }

    /// The environment variables that set it when the flag is absent (git-sync v4's
    /// `GITSYNC_`, v3's `GIT_SYNC_`, the Cloud SQL Auth Proxy's `CSQL_PROXY_`).
    pub fn env(self) -> &'static [&'static str] {
        match self {
            SignalSwitch::HttpBind => &["GITSYNC_HTTP_BIND", "GIT_SYNC_HTTP_BIND"],
            SignalSwitch::HttpMetrics => &["GITSYNC_HTTP_METRICS", "GIT_SYNC_HTTP_METRICS"],
            SignalSwitch::Prometheus => &["CSQL_PROXY_PROMETHEUS"],
            SignalSwitch::HealthCheck => &["CSQL_PROXY_HEALTH_CHECK"],
            SignalSwitch::HttpAddress => &["CSQL_PROXY_HTTP_ADDRESS"],
        }
    }

    /// How its value reads.
    pub fn kind(self) -> ValueKind {
        match self {
            SignalSwitch::HttpBind => ValueKind::Address,
            SignalSwitch::HttpAddress => ValueKind::Reachable,
            _ => ValueKind::Bool,
        }
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }

    /// Whether `value` turns the switch on; `None` for a value the product refuses (it then
    /// does not start, which other alerts report).
    fn reads_on(self, value: Option<&str>) -> Option<bool> {
        match (self.kind(), value) {
            (ValueKind::Bool, None) => Some(true),
            (ValueKind::Bool, Some(v)) => parse_go_bool(v),
            (_, None) => None,
            (ValueKind::Address, Some(v)) => Some(!v.is_empty()),
            (ValueKind::Reachable, Some(v)) => Some(!v.is_empty() && !is_loopback(v)),
        }
    }
}

/// The words Go's `strconv.ParseBool` reads as true.
pub const GO_TRUE: [&str; 6] = ["1", "t", "T", "true", "TRUE", "True"];
/// The words Go's `strconv.ParseBool` reads as false; it refuses every other.
pub const GO_FALSE: [&str; 6] = ["0", "f", "F", "false", "FALSE", "False"];

/// Go's `strconv.ParseBool`, which pflag uses for boolean flags and Istio for its annotations.
pub fn parse_go_bool(value: &str) -> Option<bool> {
    if GO_TRUE.contains(&value) {
        Some(true)
    } else if GO_FALSE.contains(&value) {
        Some(false)
    } else {
        None
    }
}

/// Whether an address names this host only: `localhost`, `127.*` or `::1`, bracketed or not.
pub fn is_loopback(address: &str) -> bool {
    let host = address.trim_start_matches('[').split(']').next().unwrap_or(address);
    host == "localhost" || host.starts_with("127.") || host == "::1"
}

/// Which switches a container sets, and to what: a flag in `command` or `args` wins over the
/// environment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Switches {
    set: u8,
    on: u8,
}

impl Switches {
    /// Whether the switch is set, and on: `None` when neither a flag nor a variable sets it.
    pub fn get(self, switch: SignalSwitch) -> Option<bool> {
        (self.set & switch.bit() != 0).then_some(self.on & switch.bit() != 0)
    }

    fn record(&mut self, switch: SignalSwitch, on: bool) {
        self.set |= switch.bit();
        if on {
            self.on |= switch.bit();
        } else {
            self.on &= !switch.bit();
        }
    }

    /// These switches, with `under`'s where these set none (flags over the environment).
    pub fn over(self, under: Switches) -> Switches {
        let from_under = under.set & !self.set;
        Switches { set: self.set | from_under, on: self.on | (under.on & from_under) }
    }

    /// The switches the words of `command` and `args` set, in order (the last one wins, as
    /// pflag reads them): `--flag`, `--flag=value`, `--flag value` for an address, also with
    /// one dash, also inside a shell command.
    pub fn from_words<'a>(words: impl IntoIterator<Item = &'a str>) -> Switches {
        let mut switches = Switches::default();
        let mut tokens = words.into_iter().flat_map(str::split_whitespace).peekable();
        while let Some(token) = tokens.next() {
            let Some(bare) = token.strip_prefix("--").or_else(|| token.strip_prefix('-')) else { continue };
            let (name, value) = bare.split_once('=').map_or((bare, None), |(n, v)| (n, Some(v)));
            let Some(switch) = SignalSwitch::ALL.into_iter().find(|s| &s.flag()[2..] == name) else { continue };
            let value = match value {
                Some(v) => Some(v.trim_matches(['"', '\''])),
                None if switch.kind() != ValueKind::Bool => tokens.next().map(|v| v.trim_matches(['"', '\''])),
                None => None,
            };
            if let Some(on) = switch.reads_on(value) {
                switches.record(switch, on);
            }
        }
        switches
    }

    fn from_env(name: &str, value: &str) -> Option<(SignalSwitch, bool)> {
        let switch = SignalSwitch::ALL.into_iter().find(|s| s.env().contains(&name))?;
        // A boolean variable is parsed as its flag's value; an empty one is unset.
        let value = value.trim();
        (!value.is_empty()).then_some(())?;
        switch.reads_on(Some(value)).map(|on| (switch, on))
    }
}

/// `command` or `args`: whether it mentions the word `agent` (Vault Agent runs Vault's own
/// image, so only its subcommand tells it from a Vault server) and the [`Switches`] it sets.
/// Read without keeping the strings.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CommandWords {
    /// A word `agent` anywhere, e.g. `vault agent -config=…` inside a shell command.
    pub mentions_agent: bool,
    /// The signal switches these words set.
    pub switches: Switches,
}

impl<'de> Deserialize<'de> for CommandWords {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let words = Option::<Vec<Cow<'de, str>>>::deserialize(deserializer)?.unwrap_or_default();
        let mentions_agent =
            words.iter().any(|w| w.split(|c: char| c.is_whitespace() || c == ';' || c == '&').any(|t| t == "agent"));
        Ok(CommandWords { mentions_agent, switches: Switches::from_words(words.iter().map(|w| w.as_ref())) })
    }
}

/// `env`: the [`Switches`] its plain `value`s set; every other variable is skipped unkept,
/// and a variable from a Secret or ConfigMap (`valueFrom`) sets nothing (its value is unknown).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EnvSwitches(pub Switches);

impl<'de> Deserialize<'de> for EnvSwitches {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Seq;
        impl<'de> Visitor<'de> for Seq {
            type Value = EnvSwitches;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of environment variables")
            }
            fn visit_unit<E>(self) -> Result<EnvSwitches, E> {
                Ok(EnvSwitches::default())
            }
            fn visit_none<E>(self) -> Result<EnvSwitches, E> {
                Ok(EnvSwitches::default())
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<EnvSwitches, D::Error> {
                d.deserialize_seq(self)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<EnvSwitches, A::Error> {
                let mut switches = Switches::default();
                while let Some(var) = seq.next_element::<EnvVar>()? {
                    if let Some((switch, on)) =
                        var.name.as_deref().zip(var.value.as_deref()).and_then(|(n, v)| Switches::from_env(n, v))
                    {
                        switches.record(switch, on);
                    }
                }
                Ok(EnvSwitches(switches))
            }
        }
        deserializer.deserialize_option(Seq)
    }
}

/// One `env` entry: its name and plain value, borrowed where the input allows.
struct EnvVar<'a> {
    name: Option<Cow<'a, str>>,
    value: Option<Cow<'a, str>>,
}

impl<'de> Deserialize<'de> for EnvVar<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Fields;
        impl<'de> Visitor<'de> for Fields {
            type Value = EnvVar<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an environment variable")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<EnvVar<'de>, A::Error> {
                let mut var = EnvVar { name: None, value: None };
                while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                    match key.as_ref() {
                        "name" => var.name = map.next_value::<Option<Cow<'de, str>>>()?,
                        "value" => var.value = map.next_value::<Option<Cow<'de, str>>>()?,
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(var)
            }
        }
        deserializer.deserialize_map(Fields)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(list: &[&str]) -> Switches {
        Switches::from_words(list.iter().copied())
    }

    #[test]
    fn flags_read_as_pflag_reads_them() {
        let s = words(&["--repo=x", "--http-bind=:8080", "--http-metrics"]);
        assert_eq!((s.get(SignalSwitch::HttpBind), s.get(SignalSwitch::HttpMetrics)), (Some(true), Some(true)));
        let s = words(&["--http-bind", ":8080", "-http-metrics=false"]);
        assert_eq!((s.get(SignalSwitch::HttpBind), s.get(SignalSwitch::HttpMetrics)), (Some(true), Some(false)));
        assert_eq!(words(&["--http-bind="]).get(SignalSwitch::HttpBind), Some(false), "empty: no endpoint");
        assert_eq!(words(&["--prometheus", "--prometheus=FALSE"]).get(SignalSwitch::Prometheus), Some(false));
        assert_eq!(words(&["--prometheus=yes"]).get(SignalSwitch::Prometheus), None, "refused by pflag");
        assert_eq!(
            words(&["sh", "-c", "exec /cloud-sql-proxy --health-check p:r:i"]).get(SignalSwitch::HealthCheck),
            Some(true)
        );
        assert_eq!(words(&["--http-address=127.0.0.1"]).get(SignalSwitch::HttpAddress), Some(false));
        assert_eq!(words(&["--http-address", "0.0.0.0"]).get(SignalSwitch::HttpAddress), Some(true));
        assert_eq!(words(&["--prometheusx", "prometheus", "---prometheus"]), Switches::default());
        assert_eq!(words(&["--http-bind"]).get(SignalSwitch::HttpBind), None, "no value follows");
    }

    #[test]
    fn env_is_read_from_plain_values_and_flags_win() {
        let json = r#"[{"name": "GITSYNC_HTTP_BIND", "value": ":8080"}, {"name": "CSQL_PROXY_PROMETHEUS", "value": "0"},
            {"name": "CSQL_PROXY_HEALTH_CHECK", "valueFrom": {"configMapKeyRef": {"name": "c", "key": "k"}}},
            {"name": "OTHER", "value": "x", "future": [1]}, {"name": null}]"#;
        let env: EnvSwitches = serde_json::from_str(json).unwrap();
        assert_eq!(env.0.get(SignalSwitch::HttpBind), Some(true));
        assert_eq!(env.0.get(SignalSwitch::Prometheus), Some(false));
        assert_eq!(env.0.get(SignalSwitch::HealthCheck), None);
        let merged = words(&["--prometheus"]).over(env.0);
        assert_eq!(
            (merged.get(SignalSwitch::Prometheus), merged.get(SignalSwitch::HttpBind)),
            (Some(true), Some(true))
        );
        let none: EnvSwitches = serde_json::from_str("null").unwrap();
        assert_eq!(none, EnvSwitches::default());
    }

    #[test]
    fn command_words_keep_the_agent_word_and_the_switches() {
        let c: CommandWords = serde_json::from_str(r#"["/bin/sh", "-ec", "vault agent -config=/c; --x"]"#).unwrap();
        assert!(c.mentions_agent);
        let huge = format!("[\"--http-bind={}\", \"\\u0000--http-metrics\"]", "9".repeat(1 << 20));
        let c: CommandWords = serde_json::from_str(&huge).unwrap();
        assert_eq!(
            (c.switches.get(SignalSwitch::HttpBind), c.switches.get(SignalSwitch::HttpMetrics)),
            (Some(true), None)
        );
    }
}
