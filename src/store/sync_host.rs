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
use super::{Identity, Store, StoreError, accounts, audience, delivery, docs, quota};
use crate::domain::audience::Audience;
use crate::domain::policy::{Authority, Gate};
use crate::domain::team::is_team_id;
use crate::domain::{Conversation, OrgId, doc, limits};

/// How many feed positions one `feed_since` call may pass over looking for shared documents.
const SCAN_CAP: usize = 8192;

/// The peer a session talks to, as this node sees it.
#[derive(Debug, Clone)]
pub struct PeerScope {
    pub peer: Peer,
    pub me: OrgId,
}

impl PeerScope {
    /// What the peer may see, and on whose authority its changes are written.
    pub fn audience(&self) -> Audience {
        Audience::of(&self.peer.org_id, &self.me)
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
    /// Raw change bytes accepted from the peer, counted against its daily quota at the flush.
    bytes: u64,
    /// The authority the accepted changes were checked under, for the check at the flush.
    authority: Option<Authority>,
    /// Conversations not yet delivered whose exact current heads a partner-org peer
    /// announced: settled at the flush (`store::delivery`).
    acked: Vec<(u128, Vec<ChangeHash>)>,
    /// Team documents accepted from another site of ours (`store::team`), with the heads of
    /// the version they were applied to, in order.
    team: Vec<(u128, Vec<ChangeHash>, Automerge)>,
}

impl Pending {
    pub fn is_empty(&self) -> bool {
        self.docs.is_empty()
            && self.states.is_empty()
            && self.cursor.is_none()
            && self.acked.is_empty()
            && self.team.is_empty()
    }

    /// Documents this batch changes.
    pub fn doc_ids(&self) -> Vec<Uuid> {
        self.order.iter().map(|id| Uuid::from_u128(*id)).collect()
    }
}

pub struct SyncHost<'a> {
    scope: &'a PeerScope,
    audience: Audience,
    /// This node (read once per call; it never changes).
    ident: Identity,
    /// Conversations whose stored bytes did not verify during this call: skipped, never
    /// written, so one damaged document cannot end the exchange for all the others.
    damaged: std::collections::HashSet<u128>,
    now: DateTime<Utc>,
    feed_id: u64,
    quota_per_day: u64,
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
    /// A host for one call into `scope`'s session; `now` dates what the gate compares with.
    pub fn new(
        store: &Store,
        scope: &'a PeerScope,
        now: DateTime<Utc>,
    ) -> Result<Self, StoreError> {
        let rtx = store.begin_read()?;
        let ident = accounts::read_identity(&rtx)?.ok_or(StoreError::NoIdentity)?;
        let audience = Audience::of(&scope.peer.org_id, &ident.org_id);
        let feed_id = match &audience {
            Audience::OwnSite => store.feed_id(),
            Audience::Partner(o) => audience::feed_id(store.feed_id(), o.as_str()),
        };
        let pending = Pending {
            authority: Some(audience.authority()),
            ..Pending::default()
        };
        Ok(SyncHost {
            scope,
            audience,
            ident,
            damaged: Default::default(),
            now,
            feed_id,
            quota_per_day: store.peer_quota_per_day(),
            rtx,
            pending,
        })
    }

