//! Identifiers the engine and its host share: document ids and feed cursors.

use std::fmt;

/// A conversation document's id: the 16 bytes of a UUID.
///
/// The engine treats it as opaque; `Display` prints the usual hyphenated UUID form so log lines
/// match what the rest of Parley prints.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DocId(pub [u8; 16]);

impl DocId {
    pub const fn from_bytes(bytes: [u8; 16]) -> Self {
        DocId(bytes)
    }

    pub const fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl fmt::Display for DocId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for DocId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DocId({self})")
    }
}

/// How far this node has applied a peer's changes feed: "I hold, durably, everything the feed
/// identified by `feed_id` listed up to and including `seq`".
///
/// `feed_id` names one incarnation of the peer's feed. A peer whose feed was rebuilt or restored
/// from a backup must pick a new `feed_id`; a cursor for another incarnation (or one beyond the
/// feed's current end) is reset to 0 at connect, which costs one re-announcement of the shared
/// documents but never skips one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cursor {
    pub feed_id: u64,
    pub seq: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_hyphenated_uuid() {
        let id = DocId([
            0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab,
            0xcd, 0xef,
        ]);
        assert_eq!(id.to_string(), "01234567-89ab-cdef-0123-456789abcdef");
    }
}
