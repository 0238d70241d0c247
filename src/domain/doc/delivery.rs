//! Which of our messages a partner's node does not hold yet, from what its sync state says it
//! shares with this node.
//!
//! A message is the map object made by one change; that change is known by the object's id
//! (its actor and operation counter fall in exactly one change's range). The partner's node
//! holds every change that `shared_heads` depend on, so what it lacks is
//! `get_changes(shared_heads)`.

use std::collections::{BTreeMap, HashMap, HashSet};

use automerge::{Automerge, ChangeHash, ObjType, ROOT, ReadDoc, Value};
use uuid::Uuid;

/// The ids among `ours` (messages of this node's org) whose change none of the partner's
/// nodes holds. `partner_nodes` has one entry per paired node of the partner org: the heads
/// its sync state says it shares with us. No partner node at all: nothing is delivered.
pub fn undelivered_messages(
    doc: &Automerge,
    ours: &HashSet<Uuid>,
    partner_nodes: &[Vec<ChangeHash>],
) -> Result<HashSet<Uuid>, automerge::AutomergeError> {
    if ours.is_empty() {
        return Ok(HashSet::new());
    }
    let Some((Value::Object(ObjType::Map), msgs)) = doc.get(ROOT, "messages")? else {
        return Ok(HashSet::new());
    };
    // Our messages by the actor and operation counter of their object, indexed once: each
    // missing change then finds the messages it made by a range lookup.
    let mut made: HashMap<automerge::ActorId, BTreeMap<u64, Uuid>> = HashMap::new();
    for item in doc.map_range(&msgs, ..) {
        let Ok(id) = Uuid::parse_str(&item.key) else {
            continue;
        };
        if let (true, automerge::ObjId::Id(ctr, actor, _)) = (ours.contains(&id), item.id()) {
            made.entry(actor).or_default().insert(ctr, id);
        }
    }
    let mut lacking: HashSet<Uuid> = made.values().flat_map(|m| m.values().copied()).collect();
    for shared in partner_nodes {
        // A state can only name changes this node holds; anything else is ignored rather than
        // taken as "has nothing".
        let known: Vec<ChangeHash> = shared
            .iter()
            .filter(|h| doc.get_change_meta_by_hash(h).is_some())
            .copied()
            .collect();
        let mut missing_here = HashSet::new();
        for m in doc.get_changes_meta(&known) {
            if m.max_op < m.start_op {
                continue;
            }
            if let Some(by_ctr) = made.get(&*m.actor) {
                missing_here.extend(by_ctr.range(m.start_op..=m.max_op).map(|(_, id)| *id));
            }
        }
        lacking.retain(|id| missing_here.contains(id));
        if lacking.is_empty() {
            break;
        }
    }
    Ok(lacking)
}

#[cfg(test)]
mod tests {
    use automerge::{AutoCommit, transaction::Transactable};

    use super::*;

    fn add(doc: &mut AutoCommit, msgs: &automerge::ObjId, id: Uuid) {
        let o = doc.put_object(msgs, id.to_string(), ObjType::Map).unwrap();
        doc.put(&o, "body", "hi").unwrap();
        doc.commit();
    }

    #[test]
    fn a_message_after_the_shared_heads_is_undelivered() {
        let mut d = AutoCommit::new();
        let msgs = d.put_object(ROOT, "messages", ObjType::Map).unwrap();
        let (m1, m2, theirs) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        add(&mut d, &msgs, m1);
        add(&mut d, &msgs, theirs);
        let shared = d.get_heads();
        add(&mut d, &msgs, m2);
        let ours: HashSet<Uuid> = [m1, m2].into();
        let doc = d.document().clone();
        let got = undelivered_messages(&doc, &ours, std::slice::from_ref(&shared)).unwrap();
        assert_eq!(got, [m2].into());
        // Two partner nodes: one that has everything is enough.
        let all = doc.get_heads();
        let got = undelivered_messages(&doc, &ours, &[shared, all.clone()]).unwrap();
        assert!(got.is_empty());
        // No partner node: nothing of ours is delivered.
        assert_eq!(undelivered_messages(&doc, &ours, &[]).unwrap(), ours);
        // Heads this node does not hold count for nothing.
        let bogus = vec![ChangeHash([7; 32])];
        assert_eq!(undelivered_messages(&doc, &ours, &[bogus]).unwrap(), ours);
    }
}
