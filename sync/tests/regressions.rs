//! Committed hostile inputs (`tests/regressions/*.bin`), each fed to a fresh session.
//!
//! The story they guard: a sync frame arrives from a peer we do not control. If a length field
//! could make us allocate what it claims, one frame of 16 bytes could take the node down; if a
//! parse error panicked, one bad peer would stop sync for every partner; if a broken document
//! message failed the session, one bad conversation would block all the others. Each file must
//! give a typed error (or a per-document REJECT) and leave the store untouched.

mod common;

use common::*;
use parley_sync::{
    Config, DecodeError, DocId, ProtocolError, Record, Session, SessionError, decode_frame,
};

enum Expect {
    Decode(fn(&DecodeError) -> bool),
    Protocol(fn(&ProtocolError) -> bool),
    RejectDoc(u8),
}

fn cases() -> Vec<(&'static str, Expect)> {
    use Expect::*;
    vec![
        (
            "truncated_hello.bin",
            Decode(|e| matches!(e, DecodeError::Truncated { .. })),
        ),
        (
            "record_count_u64_max.bin",
            Decode(|e| {
                matches!(
                    e,
                    DecodeError::TooMany {
                        what: "records",
                        ..
                    }
                )
            }),
        ),
        (
            "unknown_version.bin",
            Decode(|e| *e == DecodeError::UnsupportedVersion { found: 9 } && e.is_permanent()),
        ),
        (
            "http_request.bin",
            Decode(|e| matches!(e, DecodeError::BadMagic { .. })),
        ),
        (
            "overlong_varint.bin",
            Decode(|e| matches!(e, DecodeError::InvalidVarint { .. })),
        ),
        (
            "feed_entries_exceed_bytes.bin",
            Decode(|e| {
                matches!(
                    e,
                    DecodeError::Truncated {
                        what: "feed entries"
                    }
                )
            }),
        ),
        (
            "sync_length_past_end.bin",
            Decode(|e| matches!(e, DecodeError::TrailingBytes { .. })),
        ),
        ("sync_hostile_bloom.bin", RejectDoc(0x5a)),
        ("sync_garbage_payload.bin", RejectDoc(0x5b)),
        (
            "feed_gap.bin",
            Protocol(|e| matches!(e, ProtocolError::FeedGap { .. })),
        ),
        (
            "feed_before_hello.bin",
            Protocol(|e| *e == ProtocolError::HelloMissing),
        ),
        (
            "ack_beyond_announced.bin",
            Protocol(|e| matches!(e, ProtocolError::AckBeyondAnnounced { .. })),
        ),
    ]
}

#[test]
fn committed_hostile_frames_give_typed_errors() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/regressions");
    let cases = cases();
    let on_disk = std::fs::read_dir(&dir).unwrap().count();
    assert_eq!(
        on_disk,
        cases.len(),
        "every regression file needs an expectation"
    );
    for (name, expect) in cases {
        let bytes = std::fs::read(dir.join(name)).unwrap();
        let mut node = Node::new("a", "retailer", 1, 11);
        node.create(
            DocId([0x5a; 16]),
            "supplier",
            "target of a hostile bloom filter",
        );
        node.create(DocId([0x5b; 16]), "supplier", "target of garbage");
        let heads_before: Vec<_> = node.docs.values().map(|d| d.heads.clone()).collect();
        let mut session = Session::new(Config::default());
        session.start(&mut node.host("b", "supplier")).unwrap();
        let result = session.receive(&bytes, &mut node.host("b", "supplier"));
        match (expect, result) {
            (Expect::Decode(ok), Err(SessionError::Decode(e))) => {
                assert!(ok(&e), "{name}: unexpected {e:?}");
                assert_eq!(decode_frame(&bytes), Err(e));
            }
            (Expect::Protocol(ok), Err(SessionError::Protocol(e))) => {
                assert!(ok(&e), "{name}: unexpected {e:?}")
            }
            (Expect::RejectDoc(b), Ok(frames)) => {
                let rejected = frames
                    .iter()
                    .flat_map(|f| decode_frame(f).unwrap().records)
                    .any(|r| matches!(r, Record::Reject { doc, .. } if doc == DocId([b; 16])));
                assert!(rejected, "{name}: expected a REJECT");
            }
            (_, other) => panic!("{name}: unexpected outcome {other:?}"),
        }
        let heads_after: Vec<_> = node.docs.values().map(|d| d.heads.clone()).collect();
        assert_eq!(heads_before, heads_after, "{name} changed the store");
    }
}
