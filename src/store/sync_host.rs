//! The sync engine's view of this node for one peer ([`parley_sync::Host`]).
//!
//! A `SyncHost` lives for one call into a session. Reads come from one redb snapshot. Writes
//! (documents accepted from the peer, sync states, the cursor) are collected in memory and
//! written by [`Store::flush_sync`] in ONE group commit after the call returns and before its
//! frames are sent: the peer only hears "stored" once everything it depends on is durable,
//! and a first sync of thousands of documents costs one commit per answer frame, not one each.
//! Reads see the collected writes, so a document accepted earlier in the same call is there.

use std::borrow::Cow;
use std::collections::HashMap;

use automerge::{Automerge, ChangeHash};
use chrono::{DateTime, Utc};
use parley_sync::{
    Cursor, DocId, DocUpdate, FeedEntry, FeedPage, Host, HostError, Presence, StoreError as Refusal,
};
use redb::{ReadTransaction, ReadableTable};
use uuid::Uuid;

use super::index::{decode_heads, decode_summary, index_view};
use super::peers::{self, Peer};
use super::tables::*;
use super::{Store, StoreError, docs};
use crate::domain::rules::{Sender, check_update};
use crate::domain::{Conversation, OrgId, doc};

/// How many feed positions one `feed_since` call may pass over looking for shared documents.
const SCAN_CAP: usize = 8192;

/// The peer a session talks to, as this node sees it.
#[derive(Debug, Clone)]
pub struct PeerScope {
    pub peer: Peer,
    pub me: OrgId,
}

impl PeerScope {
    pub fn sender(&self) -> Sender {
        if self.peer.org_id == self.me {
            Sender::OwnOrg
        } else {
            Sender::Partner(self.peer.org_id.clone())
        }
    }
}

/// A document accepted from the peer, waiting for the flush.
struct Received {
    /// Heads of the stored version the peer's changes were applied to; empty when the
    /// conversation is new here.
    base: Vec<ChangeHash>,
    /// The session's copy: the stored version with the peer's changes applied.
    doc: Automerge,
    /// The typed view of `doc`, read once by the write-rule check and reused for the indexes.
    view: Conversation,
}

/// What one call into a session wants written.
#[derive(Default)]
pub struct Pending {
    docs: HashMap<u128, Received>,
    order: Vec<u128>,
    states: HashMap<u128, Vec<u8>>,
    cursor: Option<Cursor>,
}

impl Pending {
    pub fn is_empty(&self) -> bool {
        self.docs.is_empty() && self.states.is_empty() && self.cursor.is_none()
    }

    /// Documents this batch changes.
    pub fn doc_ids(&self) -> Vec<Uuid> {
        self.order.iter().map(|id| Uuid::from_u128(*id)).collect()
    }
}

pub struct SyncHost<'a> {
    scope: &'a PeerScope,
    feed_id: u64,
    rtx: ReadTransaction,
    pending: Pending,
}

fn h(e: StoreError) -> HostError {
    if e.is_transient() {
        HostError::transient(e.to_string())
    } else {
        HostError::permanent(e.to_string())
    }
}

fn hr(e: impl Into<redb::Error>) -> HostError {
    h(StoreError::Db(Box::new(e.into())))
}

fn uid(d: DocId) -> u128 {
    u128::from_be_bytes(d.0)
}

impl<'a> SyncHost<'a> {
    pub fn new(store: &Store, scope: &'a PeerScope) -> Result<Self, StoreError> {
        Ok(SyncHost {
            scope,
            feed_id: store.feed_id(),
            rtx: store.begin_read()?,
            pending: Pending::default(),
        })
    }

    pub fn into_pending(self) -> Pending {
        self.pending
    }

    fn shared_id(&self, id: u128) -> Result<bool, HostError> {
        if self.pending.docs.contains_key(&id) {
            return Ok(true);
        }
        let summaries = self.rtx.open_table(SUMMARIES).map_err(hr)?;
        let Some(v) = summaries.get(id).map_err(hr)? else {
            return Ok(false);
        };
        if self.scope.peer.org_id == self.scope.me {
            return Ok(true);
        }
        let s = decode_summary(id, v.value()).map_err(h)?;
        Ok(s.partner == self.scope.peer.org_id)
    }
}

