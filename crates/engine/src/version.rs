//! Sidecar versions read from image tags, compared as semantic versions. A tag that is not a
//! version (`latest`, a digest, `stable`) is unknown: never older than anything.

use std::cmp::Ordering;
use std::fmt;

/// A release number: up to three numeric parts (`1.24` is `1.24.0`), read from a tag with an
/// optional `v` and any suffix after `-`, `+` or `_` ignored (`v1.32.3-distroless`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Release([u64; 3]);

impl Release {
    /// The release a tag names, if it names one.
    pub(crate) fn parse(tag: &str) -> Option<Release> {
        let tag = tag.strip_prefix(['v', 'V']).unwrap_or(tag);
        let core = tag.split(['-', '+', '_']).next().unwrap_or(tag);
        let mut parts = [0u64; 3];
        for (i, part) in core.split('.').enumerate() {
            let slot = parts.get_mut(i)?;
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            *slot = part.parse().ok()?;
        }
        Some(Release(parts))
    }

    /// Whether the tag `tag` names a release older than this one; `None` when the tag names
    /// no release (unknown, never older).
    pub(crate) fn is_newer_than_tag(self, tag: &str) -> Option<bool> {
        Release::parse(tag).map(|running| running.cmp(&self) == Ordering::Less)
    }
}

impl fmt::Display for Release {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [major, minor, patch] = self.0;
        write!(f, "{major}.{minor}.{patch}")
    }
}

#[cfg(test)]
mod tests {
    use super::Release;

    #[test]
    fn tags_parse_as_releases_or_not_at_all() {
        let parsed = |tag: &str| Release::parse(tag).map(|r| r.to_string());
        assert_eq!(parsed("1.24.0").as_deref(), Some("1.24.0"));
        assert_eq!(parsed("v1.32.3-distroless").as_deref(), Some("1.32.3"));
        assert_eq!(parsed("1.25").as_deref(), Some("1.25.0"));
        assert_eq!(parsed("2").as_deref(), Some("2.0.0"));
        assert_eq!(parsed("1.24.0+build.7").as_deref(), Some("1.24.0"));
        for garbage in
            ["latest", "stable", "sha256:8f3e1a", "", "1..2", "1.2.3.4", "edge-25.1.1", "1.x", "99999999999999999999"]
        {
            assert_eq!(Release::parse(garbage), None, "{garbage}");
        }
    }

    #[test]
    fn older_is_a_release_below_the_minimum_unknown_is_never_older() {
        let minimum = Release::parse("1.24").expect("a release");
        assert_eq!(minimum.is_newer_than_tag("1.23.9"), Some(true));
        assert_eq!(minimum.is_newer_than_tag("1.24.0"), Some(false));
        assert_eq!(minimum.is_newer_than_tag("1.24.0-distroless"), Some(false), "a suffix is not older");
        assert_eq!(minimum.is_newer_than_tag("1.100.0"), Some(false), "numbers, not text");
        assert_eq!(minimum.is_newer_than_tag("latest"), None);
        assert_eq!(minimum.is_newer_than_tag("sha256:8f3e1a"), None);
    }
}
