//! Announcing our feed to the peer: the catch-up after HELLO and live changes afterwards.
//!
//! The pump reads the host's feed from where this session last announced, in pages, and sends
//! FEED records covering contiguous ranges. At most `Config::window` announced entries may be
//! unconfirmed (above the peer's last ACK); that bounds the memory both sides spend per session
//! however large the backlog is.

use std::collections::VecDeque;

use super::Session;
use crate::error::{ProtocolError, SessionError};
use crate::host::Host;
use crate::ids::DocId;
use crate::outbox::{FEED_RECORD_TARGET_BYTES, Outbox, entry_bytes};
use crate::wire::{MAX_FEED_ENTRIES, MAX_HEADS};

#[derive(Default)]
pub(super) struct Outbound {
    /// End of the range of our feed announced to the peer this session.
    pub(super) announced_to: u64,
    /// Seqs of announced entries above `peer_acked`, ascending.
    unacked: VecDeque<u64>,
    /// The peer's cursor into our feed, as it last told us.
    pub(super) peer_acked: u64,
    /// Our feed's end when last read.
    pub(super) local_high: u64,
    /// The peer resumed from a cursor into our feed (not from the start): some documents after
    /// it may have reached it on an earlier link, before the link was cut.
    resuming: bool,
}

impl Outbound {
    /// The peer's HELLO placed it at `start` in our feed; `trusted`: nothing says it lost part
    /// of its store since it last acknowledged.
    pub(super) fn begin(&mut self, start: u64, trusted: bool) {
        *self = Outbound {
            announced_to: start,
            peer_acked: start,
            local_high: self.local_high,
            resuming: start > 0 && trusted,
            ..Outbound::default()
        };
    }

    pub(super) fn on_ack(&mut self, cursor: u64) -> Result<(), ProtocolError> {
        if cursor > self.announced_to {
            return Err(ProtocolError::AckBeyondAnnounced {
                ack: cursor,
                announced: self.announced_to,
            });
        }
        self.peer_acked = self.peer_acked.max(cursor);
        while self.unacked.front().is_some_and(|&s| s <= cursor) {
            self.unacked.pop_front();
        }
        Ok(())
    }

    pub(super) fn unacked(&self) -> usize {
        self.unacked.len()
    }
}

impl Session {
    /// Announce what our feed gained since the last announcement, while the window has room.
    pub(super) fn pump<H: Host>(
        &mut self,
        host: &mut H,
        out: &mut Outbox,
    ) -> Result<(), SessionError> {
        if self.peer.is_none() {
            return Ok(());
        }
        self.outbound.local_high = host.feed_high()?;
        let page_limit = self.config.feed_page.max(1);
        while self.outbound.unacked.len() < self.config.window {
            let since = self.outbound.announced_to;
            let page = host.feed_since(since, page_limit)?;
            if page.scanned_to <= since {
                break;
            }
            let mut from = since;
            let mut batch = Vec::new();
            let mut batch_bytes = 0;
            let mut live = Vec::new();
            let mut last_seq = since;
            for mut e in page.entries {
                // The host's page must stay inside the range it claims to cover, in order.
                if e.seq <= last_seq || e.seq > page.scanned_to {
                    continue;
                }
                last_seq = e.seq;
                // Isolation is checked at every send point, not only inside `feed_since`.
                if !host.is_shared(e.doc)? {
                    continue;
                }
                // The peer told us this session that it holds exactly these heads.
                if self.docs.peer_heads.get(&e.doc) == Some(&e.heads) {
                    continue;
                }
                // Resuming: the peer acknowledged exactly these heads on an earlier link. Its
                // cursor cannot pass a position whose document is still missing, so after a
                // cut it lies below documents it already holds; announcing those again costs
                // an entry each (and a frame of them per cut) for nothing.
                if self.outbound.resuming && self.peer_acknowledged(host, e.doc, &e.heads)? {
                    continue;
                }
                if e.heads.len() > MAX_HEADS {
                    e.heads.clear();
                }
                let size = entry_bytes(&e);
                if !batch.is_empty()
                    && (batch.len() == MAX_FEED_ENTRIES
                        || batch_bytes + size > FEED_RECORD_TARGET_BYTES)
                {
                    let to = batch_end(&batch);
                    out.feed(from, to, std::mem::take(&mut batch));
                    from = to;
                    batch_bytes = 0;
                }
                self.outbound.unacked.push_back(e.seq);
                if self.docs.active.contains_key(&e.doc) {
                    live.push(e.doc);
                }
                batch_bytes += size;
                batch.push(e);
            }
            out.feed(from, page.scanned_to, batch);
            self.outbound.announced_to = page.scanned_to;
            for doc in live {
                self.push_doc(doc, host, out)?;
            }
        }
        Ok(())
    }

    /// Whether our persisted sync state for `doc` says the peer holds exactly `heads`. A state
    /// is persisted only from what the peer said it holds, and a peer states its heads only
    /// once they are durable there (it sends after its commit). A peer restored from a backup
    /// starts from the beginning of our feed, and one whose feed went back is not trusted
    /// (`Session::on_hello`), where this is not asked; a peer whose store was rolled back
    /// without either sign would miss the documents skipped here until they change again.
    fn peer_acknowledged<H: Host>(
        &mut self,
        host: &mut H,
        doc: DocId,
        heads: &[automerge::ChangeHash],
    ) -> Result<bool, SessionError> {
        if heads.is_empty() || self.docs.active.contains_key(&doc) {
            return Ok(false);
        }
        let Some(saved) = host.load_sync_state(doc)? else {
            return Ok(false);
        };
        let mut shared = crate::am::state_from(&saved).shared_heads;
        let mut ours = heads.to_vec();
        shared.sort();
        ours.sort();
        Ok(shared == ours)
    }

    /// A document we share changed while an exchange about it is open: send the changes now
    /// instead of waiting for the peer to ask.
    fn push_doc<H: Host>(
        &mut self,
        doc: DocId,
        host: &mut H,
        out: &mut Outbox,
    ) -> Result<(), SessionError> {
        let Some(current) = host.load_doc(doc)? else {
            return Ok(());
        };
        let Some(active) = self.docs.active.get_mut(&doc) else {
            return Ok(());
        };
        match crate::am::generate(&current, &mut active.state) {
            Ok(Some(message)) => self.send_sync(doc, message.encode(), out),
            Ok(None) => {}
            Err(reason) => self.refuse(doc, reason, out),
        }
        Ok(())
    }
}

fn batch_end(batch: &[crate::wire::FeedEntry]) -> u64 {
    batch.last().map_or(0, |e| e.seq)
}
