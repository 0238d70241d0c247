//! A minimal conversation schema for tests: `participants` (list of two org names, fixed at
//! creation), `subject`, and `messages` (a map keyed by message id).

use automerge::transaction::Transactable;
use automerge::{ActorId, Automerge, ObjType, ROOT, ReadDoc};

pub fn new_conversation(actor: &ActorId, orgs: [&str; 2], subject: &str) -> Automerge {
    let mut doc = Automerge::new().with_actor(actor.clone());
    doc.transact::<_, _, automerge::AutomergeError>(|tx| {
        let parts = tx.put_object(ROOT, "participants", ObjType::List)?;
        tx.insert(&parts, 0, orgs[0])?;
        tx.insert(&parts, 1, orgs[1])?;
        tx.put(ROOT, "subject", subject)?;
        tx.put_object(ROOT, "messages", ObjType::Map)?;
        Ok(())
    })
    .expect("create conversation");
    doc
}

pub fn append_message(doc: &mut Automerge, actor: &ActorId, id: &str, author: &str, body: &str) {
    doc.set_actor(actor.clone());
    let Some((_, msgs)) = doc.get(ROOT, "messages").expect("read messages") else {
        panic!("conversation without messages map");
    };
    doc.transact::<_, _, automerge::AutomergeError>(|tx| {
        let m = tx.put_object(&msgs, id, ObjType::Map)?;
        tx.put(&m, "author", author)?;
        tx.put(&m, "body", body)?;
        Ok(())
    })
    .expect("append message");
}

/// The participants list, or `None` if it is missing, not a list, or conflicted.
pub fn participants(doc: &Automerge) -> Option<(automerge::ObjId, Vec<String>)> {
    if doc.get_all(ROOT, "participants").ok()?.len() != 1 {
        return None;
    }
    let (_, list) = doc.get(ROOT, "participants").ok()??;
    if doc.object_type(&list).ok()? != ObjType::List {
        return None;
    }
    let names = doc
        .list_range(&list, ..)
        .map(|item| item.value.into_value().into_string().ok())
        .collect::<Option<Vec<String>>>()?;
    Some((list, names))
}

/// Message ids present in the conversation.
pub fn message_ids(doc: &Automerge) -> Vec<String> {
    match doc.get(ROOT, "messages") {
        Ok(Some((_, msgs))) => doc.keys(&msgs).collect(),
        _ => Vec::new(),
    }
}

/// Break the write rule: add a third org to the participants (what a rogue node might try).
pub fn forge_participants(doc: &mut Automerge, actor: &ActorId, intruder: &str) {
    doc.set_actor(actor.clone());
    let Some((_, parts)) = doc.get(ROOT, "participants").expect("read participants") else {
        panic!("conversation without participants");
    };
    let len = doc.length(&parts);
    doc.transact::<_, _, automerge::AutomergeError>(|tx| {
        tx.insert(&parts, len, intruder)?;
        Ok(())
    })
    .expect("forge participants");
}
