//! The engine's questions to this node ([`parley_sync::Host`]), answered for one peer. Every
//! path asks [`SyncHost::visible`] first where a team document could be meant.

use automerge::{Automerge, ChangeHash};
use parley_sync::{
    BlobStored, BlobWant, Cursor, DocId, DocUpdate, FeedPage, Host, HostError, Presence, Snapshot,
    StoreError as Refusal,
};
use redb::ReadableTable;

use super::super::index::decode_heads;
use super::super::tables::*;
use super::super::{StoreError, docs, peers};
use super::*;

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

    fn stored_snapshot(&mut self, doc: DocId) -> Result<Option<Snapshot>, HostError> {
        let id = uid(doc);
        if !self.visible(id)
            || is_team_id(id)
            || self.damaged.contains(&id)
            || self.pending.docs.contains_key(&id)
        {
            return Ok(None);
        }
        docs::snapshot(&self.rtx, id)
            .map(|s| s.map(|(bytes, heads)| Snapshot { bytes, heads }))
            .map_err(h)
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

    fn store_doc(&mut self, mut update: DocUpdate<'_>) -> Result<(), Refusal> {
        // A full disk takes nothing, and says so without ending the session (which would
        // reconnect and fail again); the peer's changes are fetched again on a later session.
        // The reason names no local path: it goes to the peer.
        if let Err(e) = self.store.check_space() {
            let space = self.store.space();
            space.warn_refused(&e, "a peer's changes");
            space.refused_peer(self.scope.peer.node_id);
            return Err(Refusal::Rejected(
                "the receiving node's disk is full; these changes are fetched again once it has space"
                    .into(),
            ));
        }
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
        // Worked out on a loading thread for a document new here; only then does it describe
        // exactly `after` with nothing before it.
        let prepared = match (update.before, update.prepared.take()) {
            (None, Some(p)) => p.downcast::<PreparedDoc>().ok(),
            _ => None,
        };
        let (view, sizes, words) = match prepared {
            Some(p) => (p.view, Some(p.change_sizes), p.words),
            None => (
                doc::read_strict(update.after).map_err(|e| e.to_string()),
                None,
                None,
            ),
        };
        let added = self.check_size(&update, id, sizes.as_deref())?;
        let after = view.map_err(|e| {
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
            .admit(before.as_ref(), &after, &self.authority)
            .map_err(|v| Refusal::Rejected(v.to_string()))?;
        if let Authority::Recovery { partner, .. } = &self.authority {
            self.recovered_files_unknown_here(before.as_ref(), &after, partner)?;
        }
        let base = match self.pending.docs.get(&id) {
            Some(r) => r.base.clone(),
            None => update.before.map(|b| b.get_heads()).unwrap_or_default(),
        };
        if !self.pending.docs.contains_key(&id) {
            self.pending.order.push(id);
        }
        self.pending.bytes += added;
        // Kept as received only for a conversation new here (the flush stores it as its first
        // full save); merged into one we hold, it is saved from the merged copy.
        // Automerge's loader skips columns it does not know, so a document chunk can carry
        // bytes that load to nothing, beyond the changes the size limits counted. The bytes
        // as received are kept only within twice those changes (a compacted save of a short
        // conversation can be a little larger than its raw changes; a padded one is not
        // kept: it is saved afresh, which holds exactly what was judged), and what is kept
        // counts against the peer's daily quota at its stored size.
        let (bytes, words) = match (update.before, &base[..]) {
            (None, []) => (
                update
                    .received
                    .filter(|b| b.len() as u64 <= 2 * added + 1024)
                    .map(<[u8]>::to_vec),
                words,
            ),
            _ => (None, None),
        };
        if let Some(b) = &bytes {
            self.pending.bytes += (b.len() as u64).saturating_sub(added);
        }
        let received = Received {
            base,
            doc: update.after.clone(),
            view: after,
            bytes,
            words,
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

    fn blobs_wanted(
        &mut self,
        limit: usize,
        exclude: &[[u8; 32]],
    ) -> Result<Vec<BlobWant>, HostError> {
        self.wanted_files(limit, exclude)
    }

    fn blob_chunk(
        &mut self,
        file: &[u8; 32],
        index: u32,
    ) -> Result<Option<(u64, Vec<u8>)>, HostError> {
        self.serve_chunk(file, index)
    }

    fn store_blob_chunk(
        &mut self,
        file: &[u8; 32],
        index: u32,
        bytes: Vec<u8>,
    ) -> Result<BlobStored, HostError> {
        self.keep_chunk(file, index, bytes)
    }

    fn blob_released(&mut self, file: &[u8; 32]) {
        self.store.release_blob(file, self.scope.peer.node_id);
    }
}
