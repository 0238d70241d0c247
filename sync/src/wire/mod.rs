//! The wire format: versioned binary frames carrying many records.
//!
//! ```text
//! frame   = magic "PRLY" (4) | version u8 (=1) | frame_seq uvarint | count uvarint | record*count
//! record  = tag u8 | body_len uvarint | body (body_len bytes)
//!
//! tag 0x01 HELLO       feed_id u64le | feed_high uvarint | cursor_feed_id u64le | cursor_seq uvarint
//! tag 0x02 FEED        from uvarint | to uvarint | n uvarint | n * entry
//!          entry       doc [16] | seq uvarint | h uvarint | h * hash [32]
//! tag 0x03 ACK         cursor uvarint
//! tag 0x04 SYNC        doc [16] | len uvarint | automerge sync message (len bytes)
//! tag 0x05 UNAVAILABLE doc [16]
//! tag 0x06 REJECT      doc [16] | len uvarint | reason utf-8 (len bytes)
//! tag 0x07 BLOB_WANT   file [32] | from uvarint | count uvarint
//! tag 0x08 BLOB_CHUNK  file [32] | size uvarint | index uvarint | digest [32] | len uvarint | bytes
//! tag 0x09 BLOB_NONE   file [32]
//! ```
//!
//! The `BLOB_*` records (files attached to messages, see the crate docs) are sent only on a
//! link both ends opened as `parley-sync.2`; a `parley-sync.1` peer never sees them.
//!
//! `uvarint` is unsigned LEB128 (at most 10 bytes, no overlong trailing zero groups beyond
//! what fits a u64). Every body must be consumed exactly and the frame must end after its last
//! record; anything else is an error, so one byte sequence has one meaning.
//!
//! The SYNC payload is Automerge's own sync message, byte for byte, so a document-level adapter
//! to another Automerge transport (automerge-repo's `sync` message) can pass it through.
//!
//! Limits are enforced by the decoder *before* allocating: a length or count field can never make
//! the decoder reserve more memory than the frame's remaining bytes could fill.

mod decode;
mod encode;
pub(crate) mod varint;

pub use decode::{DecodeError, decode_frame};
pub use encode::encode_frame;
pub(crate) use encode::{encode_header, encode_record};

use crate::ids::DocId;
use automerge::ChangeHash;

/// First bytes of every frame.
pub const MAGIC: [u8; 4] = *b"PRLY";
/// The protocol version this build speaks. A frame with another version is refused with
/// [`DecodeError::UnsupportedVersion`].
pub const PROTOCOL_VERSION: u8 = 1;

/// Largest frame the decoder accepts.
pub const MAX_FRAME_BYTES: usize = 8 * 1024 * 1024;
/// Most records in one frame.
pub const MAX_RECORDS_PER_FRAME: usize = 4096;
/// Most entries in one FEED record.
pub const MAX_FEED_ENTRIES: usize = 4096;
/// Most heads listed for one document in a FEED entry. A document with more heads is announced
/// with an empty list, which the receiver treats as "run a sync round to find out".
pub const MAX_HEADS: usize = 1024;
/// Largest Automerge sync message carried for one document.
pub const MAX_SYNC_MESSAGE_BYTES: usize = 4 * 1024 * 1024;
/// How files are cut: every chunk but a file's last is exactly this long. 252 KiB rather
/// than 256 so that a chunk and its key fit one 256 KiB page of the receiver's store (redb
/// rounds a page up to the next power of two: a 256 KiB value would take 512 KiB).
pub const BLOB_CHUNK_BYTES: usize = 252 * 1024;
/// Largest piece of a file in one BLOB_CHUNK record.
pub const MAX_BLOB_CHUNK_BYTES: usize = BLOB_CHUNK_BYTES;
/// Most chunks one BLOB_WANT may ask for; and most chunks all the BLOB_WANT records of one
/// frame may ask for together (so one frame can never make the sender queue more than
/// `MAX_BLOB_WANT * MAX_BLOB_CHUNK_BYTES`).
pub const MAX_BLOB_WANT: u32 = 32;
/// Longest reject reason, in bytes. Longer reasons are cut at a character boundary.
pub const MAX_REASON_BYTES: usize = 1024;

/// One frame as it travels: the sender's per-connection frame number and its records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// 0 for the first frame a session sends on a connection, then +1 per frame. Lets the
    /// receiver drop a duplicated frame and refuse a reordered one.
    pub seq: u64,
    pub records: Vec<Record>,
}

/// One announced document in a peer's changes feed: `doc` changed and is now at `heads`, and
/// `seq` is its (latest) position in the sender's feed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeedEntry {
    pub seq: u64,
    pub doc: DocId,
    pub heads: Vec<ChangeHash>,
}

/// The records a frame can carry. See the crate docs for when each is sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    /// First record of a session, both directions: who my feed is, where it ends, and how far I
    /// have applied yours.
    Hello {
        feed_id: u64,
        feed_high: u64,
        cursor_feed_id: u64,
        cursor_seq: u64,
    },
    /// The sender's feed positions `(from, to]`: every document changed there that is shared
    /// with the receiver, with its heads. Ranges arrive contiguously within a session.
    Feed {
        from: u64,
        to: u64,
        entries: Vec<FeedEntry>,
    },
    /// "Everything of your feed up to `cursor` is applied and durable here."
    Ack { cursor: u64 },
    /// One Automerge sync message for one document.
    Sync { doc: DocId, message: Vec<u8> },
    /// "I cannot give you this document." Sent whether or not it exists here.
    Unavailable { doc: DocId },
    /// "This document stops syncing for the rest of this session, because `reason`."
    Reject { doc: DocId, reason: String },
    /// "Send me chunks `from..from+count` of file `file`" (its SHA-256).
    BlobWant {
        file: [u8; 32],
        from: u32,
        count: u32,
    },
    /// Chunk `index` of file `file`, which is `size` bytes in all; `digest` is the SHA-256 of
    /// `bytes`, so a piece damaged on the way is told from a wrong file.
    BlobChunk {
        file: [u8; 32],
        size: u64,
        index: u32,
        digest: [u8; 32],
        bytes: Vec<u8>,
    },
    /// "I cannot give you that file" (not here, or not yours to have).
    BlobNone { file: [u8; 32] },
}

impl Record {
    pub(crate) const HELLO: u8 = 0x01;
    pub(crate) const FEED: u8 = 0x02;
    pub(crate) const ACK: u8 = 0x03;
    pub(crate) const SYNC: u8 = 0x04;
    pub(crate) const UNAVAILABLE: u8 = 0x05;
    pub(crate) const REJECT: u8 = 0x06;
    pub(crate) const BLOB_WANT: u8 = 0x07;
    pub(crate) const BLOB_CHUNK: u8 = 0x08;
    pub(crate) const BLOB_NONE: u8 = 0x09;

    /// Entries this record counts against [`MAX_RECORDS_PER_FRAME`]-style budgets: a FEED record
    /// counts each of its entries, everything else counts one.
    pub fn weight(&self) -> usize {
        match self {
            Record::Feed { entries, .. } => entries.len().max(1),
            _ => 1,
        }
    }
}

/// Cut `reason` to at most [`MAX_REASON_BYTES`] bytes at a character boundary.
pub fn clamp_reason(reason: &str) -> String {
    if reason.len() <= MAX_REASON_BYTES {
        return reason.to_owned();
    }
    let mut end = MAX_REASON_BYTES;
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    reason[..end].to_owned()
}
