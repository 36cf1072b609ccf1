//! CEL text for the admission policies, built from the engine's catalog and messages: string
//! literals, messages as concatenations, the catalog's recognition of a container, image
//! references read the way the engine reads them, and label selectors.
//!
//! Everything here is CEL of Kubernetes 1.30 (the first release with
//! `admissionregistration.k8s.io/v1` policies): the base library, `strings` v2, optional types.
//! There is no `cel.bind` there, so a value used twice is bound with a one-element list,
//! `[value].map(x, body)[0]`, which costs a few units instead of computing `value` again.

use std::fmt::Write;

use k8s_openapi::api::admissionregistration::v1::Variable;

use crate::engine::{ImageRule, CATALOG, GENERIC_JOB_REMEDIATION, GENERIC_NATIVE_REMEDIATION};

/// A CEL string literal (single-quoted) of `text`.
pub(crate) fn string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('\'');
    for ch in text.chars() {
        match ch {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// A CEL list literal of the strings `values`.
pub(crate) fn string_list<S: AsRef<str>>(values: impl IntoIterator<Item = S>) -> String {
    let quoted: Vec<String> = values.into_iter().map(|v| string(v.as_ref())).collect();
    format!("[{}]", quoted.join(", "))
}

/// A policy variable whose CEL starts with a comment saying what it is.
pub(crate) fn variable(name: &str, comment: &str, expression: impl Into<String>) -> Variable {
    Variable { name: name.to_string(), expression: format!("// {comment}\n{}", expression.into()) }
}

/// One piece of a [`Message`].
#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    /// Literal text.
    Text(String),
    /// A CEL expression of type string.
    Cel(String),
}

/// A message as the engine writes it, with its variable parts as CEL expressions: rendered
/// as one CEL string concatenation, or filled in Rust to compare with the engine's own text.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Message(Vec<Part>);

impl Message {
    /// Appends literal text.
    pub(crate) fn text(mut self, text: &str) -> Self {
        match self.0.last_mut() {
            Some(Part::Text(last)) => last.push_str(text),
            _ => self.0.push(Part::Text(text.to_string())),
        }
        self
    }

    /// Appends the value of a CEL expression of type string.
    pub(crate) fn cel(mut self, expression: &str) -> Self {
        self.0.push(Part::Cel(expression.to_string()));
        self
    }

    /// The CEL expression that builds the message.
    pub(crate) fn to_cel(&self) -> String {
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|p| match p {
                Part::Text(t) => string(t),
                Part::Cel(e) => e.clone(),
            })
            .collect();
        parts.join(" + ")
    }

    /// The message with each CEL expression replaced by its value in `values` (for tests: what
    /// the API server prints, given those values). An expression without a value is kept as is.
    #[cfg(test)]
    pub(crate) fn fill(&self, values: &[(&str, &str)]) -> String {
        self.0
            .iter()
            .map(|p| match p {
                Part::Text(t) => t.as_str(),
                Part::Cel(e) => values.iter().find(|(k, _)| k == e).map_or(e.as_str(), |(_, v)| v),
            })
            .collect()
    }
}

/// A CEL map literal from every catalog container name to its entry's id; the first entry
/// naming a container wins, as in [`crate::engine::CatalogId::recognise`].
pub(crate) fn catalog_names() -> String {
    let mut seen = Vec::new();
    let mut entries = Vec::new();
    for entry in CATALOG {
        for name in entry.names {
            if seen.contains(name) {
                continue;
            }
            seen.push(*name);
            entries.push(format!("{}: {}", string(name), string(entry.id)));
        }
    }
    format!("{{{}}}", entries.join(", "))
}

/// A CEL map literal from each catalog id to the advice for a Job it holds open, plus `''`
/// for a sidecar the catalog does not know.
pub(crate) fn job_remediations() -> String {
    let mut entries = vec![format!("'': {}", string(GENERIC_JOB_REMEDIATION))];
    entries.extend(CATALOG.iter().map(|e| format!("{}: {}", string(e.id), string(e.job_remediation))));
    format!("{{{}}}", entries.join(",\n  "))
}

