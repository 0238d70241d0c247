//! Our position in the peer's feed: which announced documents are still missing here, and how
//! far the cursor may safely move.
//!
//! Invariant: the cursor never passes a feed position whose document is not yet applied and
//! durable here (or deliberately closed for the session: rejected, unavailable, unshared). It is
//! `min(announced_to, lowest pending seq - 1)`, so a cut connection resumes at the first
//! document not yet delivered and never skips one.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use automerge::ChangeHash;

use crate::ids::DocId;

struct Pending {
    seq: u64,
    heads: Vec<ChangeHash>,
    /// We have sent a sync message asking for it.
    requested: bool,
    /// The document did not exist here when announced: the peer is introducing it.
    missing: bool,
}

#[derive(Default)]
pub(super) struct Inbound {
    /// The peer's feed incarnation our cursor refers to.
    pub(super) feed_id: u64,
    /// The last cursor persisted through the host.
    pub(super) saved: u64,
    /// End of the contiguous range of the peer's feed announced to us this session.
    pub(super) announced_to: u64,
    pending: BTreeMap<DocId, Pending>,
    by_seq: BTreeSet<(u64, DocId)>,
    /// Pending documents waiting for a free request slot, in announcement order. May hold ids
    /// already resolved or requested; those are skipped when popped.
    queue: VecDeque<DocId>,
    requested: usize,
}

impl Inbound {
    /// Start from a persisted cursor; everything pending is forgotten.
    pub(super) fn reset(&mut self, feed_id: u64, seq: u64) {
        *self = Inbound {
            feed_id,
            saved: seq,
            announced_to: seq,
            ..Inbound::default()
        };
    }

    /// Track an announced document this node lacks. Returns true when a request for an older
    /// announcement of it is already out, so the caller must ask again for the newer heads.
    pub(super) fn insert(
        &mut self,
        doc: DocId,
        seq: u64,
        heads: Vec<ChangeHash>,
        missing: bool,
    ) -> bool {
        let mut requested = false;
        if let Some(old) = self.pending.remove(&doc) {
            self.by_seq.remove(&(old.seq, doc));
            requested = old.requested;
        }
        if !requested {
            self.queue.push_back(doc);
        }
        self.by_seq.insert((seq, doc));
        self.pending.insert(
            doc,
            Pending {
                seq,
                heads,
                requested,
                missing,
            },
        );
        requested
    }

    /// The document is applied (or closed for the session): stop tracking it.
    pub(super) fn resolve(&mut self, doc: DocId) -> bool {
        match self.pending.remove(&doc) {
            Some(p) => {
                self.by_seq.remove(&(p.seq, doc));
                if p.requested {
                    self.requested -= 1;
                }
                true
            }
            None => false,
        }
    }

    /// Next queued document to request, if fewer than `max` requests are out.
    pub(super) fn next_to_request(&mut self, max: usize) -> Option<DocId> {
        while self.requested < max {
            let doc = self.queue.pop_front()?;
            if let Some(p) = self.pending.get_mut(&doc)
                && !p.requested
            {
                p.requested = true;
                self.requested += 1;
                return Some(doc);
            }
        }
        None
    }

    pub(super) fn heads(&self, doc: &DocId) -> Option<&[ChangeHash]> {
        self.pending.get(doc).map(|p| p.heads.as_slice())
    }

    pub(super) fn is_pending(&self, doc: &DocId) -> bool {
        self.pending.contains_key(doc)
    }

    /// We asked the peer for a document it introduced: its content may be accepted even though
    /// the host does not (yet) list it as shared.
    pub(super) fn awaits_new(&self, doc: &DocId) -> bool {
        self.pending
            .get(doc)
            .is_some_and(|p| p.missing && p.requested)
    }

    /// We asked for this document, which the peer announced and we did not hold.
    pub(super) fn asked_new(&self, doc: &DocId) -> bool {
        self.pending
            .get(doc)
            .is_some_and(|p| p.missing && p.requested)
    }

    pub(super) fn len(&self) -> usize {
        self.pending.len()
    }

    /// How far the cursor may be moved now.
    pub(super) fn cursor(&self) -> u64 {
        match self.by_seq.first() {
            Some((seq, _)) => self.announced_to.min(seq - 1),
            None => self.announced_to,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(n: u8) -> DocId {
        DocId([n; 16])
    }

    #[test]
    fn cursor_waits_for_the_lowest_pending_document() {
        let mut i = Inbound::default();
        i.reset(9, 10);
        i.insert(d(1), 12, vec![], false);
        i.insert(d(2), 15, vec![], false);
        i.announced_to = 20;
        assert_eq!(i.cursor(), 11);
        i.resolve(d(2));
        assert_eq!(i.cursor(), 11);
        i.resolve(d(1));
        assert_eq!(i.cursor(), 20);
    }

    #[test]
    fn reannouncement_moves_the_document_later() {
        let mut i = Inbound::default();
        i.insert(d(1), 3, vec![], false);
        i.announced_to = 5;
        assert_eq!(i.next_to_request(8), Some(d(1)));
        assert!(
            i.insert(d(1), 7, vec![], false),
            "request is out: ask again"
        );
        i.announced_to = 8;
        assert_eq!(i.cursor(), 6);
        assert_eq!(i.next_to_request(8), None, "still counted as requested");
        i.resolve(d(1));
        assert_eq!(i.cursor(), 8);
        assert_eq!(i.requested, 0);
    }

    #[test]
    fn requests_are_capped() {
        let mut i = Inbound::default();
        for n in 0..5 {
            i.insert(d(n), u64::from(n) + 1, vec![], true);
        }
        assert_eq!(i.next_to_request(2), Some(d(0)));
        assert_eq!(i.next_to_request(2), Some(d(1)));
        assert_eq!(i.next_to_request(2), None);
        assert!(i.awaits_new(&d(0)) && !i.awaits_new(&d(3)));
        i.resolve(d(0));
        assert_eq!(i.next_to_request(2), Some(d(2)));
    }
}
