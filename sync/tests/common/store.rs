//! An in-memory node: documents (as saved bytes, so nothing is shared by reference), a changes
//! feed, per-peer cursors and sync states, and the write rule "participants never change and
//! include both the sender's org and ours". A `PeerView` is the node as one peer's session sees it.

use std::collections::BTreeMap;

use automerge::{ActorId, Automerge, ChangeHash, ReadDoc};
use parley_sync::{
    Cursor, DocId, DocUpdate, FeedEntry, FeedPage, Host, HostError, Presence, StoreError,
    contains_all,
};

use super::docs::{append_message, forge_participants, new_conversation, participants};

pub struct StoredDoc {
    /// Kept loaded to make the simulation fast; `put` makes it match what a store that saves
    /// bytes would hold (no queued changes).
    pub doc: Automerge,
    pub heads: Vec<ChangeHash>,
    pub participants: Vec<String>,
}

/// Everything a node persists.
pub struct Node {
    pub name: String,
    pub org: String,
    pub actor: ActorId,
    pub feed_id: u64,
    pub docs: BTreeMap<DocId, StoredDoc>,
    feed: BTreeMap<u64, DocId>,
    doc_seq: BTreeMap<DocId, u64>,
    pub high: u64,
    pub cursors: BTreeMap<String, Cursor>,
    pub sync_states: BTreeMap<(String, DocId), Vec<u8>>,
    /// Count of `store_doc` calls that stored (for "nothing was resent" assertions).
    pub stores: usize,
    /// Documents stored through sync, per document.
    pub stored_docs: BTreeMap<DocId, usize>,
    /// Documents loaded through a `PeerView` (for "answered without loading" assertions).
    pub loads: usize,
    /// Doc ids this node ever received in a frame (filled by the simulation).
    pub seen_ids: std::collections::BTreeSet<DocId>,
    /// When set, each durable write fails (before writing anything) with this percent chance,
    /// like a crash between two writes of one session call.
    pub write_faults: Option<(super::Rng, u32)>,
}

impl Node {
    pub fn new(name: &str, org: &str, actor_byte: u8, feed_id: u64) -> Self {
        Node {
            name: name.to_owned(),
            org: org.to_owned(),
            actor: ActorId::from([actor_byte; 16]),
            feed_id,
            docs: BTreeMap::new(),
            feed: BTreeMap::new(),
            doc_seq: BTreeMap::new(),
            high: 0,
            cursors: BTreeMap::new(),
            sync_states: BTreeMap::new(),
            stores: 0,
            stored_docs: BTreeMap::new(),
            loads: 0,
            seen_ids: Default::default(),
            write_faults: None,
        }
    }

    pub fn host<'a>(&'a mut self, peer: &'a str, peer_org: &'a str) -> PeerView<'a> {
        PeerView {
            node: self,
            peer,
            peer_org,
        }
    }

    pub fn load(&self, doc: DocId) -> Option<Automerge> {
        self.docs.get(&doc).map(|d| d.doc.clone())
    }

    pub fn heads(&self, doc: DocId) -> Option<Vec<ChangeHash>> {
        self.docs.get(&doc).map(|d| d.heads.clone())
    }

    /// Write `doc` and append it to the feed (one "transaction").
    pub fn put(&mut self, id: DocId, doc: &Automerge) {
        let (_, parts) = participants(doc).expect("valid participants");
        // A real store persists `save()` bytes, which drop changes Automerge queued for missing
        // dependencies. Round-trip only when there is such a queue; otherwise a clone is equal.
        let doc = if doc.get_missing_deps(&[]).is_empty() {
            doc.clone()
        } else {
            Automerge::load(&doc.save()).expect("saved doc loads")
        };
        self.docs.insert(
            id,
            StoredDoc {
                heads: doc.get_heads(),
                doc,
                participants: parts,
            },
        );
        if let Some(old) = self.doc_seq.remove(&id) {
            self.feed.remove(&old);
        }
        self.high += 1;
        self.feed.insert(self.high, id);
        self.doc_seq.insert(id, self.high);
    }

    pub fn create(&mut self, id: DocId, partner_org: &str, subject: &str) {
        let org = self.org.clone();
        let doc = new_conversation(&self.actor, [&org, partner_org], subject);
        self.put(id, &doc);
    }

    pub fn append(&mut self, id: DocId, msg_id: &str, body: &str) {
        let mut doc = self.load(id).expect("append to a stored doc");
        let (actor, org) = (self.actor.clone(), self.org.clone());
        append_message(&mut doc, &actor, msg_id, &org, body);
        self.put(id, &doc);
    }

    /// A rogue local write that peers must refuse.
    pub fn forge(&mut self, id: DocId) {
        let mut doc = self.load(id).expect("forge a stored doc");
        forge_participants(&mut doc, &self.actor.clone(), "intruder");
        self.put(id, &doc);
    }

    fn injected_fault(&mut self) -> Result<(), HostError> {
        if let Some((rng, percent)) = &mut self.write_faults
            && rng.chance(*percent)
        {
            return Err(HostError::transient("injected write failure"));
        }
        Ok(())
    }

    fn shared_with(&self, doc: &DocId, org: &str) -> bool {
        self.docs
            .get(doc)
            .is_some_and(|d| d.participants.iter().any(|p| p == org))
    }
}

