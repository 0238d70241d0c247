//! Index maintenance for conversations stored from a peer, when the typed view was already
//! read while checking the peer's changes against the write rules.
//!
//! [`reindex_doc`](super::index::reindex_doc) reads the document again to derive the rows; for a first sync of
//! thousands of conversations that second read is a tenth of the work. [`index_received`]
//! takes the view the check produced and writes exactly the rows `reindex_doc` would write for
//! a change with no local actor (partners' changes mark the conversation unread for every local
//! user). Keep the two in step: a change to what `reindex_doc` writes belongs here too.

use automerge::ChangeHash;
use redb::WriteTransaction;

use super::Result;
use super::index::{encode_heads, get_summary, index_conversation, mark_activity};
use super::tables::{HEADS, SUMMARIES};
use crate::domain::{Conversation, OrgId, Summary};

/// Re-derives every index row of the stored conversation `view` (whose document now has
/// `heads`) and marks it unread for every local user. Returns its new feed position.
pub fn index_received(
    tx: &WriteTransaction,
    me: &OrgId,
    view: &Conversation,
    heads: &[ChangeHash],
) -> Result<u64> {
    let id = view.id.as_u128();
    let old = get_summary(&tx.open_table(SUMMARIES)?, id)?;
    let seq = index_conversation(tx, old.as_ref(), &Summary::of(view, me))?;
    tx.open_table(HEADS)?
        .insert(id, encode_heads(heads).as_slice())?;
    mark_activity(tx, id, None)?;
    Ok(seq)
}
