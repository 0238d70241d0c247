//! Per-document Automerge sync inside a session: requests, incoming messages applied to a copy
//! and validated by the host, replies, and closing a document for the session.
//!
//! Only documents with an exchange in progress keep a `sync::State` in memory; a settled
//! document's state lives in the host (encoded) and is reloaded when needed. Memory therefore
//! follows what is changing, not what is stored.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use automerge::sync;
use automerge::{Automerge, ChangeHash};

use super::{Event, Session};
use crate::am;
use crate::error::SessionError;
use crate::host::{DocUpdate, Host, StoreError, contains_all};
use crate::ids::DocId;
use crate::outbox::Outbox;
use crate::wire::{MAX_SYNC_MESSAGE_BYTES, Record, clamp_reason};

/// Most documents whose peer heads are remembered for skipping echo announcements.
const MAX_PEER_HEADS: usize = 100_000;

pub(super) struct Active {
    pub(super) state: sync::State,
    /// The encoding last persisted (or loaded), to skip writes that change nothing.
    saved: Vec<u8>,
}

impl Active {
    fn load<H: Host>(host: &mut H, doc: DocId) -> Result<Active, SessionError> {
        let saved = host.load_sync_state(doc)?.unwrap_or_default();
        let state = am::state_from(&saved);
        Ok(Active { state, saved })
    }

    /// Persist the state if its durable part changed. Call only once the document changes it
    /// describes are stored: a persisted state must never claim more than the store holds.
    fn persist<H: Host>(&mut self, host: &mut H, doc: DocId) -> Result<(), SessionError> {
        // Nothing stored and nothing shared yet (we answered a peer that holds nothing of the
        // document): the state says no more than a fresh one, so writing it would only cost a
        // commit on every request of a first sync.
        if self.saved.is_empty() && self.state.shared_heads.is_empty() {
            return Ok(());
        }
        let encoded = self.state.encode();
        if encoded != self.saved {
            host.save_sync_state(doc, &encoded)?;
            self.saved = encoded;
        }
        Ok(())
    }
}

#[derive(Default)]
pub(super) struct Docs {
    pub(super) active: BTreeMap<DocId, Active>,
    /// Documents that stopped syncing for this session (rejected, unavailable, failed).
    pub(super) closed: BTreeSet<DocId>,
    /// Heads the peer reported this session, per document.
    pub(super) peer_heads: BTreeMap<DocId, Vec<ChangeHash>>,
    /// Whole documents of the frame being processed, loaded ahead (`Session::preload`), with
    /// the message each was loaded from. Emptied after every frame.
    pub(super) preloaded: HashMap<DocId, am::Preloaded>,
}

impl Docs {
    pub(super) fn note_peer_heads(&mut self, doc: DocId, heads: Vec<ChangeHash>) {
        if self.peer_heads.len() >= MAX_PEER_HEADS && !self.peer_heads.contains_key(&doc) {
            // Only an optimisation: forgetting costs an echo announcement, never correctness.
            self.peer_heads.clear();
        }
        self.peer_heads.insert(doc, heads);
    }

    fn keep(&mut self, doc: DocId, active: Active, max: usize) {
        self.active.insert(doc, active);
        while self.active.len() > max {
            // Evicting is safe: the durable part is persisted and a fresh state from it always
            // answers the peer's next message.
            let Some(victim) = self.active.keys().find(|d| **d != doc).copied() else {
                break;
            };
            self.active.remove(&victim);
        }
    }
}

impl Session {
    /// Loads ahead, in parallel, the whole documents this frame sends for documents we asked
    /// for and lack. Only an id that appears once in the frame is loaded ahead; `on_sync`
    /// uses an entry only for the very message it was loaded from.
    pub(super) fn preload(&mut self, records: &[Record]) {
        self.docs.preloaded.clear();
        if self.config.load_threads <= 1 {
            return;
        }
        let mut seen: HashMap<DocId, usize> = HashMap::new();
        for r in records {
            if let Record::Sync { doc, .. } = r {
                *seen.entry(*doc).or_default() += 1;
            }
        }
        let wanted: Vec<(DocId, &[u8])> = records
            .iter()
            .filter_map(|r| match r {
                Record::Sync { doc, message }
                    if seen.get(doc) == Some(&1)
                        && !self.docs.closed.contains(doc)
                        && self.inbound.asked_new(doc) =>
                {
                    Some((*doc, message.as_slice()))
                }
                _ => None,
            })
            .collect();
        // A handful is not worth the threads.
        if wanted.len() < 4 {
            return;
        }
        for p in am::preload(wanted, self.config.load_threads, self.config.prepare) {
            self.docs.preloaded.insert(p.doc, p);
        }
    }

