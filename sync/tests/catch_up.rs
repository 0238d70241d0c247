//! Catch-up between two nodes: first sync, reconnect cost, and live push.

mod common;

use common::*;
use parley_sync::DocId;

fn id(rng: &mut Rng) -> DocId {
    DocId(rng.bytes16())
}

fn assert_converged(a: &Node, b: &Node, docs: &[DocId]) {
    for d in docs {
        assert_eq!(a.heads(*d), b.heads(*d), "doc {d} differs");
        assert!(a.heads(*d).is_some(), "doc {d} missing");
    }
}

#[test]
fn first_sync_both_directions() {
    let mut rng = Rng::new(1);
    let mut a = Node::new("a", "retailer", 1, 11);
    let mut b = Node::new("b", "supplier", 2, 22);
    let mut docs = Vec::new();
    for i in 0..20 {
        let d = id(&mut rng);
        if i % 2 == 0 {
            a.create(d, "supplier", "from a");
            a.append(d, &format!("a-{i}"), "hello");
        } else {
            b.create(d, "retailer", "from b");
        }
        docs.push(d);
    }
    let (ex, sa, sb) = connect(&mut a, &mut b, 50, |_| false);
    assert_converged(&a, &b, &docs);
    assert!(sa.progress().initial_sync_complete, "{:?}", sa.progress());
    assert!(sb.progress().initial_sync_complete, "{:?}", sb.progress());
    assert!(ex.flights < 12, "took {} flights", ex.flights);
}

/// The sender loads a document once per first sync of it: to answer the request. The peer's
/// acknowledgement of the heads it now holds is answered from the heads alone.
#[test]
fn acknowledgements_are_answered_without_loading_the_document() {
    let mut rng = Rng::new(3);
    let mut a = Node::new("a", "retailer", 1, 11);
    let mut b = Node::new("b", "supplier", 2, 22);
    let mut docs = Vec::new();
    for i in 0..40 {
        let d = id(&mut rng);
        a.create(d, "supplier", "from a");
        a.append(d, &format!("a-{i}"), "hello");
        docs.push(d);
    }
    let (_, sa, _) = connect(&mut a, &mut b, 50, |_| false);
    assert_converged(&a, &b, &docs);
    assert!(sa.progress().initial_sync_complete, "{:?}", sa.progress());
    assert_eq!(
        a.loads,
        docs.len(),
        "one load per document, for the request"
    );
    // The acknowledgements advanced the persisted sync states all the same.
    for d in &docs {
        let state = a
            .sync_states
            .get(&("b".to_owned(), *d))
            .expect("state saved");
        let state = automerge::sync::State::decode(state).unwrap();
        assert_eq!(Some(state.shared_heads), a.heads(*d), "doc {d}");
    }
}

#[test]
fn concurrent_edits_merge_and_live_changes_push() {
    let mut rng = Rng::new(2);
    let mut a = Node::new("a", "retailer", 1, 11);
    let mut b = Node::new("b", "supplier", 2, 22);
    let d = id(&mut rng);
    a.create(d, "supplier", "shared");
    let (_, _, _) = connect(&mut a, &mut b, 50, |_| false);
    assert_converged(&a, &b, &[d]);
    // Both edit while apart.
    a.append(d, "a-1", "from a");
    b.append(d, "b-1", "from b");
    let (_, mut sa, mut sb) = connect(&mut a, &mut b, 50, |_| false);
    assert_converged(&a, &b, &[d]);
    assert_eq!(message_ids(&a.load(d).unwrap()).len(), 2);

    // Live: an edit at a while connected is pushed by local_changed.
    a.append(d, "a-2", "live");
    let mut to_b = sa.local_changed(&mut a.host("b", "supplier")).unwrap();
    assert!(!to_b.is_empty(), "a live change must produce frames");
    let mut flights = 0;
    while !to_b.is_empty() {
        flights += 1;
        let mut to_a = Vec::new();
        for f in to_b.drain(..) {
            to_a.extend(sb.receive(&f, &mut b.host("a", "retailer")).unwrap());
        }
        for f in to_a {
            to_b.extend(sa.receive(&f, &mut a.host("b", "supplier")).unwrap());
        }
        assert!(flights < 10);
    }
    assert_converged(&a, &b, &[d]);
    assert_eq!(message_ids(&b.load(d).unwrap()).len(), 3);
}