    fn gate(&self) -> Gate<'_> {
        Gate {
            me: &self.ident.org_id,
            my_role: self.ident.role,
            now: self.now,
        }
    }

    pub fn into_pending(self) -> Pending {
        self.pending
    }

    /// Whether this peer may know of document `id` at all. A team document (assignment and
    /// internal notes) is for our own sites only: every read and write path of this host asks
    /// here first, so no partner is ever offered, sent or allowed to write one, whatever it
    /// asks for.
    fn visible(&self, id: u128) -> bool {
        !is_team_id(id) || self.audience == Audience::OwnSite
    }

    fn pending_team(&self, id: u128) -> Option<&Automerge> {
        self.pending
            .team
            .iter()
            .rev()
            .find(|(i, _, _)| *i == id)
            .map(|(_, _, d)| d)
    }

    fn shared_id(&self, id: u128) -> Result<bool, HostError> {
        if !self.visible(id) {
            return Ok(false);
        }
        if is_team_id(id) {
            if self.pending_team(id).is_some() {
                return Ok(true);
            }
            let heads = self.rtx.open_table(HEADS).map_err(hr)?;
            return Ok(heads.get(id).map_err(hr)?.is_some());
        }
        if self.pending.docs.contains_key(&id) {
            return Ok(true);
        }
        let summaries = self.rtx.open_table(SUMMARIES).map_err(hr)?;
        let Some(v) = summaries.get(id).map_err(hr)? else {
            return Ok(false);
        };
        if self.audience == Audience::OwnSite {
            return Ok(true);
        }
        let s = match decode_summary(id, v.value()) {
            Ok(s) => s,
            // A damaged row is derived again from the document; a damaged document is shared
            // with nobody until it is restored.
            Err(_) => match super::rebuild::derive_read(&self.rtx, id, &self.ident).map_err(h)? {
                Some(s) => s,
                None => return Ok(false),
            },
        };
        Ok(self.audience.may_see_partner(&s.partner))
    }

    /// The partner's own feed, for a partner audience: positions count only what is shared.
    fn partner_feed_since(
        &mut self,
        partner: &str,
        since: u64,
        limit: usize,
    ) -> Result<FeedPage, HostError> {
        let heads = self.rtx.open_table(HEADS).map_err(hr)?;
        let entries = audience::since(&self.rtx, partner, since, limit.max(1)).map_err(h)?;
        let mut page = FeedPage {
            entries: Vec::with_capacity(entries.len()),
            scanned_to: since,
        };
        for (seq, id) in entries {
            page.scanned_to = seq;
            if self.visible(id) {
                page.entries.push(feed_entry(&heads, seq, id)?);
            }
        }
        Ok(page)
    }

    /// A partner-org peer announced exactly our heads of `id`: if it is still marked not
    /// delivered, the flush settles it (checking the org and the heads again in its commit).
    fn note_ack(&mut self, id: u128, heads: Vec<ChangeHash>) -> Result<(), HostError> {
        if matches!(self.audience, Audience::Partner(_))
            && self.pending.acked.len() < SCAN_CAP
            && super::delivery::is_undelivered(&self.rtx, id).map_err(h)?
        {
            self.pending.acked.push((id, heads));
        }
        Ok(())
    }

    /// Refuses a peer's version of a conversation whose raw changes break the size limits or
    /// the peer's daily quota; returns the bytes it adds.
    fn check_size(&self, update: &DocUpdate<'_>, id: u128) -> Result<u64, Refusal> {
        let base = update.before.map(|b| b.get_heads()).unwrap_or_default();
        let mut added = 0u64;
        for c in update.after.get_changes(&base) {
            let n = c.raw_bytes().len();
            if n > limits::CHANGE_BYTES {
                return Err(Refusal::Rejected(format!(
                    "one change is {n} bytes; a change may be at most {} bytes",
                    limits::CHANGE_BYTES
                )));
            }
            added += n as u64;
        }
        let stored = if update.before.is_some() {
            quota::stored_bytes(&self.rtx, id).map_err(|e| Refusal::Host(h(e)))?
        } else {
            0
        };
        if stored + added > limits::CONVERSATION_BYTES as u64 {
            return Err(Refusal::Rejected(format!(
                "the conversation would take {} bytes; one conversation may take at most {} bytes",
                stored + added,
                limits::CONVERSATION_BYTES
            )));
        }
        let day = day_of(self.now);
        let used = quota::used(&self.rtx, self.scope.peer.node_id.as_u128(), day)
            .map_err(|e| Refusal::Host(h(e)))?;
        if used + self.pending.bytes + added > self.quota_per_day {
            return Err(Refusal::Rejected(format!(
                "this node accepts at most {} bytes of changes per day from one peer; the rest waits until tomorrow",
                self.quota_per_day
            )));
        }
        Ok(added)
    }
}

impl SyncHost<'_> {
    /// A team document from a peer: only another site of ours may send one.
    fn store_team(&mut self, update: DocUpdate<'_>, id: u128) -> Result<(), Refusal> {
        if !self.visible(id) {
            return Err(Refusal::Rejected(
                "team documents stay within one org; a partner may not send one".into(),
            ));
        }
        if self.damaged.contains(&id) {
            return Err(Refusal::Rejected(
                "this team document is damaged on the receiving node".into(),
            ));
        }
        let added = self.check_size(&update, id)?;
        super::team::check_received(id, update.after, self.now).map_err(Refusal::Rejected)?;
        let base = match self.pending.team.iter().find(|(i, _, _)| *i == id) {
            Some((_, b, _)) => b.clone(),
            None => update.before.map(|b| b.get_heads()).unwrap_or_default(),
        };
        self.pending.team.retain(|(i, _, _)| *i != id);
        self.pending.team.push((id, base, update.after.clone()));
        self.pending.bytes += added;
        Ok(())
    }
}

