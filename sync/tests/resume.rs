//! A connection cut in the middle of a first sync resumes where it stopped: documents already
//! delivered are not sent again, and none is skipped.

mod common;

use common::*;
use parley_sync::DocId;

#[test]
fn cut_during_first_sync_resumes_without_resending() {
    const DOCS: usize = 600;
    let mut rng = Rng::new(7);
    let mut a = Node::new("a", "retailer", 1, 11);
    let mut b = Node::new("b", "supplier", 2, 22);
    let docs: Vec<DocId> = (0..DOCS)
        .map(|i| {
            let d = DocId(rng.bytes16());
            a.create(d, "supplier", "catalogue");
            a.append(d, &format!("m{i}"), "please update the description");
            d
        })
        .collect();

    // Run a few flights only: some documents arrive, then the connection drops with frames
    // still in flight (they are simply never delivered).
    let (first, _, cut_b) = connect(&mut a, &mut b, 5, |_| false);
    let p = cut_b.progress();
    assert!(p.peer_connected && !p.initial_sync_complete, "{p:?}");
    assert!(p.docs_to_fetch > 0, "{p:?}");
    let delivered: Vec<DocId> = docs
        .iter()
        .copied()
        .filter(|d| b.docs.contains_key(d))
        .collect();
    assert!(
        !delivered.is_empty() && delivered.len() < DOCS,
        "cut should land mid-sync ({} of {DOCS} delivered)",
        delivered.len()
    );
    let cursor = b.cursors.get("a").copied().unwrap_or_default();
    assert!(cursor.seq > 0, "cursor must advance as documents land");
    eprintln!(
        "cut after {} flights: {} docs delivered, cursor at {}",
        first.flights,
        delivered.len(),
        cursor.seq
    );

    let (second, _, sb) = connect(&mut a, &mut b, 200, |_| false);
    for d in &docs {
        assert_eq!(a.heads(*d), b.heads(*d), "doc {d} not converged");
    }
    assert!(sb.progress().initial_sync_complete);
    // Each document was stored exactly once at b: nothing delivered before the cut came again.
    assert!(
        b.stored_docs.values().all(|&n| n == 1),
        "a document was stored twice"
    );
    assert_eq!(b.stored_docs.len(), DOCS);
    // And its content was not even sent again.
    let resent = synced_docs(&second.a_to_b.records);
    for d in &delivered {
        let carried_changes = second.a_to_b.records.iter().any(|r| {
            matches!(r, parley_sync::Record::Sync { doc, message } if doc == d && message.len() > 200)
        });
        assert!(!carried_changes, "doc {d} content resent after the cut");
    }
    eprintln!("after reconnect: {} docs had sync messages", resent.len());
}

#[test]
fn cursor_never_passes_an_undelivered_document() {
    let mut rng = Rng::new(8);
    let mut a = Node::new("a", "retailer", 1, 11);
    let mut b = Node::new("b", "supplier", 2, 22);
    let docs: Vec<DocId> = (0..120)
        .map(|_| {
            let d = DocId(rng.bytes16());
            a.create(d, "supplier", "x");
            d
        })
        .collect();
    // Cut after every possible number of flights; after each cut, every doc at or below the
    // persisted cursor must be present at b.
    let config = parley_sync::Config {
        max_requests: 16,
        ..Default::default()
    };
    for flights in 1..20 {
        let mut b2 = Node::new("b", "supplier", 2, 22);
        let _ = connect_with(config.clone(), &mut a, &mut b2, flights, |_| false);
        let cursor = b2.cursors.get("a").copied().unwrap_or_default();
        for (i, d) in docs.iter().enumerate() {
            // a's feed seqs are 1..=120 in creation order.
            if (i as u64) < cursor.seq {
                assert!(
                    b2.docs.contains_key(d),
                    "cursor {} passed doc #{i}",
                    cursor.seq
                );
            }
        }
    }
    let _ = connect(&mut a, &mut b, 100, |_| false);
    assert!(docs.iter().all(|d| b.heads(*d) == a.heads(*d)));
}
