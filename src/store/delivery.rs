//! "Not yet delivered": conversations changed on this node that no node of the partner org is
//! known to hold as they are here.
//!
//! Invariant: conversation `c` is in `UNDELIVERED` from the commit of any local write to it
//! until a later commit in which a node of `c`'s partner org is shown to hold all of `c`'s
//! current heads: the Automerge sync state saved for that node lists every current head among
//! its `shared_heads`, or the node announced exactly the current heads in its changes feed.
//! Both tests are exact and cheap: heads are tips, so the partner holds everything of ours
//! exactly when it holds each current head, and the heads index answers without loading the
//! document. A local write in the same commit as such a proof comes first or after it in the
//! writer's order; either way the heads compared are the ones stored, so a change the partner
//! lacks is never cleared. Only the partner org's own nodes count: a peer of a third org
//! never sees the conversation, and another site of our org proves nothing about the partner.
//! Changes that reach us from our own other sites do not mark a conversation.

use std::collections::{HashMap, HashSet};

use automerge::ChangeHash;
use redb::{ReadTransaction, ReadableTable, WriteTransaction};
use uuid::Uuid;

use super::index::{decode_heads, get_summary};
use super::peers::{self, Peer};
use super::tables::*;
use super::{Result, accounts, docs};
use crate::domain::{OrgId, doc};

/// Marks `id` as changed here and not yet at the partner's node; in the local write's commit.
pub fn mark(tx: &WriteTransaction, id: u128) -> Result<()> {
    tx.open_table(UNDELIVERED)?.insert(id, ())?;
    Ok(())
}

pub fn is_undelivered(tx: &ReadTransaction, id: u128) -> Result<bool> {
    Ok(tx.open_table(UNDELIVERED)?.get(id)?.is_some())
}

pub fn is_undelivered_w(tx: &WriteTransaction, id: u128) -> Result<bool> {
    Ok(tx.open_table(UNDELIVERED)?.get(id)?.is_some())
}

/// Which of `ids` are not yet delivered: one key lookup each.
pub fn undelivered_among(tx: &ReadTransaction, ids: &[Uuid]) -> Result<HashSet<Uuid>> {
    let t = tx.open_table(UNDELIVERED)?;
    let mut out = HashSet::new();
    for id in ids {
        if t.get(id.as_u128())?.is_some() {
            out.insert(*id);
        }
    }
    Ok(out)
}

/// Clears `id` if `peer` is a node of its partner org and holds all of its current heads
/// (`held`: the heads its sync state shares, or the heads it announced). Returns whether it
/// cleared. A damaged inbox row or missing heads leave it marked: "not yet delivered" may
/// only ever err towards saying too little has arrived.
fn settle(
    tx: &WriteTransaction,
    peer: &Peer,
    me: &OrgId,
    id: u128,
    held: &[ChangeHash],
) -> Result<bool> {
    if &peer.org_id == me || !is_undelivered_w(tx, id)? {
        return Ok(false);
    }
    let partner = match get_summary(&tx.open_table(SUMMARIES)?, id) {
        Ok(Some(s)) => s.partner,
        _ => return Ok(false),
    };
    if partner != peer.org_id {
        return Ok(false);
    }
    let heads = match tx.open_table(HEADS)?.get(id)? {
        Some(b) => decode_heads(b.value()),
        None => return Ok(false),
    };
    if heads.is_empty() || !heads.iter().all(|h| held.contains(h)) {
        return Ok(false);
    }
    tx.open_table(UNDELIVERED)?.remove(id)?;
    Ok(true)
}

/// Settles what one sync flush from `peer` shows it holds: the sync states saved for it and
/// the heads it announced that equal ours. Returns each conversation it found delivered, with
/// its feed position, so watchers (the inbox) hear that its delivery changed.
pub(super) fn settle_flush(
    tx: &WriteTransaction,
    peer: &Peer,
    me: &OrgId,
    states: &HashMap<u128, Vec<u8>>,
    acked: &[(u128, Vec<ChangeHash>)],
) -> Result<Vec<(Uuid, u64)>> {
    let shared = states.iter().filter_map(|(id, st)| {
        automerge::sync::State::decode(st)
            .ok()
            .map(|s| (*id, s.shared_heads))
    });
    let mut out = Vec::new();
    for (id, held) in shared.chain(acked.iter().cloned()) {
        if settle(tx, peer, me, id, &held)? {
            let seq = tx
                .open_table(FEED_POS)?
                .get(id)?
                .map(|v| v.value())
                .unwrap_or(0);
            out.push((Uuid::from_u128(id), seq));
        }
    }
    Ok(out)
}

/// What the detail view needs to tell which of our messages are not at the partner yet.
pub struct DeliveryView {
    pub doc: automerge::Automerge,
    pub undelivered: bool,
    /// Per paired node of the partner org: the heads its sync state shares with us.
    pub partner_nodes: Vec<Vec<ChangeHash>>,
}

/// Loads conversation `id` with its delivery state; `None` if there is no such conversation.
/// The partner's nodes are found among the paired peers (a handful), their states by key.
/// Only a conversation still marked needs them: once it is delivered, so is every message.
pub fn view(tx: &ReadTransaction, id: u128) -> Result<Option<DeliveryView>> {
    let Some(doc) = docs::load_automerge(tx, id)? else {
        return Ok(None);
    };
    let undelivered = is_undelivered(tx, id)?;
    let mut partner_nodes = Vec::new();
    let me = accounts::read_identity(tx)?.map(|i| i.org_id);
    let partner = doc::read_participants(&doc)
        .ok()
        .zip(me)
        .map(|(p, me)| p.other(&me).clone());
    if undelivered && let Some(org) = partner {
        for p in peers::list_peers(tx)? {
            if p.org_id != org {
                continue;
            }
            let shared = peers::sync_state(tx, p.node_id, id)?
                .and_then(|b| automerge::sync::State::decode(&b).ok())
                .map(|s| s.shared_heads)
                .unwrap_or_default();
            partner_nodes.push(shared);
        }
    }
    Ok(Some(DeliveryView {
        doc,
        undelivered,
        partner_nodes,
    }))
}
