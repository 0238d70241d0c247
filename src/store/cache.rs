//! A small least-recently-used cache of loaded Automerge documents, owned by the writer thread.
//! Bounded so memory follows the working set, not the number of stored conversations.

use std::collections::HashMap;

use super::docs::Loaded;

pub struct DocCache {
    cap: usize,
    tick: u64,
    docs: HashMap<u128, (Loaded, u64)>,
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
        self.docs.get_mut(&id).map(|(d, used)| {
            *used = t;
            d
        })
    }

    pub fn insert(&mut self, id: u128, doc: Loaded) -> &mut Loaded {
        if self.docs.len() >= self.cap && !self.docs.contains_key(&id) {
            // O(n) eviction over a bounded map: simple, and rare relative to hits.
            if let Some(oldest) = self
                .docs
                .iter()
                .min_by_key(|(_, (_, t))| *t)
                .map(|(k, _)| *k)
            {
                self.docs.remove(&oldest);
            }
        }
        self.tick += 1;
        let t = self.tick;
        let slot = self.docs.entry(id).or_insert((doc, t));
        slot.1 = t;
        &mut slot.0
    }

    pub fn remove(&mut self, id: u128) {
        self.docs.remove(&id);
    }

    #[cfg(test)]
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