    /// Ask the peer for an announced document we lack.
    pub(super) fn request_doc<H: Host>(
        &mut self,
        doc: DocId,
        host: &mut H,
        out: &mut Outbox,
    ) -> Result<(), SessionError> {
        if self.docs.closed.contains(&doc) {
            self.inbound.resolve(doc);
            return Ok(());
        }
        let local = host.load_doc(doc)?;
        if local.is_some() && !host.is_shared(doc)? {
            // Exists here but is not the peer's to see: stay silent, as if we had it.
            self.inbound.resolve(doc);
            return Ok(());
        }
        // Asking for a document we hold nothing of states no heads: it claims nothing about
        // what this call stores, so it may go out before the call's writes are durable.
        let early = local.is_none();
        let current = local.unwrap_or_default();
        if self
            .inbound
            .heads(&doc)
            .is_some_and(|h| contains_all(&current, h))
        {
            self.inbound.resolve(doc);
            return Ok(());
        }
        // Restart from the persisted state: an in-memory one may be waiting for a reply that
        // will not come (Automerge suppresses a message while one is in flight and nothing
        // changed locally), and the announcement is new information that needs a message.
        self.docs.active.remove(&doc);
        let mut active = Active::load(host, doc)?;
        match am::generate(&current, &mut active.state) {
            Ok(Some(message)) => {
                if early {
                    self.send_sync_early(doc, message.encode(), out);
                } else {
                    self.send_sync(doc, message.encode(), out);
                }
                self.docs.keep(doc, active, self.config.max_active_docs);
            }
            // Unreachable in practice: a state fresh from storage has not responded yet, and
            // Automerge always answers once. The document stays pending (never skipped).
            Ok(None) => {}
            Err(reason) => self.refuse(doc, reason, out),
        }
        Ok(())
    }

    /// One Automerge sync message from the peer.
    pub(super) fn on_sync<H: Host>(
        &mut self,
        doc: DocId,
        bytes: &[u8],
        host: &mut H,
        out: &mut Outbox,
    ) -> Result<(), SessionError> {
        if self.docs.closed.contains(&doc) {
            return Ok(());
        }
        let shared = host.is_shared(doc)?;
        if !shared && !self.inbound.awaits_new(&doc) {
            self.unavailable(doc, out);
            return Ok(());
        }
        let message = match am::decode_message(bytes) {
            Ok(m) => m,
            Err(reason) => {
                self.refuse(doc, reason, out);
                return Ok(());
            }
        };
        self.docs.note_peer_heads(doc, message.heads.clone());
        let incoming_ack = am::is_pure_ack(&message);
        // The peer acknowledges exactly the heads we hold (the last message of every exchange):
        // there is nothing to apply, store or answer, only the sync state to advance. Decided
        // from the host's heads, without loading the document.
        if shared
            && incoming_ack
            && !self.inbound.is_pending(&doc)
            && host
                .heads(doc)?
                .is_some_and(|ours| am::acknowledges(&message, &ours))
        {
            let mut active = match self.docs.active.remove(&doc) {
                Some(a) => a,
                None => Active::load(host, doc)?,
            };
            am::receive_ack(&mut active.state, message);
            // Settled: the state is dropped from memory once persisted, as below.
            active.persist(host, doc)?;
            return Ok(());
        }
        // The peer holds nothing of a shared document (a first sync): answer with the stored
        // compacted bytes, as Automerge would after a load and a `save()`, without either.
        // Nothing of our sync state changes until the peer acknowledges what it stored (that
        // acknowledgement is taken from the heads index above, as for any other document).
        if shared
            && self.config.snapshot_first_sync
            && am::asks_for_everything(&message)
            && !self.inbound.is_pending(&doc)
            && let Some(snapshot) = host.stored_snapshot(doc)?
            && !snapshot.heads.is_empty()
        {
            self.docs.active.remove(&doc);
            // Stored bytes and stored heads: durable already, so it may go out early.
            let reply = am::whole_doc_message(snapshot.heads, snapshot.bytes);
            self.send_sync_early(doc, reply.encode(), out);
            return Ok(());
        }
        let before = host.load_doc(doc)?;
        if !shared && before.is_some() {
            self.unavailable(doc, out);
            return Ok(());
        }
        let mut active = match self.docs.active.remove(&doc) {
            Some(a) => a,
            None => Active::load(host, doc)?,
        };
        // Apply to a copy; the stored document changes only if the host accepts the result.
        let before_heads = before
            .as_ref()
            .map(Automerge::get_heads)
            .unwrap_or_default();
        // Changes the peer asks for by hash must go again even if this state already sent
        // them: a receiver keeps only what it could apply and store (changes whose
        // dependencies were missing are dropped with the copy), while Automerge assumes sent
        // means kept and would otherwise never resend them.
        for hash in &message.need {
            active.state.sent_hashes.remove(hash);
        }
        // A document new here that the peer sent whole is loaded once, strictly, and its bytes
        // go to the host as received; anything else is applied to a copy of what we hold.
        let preloaded = self
            .docs
            .preloaded
            .remove(&doc)
            .filter(|p| p.raw.as_slice() == bytes);
        let mut prepared = None;
        let whole = if before.is_none() && self.config.snapshot_first_sync {
            match preloaded {
                Some(mut p) => {
                    am::receive_loaded(&mut active.state, &message, &mut p.loaded).then(|| {
                        prepared = p.prepared;
                        let chunk = message.changes.iter().next().unwrap_or_default().to_vec();
                        (p.loaded, chunk)
                    })
                }
                None => am::receive_whole(&mut active.state, &message),
            }
        } else {
            None
        };
        let (after, received) = match whole {
            Some((doc, bytes)) => (doc, Some(bytes)),
            None => {
                let mut after = before.clone().unwrap_or_default();
                if let Err(reason) = am::receive(&mut after, &mut active.state, message) {
                    self.refuse(doc, reason, out);
                    return Ok(());
                }
                (after, None)
            }
        };
        let after_heads = after.get_heads();
        if after_heads != before_heads {
            let update = DocUpdate {
                doc,
                before: before.as_ref(),
                after: &after,
                received: received.as_deref(),
                prepared,
            };
            match host.store_doc(update) {
                Ok(()) => {}
                Err(StoreError::Rejected(reason)) => {
                    self.refuse(doc, reason, out);
                    return Ok(());
                }
                Err(StoreError::Host(e)) => return Err(e.into()),
            }
        }
        active.persist(host, doc)?;
        if self
            .inbound
            .heads(&doc)
            .is_some_and(|h| contains_all(&after, h))
        {
            self.inbound.resolve(doc);
        }
        // A document the peer just introduced is ours to answer about only once the host
        // shares it; before that our copy is empty and a reply reveals nothing.
        if !shared && !after_heads.is_empty() && !host.is_shared(doc)? {
            self.refuse(doc, "document is not shared with you".to_owned(), out);
            return Ok(());
        }
        let settled = active.state.their_heads.as_ref() == Some(&after_heads);
        match am::generate(&after, &mut active.state) {
            // Never acknowledge an acknowledgement: when both sides hold the same heads and
            // neither message moves changes, a reply would only provoke another reply (a fresh
            // state always answers once), and the two sides would ping-pong forever.
            Ok(Some(reply)) if settled && incoming_ack && am::is_pure_ack(&reply) => {}
            Ok(Some(reply)) => self.send_sync(doc, reply.encode(), out),
            Ok(None) => {}
            Err(reason) => {
                self.refuse(doc, reason, out);
                return Ok(());
            }
        }
        // A settled document needs no in-memory state: anything the peer still sends about it
        // is answered from the persisted state, and acknowledgements are not answered.
        if !settled {
            self.docs.keep(doc, active, self.config.max_active_docs);
        }
        Ok(())
    }