pub struct PeerView<'a> {
    node: &'a mut Node,
    peer: &'a str,
    peer_org: &'a str,
}

impl Host for PeerView<'_> {
    fn feed_id(&mut self) -> u64 {
        self.node.feed_id
    }

    fn feed_high(&mut self) -> Result<u64, HostError> {
        Ok(self.node.high)
    }

    fn feed_since(&mut self, since: u64, limit: usize) -> Result<FeedPage, HostError> {
        let mut entries = Vec::new();
        for (&seq, doc) in self.node.feed.range(since + 1..) {
            if !self.node.shared_with(doc, self.peer_org) {
                continue;
            }
            entries.push(FeedEntry {
                seq,
                doc: *doc,
                heads: self.node.docs[doc].heads.clone(),
            });
            if entries.len() == limit {
                return Ok(FeedPage {
                    entries,
                    scanned_to: seq,
                });
            }
        }
        Ok(FeedPage {
            entries,
            scanned_to: self.node.high.max(since),
        })
    }

    fn is_shared(&mut self, doc: DocId) -> Result<bool, HostError> {
        Ok(self.node.shared_with(&doc, self.peer_org))
    }

    fn load_doc(&mut self, doc: DocId) -> Result<Option<Automerge>, HostError> {
        let d = self.node.load(doc);
        self.node.loads += usize::from(d.is_some());
        Ok(d)
    }

    fn heads(&mut self, doc: DocId) -> Result<Option<Vec<ChangeHash>>, HostError> {
        Ok(self.node.heads(doc))
    }

    fn has_heads(&mut self, doc: DocId, heads: &[ChangeHash]) -> Result<Presence, HostError> {
        match self.node.docs.get(&doc) {
            None => Ok(Presence::Missing),
            Some(d) if !heads.is_empty() && d.heads == heads => Ok(Presence::Has),
            Some(_) => {
                let loaded = self.node.load(doc).expect("present");
                Ok(if contains_all(&loaded, heads) {
                    Presence::Has
                } else {
                    Presence::Lacks
                })
            }
        }
    }

    fn store_doc(&mut self, update: DocUpdate<'_>) -> Result<(), StoreError> {
        self.node.injected_fault()?;
        let Some((after_list, after_parts)) = participants(update.after) else {
            return Err(StoreError::Rejected(
                "participants must be one list of org names".into(),
            ));
        };
        match update.before {
            Some(before) => {
                let before_parts = participants(before).expect("stored doc is valid");
                if before_parts != (after_list, after_parts.clone()) {
                    return Err(StoreError::Rejected(
                        "participants cannot change after creation".into(),
                    ));
                }
            }
            None => {
                let has = |o: &str| after_parts.iter().any(|p| p == o);
                if after_parts.len() != 2 || !has(&self.node.org) || !has(self.peer_org) {
                    return Err(StoreError::Rejected(
                        "a new conversation must be between your org and ours".into(),
                    ));
                }
            }
        }
        let id = update.doc;
        self.node.put(id, update.after);
        self.node.stores += 1;
        *self.node.stored_docs.entry(id).or_default() += 1;
        Ok(())
    }

    fn load_sync_state(&mut self, doc: DocId) -> Result<Option<Vec<u8>>, HostError> {
        Ok(self
            .node
            .sync_states
            .get(&(self.peer.to_owned(), doc))
            .cloned())
    }

    fn save_sync_state(&mut self, doc: DocId, state: &[u8]) -> Result<(), HostError> {
        self.node.injected_fault()?;
        self.node
            .sync_states
            .insert((self.peer.to_owned(), doc), state.to_vec());
        Ok(())
    }

    fn load_cursor(&mut self) -> Result<Option<Cursor>, HostError> {
        Ok(self.node.cursors.get(self.peer).copied())
    }

    fn save_cursor(&mut self, cursor: Cursor) -> Result<(), HostError> {
        self.node.injected_fault()?;
        self.node.cursors.insert(self.peer.to_owned(), cursor);
        Ok(())
    }
}
