//! Files for one peer's session: which this node fetches from the peer, what it serves to it,
//! and checking a fetched file whole before it is published.
//!
//! The one rule: a file goes to a peer only if a document that refers to it is shared with
//! that peer ([`SyncHost::shared_id`], the same decision as for the document itself, so a
//! file on a partner's conversation never reaches another partner, and a file referred to
//! only by our own team documents never reaches a partner at all) — and, for a partner, only
//! if the reference is in a message of *our* org: a partner cannot get a file by writing a
//! reference to its hash. Likewise a partner is asked for a file only if its own org's
//! message refers to it. Our own sites may have and ask for any of them.

use std::collections::HashMap;

use parley_sync::{BlobStored, BlobWant, HostError};
use sha2::{Digest, Sha256};

use super::super::blobs::{self, Hash, Received};
use super::{Audience, SyncHost, h};
use crate::domain::attachment::{self, TextCheck};

/// Wanted files looked at per call, at most: the rest wait for a later call.
const SCAN: usize = 1024;

/// A fetch as this call sees it: its storage key and size, and the next chunk it takes.
#[derive(Clone, Copy)]
pub(super) struct Fetching {
    key: Hash,
    size: u64,
    next: u32,
}

#[derive(Default)]
pub(super) struct BlobCalls {
    /// Whether each file may go to the peer (`true`) or be asked of it (`false`), by file.
    decided: HashMap<(Hash, bool), bool>,
    /// Fetches started or extended in this call (their writes are in `Pending::blobs`).
    fetching: HashMap<Hash, Fetching>,
    /// Files completed or dropped in this call: the snapshot still lists them as wanted until
    /// the flush, and must not start them again.
    settled: std::collections::HashSet<Hash>,
}

