//! `--namespace-labels`: the Namespace label keys copied onto `sidecar_alerts`,
//! `sidecar_container_ready`, `sidecar_info` and the `sidecar_resource_*` families as
//! `label_<key>`, so that an alert route can tell which team owns a namespace. Only the allowlisted labels' values are kept per namespace
//! ([`NamespaceMeta::exported`](crate::engine::NamespaceMeta::exported)), cut to
//! [`MAX_VALUE_BYTES`]; the series read them at scrape time, so a label that changes gives
//! no second series.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::writer::LabelSet;
use crate::engine::{Name, NamespaceMeta};

/// Keys `--namespace-labels` may name: each is a label on every series of the families that
/// carry a sidecar's identity.
pub const MAX_KEYS: usize = 16;

/// The longest label value copied, in bytes: the API server refuses longer ones, a
/// simulator or a future server may not.
pub const MAX_VALUE_BYTES: usize = 63;

/// The `limit` of `sidecar_watch_limited_total` that counts values cut to [`MAX_VALUE_BYTES`].
pub(crate) const CUT_LIMIT: &str = "namespace-label-value";

/// The allowlist of `--namespace-labels`, checked: keys with their `label_*` names, in the
/// order given (the order of the labels on the series).
#[derive(Clone, Debug, Default)]
pub struct NamespaceLabels {
    keys: Arc<[(String, String)]>,
}

impl NamespaceLabels {
    /// Checks the keys of `--namespace-labels` (empty entries, as a trailing comma gives, are
    /// ignored): each a Kubernetes label key, at most [`MAX_KEYS`] of them, no two with the
    /// same `label_*` name.
    pub fn new(keys: &[String]) -> anyhow::Result<Self> {
        let keys: Vec<&str> = keys.iter().map(|k| k.trim()).filter(|k| !k.is_empty()).collect();
        anyhow::ensure!(
            keys.len() <= MAX_KEYS,
            "--namespace-labels: {} keys, at most {MAX_KEYS} may be copied onto every series",
            keys.len()
        );
        let mut named: Vec<(String, String)> = Vec::with_capacity(keys.len());
        for key in keys {
            if let Err(why) = check_label_key(key) {
                anyhow::bail!("--namespace-labels: {key:?} is not a Kubernetes label key: {why}");
            }
            let name = label_name(key);
            if let Some((other, _)) = named.iter().find(|(_, n)| *n == name) {
                anyhow::bail!("--namespace-labels: {other:?} and {key:?} would both be exported as {name}");
            }
            named.push((key.to_string(), name));
        }
        Ok(NamespaceLabels { keys: named.into() })
    }

    /// Whether no key is exported.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The `label_*` names, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(|(_, name)| name.as_str())
    }

    /// The values of the allowlisted keys in `labels`, in order (empty for a key `labels`
    /// lacks), each cut to [`MAX_VALUE_BYTES`] on a character boundary; with how many were
    /// cut.
    pub fn values(&self, labels: &BTreeMap<String, String>) -> (Box<[Box<str>]>, u32) {
        let mut cut = 0;
        let values = self
            .keys
            .iter()
            .map(|(key, _)| {
                let value = labels.get(key).map_or("", String::as_str);
                let kept = crate::api::byte_prefix(value, MAX_VALUE_BYTES);
                cut += u32::from(kept.len() < value.len());
                Box::from(kept)
            })
            .collect();
        (values, cut)
    }

    /// Sets `set` to the `label_*` pairs of a namespace whose value at each position
    /// `value` gives.
    pub(super) fn set<'a>(&self, set: &mut LabelSet, value: impl Fn(usize) -> &'a str) {
        set.set_from(self.names().enumerate().map(|(i, name)| (name, value(i))));
    }
}

/// The `label_*` pairs of the namespace last asked for, escaped once and reused while the
/// series that follow are of the same namespace: the one place that writes a namespace's
/// copied labels, for every family that carries them.
#[derive(Default)]
pub(super) struct NamespacePairs {
    pairs: LabelSet,
    /// The namespace `pairs` are of; `None` when they must be looked up again.
    of: Option<Name>,
}

impl NamespacePairs {
    /// The pairs of `namespace` as `namespaces` holds it now: every allowlisted name, empty
    /// where the namespace lacks the label or is not known (`namespaces` `None`: none known).
    pub(super) fn of(
        &mut self,
        labels: &NamespaceLabels,
        namespace: &Name,
        namespaces: Option<&HashMap<String, NamespaceMeta>>,
    ) -> &LabelSet {
        if !labels.is_empty() && self.of.as_ref() != Some(namespace) {
            let meta = namespaces.and_then(|n| n.get(namespace.as_str()));
            labels.set(&mut self.pairs, |i| meta.map_or("", |m| m.exported(i)));
            self.of = Some(namespace.clone());
        }
        &self.pairs
    }

    /// Forgets the namespace: its labels may have changed since (a new chunk looks them up
    /// again).
    pub(super) fn forget(&mut self) {
        self.of = None;
    }
}