/// Line 3 of the design notes: a reconnect with nothing changed must be one small exchange,
/// whatever the number of stored conversations; and 10 changed docs cost only those docs.
#[test]
fn reconnect_cost_follows_what_changed() {
    const DOCS: usize = 2_000;
    let mut rng = Rng::new(3);
    let mut a = Node::new("a", "retailer", 1, 11);
    let mut b = Node::new("b", "supplier", 2, 22);
    let mut docs = Vec::new();
    for i in 0..DOCS {
        let d = id(&mut rng);
        if i % 4 == 0 {
            b.create(d, "retailer", "b's");
        } else {
            a.create(d, "supplier", "a's");
        }
        docs.push(d);
    }
    let (first, _, _) = connect(&mut a, &mut b, 200, |_| false);
    assert_converged(&a, &b, &docs);
    eprintln!(
        "first sync of {DOCS} docs: {} flights, {} bytes",
        first.flights,
        first.bytes()
    );

    // Nothing changed: ≤ 2 round trips, and bytes within 64 KB scaled to 10,000 docs.
    let (again, sa, sb) = connect(&mut a, &mut b, 200, |_| false);
    eprintln!(
        "idle reconnect: {} flights, {} bytes",
        again.flights,
        again.bytes()
    );
    assert!(
        again.round_trips() <= 2,
        "{} round trips",
        again.round_trips()
    );
    assert!(
        again.bytes() * 10_000 / DOCS <= 64 * 1024,
        "{} bytes",
        again.bytes()
    );
    assert!(synced_docs(&again.a_to_b.records).is_empty());
    assert!(synced_docs(&again.b_to_a.records).is_empty());
    assert!(sa.progress().initial_sync_complete && sb.progress().initial_sync_complete);

    // Ten docs changed at a: only those ten are announced and synced.
    let changed: Vec<DocId> = docs.iter().step_by(97).take(10).copied().collect();
    for (i, d) in changed.iter().enumerate() {
        a.append(*d, &format!("late-{i}"), "changed");
    }
    let stores_before = b.stores;
    let (ten, _, _) = connect(&mut a, &mut b, 200, |_| false);
    eprintln!("10 changed: {} flights, {} bytes", ten.flights, ten.bytes());
    assert_converged(&a, &b, &docs);
    let expected: std::collections::BTreeSet<DocId> = changed.iter().copied().collect();
    let announced: std::collections::BTreeSet<DocId> =
        announced_docs(&ten.a_to_b.records).into_iter().collect();
    assert_eq!(announced, expected);
    assert!(synced_docs(&ten.a_to_b.records).is_subset(&expected));
    assert!(synced_docs(&ten.b_to_a.records).is_subset(&expected));
    assert_eq!(b.stores - stores_before, 10);
    assert!(ten.bytes() < 10 * 4096, "{} bytes for 10 docs", ten.bytes());
}

/// A node restored from a backup gets a new feed id; its peers must not trust cursors into the
/// old feed. The cursor resets, every shared doc is announced again, and only heads are
/// compared: no content moves for documents both sides already hold.
#[test]
fn new_feed_incarnation_resets_the_cursor_without_moving_content() {
    let mut rng = Rng::new(13);
    let mut a = Node::new("a", "retailer", 1, 11);
    let mut b = Node::new("b", "supplier", 2, 22);
    let docs: Vec<DocId> = (0..50)
        .map(|_| {
            let d = id(&mut rng);
            a.create(d, "supplier", "x");
            d
        })
        .collect();
    let _ = connect(&mut a, &mut b, 50, |_| false);
    a.feed_id = 12;
    let (ex, _, sb) = connect(&mut a, &mut b, 50, |_| false);
    assert_eq!(b.cursors["a"].feed_id, 12);
    assert_eq!(b.cursors["a"].seq, a.high);
    assert_eq!(announced_docs(&ex.a_to_b.records).len(), docs.len());
    assert!(synced_docs(&ex.a_to_b.records).is_empty());
    assert!(synced_docs(&ex.b_to_a.records).is_empty());
    assert!(sb.progress().initial_sync_complete);
}