/// A feed entry for conversation `id` at `seq`, with its current heads from the index.
fn feed_entry(
    heads: &impl ReadableTable<u128, &'static [u8]>,
    seq: u64,
    id: u128,
) -> Result<FeedEntry, HostError> {
    let hs = heads
        .get(id)
        .map_err(hr)?
        .map(|b| decode_heads(b.value()))
        .unwrap_or_default();
    Ok(FeedEntry {
        seq,
        doc: DocId(id.to_be_bytes()),
        heads: hs,
    })
}

fn day_of(t: DateTime<Utc>) -> i32 {
    use chrono::Datelike;
    t.date_naive().num_days_from_ce()
}

impl Host for SyncHost<'_> {
    fn feed_id(&mut self) -> u64 {
        self.feed_id
    }

    fn feed_high(&mut self) -> Result<u64, HostError> {
        if let Audience::Partner(o) = &self.audience {
            return audience::high(&self.rtx, o.as_str()).map_err(h);
        }
        let feed = self.rtx.open_table(FEED).map_err(hr)?;
        Ok(feed
            .last()
            .map_err(hr)?
            .map(|(k, _)| k.value())
            .unwrap_or(0))
    }

    fn feed_since(&mut self, since: u64, limit: usize) -> Result<FeedPage, HostError> {
        if let Audience::Partner(o) = &self.audience {
            let o = o.as_str().to_owned();
            return self.partner_feed_since(&o, since, limit);
        }
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
                page.entries.push(feed_entry(&heads, seq, id)?);
            }
        }
        Ok(page)
    }

    fn is_shared(&mut self, doc: DocId) -> Result<bool, HostError> {
        self.shared_id(uid(doc))
    }

    fn load_doc(&mut self, doc: DocId) -> Result<Option<Automerge>, HostError> {
        let id = uid(doc);
        if !self.visible(id) {
            return Ok(None);
        }
        if let Some(d) = self.pending_team(id) {
            return Ok(Some(d.clone()));
        }
        if let Some(r) = self.pending.docs.get(&id) {
            return Ok(Some(r.doc.clone()));
        }
        match docs::load_automerge(&self.rtx, id) {
            Err(e @ StoreError::Corrupt(..)) => {
                tracing::error!(peer = %self.scope.peer.node_id, error = %e, "not syncing a damaged conversation");
                self.damaged.insert(id);
                Ok(None)
            }
            other => other.map_err(h),
        }
    }

    fn heads(&mut self, doc: DocId) -> Result<Option<Vec<ChangeHash>>, HostError> {
        let id = uid(doc);
        if !self.visible(id) {
            return Ok(None);
        }
        if let Some(d) = self.pending_team(id) {
            return Ok(Some(d.get_heads()));
        }
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
        if !self.visible(id) {
            // Nothing to ask this peer for: it may not send one.
            return Ok(Presence::Has);
        }
        if !self.pending.docs.contains_key(&id)
            && self.pending_team(id).is_none()
            && !want.is_empty()
        {
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
                        self.note_ack(id, w)?;
                        return Ok(Presence::Has);
                    }
                }
            }
        }
        Ok(match self.load_doc(doc)? {
            // Damaged here: nothing to ask for until it is restored.
            None if self.damaged.contains(&id) => Presence::Has,
            None => Presence::Missing,
            Some(d) if parley_sync::contains_all(&d, want) => Presence::Has,
            Some(_) => Presence::Lacks,
        })
    }

    fn store_doc(&mut self, update: DocUpdate<'_>) -> Result<(), Refusal> {
        let id = uid(update.doc);
        if is_team_id(id) {
            return self.store_team(update, id);
        }
        if self.damaged.contains(&id)
            || (update.before.is_none()
                && !self.pending.docs.contains_key(&id)
                && docs::exists(&self.rtx, id).map_err(|e| Refusal::Host(h(e)))?)
        {
            return Err(Refusal::Rejected(
                "this conversation is damaged on the receiving node and takes no changes until it is restored".into(),
            ));
        }
        let before = match update.before {
            None => None,
            Some(b) => Some(
                doc::read(b)
                    .map_err(|e| Refusal::Rejected(format!("our copy is unreadable: {e}")))?,
            ),
        };
        let added = self.check_size(&update, id)?;
        let after = doc::read_strict(update.after).map_err(|e| {
            Refusal::Rejected(format!(
                "the document does not follow the conversation schema: {e}"
            ))
        })?;
        if after.id.as_u128() != id {
            return Err(Refusal::Rejected(
                "the document's id does not match the id it was sent under".into(),
            ));
        }
        self.gate()
            .admit(before.as_ref(), &after, &self.audience.authority())
            .map_err(|v| Refusal::Rejected(v.to_string()))?;
        let base = match self.pending.docs.get(&id) {
            Some(r) => r.base.clone(),
            None => update.before.map(|b| b.get_heads()).unwrap_or_default(),
        };
        if !self.pending.docs.contains_key(&id) {
            self.pending.order.push(id);
        }
        self.pending.bytes += added;
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
        let mut host = SyncHost::new(self, scope, Utc::now())?;
        let page = host
            .feed_since(since, cap)
            .map_err(|e| StoreError::Record("feed".into(), e.to_string()))?;
        Ok(page.entries.len() as u64)
    }
}

