//! Write rules for changes that arrive from another node. Automerge merges any change it is
//! given, so before a peer's version of a conversation is stored it is compared with ours:
//! a partner may add its own messages and history, resolve, reopen and move a task's progress,
//! but never rewrite what another org wrote, change who the conversation is between, or write
//! as another org. Nodes of our own org are trusted to relay what partners wrote.

use super::{Conversation, OrgId, doc};

/// Who sent the change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sender {
    /// Another node of this node's org.
    OwnOrg,
    /// A node of a partner org.
    Partner(OrgId),
}

/// Checks a peer's version `after` of a conversation against our `before` (`None` when the
/// peer creates it here). `me` is this node's org. `Err` carries the reason sent to the peer.
pub fn check_update<D: automerge::ReadDoc>(
    before: Option<&Conversation>,
    after: &D,
    me: &OrgId,
    sender: &Sender,
) -> Result<Conversation, String> {
    let a = doc::read(after)
        .map_err(|e| format!("the document does not follow the conversation schema: {e}"))?;
    if !a.participants.includes(me) {
        return Err("this node's org is not a participant of the conversation".into());
    }
    let Sender::Partner(peer) = sender else {
        // Sites of one org share everything; only the shape is checked.
        return match before {
            Some(b) if b.participants != a.participants || b.id != a.id => {
                Err("participants and id never change".into())
            }
            _ => Ok(a),
        };
    };
    if !a.participants.includes(peer) {
        return Err(format!("{peer} is not a participant of this conversation"));
    }
    let Some(b) = before else {
        // A partner creates a conversation between itself and us, in its own name.
        if a.created_by.org != *peer {
            return Err("a new conversation must be created by the sending org".into());
        }
        if let Some(m) = a.messages.iter().find(|m| m.author.org != *peer) {
            return Err(format!("message {} is written as another org", m.id));
        }
        if let Some(e) = a.history.iter().find(|e| e.by.org != *peer) {
            return Err(format!("history entry {} is written as another org", e.id));
        }
        return Ok(a);
    };
    if (b.id, &b.participants, b.kind, &b.created_by, b.created_at)
        != (a.id, &a.participants, a.kind, &a.created_by, a.created_at)
    {
        return Err("id, participants, kind and creator never change".into());
    }
    for m in &b.messages {
        match a.messages.iter().find(|x| x.id == m.id) {
            Some(x) if x == m => {}
            Some(_) => return Err(format!("message {} was altered", m.id)),
            None => return Err(format!("message {} was removed", m.id)),
        }
    }
    for m in a
        .messages
        .iter()
        .filter(|m| !b.messages.iter().any(|x| x.id == m.id))
    {
        if m.author.org != *peer {
            return Err(format!("message {} is written as another org", m.id));
        }
    }
    for e in &b.history {
        if a.history.iter().find(|x| x.id == e.id) != Some(e) {
            return Err(format!("history entry {} was altered or removed", e.id));
        }
    }
    for e in a
        .history
        .iter()
        .filter(|e| !b.history.iter().any(|x| x.id == e.id))
    {
        if e.by.org != *peer {
            return Err(format!("history entry {} is written as another org", e.id));
        }
    }
    let creator_fields = (&b.subject, &b.reference_id, b.due_date, &b.topic)
        != (&a.subject, &a.reference_id, a.due_date, &a.topic);
    if creator_fields && a.created_by.org != *peer {
        return Err(format!(
            "only {} can change the subject, reference ID, topic or due date",
            a.created_by.org
        ));
    }
    if a.resolved_by != b.resolved_by
        && let Some(by) = &a.resolved_by
        && by.org != *peer
    {
        return Err("resolved as another org".into());
    }
    Ok(a)
}

#[cfg(test)]
mod tests;
