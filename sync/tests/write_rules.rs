//! Incoming changes are applied to a copy and checked by the host before anything lands. A batch
//! that breaks a rule is rejected whole, the peer is told why, and other documents keep syncing.

mod common;

use automerge::transaction::Transactable;
use automerge::{ROOT, ReadDoc};
use common::*;
use parley_sync::{Config, DocId, Event, Frame, Record, Session, encode_frame};

/// A supplier node rewrites the participants of a shared conversation (adding a third org) and,
/// in the same batch, appends an innocent-looking message. The retailer must keep neither.
#[test]
fn forged_participants_change_is_rejected_whole() {
    let mut rng = Rng::new(5);
    let mut a = Node::new("a", "retailer", 1, 11);
    let mut b = Node::new("b", "supplier", 2, 22);
    let target = DocId(rng.bytes16());
    let other = DocId(rng.bytes16());
    a.create(target, "supplier", "order 42");
    a.create(other, "supplier", "order 43");
    let _ = connect(&mut a, &mut b, 50, |_| false);
    let target_before = a.heads(target);

    // b forges: participants gains "competitor", plus a message in the same document.
    let mut forged = b.load(target).unwrap();
    forged.set_actor(b.actor.clone());
    forged
        .transact::<_, _, automerge::AutomergeError>(|tx| {
            let (_, parts) = tx.get(ROOT, "participants")?.unwrap();
            tx.insert(&parts, 2, "competitor")?;
            Ok(())
        })
        .unwrap();
    append_message(
        &mut forged,
        &b.actor.clone(),
        "b-1",
        "supplier",
        "ride-along",
    );
    b.put(target, &forged);
    // ... and a legitimate edit to another document in the same session.
    b.append(other, "b-2", "legit");

    let (ex, mut sa, _) = connect(&mut a, &mut b, 50, |_| false);
    assert_eq!(
        a.heads(target),
        target_before,
        "nothing of the forged batch may land"
    );
    assert!(message_ids(&a.load(target).unwrap()).is_empty());
    assert_eq!(
        a.heads(other),
        b.heads(other),
        "other documents keep syncing"
    );

    let rejects: Vec<_> = ex
        .a_to_b
        .records
        .iter()
        .filter_map(|r| match r {
            Record::Reject { doc, reason } => Some((*doc, reason.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(rejects.len(), 1);
    assert_eq!(rejects[0].0, target);
    assert!(rejects[0].1.contains("participants"), "{}", rejects[0].1);
    assert!(matches!(
        sa.take_events().as_slice(),
        [Event::Rejected { doc, .. }] if *doc == target
    ));
    // The sync state a keeps for b must not claim the rejected changes.
    assert!(sa.progress().initial_sync_complete);
}

/// Garbage where an Automerge sync message should be is contained to that document.
#[test]
fn broken_automerge_message_is_contained_to_its_document() {
    let mut rng = Rng::new(6);
    let mut a = Node::new("a", "retailer", 1, 11);
    let d = DocId(rng.bytes16());
    a.create(d, "supplier", "x");
    let mut sa = Session::new(Config::default());
    let _ = sa.start(&mut a.host("evil", "supplier")).unwrap();
    let frame = |seq, records| encode_frame(&Frame { seq, records });
    let hello = Record::Hello {
        feed_id: 9,
        feed_high: 0,
        cursor_feed_id: 11,
        cursor_seq: a.high,
    };
    let garbage = Record::Sync {
        doc: d,
        message: vec![0x42, 0xff, 0xff, 0xff, 0x01],
    };
    let out = sa
        .receive(
            &frame(0, vec![hello, garbage]),
            &mut a.host("evil", "supplier"),
        )
        .expect("session survives a broken document message");
    let records: Vec<Record> = out
        .iter()
        .flat_map(|f| parley_sync::decode_frame(f).unwrap().records)
        .collect();
    assert!(
        records
            .iter()
            .any(|r| matches!(r, Record::Reject { doc, .. } if *doc == d)),
        "{records:?}"
    );
    // The session goes on: a well-formed request for the same doc is now ignored (closed for
    // this session), and the next frame is processed normally.
    let out = sa
        .receive(
            &frame(1, vec![Record::Ack { cursor: 0 }]),
            &mut a.host("evil", "supplier"),
        )
        .expect("still alive");
    assert!(out.is_empty());
    assert_eq!(a.heads(d).map(|h| h.len()), Some(1));
}

/// A document whose stored state is a valid conversation but whose incoming changes reference
/// a missing dependency stays unchanged (Automerge queues them; nothing is stored).
#[test]
fn changes_with_missing_dependencies_store_nothing() {
    let mut rng = Rng::new(9);
    let mut a = Node::new("a", "retailer", 1, 11);
    let mut b = Node::new("b", "supplier", 2, 22);
    let d = DocId(rng.bytes16());
    a.create(d, "supplier", "x");
    let _ = connect(&mut a, &mut b, 50, |_| false);
    let before = a.heads(d);
    let stores = a.stores;
    // Build a change at b on top of a change a never sees.
    let mut doc = b.load(d).unwrap();
    append_message(
        &mut doc,
        &b.actor.clone(),
        "hidden",
        "supplier",
        "never sent",
    );
    append_message(
        &mut doc,
        &b.actor.clone(),
        "visible",
        "supplier",
        "depends on hidden",
    );
    let last = doc.get_last_local_change().unwrap();
    let mut msg = automerge::sync::Message::decode(&{
        let mut st = automerge::sync::State::new();
        use automerge::sync::SyncDoc;
        doc.generate_sync_message(&mut st).unwrap().encode()
    })
    .unwrap();
    msg.changes = vec![last.raw_bytes().to_vec()].into();
    msg.heads = doc.get_heads();
    let mut sa = Session::new(Config::default());
    let _ = sa.start(&mut a.host("b", "supplier")).unwrap();
    let hello = Record::Hello {
        feed_id: 22,
        feed_high: 0,
        cursor_feed_id: 11,
        cursor_seq: a.high,
    };
    let sync = Record::Sync {
        doc: d,
        message: msg.encode(),
    };
    sa.receive(
        &encode_frame(&Frame {
            seq: 0,
            records: vec![hello, sync],
        }),
        &mut a.host("b", "supplier"),
    )
    .unwrap();
    assert_eq!(a.heads(d), before);
    assert_eq!(a.stores, stores);
    assert!(a.load(d).unwrap().get(ROOT, "subject").unwrap().is_some());
}
