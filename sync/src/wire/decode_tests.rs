//! Round trips and every decoder error path.

use super::super::encode::encode_header;
use super::super::{encode_frame, encode_record, varint};
use super::*;
use proptest::collection::vec;
use proptest::prelude::*;

fn doc_strategy() -> impl Strategy<Value = DocId> {
    any::<[u8; 16]>().prop_map(DocId)
}

fn hash_strategy() -> impl Strategy<Value = ChangeHash> {
    any::<[u8; 32]>().prop_map(ChangeHash)
}

fn record_strategy() -> impl Strategy<Value = Record> {
    prop_oneof![
        (any::<u64>(), any::<u64>(), any::<u64>(), any::<u64>()).prop_map(|(a, b, c, d)| {
            Record::Hello {
                feed_id: a,
                feed_high: b,
                cursor_feed_id: c,
                cursor_seq: d,
            }
        }),
        (
            any::<u64>(),
            any::<u64>(),
            vec(
                (any::<u64>(), doc_strategy(), vec(hash_strategy(), 0..4))
                    .prop_map(|(seq, doc, heads)| FeedEntry { seq, doc, heads }),
                0..6
            )
        )
            .prop_map(|(from, to, entries)| Record::Feed { from, to, entries }),
        any::<u64>().prop_map(|cursor| Record::Ack { cursor }),
        (doc_strategy(), vec(any::<u8>(), 0..300))
            .prop_map(|(doc, message)| Record::Sync { doc, message }),
        doc_strategy().prop_map(|doc| Record::Unavailable { doc }),
        (doc_strategy(), ".{0,40}").prop_map(|(doc, reason)| Record::Reject { doc, reason }),
        (any::<[u8; 32]>(), any::<u32>(), any::<u32>())
            .prop_map(|(file, from, count)| Record::BlobWant { file, from, count }),
        (
            any::<[u8; 32]>(),
            any::<u64>(),
            any::<u32>(),
            any::<[u8; 32]>(),
            vec(any::<u8>(), 0..300)
        )
            .prop_map(|(file, size, index, digest, bytes)| Record::BlobChunk {
                file,
                size,
                index,
                digest,
                bytes
            }),
        any::<[u8; 32]>().prop_map(|file| Record::BlobNone { file }),
    ]
}

#[test]
fn a_blob_chunk_over_the_limit_or_an_index_over_u32_is_refused() {
    let big = Record::BlobChunk {
        file: [1; 32],
        size: 10,
        index: 0,
        digest: [2; 32],
        bytes: vec![0; MAX_BLOB_CHUNK_BYTES + 1],
    };
    let bytes = encode_frame(&Frame {
        seq: 0,
        records: vec![big],
    });
    assert!(matches!(
        decode_frame(&bytes),
        Err(DecodeError::FieldTooLarge {
            what: "blob chunk",
            ..
        })
    ));
    // A BLOB_WANT whose start does not fit 32 bits.
    let mut body = vec![7u8; 32];
    varint::put(&mut body, u64::from(u32::MAX) + 1);
    varint::put(&mut body, 1);
    let mut rec = vec![Record::BLOB_WANT];
    varint::put(&mut rec, body.len() as u64);
    rec.extend_from_slice(&body);
    let mut frame = Vec::new();
    encode_header(&mut frame, 0, 1);
    frame.extend_from_slice(&rec);
    assert!(matches!(
        decode_frame(&frame),
        Err(DecodeError::FieldTooLarge { .. })
    ));
}

fn frame_strategy() -> impl Strategy<Value = Frame> {
    (any::<u64>(), vec(record_strategy(), 0..8)).prop_map(|(seq, records)| Frame { seq, records })
}

