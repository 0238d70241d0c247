//! A small least-recently-used cache of loaded Automerge documents, owned by the writer thread.
//! Bounded so memory follows the working set, not the number of stored conversations.
//!
//! Beside each document it can hold the typed view read from it, tagged with the heads it was
//! read at: reading the view walks every message, so a conversation's writes would otherwise
//! get slower as its thread grows. Invariant: a view is used only while the document's heads
//! equal its tag, so any change that did not update the view (a peer's changes, a rollback)
//! makes it stale, never wrong.

use std::collections::HashMap;

use automerge::ChangeHash;

use super::docs::Loaded;
use crate::domain::Conversation;

struct Entry {
    loaded: Loaded,
    view: Option<(Vec<ChangeHash>, Conversation)>,
    used: u64,
}

pub struct DocCache {
    cap: usize,
    tick: u64,
    docs: HashMap<u128, Entry>,
}

impl DocCache {
    pub fn new(cap: usize) -> Self {
        DocCache {
            cap: cap.max(1),
            tick: 0,
            docs: HashMap::new(),
        }
    }

    pub fn get_mut(&mut self, id: u128) -> Option<&mut Loaded> {
        self.tick += 1;
        let t = self.tick;
        self.docs.get_mut(&id).map(|e| {
            e.used = t;
            &mut e.loaded
        })
    }

    /// The cached view of document `id`, if it was read at the document's current heads.
    pub fn view(&mut self, id: u128) -> Option<Conversation> {
        let e = self.docs.get_mut(&id)?;
        let heads = e.loaded.doc.get_heads();
        match &e.view {
            Some((at, v)) if *at == heads => Some(v.clone()),
            _ => None,
        }
    }

    /// Remembers `view` as what document `id` reads as at its current heads.
    pub fn set_view(&mut self, id: u128, view: Conversation) {
        if let Some(e) = self.docs.get_mut(&id) {
            e.view = Some((e.loaded.doc.get_heads(), view));
        }
    }

    pub fn insert(&mut self, id: u128, doc: Loaded) -> &mut Loaded {
        if self.docs.len() >= self.cap && !self.docs.contains_key(&id) {
            // O(n) eviction over a bounded map: simple, and rare relative to hits.
            if let Some(oldest) = self
                .docs
                .iter()
                .min_by_key(|(_, e)| e.used)
                .map(|(k, _)| *k)
            {
                self.docs.remove(&oldest);
            }
        }
        self.tick += 1;
        let t = self.tick;
        let slot = self.docs.entry(id).insert_entry(Entry {
            loaded: doc,
            view: None,
            used: t,
        });
        &mut slot.into_mut().loaded
    }

    pub fn remove(&mut self, id: u128) {
        self.docs.remove(&id);
    }

    pub fn len(&self) -> usize {
        self.docs.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_least_recently_used() {
        let mut c = DocCache::new(2);
        c.insert(1, Loaded::new(automerge::AutoCommit::new()));
        c.insert(2, Loaded::new(automerge::AutoCommit::new()));
        assert!(c.get_mut(1).is_some());
        c.insert(3, Loaded::new(automerge::AutoCommit::new()));
        assert_eq!(c.len(), 2);
        assert!(c.get_mut(2).is_none(), "2 was least recently used");
        assert!(c.get_mut(1).is_some() && c.get_mut(3).is_some());
    }
}