/// The label name a key is exported as: `label_` and the key with every character outside
/// `[a-zA-Z0-9_]` made `_`, as kube-state-metrics names the labels it copies.
pub fn label_name(key: &str) -> String {
    let mut name = String::with_capacity(6 + key.len());
    name.push_str("label_");
    name.extend(key.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }));
    name
}

/// Whether `key` is a Kubernetes label key (a qualified name): an optional DNS subdomain
/// prefix of at most 253 characters and `/`, then a name of 1 to 63 characters,
/// alphanumeric at both ends with `-`, `_` and `.` between.
fn check_label_key(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if let Some(prefix) = prefix {
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        };
        if prefix.is_empty() || prefix.len() > 253 || !prefix.split('.').all(label_ok) {
            return Err(format!(
                "the prefix {prefix:?} must be a DNS subdomain (lowercase letters, digits, '-' and '.', at most 253)"
            ));
        }
    }
    let inner_ok = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.');
    let bytes = name.as_bytes();
    let ends_ok =
        bytes.first().zip(bytes.last()).is_some_and(|(a, z)| a.is_ascii_alphanumeric() && z.is_ascii_alphanumeric());
    if name.is_empty() || name.len() > 63 || !ends_ok || !bytes.iter().all(|b| inner_ok(*b)) {
        return Err(format!(
            "the name {name:?} must be 1 to 63 characters, letters, digits, '-', '_' and '.', \
             beginning and ending with a letter or digit"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(keys: &[&str]) -> anyhow::Result<NamespaceLabels> {
        NamespaceLabels::new(&keys.iter().map(|k| k.to_string()).collect::<Vec<_>>())
    }

    fn error(list: &[&str]) -> String {
        keys(list).expect_err("refused").to_string()
    }

    #[test]
    fn keys_are_exported_under_sanitised_names_in_order() {
        let labels = keys(&["team", "app.kubernetes.io/part-of", "", "cost_center"]).expect("valid");
        assert_eq!(
            labels.names().collect::<Vec<_>>(),
            ["label_team", "label_app_kubernetes_io_part_of", "label_cost_center"]
        );
        assert!(keys(&[]).expect("valid").is_empty());
    }

    #[test]
    fn two_keys_of_one_label_name_are_refused_naming_both() {
        assert_eq!(
            error(&["team", "app.kubernetes.io/team", "app-kubernetes-io/team"]),
            "--namespace-labels: \"app.kubernetes.io/team\" and \"app-kubernetes-io/team\" would both be exported \
             as label_app_kubernetes_io_team"
        );
        assert_eq!(
            error(&["team", "team"]),
            "--namespace-labels: \"team\" and \"team\" would both be exported as label_team"
        );
    }

    #[test]
    fn keys_that_are_not_label_keys_are_refused_naming_them() {
        assert_eq!(
            error(&["team", "-team"]),
            "--namespace-labels: \"-team\" is not a Kubernetes label key: the name \"-team\" must be 1 to 63 \
             characters, letters, digits, '-', '_' and '.', beginning and ending with a letter or digit"
        );
        assert_eq!(
            error(&["Example.com/team"]),
            "--namespace-labels: \"Example.com/team\" is not a Kubernetes label key: the prefix \"Example.com\" must \
             be a DNS subdomain (lowercase letters, digits, '-' and '.', at most 253)"
        );
        let long = "a".repeat(64);
        assert!(error(&[&long]).starts_with(&format!("--namespace-labels: \"{long}\" is not a Kubernetes label key")));
        for bad in ["a/b/c", "/team", "team/", "te am", "team\"", "a..b/c"] {
            assert!(keys(&[bad]).is_err(), "{bad:?} accepted");
        }
        for good in ["a", "A_b.c-D", "example.com/team", "kubernetes.io/metadata.name", &"a".repeat(63)] {
            assert!(keys(&[good]).is_ok(), "{good:?} refused");
        }
    }

    #[test]
    fn at_most_sixteen_keys() {
        let many: Vec<String> = (0..17).map(|i| format!("k{i}")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        assert_eq!(error(&many), "--namespace-labels: 17 keys, at most 16 may be copied onto every series");
        assert!(keys(&many[..16]).is_ok());
    }

    #[test]
    fn values_are_the_allowlisted_ones_cut_on_a_character_boundary() {
        let allow = keys(&["team", "tier", "owner"]).expect("valid");
        let mut labels: BTreeMap<String, String> = (0..1000).map(|i| (format!("k{i}"), "x".repeat(63))).collect();
        labels.insert("team".into(), "t".repeat(63));
        // 62 ASCII bytes then a 2-byte character: byte 63 is inside it.
        labels.insert("owner".into(), format!("{}é", "o".repeat(62)));
        let (values, cut) = allow.values(&labels);
        assert_eq!(values.iter().map(|v| &**v).collect::<Vec<_>>(), ["t".repeat(63), String::new(), "o".repeat(62)]);
        assert_eq!(cut, 1);
        labels.insert("tier".into(), "w".repeat(300));
        let (values, cut) = allow.values(&labels);
        assert_eq!((&*values[1], cut), (&*"w".repeat(63), 2));
    }
}
