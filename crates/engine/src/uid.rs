//! A Pod's UID as the index keys and keeps it.

use std::fmt;

/// A Pod's `metadata.uid`: the 16 bytes of a UUID written the way kube-apiserver writes the
/// UIDs it assigns (lowercase, hyphenated), or the text of any other.
///
/// A tracked Pod keeps its UID beside its name in one allocation; as 16 bytes instead of 36
/// characters it brings the mix's names from mimalloc's 64-byte size class to 40
/// (`cargo bench --bench index_memory -- mix`). Only the exact canonical text is kept as
/// bytes, so every UID is written back exactly as it came, and two UIDs are equal exactly
/// when their texts are.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub enum PodUid<'a> {
    /// A UUID in canonical text.
    Uuid([u8; 16]),
    /// Any other UID, as it came.
    Text(&'a str),
}

/// Length of a UUID's canonical text, and where its hyphens are.
const UUID_TEXT_LEN: usize = 36;
const HYPHENS: [usize; 4] = [8, 13, 18, 23];

impl<'a> PodUid<'a> {
    /// `text` as a UID: its bytes when it is a UUID in canonical lowercase text.
    pub fn parse(text: &'a str) -> PodUid<'a> {
        Self::uuid_bytes(text).map_or(PodUid::Text(text), PodUid::Uuid)
    }

    fn uuid_bytes(text: &str) -> Option<[u8; 16]> {
        let text = text.as_bytes();
        if text.len() != UUID_TEXT_LEN || HYPHENS.iter().any(|&at| text[at] != b'-') {
            return None;
        }
        let mut digits = text.iter().enumerate().filter(|(at, _)| !HYPHENS.contains(at)).map(|(_, d)| match d {
            b'0'..=b'9' => Some(d - b'0'),
            b'a'..=b'f' => Some(d - b'a' + 10),
            _ => None,
        });
        let mut bytes = [0u8; 16];
        for byte in &mut bytes {
            *byte = (digits.next()?? << 4) | digits.next()??;
        }
        Some(bytes)
    }
}

impl fmt::Display for PodUid<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PodUid::Text(text) => f.write_str(text),
            PodUid::Uuid(bytes) => {
                // Written into one buffer: the index turns UIDs into text for every wake-up
                // and transition, and a `write!` per byte is sixteen formatter calls.
                const HEX: &[u8; 16] = b"0123456789abcdef";
                let mut text = [b'-'; UUID_TEXT_LEN];
                let positions = (0..UUID_TEXT_LEN).filter(|at| !HYPHENS.contains(at));
                let nibbles = bytes.iter().flat_map(|byte| [byte >> 4, byte & 0xf]);
                for (at, nibble) in positions.zip(nibbles) {
                    text[at] = HEX[usize::from(nibble)];
                }
                f.write_str(std::str::from_utf8(&text).map_err(|_| fmt::Error)?)
            }
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
