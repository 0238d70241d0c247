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