/// A CEL map literal from each catalog id to the advice for making it a native sidecar (a
/// legacy sidecar outside a Job), plus `''` for a sidecar the catalog does not know.
pub(crate) fn native_remediations() -> String {
    let mut entries = vec![format!("'': {}", string(GENERIC_NATIVE_REMEDIATION))];
    entries.extend(CATALOG.iter().map(|e| format!("{}: {}", string(e.id), string(e.native_remediation))));
    format!("{{{}}}", entries.join(",\n  "))
}

/// A CEL map literal from the id of each catalog entry whose mesh redirects the Pod's traffic
/// to its proxy to that redirection: `{'iptablesInit', 'cniValidator', 'remediation'}`
/// ([`crate::engine::Redirect`]).
pub(crate) fn redirects() -> String {
    let entries: Vec<String> = CATALOG
        .iter()
        .filter_map(|e| {
            let r = e.redirect.as_ref()?;
            Some(format!(
                "{}: {{'iptablesInit': {}, 'cniValidator': {}, 'remediation': {}}}",
                string(e.id),
                string(r.iptables_init),
                string(r.cni_validator),
                string(r.remediation)
            ))
        })
        .collect();
    format!("{{{}}}", entries.join(",\n  "))
}

/// Unicode whitespace as the inside of an RE2 character class: what Rust's
/// [`char::is_whitespace`] (and so [`str::split_whitespace`]) reads as whitespace, which RE2's `\s`
/// (ASCII only) is not. `White_Space` is the controls `\t` to `\r`, NEL and the separators
/// (`\pZ`); a short class, since a pattern's cost grows with its length.
pub(crate) const WHITESPACE: &str = r"\t-\r\x{85}\pZ";

/// Whether container `c`'s `command` or `args` mention the word `agent` (Vault's image is both
/// server and agent; see [`crate::api::CommandWords`]: words are separated by whitespace, `;`
/// and `&`).
fn mentions_agent(c: &str) -> String {
    // The long pattern runs only on words containing `agent` but for the usual `agent` itself:
    // its cost is the pattern's length times the word's.
    let separator = format!("[{WHITESPACE};&]");
    let word = format!("w == 'agent' || w.contains('agent') && w.matches(r'(^|{separator})agent({separator}|$)')");
    format!("({c}.?command.orValue([]).exists(w, {word}) || {c}.?args.orValue([]).exists(w, {word}))")
}

/// The last segment of image reference `image`'s repository path, without tag or digest
/// (`gcr.io/istio-release/proxyv2:1.22.0@sha256:…` → `proxyv2`), the segment every image rule of
/// the catalog starts from. Three short regular expressions cost a fraction of splitting the
/// reference into its repository path (docs/benchmarks.md#figures-the-codes-comments-cite).
fn image_last_segment(image: &str) -> String {
    format!("{image}.find('^[^@]*').find('[^/]*$').find('^[^:]*')")
}

/// The last segment a repository path must have for `rule` to match, when one exists.
fn rule_last_segment(rule: ImageRule) -> Option<&'static str> {
    match rule {
        ImageRule::Last(want) => Some(want),
        ImageRule::Suffix(want) => Some(want.rsplit('/').next().unwrap_or(want)),
        ImageRule::LastPrefix(_) => None,
    }
}

/// Whether `rule` matches container `c`'s image, given that the image's last segment `l` is
/// `last` (or, for `None`, is none of the segments the catalog names).
fn rule_matches(rule: ImageRule, c: &str, last: Option<&str>) -> Option<String> {
    match (rule, last) {
        (ImageRule::Last(want), Some(last)) => (want == last).then(|| "true".to_string()),
        (ImageRule::Last(_), None) => None,
        (ImageRule::LastPrefix(want), Some(last)) => last.starts_with(want).then(|| "true".to_string()),
        (ImageRule::LastPrefix(want), None) => Some(format!("l.startsWith({})", string(want))),
        // The path is `want` or ends with `/want`: the registry (a first segment with '.' or
        // ':', or localhost) never matters, since no suffix starts with one (tested below).
        (ImageRule::Suffix(want), Some(last)) => (rule_last_segment(rule) == Some(last)).then(|| {
            // `(^|/)` instead of a leading `^(?:[^@]*/)?`: the last segment is already known,
            // and a shorter pattern costs less (cost grows with the pattern's length).
            let regex = format!("(^|/){want}(:[^/@]*)?(@.*)?$");
            format!("{c}.image.matches({})", string(&regex))
        }),
        (ImageRule::Suffix(_), None) => None,
    }
}