proptest! {
    #[test]
    fn frames_round_trip(frame in frame_strategy()) {
        let bytes = encode_frame(&frame);
        prop_assert_eq!(decode_frame(&bytes), Ok(frame));
    }

    /// Any strict prefix of a valid frame is an error, never a panic or a shorter frame.
    #[test]
    fn every_prefix_is_refused(frame in frame_strategy(), cut in any::<prop::sample::Index>()) {
        let bytes = encode_frame(&frame);
        let cut = cut.index(bytes.len());
        prop_assert!(decode_frame(&bytes[..cut]).is_err());
    }

    /// Garbage never panics; whatever decodes re-encodes to the same bytes.
    #[test]
    fn garbage_is_refused_or_canonical(mut bytes in vec(any::<u8>(), 0..200), keep_header in any::<bool>()) {
        if keep_header && bytes.len() >= 5 {
            bytes[..4].copy_from_slice(&MAGIC);
            bytes[4] = PROTOCOL_VERSION;
        }
        if let Ok(frame) = decode_frame(&bytes) {
            prop_assert_eq!(encode_frame(&frame), bytes);
        }
    }

    /// Flipping one byte of a valid frame gives an error or another valid frame, never a panic.
    #[test]
    fn single_byte_corruption_is_safe(frame in frame_strategy(), at in any::<prop::sample::Index>(), x in 1u8..) {
        let mut bytes = encode_frame(&frame);
        let at = at.index(bytes.len());
        bytes[at] ^= x;
        let _ = decode_frame(&bytes);
    }
}

fn header(count: usize) -> Vec<u8> {
    let mut b = Vec::new();
    encode_header(&mut b, 0, count);
    b
}

fn frame_with_raw_record(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut b = header(1);
    b.push(tag);
    varint::put(&mut b, body.len() as u64);
    b.extend_from_slice(body);
    b
}

#[test]
fn empty_and_short_inputs_are_truncated() {
    assert_eq!(
        decode_frame(b""),
        Err(DecodeError::Truncated { what: "magic" })
    );
    assert_eq!(
        decode_frame(b"PR"),
        Err(DecodeError::Truncated { what: "magic" })
    );
    assert_eq!(
        decode_frame(b"PRLY"),
        Err(DecodeError::Truncated {
            what: "protocol version"
        })
    );
    assert_eq!(
        decode_frame(b"PRLY\x01"),
        Err(DecodeError::Truncated {
            what: "frame number"
        })
    );
    assert_eq!(
        decode_frame(b"PRLY\x01\x00"),
        Err(DecodeError::Truncated { what: "records" })
    );
}

#[test]
fn bad_magic_and_unknown_version() {
    assert!(matches!(
        decode_frame(b"GET / HTTP/1.1"),
        Err(DecodeError::BadMagic { .. })
    ));
    assert!(matches!(
        decode_frame(b"X"),
        Err(DecodeError::BadMagic { .. })
    ));
    let err = decode_frame(b"PRLY\x02\x00\x00").unwrap_err();
    assert_eq!(err, DecodeError::UnsupportedVersion { found: 2 });
    assert!(err.is_permanent());
    assert!(err.to_string().contains("upgrade"));
}

#[test]
fn oversized_frame_is_refused_before_parsing() {
    let big = vec![0u8; MAX_FRAME_BYTES + 1];
    assert_eq!(
        decode_frame(&big),
        Err(DecodeError::FrameTooLarge {
            len: MAX_FRAME_BYTES + 1
        })
    );
}

