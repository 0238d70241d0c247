//! Files for one peer's session: which this node fetches from the peer, what it serves to it,
//! and checking a fetched file whole before it is published.
//!
//! The one rule: a file goes to a peer only if a document that refers to it is shared with
//! that peer ([`SyncHost::shared_id`], the same decision as for the document itself, so a
//! file on a partner's conversation never reaches another partner, and a file referred to
//! only by our own team documents never reaches a partner at all) — and, for a partner, only
//! if the reference is in a message of *our* org: a partner cannot get a file by writing a
//! reference to its hash (and during a recovery window, a message in our name it gives back
//! may not name a file this node holds: `SyncHost::recovered_files_unknown_here`). The one
//! exception gives a partner back its own file: carried by its org's message on a
//! conversation shared with it, and fetched by this node from a node of that org. A partner
//! is asked for any file a conversation shared with it refers to: asking tells it nothing it
//! lacks, and brings back a file of ours lost here. Our own sites may have and ask for any.

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
    /// Whether each file may go to the peer (`true`) or be asked of it (`false`), by file,
    /// with the size its reference says.
    decided: HashMap<(Hash, bool), Option<u64>>,
    /// Fetches started or extended in this call (their writes are in `Pending::blobs`).
    fetching: HashMap<Hash, Fetching>,
    /// Files completed or dropped in this call: the snapshot still lists them as wanted until
    /// the flush, and must not start them again.
    settled: std::collections::HashSet<Hash>,
}

impl SyncHost<'_> {
    /// Whether `file` may go to this peer (`serve`) or be asked of it (`!serve`): a document
    /// shared with the peer refers to it, in a message of the right org (module docs). For
    /// an ask, also the size that reference says (the one this peer's side claimed).
    fn file_for_peer(&mut self, file: &Hash, serve: bool) -> Result<Option<u64>, HostError> {
        if let Some(v) = self.blob_calls.decided.get(&(*file, serve)) {
            return Ok(*v);
        }
        let needed = match (&self.audience, serve) {
            (Audience::OwnSite, _) => blobs::OURS | blobs::THEIRS,
            (Audience::Partner(_), true) => blobs::OURS,
            // Asking reveals nothing the partner lacks (the reference is in a conversation it
            // holds), and a file of ours lost here (a restore, a recovery) comes back from it.
            (Audience::Partner(_), false) => blobs::OURS | blobs::THEIRS,
        };
        // A reference that cannot be read is no reason to end the link: that file is skipped.
        let refs = match blobs::refs_of(&self.rtx, file) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(file = %hex::encode(file), error = %e, "a file's references cannot be read; run `parley check`");
                Vec::new()
            }
        };
        let mut found = None;
        let mut theirs_shared = None;
        for (doc, who, size) in &refs {
            if who & needed != 0 && self.shared_id(*doc)? {
                found = Some(*size);
                break;
            }
            if who & blobs::THEIRS != 0 && theirs_shared.is_none() && self.shared_id(*doc)? {
                theirs_shared = Some(*size);
            }
        }
        // A partner's own file, given back: one its message carries on a conversation shared
        // with it, which this node fetched from a node of that partner's org (its own data
        // lost, a recovery). It had the bytes; naming a hash it learnt elsewhere gets it
        // nothing, since such a file did not come from it.
        if found.is_none()
            && serve
            && let (Audience::Partner(org), Some(size)) = (&self.audience, theirs_shared)
            && self.came_from_org(file, org)
        {
            found = Some(size);
        }
        self.blob_calls.decided.insert((*file, serve), found);
        Ok(found)
    }

    /// Whether this node's copy of `file` was fetched from a node of `org`.
    fn came_from_org(&self, file: &Hash, org: &crate::domain::OrgId) -> bool {
        matches!(blobs::meta(&self.rtx, file), Ok(Some(m)) if m.complete && m.from_org.as_deref() == Some(org.as_str()))
    }

    pub(super) fn wanted_files(
        &mut self,
        limit: usize,
        exclude: &[[u8; 32]],
    ) -> Result<Vec<BlobWant>, HostError> {
        let max = self.store.attachment_rules().max_bytes;
        let peer = self.scope.peer.node_id;
        let mut out = Vec::new();
        // Go on from where this peer's last look stopped, and wrap round once.
        let start = self.store.wanted_cursor(peer);
        let mut after = start;
        let mut wrapped = start.is_none();
        let mut scanned = 0;
        let mut looked = start;
        'scan: while out.len() < limit && scanned < SCAN {
            let page = match blobs::wanted(&self.rtx, after, 64) {
                Ok(p) => p,
                Err(e) => {
                    tracing::error!(error = %e, "the list of files to fetch cannot be read; run `parley check`");
                    return Ok(out);
                }
            };
            let Some(last) = page.last() else {
                if wrapped {
                    looked = None;
                    break;
                }
                wrapped = true;
                after = None;
                continue;
            };
            after = Some(last.0);
            scanned += page.len();
            for (file, _) in page {
                if wrapped && start.is_some_and(|s| file > s) {
                    break 'scan;
                }
                if out.len() >= limit {
                    break 'scan;
                }
                looked = Some(file);
                if exclude.contains(&file) || self.blob_calls.settled.contains(&file) {
                    continue;
                }
                let Some(size) = self.file_for_peer(&file, false)? else {
                    continue;
                };
                if size > max || !self.store.claim_blob(&file, peer) {
                    continue;
                }
                if !self.store.room_for(size) {
                    self.store.release_blob(&file, peer);
                    self.store.note_low_space(size);
                    continue;
                }
                let meta = match blobs::meta(&self.rtx, &file) {
                    Ok(m) => m,
                    Err(e) => {
                        self.store.release_blob(&file, peer);
                        tracing::error!(file = %hex::encode(file), error = %e, "a file's state cannot be read; run `parley check`");
                        continue;
                    }
                };
                let f = match meta {
                    Some(m) if m.complete || m.refused => {
                        self.store.release_blob(&file, peer);
                        continue;
                    }
                    // A fetch cut earlier resumes at its first missing chunk, from the peer
                    // that sent the chunks before it (from another, it starts afresh).
                    Some(m) if m.size == size && m.from == Some(peer) => Fetching {
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
                            from: peer,
                            from_org: self.scope.peer.org_id.to_string(),
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
        self.store.set_wanted_cursor(peer, looked);
        Ok(out)
    }

    pub(super) fn serve_chunk(
        &mut self,
        file: &Hash,
        index: u32,
    ) -> Result<Option<(u64, Vec<u8>)>, HostError> {
        let m = match blobs::present(&self.rtx, file) {
            Ok(Some(m)) => m,
            Ok(None) => return Ok(None),
            Err(e) => {
                tracing::error!(file = %hex::encode(file), error = %e, "a file's state cannot be read; run `parley check`");
                return Ok(None);
            }
        };
        if self.file_for_peer(file, true)?.is_none() {
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
            key: f.key,
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
                    key: f.key,
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
                Received::Chunk {
                    hash, idx, bytes, ..
                } if hash == file => Some((*idx, bytes)),
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
                // As an upload is judged: by its first 64 KiB.
                head = chunk[..chunk.len().min(64 * 1024)].to_vec();
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