impl Host for SyncHost<'_> {
    fn feed_id(&mut self) -> u64 {
        self.feed_id
    }

    fn feed_high(&mut self) -> Result<u64, HostError> {
        let feed = self.rtx.open_table(FEED).map_err(hr)?;
        Ok(feed
            .last()
            .map_err(hr)?
            .map(|(k, _)| k.value())
            .unwrap_or(0))
    }

    fn feed_since(&mut self, since: u64, limit: usize) -> Result<FeedPage, HostError> {
        let feed = self.rtx.open_table(FEED).map_err(hr)?;
        let heads = self.rtx.open_table(HEADS).map_err(hr)?;
        let mut page = FeedPage {
            entries: Vec::new(),
            scanned_to: since,
        };
        for (n, item) in feed
            .range(since.saturating_add(1)..)
            .map_err(hr)?
            .enumerate()
        {
            let (k, v) = item.map_err(hr)?;
            let (seq, id) = (k.value(), v.value());
            if n >= SCAN_CAP || page.entries.len() >= limit.max(1) {
                break;
            }
            page.scanned_to = seq;
            if self.shared_id(id)? {
                let hs = heads
                    .get(id)
                    .map_err(hr)?
                    .map(|b| decode_heads(b.value()))
                    .unwrap_or_default();
                page.entries.push(FeedEntry {
                    seq,
                    doc: DocId(id.to_be_bytes()),
                    heads: hs,
                });
            }
        }
        Ok(page)
    }

    fn is_shared(&mut self, doc: DocId) -> Result<bool, HostError> {
        self.shared_id(uid(doc))
    }

    fn load_doc(&mut self, doc: DocId) -> Result<Option<Automerge>, HostError> {
        let id = uid(doc);
        if let Some(r) = self.pending.docs.get(&id) {
            return Ok(Some(r.doc.clone()));
        }
        docs::load_automerge(&self.rtx, id).map_err(h)
    }

    fn heads(&mut self, doc: DocId) -> Result<Option<Vec<ChangeHash>>, HostError> {
        let id = uid(doc);
        if let Some(r) = self.pending.docs.get(&id) {
            return Ok(Some(r.doc.get_heads()));
        }
        // The heads index changes in the same transaction as the document.
        let heads = self.rtx.open_table(HEADS).map_err(hr)?;
        let stored = heads.get(id).map_err(hr)?.map(|b| decode_heads(b.value()));
        Ok(stored)
    }

    fn has_heads(&mut self, doc: DocId, want: &[ChangeHash]) -> Result<Presence, HostError> {
        let id = uid(doc);
        if !self.pending.docs.contains_key(&id) && !want.is_empty() {
            // The common case — "nothing changed" — is answered from the heads index.
            let stored = self
                .rtx
                .open_table(HEADS)
                .map_err(hr)?
                .get(id)
                .map_err(hr)?
                .map(|b| decode_heads(b.value()));
            match stored {
                None => return Ok(Presence::Missing),
                Some(mut s) => {
                    let mut w = want.to_vec();
                    s.sort();
                    w.sort();
                    if s == w {
                        return Ok(Presence::Has);
                    }
                }
            }
        }
        Ok(match self.load_doc(doc)? {
            None => Presence::Missing,
            Some(d) if parley_sync::contains_all(&d, want) => Presence::Has,
            Some(_) => Presence::Lacks,
        })
    }

    fn store_doc(&mut self, update: DocUpdate<'_>) -> Result<(), Refusal> {
        let id = uid(update.doc);
        let before = match update.before {
            None => None,
            Some(b) => Some(
                doc::read(b)
                    .map_err(|e| Refusal::Rejected(format!("our copy is unreadable: {e}")))?,
            ),
        };
        let after = check_update(
            before.as_ref(),
            update.after,
            &self.scope.me,
            &self.scope.sender(),
        )
        .map_err(Refusal::Rejected)?;
        if after.id.as_u128() != id {
            return Err(Refusal::Rejected(
                "the document's id does not match the id it was sent under".into(),
            ));
        }
        let base = match self.pending.docs.get(&id) {
            Some(r) => r.base.clone(),
            None => update.before.map(|b| b.get_heads()).unwrap_or_default(),
        };
        if !self.pending.docs.contains_key(&id) {
            self.pending.order.push(id);
        }
        let received = Received {
            base,
            doc: update.after.clone(),
            view: after,
        };
        self.pending.docs.insert(id, received);
        Ok(())
    }

    fn load_sync_state(&mut self, doc: DocId) -> Result<Option<Vec<u8>>, HostError> {
        let id = uid(doc);
        if let Some(s) = self.pending.states.get(&id) {
            return Ok(Some(s.clone()));
        }
        peers::sync_state(&self.rtx, self.scope.peer.node_id, id).map_err(h)
    }

    fn save_sync_state(&mut self, doc: DocId, state: &[u8]) -> Result<(), HostError> {
        self.pending.states.insert(uid(doc), state.to_vec());
        Ok(())
    }

    fn load_cursor(&mut self) -> Result<Option<Cursor>, HostError> {
        if let Some(c) = self.pending.cursor {
            return Ok(Some(c));
        }
        let c = peers::cursor(&self.rtx, self.scope.peer.node_id).map_err(h)?;
        Ok(c.map(|(feed_id, seq)| Cursor { feed_id, seq }))
    }

    fn save_cursor(&mut self, cursor: Cursor) -> Result<(), HostError> {
        self.pending.cursor = Some(cursor);
        Ok(())
    }
}