/// What a flush changed: (conversation, feed seq) for each document stored, and for each
/// conversation it found delivered to the partner.
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
            let ident = ctx.identity()?.clone();
            let me = ident.org_id.clone();
            let gate = Gate {
                me: &ident.org_id,
                my_role: ident.role,
                now,
            };
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
                    index_view(ctx.tx(), &me, None, &r.view, &r.doc.get_heads(), None, now)?
                } else {
                    let ours = ctx.view(*id)?.ok_or_else(|| {
                        StoreError::Record(format!("conversation {uuid}"), "not loadable".into())
                    })?;
                    let cur = ctx.doc_mut(*id)?.ok_or_else(|| {
                        StoreError::Record(format!("conversation {uuid}"), "not loadable".into())
                    })?;
                    cur.apply_changes(r.doc.get_changes(&r.base))
                        .map_err(corrupt)?;
                    let merged = cur.get_heads();
                    let view = if merged == r.doc.get_heads() {
                        None
                    } else {
                        // Our own edits landed meanwhile: the checked view is not the result,
                        // so the gate judges again what will be stored, against what we hold
                        // now. A refusal aborts this commit whole; the next session checks
                        // the peer's changes against our newer copy and refuses them there.
                        let v = doc::read_strict(&*cur)
                            .map_err(|e| StoreError::Corrupt(uuid, e.to_string()))?;
                        if let Some(a) = &p.authority
                            && let Err(why) = gate.admit(Some(&ours), &v, a)
                        {
                            ctx.discard_doc(*id);
                            return Err(StoreError::Raced(uuid, why.to_string()));
                        }
                        Some(v)
                    };
                    ctx.save_doc(*id)?;
                    let view = view.as_ref().unwrap_or(&r.view);
                    // The next local write to it starts from this view, not from a re-read.
                    ctx.set_view(*id, view);
                    index_view(ctx.tx(), &me, Some(&ours), view, &merged, None, now)?
                };
                out.push((uuid, seq));
            }
            for (id, base, doc) in &p.team {
                out.push(super::team::store_received(ctx, *id, base, doc, now)?);
            }
            let tx = ctx.tx();
            let rec = peers::get_peer_w(tx, peer)?;
            for (id, st) in &p.states {
                peers::put_sync_state(tx, peer, *id, st)?;
            }
            if let Some(rec) = &rec {
                // After the documents above: the heads compared are the ones now stored.
                for (id, seq) in delivery::settle_flush(tx, rec, &me, &p.states, &p.acked)? {
                    if !out.iter().any(|(u, _)| *u == id) {
                        out.push((id, seq));
                    }
                }
            }
            if let Some(c) = p.cursor {
                peers::put_cursor(tx, peer, (c.feed_id, c.seq))?;
            }
            if p.bytes > 0 {
                quota::add(tx, peer.as_u128(), day_of(now), p.bytes)?;
            }
            if let Some(mut rec) = rec {
                rec.last_sync_at = Some(now);
                peers::put_peer(tx, &rec)?;
            }
            Ok(out)
        })
    }
}
