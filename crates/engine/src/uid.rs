//! A Pod's UID as the index keys and keeps it.

use std::fmt;

use arcstr::ArcStr;
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

impl PartialEq<&str> for PodUid<'_> {
    fn eq(&self, other: &&str) -> bool {
        *self == PodUid::parse(other)
    }
}

/// An owned Pod UID, as [`PathBuf`](std::path::PathBuf) is to [`Path`](std::path::Path):
/// what the operator carries from the watcher to the Event (queue, timers, transitions) so
/// that a UID is parsed once, where the watch decodes its Pod, and written out once, into
/// the Event.
///
/// It is made from text by [`PodUid::parse`]'s rule, or from a [`PodUid`] as it is, so
/// that two are equal exactly when their texts are, and exactly when their borrowed UIDs are. A UUID costs no allocation; any other
/// UID is shared text, so that the timers' two copies of it are one.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PodUidBuf(Owned);

/// No larger than the `String` it replaced in the queue, the timers and the transitions.
const _: () = assert!(std::mem::size_of::<PodUidBuf>() == std::mem::size_of::<String>());

#[derive(Clone, PartialEq, Eq, Hash)]
enum Owned {
    Uuid(Uuid),
    Text(ArcStr),
}

impl PodUidBuf {
    /// `text` as a UID, as [`PodUid::parse`] reads it.
    pub fn parse(text: &str) -> PodUidBuf {
        PodUidBuf::from(PodUid::parse(text))
    }

    /// The borrowed UID, as the index keys it.
    pub fn as_uid(&self) -> PodUid<'_> {
        match &self.0 {
            Owned::Uuid(uuid) => PodUid::Uuid(*uuid),
            Owned::Text(text) => PodUid::Text(text),
        }
    }
}

impl From<PodUid<'_>> for PodUidBuf {
    fn from(uid: PodUid<'_>) -> Self {
        match uid {
            // Variant for variant, not read again: the UID was parsed where it came in.
            PodUid::Uuid(uuid) => PodUidBuf(Owned::Uuid(uuid)),
            PodUid::Text(text) => PodUidBuf(Owned::Text(ArcStr::from(text))),
        }
    }
}

impl From<&str> for PodUidBuf {
    fn from(text: &str) -> Self {
        PodUidBuf::parse(text)
    }
}

impl fmt::Display for PodUidBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.as_uid(), f)
    }
}

impl fmt::Debug for PodUidBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.as_uid(), f)
    }
}

#[cfg(test)]
mod tests {
    use super::{PodUid, PodUidBuf};

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

    #[test]
    fn owned_uids_are_equal_exactly_when_their_texts_are() {
        let canonical = "6f1c2d3e-0001-4b5a-9c8d-00000000000f";
        let upper = "6F1C2D3E-0001-4B5A-9C8D-00000000000F";
        for text in [canonical, upper, "", "Job/shop/é", "u-web-1"] {
            let owned = PodUidBuf::parse(text);
            assert_eq!(owned.to_string(), text);
            assert_eq!(format!("{owned:?}"), format!("{text:?}"));
            assert_eq!(owned.as_uid(), PodUid::parse(text));
            assert_eq!(PodUidBuf::from(PodUid::parse(text)), owned);
            assert_eq!(owned.as_uid(), text);
        }
        assert_ne!(PodUidBuf::parse(upper), PodUidBuf::parse(canonical));
        assert!(matches!(PodUidBuf::parse(canonical).as_uid(), PodUid::Uuid(_)));
    }
}
