//! Frame decoder for untrusted input: typed errors, no panics, and no allocation larger than the
//! input could justify.

use std::fmt;

use automerge::ChangeHash;

use super::varint::{self, VarintError};
use super::{
    FeedEntry, Frame, MAGIC, MAX_BLOB_CHUNK_BYTES, MAX_FEED_ENTRIES, MAX_FRAME_BYTES, MAX_HEADS,
    MAX_REASON_BYTES, MAX_RECORDS_PER_FRAME, MAX_SYNC_MESSAGE_BYTES, PROTOCOL_VERSION, Record,
};
use crate::ids::DocId;

/// Why a frame could not be decoded. The frame is dropped whole; nothing in it was applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// The input ended inside `what`.
    Truncated { what: &'static str },
    /// The first four bytes are not `PRLY`: the peer does not speak this protocol.
    BadMagic { found: Vec<u8> },
    /// The peer speaks another protocol version.
    UnsupportedVersion { found: u8 },
    /// The frame is larger than [`MAX_FRAME_BYTES`].
    FrameTooLarge { len: usize },
    /// A count field is above its limit.
    TooMany {
        what: &'static str,
        count: u64,
        max: usize,
    },
    /// A length field is above its limit.
    FieldTooLarge {
        what: &'static str,
        len: u64,
        max: usize,
    },
    /// A number is not valid unsigned LEB128 (over 64 bits or padded).
    InvalidVarint { what: &'static str },
    /// A record tag this version does not define.
    UnknownRecord { tag: u8 },
    /// `what` had `extra` bytes after its last field.
    TrailingBytes { what: &'static str, extra: usize },
    /// A reject reason is not UTF-8.
    InvalidUtf8,
}

impl DecodeError {
    /// True when reconnecting cannot help until one side's software changes: the peer speaks
    /// another protocol or version. Other decode errors point at a corrupt frame or a peer bug;
    /// a reconnect (with backoff) starts clean.
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            DecodeError::BadMagic { .. } | DecodeError::UnsupportedVersion { .. }
        )
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Truncated { what } => write!(
                f,
                "sync frame ends inside {what}; the connection or the peer cut it short, reconnect"
            ),
            DecodeError::BadMagic { found } => write!(
                f,
                "not a Parley sync frame (starts with {found:02x?}); check that the peer URL points at a Parley node"
            ),
            DecodeError::UnsupportedVersion { found } => write!(
                f,
                "peer speaks sync protocol version {found}, this node speaks {PROTOCOL_VERSION}; upgrade the older node"
            ),
            DecodeError::FrameTooLarge { len } => write!(
                f,
                "sync frame of {len} bytes exceeds the {MAX_FRAME_BYTES}-byte limit; the peer must send smaller frames"
            ),
            DecodeError::TooMany { what, count, max } => write!(
                f,
                "sync frame lists {count} {what}, more than the limit of {max}"
            ),
            DecodeError::FieldTooLarge { what, len, max } => write!(
                f,
                "sync frame field {what} is {len} bytes, more than the limit of {max}"
            ),
            DecodeError::InvalidVarint { what } => {
                write!(
                    f,
                    "sync frame field {what} is not a valid unsigned LEB128 number"
                )
            }
            DecodeError::UnknownRecord { tag } => write!(
                f,
                "sync frame has unknown record type 0x{tag:02x}; the peer may be newer, upgrade this node"
            ),
            DecodeError::TrailingBytes { what, extra } => {
                write!(f, "sync frame has {extra} unexpected bytes after {what}")
            }
            DecodeError::InvalidUtf8 => write!(f, "sync frame reject reason is not UTF-8"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// A cursor over untrusted bytes. Every read checks the remaining length first.
struct Reader<'a> {
    input: &'a [u8],
}

impl<'a> Reader<'a> {
    fn remaining(&self) -> usize {
        self.input.len()
    }

    fn bytes(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        if self.input.len() < n {
            return Err(DecodeError::Truncated { what });
        }
        let (head, rest) = self.input.split_at(n);
        self.input = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.bytes(N, what)?);
        Ok(out)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        Ok(self.bytes(1, what)?[0])
    }

    fn u64le(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.array::<8>(what)?))
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        let v = self.uvarint(what)?;
        u32::try_from(v).map_err(|_| DecodeError::FieldTooLarge {
            what,
            len: v,
            max: u32::MAX as usize,
        })
    }

    fn uvarint(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        match varint::get(self.input) {
            Ok((v, used)) => {
                self.input = &self.input[used..];
                Ok(v)
            }
            Err(VarintError::Truncated) => Err(DecodeError::Truncated { what }),
            Err(VarintError::Invalid) => Err(DecodeError::InvalidVarint { what }),
        }
    }

    /// A count field, checked against `max` and against what the remaining input could hold
    /// when each item takes at least `min_item_bytes`.
    fn count(
        &mut self,
        what: &'static str,
        max: usize,
        min_item_bytes: usize,
    ) -> Result<usize, DecodeError> {
        let n = self.uvarint(what)?;
        if n > max as u64 {
            return Err(DecodeError::TooMany {
                what,
                count: n,
                max,
            });
        }
        let n = n as usize;
        if n.saturating_mul(min_item_bytes) > self.remaining() {
            return Err(DecodeError::Truncated { what });
        }
        Ok(n)
    }

    /// A length-prefixed byte field of at most `max` bytes.
    fn field(&mut self, what: &'static str, max: usize) -> Result<&'a [u8], DecodeError> {
        let len = self.uvarint(what)?;
        if len > max as u64 {
            return Err(DecodeError::FieldTooLarge { what, len, max });
        }
        self.bytes(len as usize, what)
    }

    fn doc(&mut self) -> Result<DocId, DecodeError> {
        Ok(DocId(self.array::<16>("document id")?))
    }

    fn finish(self, what: &'static str) -> Result<(), DecodeError> {
        if self.input.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes {
                what,
                extra: self.input.len(),
            })
        }
    }
}

