//! Partner isolation (design line 5): a peer never receives the id or content of a conversation
//! it is not party to, even when it names the id itself.

mod common;

use common::*;
use parley_sync::{Config, DocId, Frame, Record, Session, decode_frame, encode_frame};

fn records(frames: &[Vec<u8>]) -> Vec<Record> {
    frames
        .iter()
        .flat_map(|f| decode_frame(f).unwrap().records)
        .collect()
}

#[test]
fn unshared_documents_are_never_announced() {
    let mut rng = Rng::new(4);
    let mut a = Node::new("a", "retailer", 1, 11);
    let mut b = Node::new("b", "supplier-1", 2, 22);
    let mine = DocId(rng.bytes16());
    let theirs = DocId(rng.bytes16());
    a.create(mine, "supplier-1", "shared with b");
    a.create(theirs, "supplier-2", "not b's business");
    let (ex, _, _) = connect(&mut a, &mut b, 50, |_| false);
    let seen: Vec<DocId> = announced_docs(&ex.a_to_b.records);
    assert_eq!(seen, vec![mine]);
    assert!(!synced_docs(&ex.a_to_b.records).contains(&theirs));
    assert!(!b.docs.contains_key(&theirs));
    // The feed range still covers the unshared position, so b's cursor passes it.
    assert_eq!(b.cursors["a"].seq, a.high);
}

/// A peer asking for an id it guessed (or learned elsewhere) gets the same answer whether the
/// document exists here or not.
#[test]
fn requests_for_unshared_ids_get_unavailable_either_way() {
    let mut rng = Rng::new(10);
    let mut a = Node::new("a", "retailer", 1, 11);
    let secret = DocId(rng.bytes16());
    let nonexistent = DocId(rng.bytes16());
    a.create(secret, "supplier-2", "private");
    let mut sa = Session::new(Config::default());
    let _ = sa.start(&mut a.host("b", "supplier-1")).unwrap();
    let request = |doc| Record::Sync {
        doc,
        message: {
            use automerge::sync::SyncDoc;
            let empty = automerge::Automerge::new();
            empty
                .generate_sync_message(&mut automerge::sync::State::new())
                .unwrap()
                .encode()
        },
    };
    let hello = Record::Hello {
        feed_id: 22,
        feed_high: 0,
        cursor_feed_id: 11,
        cursor_seq: a.high,
    };
    let out = sa
        .receive(
            &encode_frame(&Frame {
                seq: 0,
                records: vec![hello, request(secret), request(nonexistent)],
            }),
            &mut a.host("b", "supplier-1"),
        )
        .unwrap();
    let got = records(&out);
    assert_eq!(
        got,
        vec![
            Record::Unavailable { doc: secret },
            Record::Unavailable { doc: nonexistent }
        ]
    );
}

/// A peer cannot push content into a document it is not party to, nor create one here
/// unasked.
#[test]
fn unsolicited_content_is_refused() {
    let mut rng = Rng::new(12);
    let mut a = Node::new("a", "retailer", 1, 11);
    let mut evil = Node::new("evil", "supplier-1", 3, 33);
    let fresh = DocId(rng.bytes16());
    evil.create(fresh, "retailer", "unasked");
    // Produce a content-carrying message by syncing evil's doc against an empty peer.
    let msg = {
        use automerge::sync::SyncDoc;
        let doc = evil.load(fresh).unwrap();
        let mut empty = automerge::Automerge::new();
        let (mut s1, mut s2) = (automerge::sync::State::new(), automerge::sync::State::new());
        let m1 = doc.generate_sync_message(&mut s1).unwrap();
        empty.receive_sync_message(&mut s2, m1).unwrap();
        let m2 = empty.generate_sync_message(&mut s2).unwrap();
        let mut d = doc.clone();
        d.receive_sync_message(&mut s1, m2).unwrap();
        d.generate_sync_message(&mut s1).unwrap()
    };
    assert!(!msg.changes.is_empty());
    let mut sa = Session::new(Config::default());
    let _ = sa.start(&mut a.host("evil", "supplier-1")).unwrap();
    let hello = Record::Hello {
        feed_id: 33,
        feed_high: 0,
        cursor_feed_id: 11,
        cursor_seq: 0,
    };
    let out = sa
        .receive(
            &encode_frame(&Frame {
                seq: 0,
                records: vec![
                    hello,
                    Record::Sync {
                        doc: fresh,
                        message: msg.encode(),
                    },
                ],
            }),
            &mut a.host("evil", "supplier-1"),
        )
        .unwrap();
    assert_eq!(records(&out), vec![Record::Unavailable { doc: fresh }]);
    assert!(a.docs.is_empty());
}