/// The first catalog entry, in catalog order, whose image rules match container `c` (whose
/// image's last segment is `l`): an entry's id when the last segment alone decides it, else a
/// CEL chain of conditions ending in `''`.
enum Entry {
    /// The last segment decides: this entry.
    Decided(&'static str),
    /// The image (or, for Vault, the command) decides: a CEL expression.
    Check(String),
}

fn first_entry(c: &str, last: Option<&str>) -> Entry {
    let mut chain = String::new();
    for entry in CATALOG {
        let conditions: Vec<String> = entry.images.iter().filter_map(|r| rule_matches(*r, c, last)).collect();
        if conditions.is_empty() {
            continue;
        }
        let decided = conditions.iter().any(|t| t == "true");
        let mut condition = if decided { "true".to_string() } else { conditions.join(" || ") };
        if entry.image_needs_agent {
            condition = if decided { mentions_agent(c) } else { format!("({condition}) && {}", mentions_agent(c)) };
        }
        if condition == "true" {
            if chain.is_empty() {
                return Entry::Decided(entry.id);
            }
            chain.push_str(&string(entry.id));
            return Entry::Check(chain);
        }
        let _ = write!(chain, "{condition} ? {} : ", string(entry.id));
    }
    chain.push_str("''");
    Entry::Check(chain)
}

/// Every last segment the catalog's image rules name, in catalog order.
fn image_keys() -> Vec<&'static str> {
    let mut keys: Vec<&'static str> = Vec::new();
    for key in CATALOG.iter().flat_map(|e| e.images.iter().filter_map(|r| rule_last_segment(*r))) {
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    keys
}

/// A CEL map literal from each last segment the catalog's image rules name to the entry it
/// decides, or `''` where the rest of the image (or the command) decides. An image whose last
/// segment is none of them is matched against the prefix rules only.
pub(crate) fn catalog_images() -> String {
    let entries: Vec<String> = image_keys()
        .iter()
        .map(|k| match first_entry("c", Some(k)) {
            Entry::Decided(id) => format!("{}: {}", string(k), string(id)),
            Entry::Check(_) => format!("{}: ''", string(k)),
        })
        .collect();
    format!("{{{}}}", entries.join(", "))
}

/// The id of the catalog entry container `c` is by its image (`''` for none), as
/// [`crate::engine::CatalogId::recognise`] decides it: most images are settled by one lookup of
/// their last segment (what it costs per container, and a Vault image, whose command is read
/// too: docs/admission-policies.md#cost, measured with `harness/control-plane/celcost.go`).
fn catalog_id_by_image(c: &str) -> String {
    let mut checks = String::new();
    for key in image_keys() {
        if let Entry::Check(chain) = first_entry(c, Some(key)) {
            // CEL's middle operand of `?:` cannot be another `?:` without parentheses.
            let _ = write!(checks, "\n    l == {} ? ({chain}) :", string(key));
        }
    }
    let prefixes = match first_entry(c, None) {
        Entry::Decided(id) => string(id),
        Entry::Check(chain) => chain,
    };
    format!(
        "(has({c}.image) ? [{last}].map(l, l in variables.catalogImages ? \
         (variables.catalogImages[l] != '' ? variables.catalogImages[l] : {checks} '') : {prefixes})[0] : '')",
        last = image_last_segment(&format!("{c}.image")),
    )
}

/// The id of the catalog entry container `c` is (`''` for none): by name
/// (`variables.catalogNames`, see [`catalog_names`]), then by image (`variables.catalogImages`,
/// see [`catalog_images`]), as [`crate::engine::CatalogId::recognise`] decides it.
pub(crate) fn catalog_id(c: &str) -> String {
    format!("({c}.name in variables.catalogNames ? variables.catalogNames[{c}.name] : {})", catalog_id_by_image(c))
}

/// Whether image reference `image` is unpinned: no digest, and no tag or the tag `latest`
/// ([`crate::engine::is_latest_image`]).
pub(crate) fn latest_image(image: &str) -> String {
    format!(
        "!{image}.contains('@') && [{image}.substring({image}.lastIndexOf('/') + 1)].all(s, !s.contains(':') || s.endsWith(':latest'))"
    )
}

/// Whether the label selector `selector` (a `LabelSelector`, or `{}`) selects `labels`, as
/// Kubernetes decides it. An `In` or `NotIn` requirement without values makes the policy invalid
/// for the engine, which then evaluates nothing: here it selects nothing.
pub(crate) fn selector_matches(selector: &str, labels: &str) -> String {
    format!(
        "{selector}.?matchLabels.orValue({{}}).all(k, k in {labels} && {labels}[k] == {selector}.matchLabels[k]) && \
         {selector}.?matchExpressions.orValue([]).all(e, \
         e.operator == 'In' ? e.key in {labels} && {labels}[e.key] in e.?values.orValue([]) : \
         e.operator == 'NotIn' ? size(e.?values.orValue([])) > 0 && !(e.key in {labels} && {labels}[e.key] in e.values) : \
         e.operator == 'Exists' ? e.key in {labels} : \
         e.operator == 'DoesNotExist' ? !(e.key in {labels}) : false)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whitespace_is_rusts() {
        // RE2 and the `regex` crate read this class alike.
        let class = regex::Regex::new(&format!("^[{WHITESPACE}]$")).expect("the class compiles");
        for c in (0..=0x10FFFF).filter_map(char::from_u32) {
            assert_eq!(class.is_match(c.encode_utf8(&mut [0; 4])), c.is_whitespace(), "U+{:04X}", u32::from(c));
        }
    }

    #[test]
    fn strings_are_quoted_and_escaped() {
        assert_eq!(string("it's"), r"'it\'s'");
        assert_eq!(string(r"a\b"), r"'a\\b'");
        assert_eq!(string("a\nb"), r"'a\nb'");
        assert_eq!(string("…"), "'…'");
    }

    #[test]
    fn messages_join_text_and_expressions() {
        let message =
            Message::default().text("Sidecar ").cel("s.name").text(" in Pod ").cel("variables.podKey").text(" x");
        assert_eq!(message.to_cel(), "'Sidecar ' + s.name + ' in Pod ' + variables.podKey + ' x'");
        assert_eq!(
            message.fill(&[("s.name", "envoy"), ("variables.podKey", "shop/web")]),
            "Sidecar envoy in Pod shop/web x"
        );
    }

    #[test]
    fn no_image_suffix_starts_with_a_registry() {
        // The CEL matches a suffix rule on the whole reference, registry included, which equals
        // matching the repository path only while no suffix's first segment is a registry.
        for rule in CATALOG.iter().flat_map(|e| e.images) {
            if let ImageRule::Suffix(want) = rule {
                let first = want.split('/').next().unwrap_or(want);
                assert!(!first.contains(['.', ':']) && first != "localhost", "{want}");
                assert!(want.chars().all(|c| c.is_ascii_alphanumeric() || "/-_".contains(c)), "{want}");
            }
        }
    }

    #[test]
    fn every_catalog_name_and_image_rule_is_in_the_cel() {
        let names = catalog_names();
        let images = format!("{} {}", catalog_images(), catalog_id("c"));
        for entry in CATALOG {
            for name in entry.names {
                assert!(names.contains(&format!("'{name}': '{}'", entry.id)), "{name} missing from {names}");
            }
            for rule in entry.images {
                let want = match rule {
                    ImageRule::Last(x) | ImageRule::LastPrefix(x) => format!("'{x}'"),
                    ImageRule::Suffix(x) => format!("(^|/){x}("),
                };
                assert!(images.contains(&want), "{want} missing from {images}");
            }
            assert!(job_remediations().contains(&string(entry.job_remediation)), "{}", entry.id);
        }
    }
}
