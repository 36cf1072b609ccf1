//! A Pod's UID as the index keys and keeps it.

use std::fmt;

use uuid::Uuid;

/// A Pod's `metadata.uid`: a [`Uuid`] when written the way kube-apiserver writes the UIDs it
/// assigns (lowercase, hyphenated), or the text of any other.
///
/// A tracked Pod keeps its UID beside its name in one allocation; as 16 bytes instead of 36
/// characters it puts most Pods' UID and name in a smaller size class of the allocator
/// (`cargo bench --bench index_memory -- mix`;
/// docs/benchmarks.md#smaller-parts-per-pod-real-control-plane-2026-11-25). Only the exact
/// canonical text is kept as a UUID, so every UID is written back exactly as it came, and
/// two UIDs are equal exactly when their texts are.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub enum PodUid<'a> {
    /// A UUID in canonical text.
    Uuid(Uuid),
    /// Any other UID, as it came.
    Text(&'a str),
}

impl<'a> PodUid<'a> {
    /// `text` as a UID: a UUID when it is one in canonical lowercase text.
    pub fn parse(text: &'a str) -> PodUid<'a> {
        // `Uuid::try_parse` also takes upper case, braces, URNs and no hyphens: only the text
        // it writes back unchanged is kept as a UUID.
        let canonical = |uuid: &Uuid| uuid.hyphenated().encode_lower(&mut Uuid::encode_buffer()) == text;
        match Uuid::try_parse(text) {
            Ok(uuid) if canonical(&uuid) => PodUid::Uuid(uuid),
            _ => PodUid::Text(text),
        }
    }
}

impl fmt::Display for PodUid<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PodUid::Text(text) => f.write_str(text),
            PodUid::Uuid(uuid) => fmt::Display::fmt(&uuid.hyphenated(), f),
        }
    }
}

impl fmt::Debug for PodUid<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.to_string())
    }
}

impl PartialEq<str> for PodUid<'_> {
    fn eq(&self, other: &str) -> bool {
        *self == PodUid::parse(other)
    }
}

impl PartialEq<&str> for PodUid<'_> {
    fn eq(&self, other: &&str) -> bool {
        *self == PodUid::parse(other)
    }
}

#[cfg(test)]
mod tests {
    use super::PodUid;

    #[test]
    fn canonical_uuids_are_kept_as_bytes_and_written_back_exactly() {
        let text = "6f1c2d3e-0001-4b5a-9c8d-00000000000f";
        let uid = PodUid::parse(text);
        assert!(matches!(uid, PodUid::Uuid(_)));
        assert_eq!(uid.to_string(), text);
        assert_eq!(uid, text);
    }

    #[test]
    fn every_other_uid_is_kept_as_text() {
        for text in [
            "",
            "6F1C2D3E-0001-4B5A-9C8D-00000000000F",
            "6f1c2d3e00014b5a9c8d00000000000f",
            "6f1c2d3e-0001-4b5a-9c8d-00000000000g",
            "6f1c2d3e-0001-4b5a-9c8d000000000000f",
            "6f1c2d3e-0001-4b5a-9c8d-00000000000",
            "Job/shop/é",
            "6f1c2d3e-0001-4b5a-9c8d-0000000000é",
        ] {
            let uid = PodUid::parse(text);
            assert_eq!(uid, PodUid::Text(text), "{text:?}");
            assert_eq!(uid.to_string(), text);
        }
        assert_ne!(PodUid::parse("6F1C2D3E-0001-4B5A-9C8D-00000000000F"), "6f1c2d3e-0001-4b5a-9c8d-00000000000f");
    }
}
