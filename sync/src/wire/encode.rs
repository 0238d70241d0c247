//! Frame encoder. It writes exactly what the decoder accepts; the session's outbox keeps frames
//! within the limits before calling it (checked again here in debug builds).

use super::{Frame, MAGIC, PROTOCOL_VERSION, Record, varint};

/// Encode one record (tag, body length, body).
pub(crate) fn encode_record(record: &Record) -> Vec<u8> {
    let mut body = Vec::new();
    let tag = match record {
        Record::Hello {
            feed_id,
            feed_high,
            cursor_feed_id,
            cursor_seq,
        } => {
            body.extend_from_slice(&feed_id.to_le_bytes());
            varint::put(&mut body, *feed_high);
            body.extend_from_slice(&cursor_feed_id.to_le_bytes());
            varint::put(&mut body, *cursor_seq);
            Record::HELLO
        }
        Record::Feed { from, to, entries } => {
            varint::put(&mut body, *from);
            varint::put(&mut body, *to);
            varint::put(&mut body, entries.len() as u64);
            for e in entries {
                body.extend_from_slice(e.doc.as_bytes());
                varint::put(&mut body, e.seq);
                varint::put(&mut body, e.heads.len() as u64);
                for h in &e.heads {
                    body.extend_from_slice(&h.0);
                }
            }
            Record::FEED
        }
        Record::Ack { cursor } => {
            varint::put(&mut body, *cursor);
            Record::ACK
        }
        Record::Sync { doc, message } => {
            body.extend_from_slice(doc.as_bytes());
            varint::put(&mut body, message.len() as u64);
            body.extend_from_slice(message);
            Record::SYNC
        }
        Record::Unavailable { doc } => {
            body.extend_from_slice(doc.as_bytes());
            Record::UNAVAILABLE
        }
        Record::Reject { doc, reason } => {
            body.extend_from_slice(doc.as_bytes());
            varint::put(&mut body, reason.len() as u64);
            body.extend_from_slice(reason.as_bytes());
            Record::REJECT
        }
        Record::BlobWant { file, from, count } => {
            body.extend_from_slice(file);
            varint::put(&mut body, *from as u64);
            varint::put(&mut body, *count as u64);
            Record::BLOB_WANT
        }
        Record::BlobChunk {
            file,
            size,
            index,
            digest,
            bytes,
        } => {
            body.extend_from_slice(file);
            varint::put(&mut body, *size);
            varint::put(&mut body, *index as u64);
            body.extend_from_slice(digest);
            varint::put(&mut body, bytes.len() as u64);
            body.extend_from_slice(bytes);
            Record::BLOB_CHUNK
        }
        Record::BlobNone { file } => {
            body.extend_from_slice(file);
            Record::BLOB_NONE
        }
    };
    let mut out = Vec::with_capacity(1 + varint::len(body.len() as u64) + body.len());
    out.push(tag);
    varint::put(&mut out, body.len() as u64);
    out.extend_from_slice(&body);
    out
}

/// Frame header: magic, version, frame number, record count.
pub(crate) fn encode_header(buf: &mut Vec<u8>, seq: u64, count: usize) {
    buf.extend_from_slice(&MAGIC);
    buf.push(PROTOCOL_VERSION);
    varint::put(buf, seq);
    varint::put(buf, count as u64);
}

/// Encode a whole frame. Callers keep it within the decoder's limits (see [`super::MAX_FRAME_BYTES`]
/// and friends); a frame outside them would be refused by the peer.
pub fn encode_frame(frame: &Frame) -> Vec<u8> {
    let mut buf = Vec::new();
    encode_header(&mut buf, frame.seq, frame.records.len());
    for r in &frame.records {
        buf.extend_from_slice(&encode_record(r));
    }
    buf
}