impl Store {
    /// How many conversations shared with the peer changed after feed position `since` (at most
    /// `cap`; a bounded scan of the feed, not of the store).
    pub fn shared_changes_since(
        &self,
        scope: &PeerScope,
        since: u64,
        cap: usize,
    ) -> Result<u64, StoreError> {
        let mut host = SyncHost::new(self, scope)?;
        let page = host
            .feed_since(since, cap)
            .map_err(|e| StoreError::Record("feed".into(), e.to_string()))?;
        Ok(page.entries.len() as u64)
    }
}

/// What a flush changed: (conversation, feed seq) for each document stored.
pub type Flushed = Vec<(Uuid, u64)>;

impl Store {
    /// Writes what a session call collected, in one durable commit. Blocking.
    ///
    /// A conversation new here is stored as the session's copy, saved on this thread: it holds
    /// exactly the peer's changes, already validated and read. One that exists gets the peer's
    /// changes merged into the writer's copy (our own edits since the session read it stay).
    pub fn flush_sync(
        &self,
        peer: Uuid,
        pending: Pending,
        now: DateTime<Utc>,
    ) -> Result<Flushed, StoreError> {
        if pending.is_empty() {
            return Ok(Vec::new());
        }
        let saves: HashMap<u128, Vec<u8>> = pending
            .docs
            .iter()
            .filter(|(_, r)| r.base.is_empty())
            .map(|(id, r)| (*id, r.doc.save()))
            .collect();
        self.write_blocking(move |ctx| -> Result<Flushed, StoreError> {
            let p = pending;
            let me = ctx.identity()?.org_id.clone();
            let mut out = Vec::new();
            for id in &p.order {
                let Some(r) = p.docs.get(id) else {
                    continue;
                };
                let uuid = Uuid::from_u128(*id);
                let corrupt =
                    |e: automerge::AutomergeError| StoreError::Corrupt(uuid, e.to_string());
                let seq = if !docs::exists_w(ctx.read_tx(), *id)? {
                    let bytes = match saves.get(id) {
                        Some(b) => Cow::Borrowed(b),
                        None => Cow::Owned(r.doc.save()),
                    };
                    ctx.discard_doc(*id);
                    docs::insert_saved(ctx.tx(), *id, &bytes)?;
                    index_view(ctx.tx(), &me, &r.view, &r.doc.get_heads(), None)?
                } else {
                    let cur = ctx.doc_mut(*id)?.ok_or_else(|| {
                        StoreError::Record(format!("conversation {uuid}"), "not loadable".into())
                    })?;
                    cur.apply_changes(r.doc.get_changes(&r.base))
                        .map_err(corrupt)?;
                    let merged = cur.get_heads();
                    let view = if merged == r.doc.get_heads() {
                        None
                    } else {
                        // Our own edits landed meanwhile: the checked view is not the result.
                        Some(
                            doc::read(&*cur)
                                .map_err(|e| StoreError::Corrupt(uuid, e.to_string()))?,
                        )
                    };
                    ctx.save_doc(*id)?;
                    let view = view.as_ref().unwrap_or(&r.view);
                    // The next local write to it starts from this view, not from a re-read.
                    ctx.set_view(*id, view);
                    index_view(ctx.tx(), &me, view, &merged, None)?
                };
                out.push((uuid, seq));
            }
            let tx = ctx.tx();
            for (id, st) in &p.states {
                peers::put_sync_state(tx, peer, *id, st)?;
            }
            if let Some(c) = p.cursor {
                peers::put_cursor(tx, peer, (c.feed_id, c.seq))?;
            }
            if let Some(mut rec) = peers::get_peer_w(tx, peer)? {
                rec.last_sync_at = Some(now);
                peers::put_peer(tx, &rec)?;
            }
            Ok(out)
        })
    }
}