impl SyncHost<'_> {
    /// Whether `file` may go to this peer (`serve`) or be asked of it (`!serve`): a document
    /// shared with the peer refers to it, in a message of the right org (module docs).
    fn file_for_peer(&mut self, file: &Hash, serve: bool) -> Result<bool, HostError> {
        if let Some(v) = self.blob_calls.decided.get(&(*file, serve)) {
            return Ok(*v);
        }
        let needed = match (&self.audience, serve) {
            (Audience::OwnSite, _) => blobs::OURS | blobs::THEIRS,
            (Audience::Partner(_), true) => blobs::OURS,
            (Audience::Partner(_), false) => blobs::THEIRS,
        };
        let mut ok = false;
        for (doc, who) in blobs::refs_of(&self.rtx, file).map_err(h)? {
            if who & needed != 0 && self.shared_id(doc)? {
                ok = true;
                break;
            }
        }
        self.blob_calls.decided.insert((*file, serve), ok);
        Ok(ok)
    }

    pub(super) fn wanted_files(
        &mut self,
        limit: usize,
        exclude: &[[u8; 32]],
    ) -> Result<Vec<BlobWant>, HostError> {
        let max = self.store.attachment_rules().max_bytes;
        let peer = self.scope.peer.node_id;
        let mut out = Vec::new();
        let mut after = None;
        let mut scanned = 0;
        while out.len() < limit && scanned < SCAN {
            let page = blobs::wanted(&self.rtx, after, 64).map_err(h)?;
            let Some(last) = page.last() else { break };
            after = Some(last.0);
            scanned += page.len();
            for (file, size) in page {
                if out.len() >= limit
                    || size > max
                    || exclude.contains(&file)
                    || self.blob_calls.settled.contains(&file)
                    || !self.file_for_peer(&file, false)?
                    || !self.store.claim_blob(&file, peer)
                {
                    continue;
                }
                if !self.store.room_for(size) {
                    self.store.release_blob(&file, peer);
                    self.store.note_low_space(size);
                    continue;
                }
                let meta = blobs::meta(&self.rtx, &file).map_err(h)?;
                let f = match meta {
                    Some(m) if m.complete => {
                        self.store.release_blob(&file, peer);
                        continue;
                    }
                    // A fetch cut earlier resumes at its first missing chunk.
                    Some(m) if m.size == size => Fetching {
                        key: m.key,
                        size,
                        next: m.next,
                    },
                    _ => {
                        let key = blobs::new_key();
                        self.pending.blobs.push(Received::Begin {
                            hash: file,
                            key,
                            size,
                        });
                        Fetching { key, size, next: 0 }
                    }
                };
                self.blob_calls.fetching.insert(file, f);
                out.push(BlobWant {
                    file,
                    size,
                    next: f.next,
                });
            }
        }
        Ok(out)
    }

    pub(super) fn serve_chunk(
        &mut self,
        file: &Hash,
        index: u32,
    ) -> Result<Option<(u64, Vec<u8>)>, HostError> {
        let Some(m) = blobs::present(&self.rtx, file).map_err(h)? else {
            return Ok(None);
        };
        if !self.file_for_peer(file, true)? {
            return Ok(None);
        }
        // A chunk that cannot be read is "not here" for the peer, not the end of the link: the
        // documents keep syncing, and `parley check` names the file.
        match blobs::read_chunk(&self.rtx, &m.key, index) {
            Ok(c) => Ok(c.map(|c| (m.size, c))),
            Err(e) => {
                tracing::error!(file = %hex::encode(file), error = %e, "a chunk of a file cannot be read; run `parley check`");
                Ok(None)
            }
        }
    }

    /// The fetch of `file` as it stands, with this call's chunks counted.
    fn fetch_of(&mut self, file: &Hash) -> Result<Option<Fetching>, HostError> {
        if let Some(f) = self.blob_calls.fetching.get(file) {
            return Ok(Some(*f));
        }
        Ok(blobs::meta(&self.rtx, file)
            .map_err(h)?
            .filter(|m| !m.complete)
            .map(|m| Fetching {
                key: m.key,
                size: m.size,
                next: m.next,
            }))
    }

    pub(super) fn keep_chunk(
        &mut self,
        file: &Hash,
        index: u32,
        bytes: Vec<u8>,
    ) -> Result<BlobStored, HostError> {
        let Some(mut f) = self.fetch_of(file)? else {
            return Ok(BlobStored::Refused(
                "no fetch of this file is under way here".into(),
            ));
        };
        if index != f.next || bytes.len() != attachment::chunk_len(f.size, index) {
            return Ok(BlobStored::Refused(format!(
                "chunk {index} does not continue the file here (chunk {} is next)",
                f.next
            )));
        }
        self.pending.blobs.push(Received::Chunk {
            hash: *file,
            idx: index,
            bytes,
        });
        f.next += 1;
        self.blob_calls.fetching.insert(*file, f);
        if f.next < attachment::chunk_count(f.size) {
            return Ok(BlobStored::Stored);
        }
        match self.verify(file, &f)? {
            Ok(mime) => {
                self.pending.blobs.push(Received::Complete {
                    hash: *file,
                    mime: mime.to_string(),
                });
                self.blob_calls.fetching.remove(file);
                self.blob_calls.settled.insert(*file);
                Ok(BlobStored::Complete)
            }
            Err((reason, wrong_bytes)) => {
                // Wrong bytes may come right from another peer; a kind we do not take never
                // will, so it is not fetched again.
                self.pending.blobs.push(if wrong_bytes {
                    Received::Reset { hash: *file }
                } else {
                    Received::Refuse { hash: *file }
                });
                self.blob_calls.fetching.remove(file);
                self.blob_calls.settled.insert(*file);
                tracing::warn!(
                    peer = %self.scope.peer.node_id,
                    file = %hex::encode(file),
                    %reason,
                    "dropped a file fetched from a peer"
                );
                Ok(BlobStored::Refused(reason))
            }
        }
    }

    /// Hashes every chunk of a fetched file (stored ones and this call's), and recognises its
    /// kind as an upload's would be: the file is published only if both pass.
    /// The file's type, or why not and whether it was the bytes that were wrong.
    fn verify(
        &self,
        file: &Hash,
        f: &Fetching,
    ) -> Result<Result<&'static str, (String, bool)>, HostError> {
        let here: HashMap<u32, &Vec<u8>> = self
            .pending
            .blobs
            .iter()
            .filter_map(|r| match r {
                Received::Chunk { hash, idx, bytes } if hash == file => Some((*idx, bytes)),
                _ => None,
            })
            .collect();
        let mut sha = Sha256::new();
        let mut text = TextCheck::default();
        let mut head = Vec::new();
        for idx in 0..attachment::chunk_count(f.size) {
            let stored;
            let chunk: &[u8] = match here.get(&idx) {
                Some(b) => b,
                None => match blobs::read_chunk(&self.rtx, &f.key, idx).map_err(h)? {
                    Some(b) => {
                        stored = b;
                        &stored
                    }
                    None => return Ok(Err((format!("chunk {idx} is missing"), true))),
                },
            };
            if idx == 0 {
                head = chunk.to_vec();
            }
            sha.update(chunk);
            text.feed(chunk);
        }
        if <[u8; 32]>::from(sha.finalize()) != *file {
            return Ok(Err((
                "the file's bytes do not hash to the SHA-256 it was asked by".into(),
                true,
            )));
        }
        let rules = self.store.attachment_rules();
        Ok(
            match attachment::sniff(&head, text.finish(), "", &rules.kinds) {
                Ok(k) => Ok(k.mime),
                Err(e) => Err((e.to_string(), false)),
            },
        )
    }
}