/// Decode one frame. The whole input must be exactly one frame.
pub fn decode_frame(input: &[u8]) -> Result<Frame, DecodeError> {
    if input.len() > MAX_FRAME_BYTES {
        return Err(DecodeError::FrameTooLarge { len: input.len() });
    }
    if input.len() < MAGIC.len() && MAGIC.starts_with(input) {
        return Err(DecodeError::Truncated { what: "magic" });
    }
    let mut r = Reader { input };
    let magic = r.bytes(MAGIC.len().min(input.len()), "magic")?;
    if magic != MAGIC {
        return Err(DecodeError::BadMagic {
            found: magic.to_vec(),
        });
    }
    let version = r.u8("protocol version")?;
    if version != PROTOCOL_VERSION {
        return Err(DecodeError::UnsupportedVersion { found: version });
    }
    let seq = r.uvarint("frame number")?;
    // A record is at least a tag and a one-byte body length.
    let count = r.count("records", MAX_RECORDS_PER_FRAME, 2)?;
    let mut records = Vec::with_capacity(count);
    for _ in 0..count {
        records.push(record(&mut r)?);
    }
    r.finish("the last record")?;
    Ok(Frame { seq, records })
}

fn record(r: &mut Reader<'_>) -> Result<Record, DecodeError> {
    let tag = r.u8("record type")?;
    let len = r.uvarint("record length")?;
    if len > r.remaining() as u64 {
        return Err(DecodeError::Truncated {
            what: "record body",
        });
    }
    let mut body = Reader {
        input: r.bytes(len as usize, "record body")?,
    };
    let rec = match tag {
        Record::HELLO => Record::Hello {
            feed_id: body.u64le("hello feed id")?,
            feed_high: body.uvarint("hello feed high")?,
            cursor_feed_id: body.u64le("hello cursor feed id")?,
            cursor_seq: body.uvarint("hello cursor")?,
        },
        Record::FEED => {
            let from = body.uvarint("feed range start")?;
            let to = body.uvarint("feed range end")?;
            // An entry is at least a doc id, a one-byte seq and a one-byte head count.
            let n = body.count("feed entries", MAX_FEED_ENTRIES, 18)?;
            let mut entries = Vec::with_capacity(n);
            for _ in 0..n {
                let doc = body.doc()?;
                let seq = body.uvarint("feed entry seq")?;
                let h = body.count("heads", MAX_HEADS, 32)?;
                let mut heads = Vec::with_capacity(h);
                for _ in 0..h {
                    heads.push(ChangeHash(body.array::<32>("change hash")?));
                }
                entries.push(FeedEntry { seq, doc, heads });
            }
            Record::Feed { from, to, entries }
        }
        Record::ACK => Record::Ack {
            cursor: body.uvarint("ack cursor")?,
        },
        Record::SYNC => {
            let doc = body.doc()?;
            let message = body.field("sync message", MAX_SYNC_MESSAGE_BYTES)?.to_vec();
            Record::Sync { doc, message }
        }
        Record::UNAVAILABLE => Record::Unavailable { doc: body.doc()? },
        Record::REJECT => {
            let doc = body.doc()?;
            let raw = body.field("reject reason", MAX_REASON_BYTES)?;
            let reason = std::str::from_utf8(raw)
                .map_err(|_| DecodeError::InvalidUtf8)?
                .to_owned();
            Record::Reject { doc, reason }
        }
        Record::BLOB_WANT => Record::BlobWant {
            file: body.array::<32>("file hash")?,
            from: body.u32("blob chunk start")?,
            count: body.u32("blob chunk count")?,
        },
        Record::BLOB_CHUNK => Record::BlobChunk {
            file: body.array::<32>("file hash")?,
            size: body.uvarint("file size")?,
            index: body.u32("blob chunk index")?,
            digest: body.array::<32>("chunk digest")?,
            bytes: body.field("blob chunk", MAX_BLOB_CHUNK_BYTES)?.to_vec(),
        },
        Record::BLOB_NONE => Record::BlobNone {
            file: body.array::<32>("file hash")?,
        },
        tag => return Err(DecodeError::UnknownRecord { tag }),
    };
    body.finish("a record's fields")?;
    Ok(rec)
}

#[cfg(test)]
#[path = "decode_tests.rs"]
mod tests;