#[test]
fn huge_counts_do_not_allocate() {
    // A record count far above the limit.
    let mut b = b"PRLY\x01\x00".to_vec();
    varint::put(&mut b, u64::MAX);
    assert!(matches!(
        decode_frame(&b),
        Err(DecodeError::TooMany {
            what: "records",
            ..
        })
    ));
    // Within the limit but more than the remaining bytes could hold.
    let b = header(4000);
    assert_eq!(
        decode_frame(&b),
        Err(DecodeError::Truncated { what: "records" })
    );
    // Feed entry count within the limit but not backed by bytes.
    let mut body = vec![0, 0];
    varint::put(&mut body, 4000);
    assert_eq!(
        decode_frame(&frame_with_raw_record(Record::FEED, &body)),
        Err(DecodeError::Truncated {
            what: "feed entries"
        })
    );
    let mut body = vec![0, 0];
    varint::put(&mut body, (MAX_FEED_ENTRIES + 1) as u64);
    assert!(matches!(
        decode_frame(&frame_with_raw_record(Record::FEED, &body)),
        Err(DecodeError::TooMany { .. })
    ));
    // Heads count above the limit.
    let mut body = vec![0, 0, 1];
    body.extend_from_slice(&[7; 16]);
    body.push(1);
    varint::put(&mut body, (MAX_HEADS + 1) as u64);
    assert!(matches!(
        decode_frame(&frame_with_raw_record(Record::FEED, &body)),
        Err(DecodeError::TooMany { what: "heads", .. })
    ));
}

#[test]
fn oversized_length_fields() {
    let mut body = vec![9; 16];
    varint::put(&mut body, (MAX_SYNC_MESSAGE_BYTES + 1) as u64);
    assert!(matches!(
        decode_frame(&frame_with_raw_record(Record::SYNC, &body)),
        Err(DecodeError::FieldTooLarge {
            what: "sync message",
            ..
        })
    ));
    let mut body = vec![9; 16];
    varint::put(&mut body, (MAX_REASON_BYTES + 1) as u64);
    assert!(matches!(
        decode_frame(&frame_with_raw_record(Record::REJECT, &body)),
        Err(DecodeError::FieldTooLarge { .. })
    ));
    // A record length pointing past the end of the frame.
    let mut b = header(1);
    b.push(Record::ACK);
    varint::put(&mut b, 1_000_000);
    assert_eq!(
        decode_frame(&b),
        Err(DecodeError::Truncated {
            what: "record body"
        })
    );
}

#[test]
fn unknown_record_trailing_bytes_and_bad_utf8() {
    assert_eq!(
        decode_frame(&frame_with_raw_record(0x7f, &[])),
        Err(DecodeError::UnknownRecord { tag: 0x7f })
    );
    assert_eq!(
        decode_frame(&frame_with_raw_record(Record::ACK, &[1, 2])),
        Err(DecodeError::TrailingBytes {
            what: "a record's fields",
            extra: 1
        })
    );
    let mut b = encode_frame(&Frame {
        seq: 0,
        records: vec![Record::Ack { cursor: 1 }],
    });
    b.push(0);
    assert!(matches!(
        decode_frame(&b),
        Err(DecodeError::TrailingBytes {
            what: "the last record",
            ..
        })
    ));
    let mut body = vec![9; 16];
    body.extend_from_slice(&[2, 0xff, 0xfe]);
    assert_eq!(
        decode_frame(&frame_with_raw_record(Record::REJECT, &body)),
        Err(DecodeError::InvalidUtf8)
    );
    assert_eq!(
        decode_frame(&frame_with_raw_record(Record::ACK, &[0x80, 0x00])),
        Err(DecodeError::InvalidVarint { what: "ack cursor" })
    );
}

#[test]
fn truncated_record_fields() {
    assert_eq!(
        decode_frame(&frame_with_raw_record(Record::HELLO, &[0; 5])),
        Err(DecodeError::Truncated {
            what: "hello feed id"
        })
    );
    assert_eq!(
        decode_frame(&frame_with_raw_record(Record::UNAVAILABLE, &[0; 15])),
        Err(DecodeError::Truncated {
            what: "document id"
        })
    );
    let rec = encode_record(&Record::Sync {
        doc: DocId([1; 16]),
        message: vec![0x42; 10],
    });
    let mut b = header(1);
    b.extend_from_slice(&rec[..rec.len() - 1]);
    assert_eq!(
        decode_frame(&b),
        Err(DecodeError::Truncated {
            what: "record body"
        })
    );
}
