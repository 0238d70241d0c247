//! The sync engine's view of this node for one peer ([`parley_sync::Host`]).
//!
//! A `SyncHost` lives for one call into a session. Reads come from one redb snapshot. Writes
//! (documents accepted from the peer, sync states, the cursor) are collected in memory and
//! written by [`Store::flush_sync`] in ONE group commit after the call returns and before its
//! frames are sent: the peer only hears "stored" once everything it depends on is durable,
//! and a first sync of thousands of documents costs one commit per answer frame, not one each.
//! Reads see the collected writes, so a document accepted earlier in the same call is there.

use std::collections::HashMap;

use automerge::{Automerge, ChangeHash};
use chrono::{DateTime, Utc};
use parley_sync::{
    Cursor, DocId, DocUpdate, FeedEntry, FeedPage, Host, HostError, StoreError as Refusal,
};
use redb::{ReadTransaction, ReadableTable};
use uuid::Uuid;

use super::index::{decode_heads, decode_summary};
use super::peers::Peer;
use super::tables::*;
use super::{Identity, Store, StoreError, accounts, audience, quota};
use crate::domain::audience::Audience;
use crate::domain::policy::{Authority, Gate};
use crate::domain::team::is_team_id;
use crate::domain::{Conversation, OrgId, doc, limits};

mod blobs;
mod flush;
mod host;
mod team;

pub use flush::Flushed;

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
    /// For a conversation new here that the peer sent whole: the verified bytes `doc` was
    /// loaded from, stored as they are (`DocUpdate::received`) instead of a fresh `save()`.
    bytes: Option<Vec<u8>>,
    /// For a conversation new here, its body words if they were tallied ahead.
    words: Option<Words>,
}

/// What the loading threads work out for a conversation new here, ahead of
/// [`Host::store_doc`] (the engine's `Config::prepare`): the typed view the write rules judge,
/// and the size of each of its changes for the size limits and the daily quota. Both depend
/// only on the document, and together they are most of what receiving one costs.
pub struct PreparedDoc {
    view: Result<Conversation, String>,
    change_sizes: Vec<usize>,
    /// The words of every message body (`text_words::tally`), for the search index.
    words: Option<Words>,
}

/// Terms of message bodies with the number of bodies holding each.
type Words = std::collections::BTreeMap<String, i64>;

/// [`PreparedDoc`] of a document, for `parley_sync::Config::prepare`.
pub fn prepare_new(doc: &Automerge) -> parley_sync::Prepared {
    let view = doc::read_strict(doc).map_err(|e| e.to_string());
    let words = view.as_ref().ok().map(|v| {
        let bodies: Vec<&str> = v.messages.iter().map(|m| m.body.as_str()).collect();
        super::text_words::tally(&bodies)
    });
    Box::new(PreparedDoc {
        view,
        change_sizes: doc
            .get_changes(&[])
            .iter()
            .map(|c| c.raw_bytes().len())
            .collect(),
        words,
    })
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
    /// What arrived of files, in order (`store::blobs`).
    blobs: Vec<super::blobs::Received>,
}

impl Pending {
    /// Holds no document, team document or file chunk: only what is exchanged again if lost.
    pub fn only_bookkeeping(&self) -> bool {
        self.docs.is_empty() && self.team.is_empty() && self.blobs.is_empty()
    }

    pub fn is_empty(&self) -> bool {
        self.docs.is_empty()
            && self.states.is_empty()
            && self.cursor.is_none()
            && self.acked.is_empty()
            && self.team.is_empty()
            && self.blobs.is_empty()
    }

    /// Documents this batch changes.
    pub fn doc_ids(&self) -> Vec<Uuid> {
        self.order.iter().map(|id| Uuid::from_u128(*id)).collect()
    }
}

pub struct SyncHost<'a> {
    store: &'a Store,
    scope: &'a PeerScope,
    audience: Audience,
    /// Whose authority the peer's changes are judged under: its audience's, or, while the
    /// peer restores our history to us (`Peer::recover_since`), [`Authority::Recovery`].
    authority: Authority,
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
    blob_calls: blobs::BlobCalls,
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
        store: &'a Store,
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
        // Read at each call, not taken from the scope: recovery ends in the middle of a link's
        // life (`Store::end_recovery`), and from then on the normal rules apply.
        // A window the partner never completes ends anyway after `RECOVERY_WINDOW`.
        let since = super::peers::get_peer(&rtx, scope.peer.node_id)?
            .and_then(|p| p.recover_since)
            .filter(|since| now - *since < super::peers::RECOVERY_WINDOW);
        let authority = match (&audience, since) {
            (Audience::Partner(o), Some(before)) => Authority::Recovery {
                partner: o.clone(),
                before,
            },
            (a, _) => a.authority(),
        };
        let pending = Pending {
            authority: Some(authority.clone()),
            ..Pending::default()
        };
        Ok(SyncHost {
            store,
            scope,
            audience,
            authority,
            ident,
            damaged: Default::default(),
            now,
            feed_id,
            quota_per_day: store.peer_quota_per_day(),
            rtx,
            pending,
            blob_calls: Default::default(),
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
    /// Under recovery, a new message in our name may name only files this node neither
    /// holds nor fetches: otherwise the partner, by forging one, could make this node serve
    /// it (as "ours", `file_for_peer`) a file of a conversation with someone else.
    fn recovered_files_unknown_here(
        &self,
        before: Option<&Conversation>,
        after: &Conversation,
        partner: &OrgId,
    ) -> Result<(), Refusal> {
        let old: std::collections::HashSet<Uuid> = before
            .map(|b| b.messages.iter().map(|m| m.id).collect())
            .unwrap_or_default();
        for m in after
            .messages
            .iter()
            .filter(|m| !old.contains(&m.id) && m.author.org != *partner)
        {
            for a in &m.attachments {
                let Some(hash) = crate::domain::attachment::parse_sha256(&a.sha256) else {
                    continue;
                };
                if super::blobs::meta(&self.rtx, &hash)
                    .map_err(|e| Refusal::Host(h(e)))?
                    .is_some()
                {
                    return Err(Refusal::Rejected(format!(
                        "message {} is written as {} and names file {}, which this node holds; during a recovery a message in our name may name only files this node does not have",
                        m.id, m.author.org, a.sha256
                    )));
                }
            }
        }
        Ok(())
    }

    fn check_size(
        &self,
        update: &DocUpdate<'_>,
        id: u128,
        sizes: Option<&[usize]>,
    ) -> Result<u64, Refusal> {
        let measured;
        let sizes = match sizes {
            Some(s) => s,
            None => {
                let base = update.before.map(|b| b.get_heads()).unwrap_or_default();
                measured = update
                    .after
                    .get_changes(&base)
                    .iter()
                    .map(|c| c.raw_bytes().len())
                    .collect::<Vec<_>>();
                &measured
            }
        };
        let mut added = 0u64;
        for &n in sizes {
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
        // A recovery gives back years of history at once: the daily quota, which bounds what
        // a peer adds in the normal course, would cut it off and close the window with
        // conversations refused for good. The window itself is bounded (`RECOVERY_WINDOW`).
        if matches!(self.authority, Authority::Recovery { .. }) {
            return Ok(added);
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