    /// Queue a sync message, or close the document if it is too large to carry.
    pub(super) fn send_sync(&mut self, doc: DocId, message: Vec<u8>, out: &mut Outbox) {
        if self.fits(doc, &message, out) {
            out.push(Record::Sync { doc, message });
        }
    }

    /// [`Session::send_sync`] for a message that claims nothing about what this call stores.
    fn send_sync_early(&mut self, doc: DocId, message: Vec<u8>, out: &mut Outbox) {
        if self.fits(doc, &message, out) {
            out.push_early(Record::Sync { doc, message });
        }
    }

    /// Whether a sync message can be carried; if not, the document is closed for the session.
    fn fits(&mut self, doc: DocId, message: &[u8], out: &mut Outbox) -> bool {
        if message.len() > MAX_SYNC_MESSAGE_BYTES {
            let reason = format!(
                "sync message of {} bytes exceeds the {MAX_SYNC_MESSAGE_BYTES}-byte limit",
                message.len()
            );
            self.refuse(doc, reason, out);
            return false;
        }
        true
    }

    /// Stop syncing `doc` for this session and tell the peer why. Nothing of the peer's pending
    /// changes was stored; the in-memory state (which may have seen them) is dropped unsaved.
    pub(super) fn refuse(&mut self, doc: DocId, reason: String, out: &mut Outbox) {
        self.docs.active.remove(&doc);
        self.docs.closed.insert(doc);
        self.inbound.resolve(doc);
        let reason = clamp_reason(&reason);
        out.push(Record::Reject {
            doc,
            reason: reason.clone(),
        });
        self.events.push(Event::Rejected { doc, reason });
    }

    fn unavailable(&mut self, doc: DocId, out: &mut Outbox) {
        self.docs.active.remove(&doc);
        out.push(Record::Unavailable { doc });
    }

    /// The peer closed `doc` for this session.
    pub(super) fn on_peer_reject<H: Host>(
        &mut self,
        doc: DocId,
        reason: String,
        host: &mut H,
    ) -> Result<(), SessionError> {
        // Only documents this session deals in are remembered, so a peer cannot grow the set
        // with made-up ids.
        if self.docs.active.contains_key(&doc)
            || self.inbound.is_pending(&doc)
            || host.is_shared(doc)?
        {
            self.docs.active.remove(&doc);
            self.docs.closed.insert(doc);
            self.inbound.resolve(doc);
            self.events.push(Event::RejectedByPeer { doc, reason });
        }
        Ok(())
    }

    /// The peer cannot give us `doc`.
    pub(super) fn on_unavailable(&mut self, doc: DocId) {
        let known = self.docs.active.remove(&doc).is_some() | self.inbound.resolve(doc);
        if known {
            self.docs.closed.insert(doc);
            self.events.push(Event::Unavailable { doc });
        }
    }
}
