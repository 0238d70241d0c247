//! Attached files in redb: bytes in chunks, once per SHA-256, and which conversations refer
//! to each.
//!
//! ```text
//! BLOB_CHUNKS   (storage key, chunk index) -> up to 256 KiB
//! BLOB_META     sha256 -> { key, size, type, complete, next }        the file's state here
//! UPLOADS_OPEN  storage key -> started (ms)                          uploads under way
//! BLOB_REFS     (sha256, document id) -> (who referred: OURS | THEIRS, size the ref says)
//!                                                                    derived from the documents
//! BLOB_WANTED   sha256 -> size                                       derived: referenced, absent
//! UPLOAD_NAMES  (sha256, user) -> name                               what each user called it
//! ```
//!
//! Chunks are stored under a *storage key* rather than the content hash, because an upload
//! learns its hash only at its end: the chunks go straight into their final place while they
//! arrive, and the file is published (its `BLOB_META` written `complete`) in the commit that
//! stores the last one. A second copy of a file already here is dropped then, so every file is
//! stored once. A file fetched from a peer gets a key when its fetch starts; `next` says how
//! many chunks of it are durable, which is where a cut fetch resumes.
//!
//! Invariants: only a `complete` file is ever served; a `complete` file's chunks hash to its
//! SHA-256 (checked before it is marked so); `UPLOADS_OPEN` holds only uploads of this process
//! (a restart drops the chunks of every one left, [`sweep_open_uploads`]).

use redb::{ReadTransaction, ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{Result, StoreError};
use crate::domain::Conversation;
use crate::domain::attachment::{self, AttachmentRef};

pub type Hash = [u8; 32];

pub const BLOB_CHUNKS: TableDefinition<(Hash, u32), &[u8]> = TableDefinition::new("blob_chunks");
pub const BLOB_META: TableDefinition<Hash, &[u8]> = TableDefinition::new("blob_meta");
pub const UPLOADS_OPEN: TableDefinition<Hash, i64> = TableDefinition::new("uploads_open");
pub const BLOB_REFS: TableDefinition<(Hash, u128), (u8, u64)> =
    TableDefinition::new("blob_refs_v2");
/// In `BLOB_REFS`: a message of our org in that document refers to the file.
pub const OURS: u8 = 1;
/// In `BLOB_REFS`: a message of the other org in that document refers to the file.
pub const THEIRS: u8 = 2;
pub const BLOB_WANTED: TableDefinition<Hash, u64> = TableDefinition::new("blob_wanted");
/// (sha256, user) -> the name that user last uploaded the file under: a create or reply names
/// files by hash only, and each gets the name its sender gave it.
pub const UPLOAD_NAMES: TableDefinition<(Hash, &str), &str> = TableDefinition::new("upload_names");

pub fn create_tables(tx: &WriteTransaction) -> std::result::Result<(), redb::TableError> {
    tx.open_table(BLOB_CHUNKS)?;
    tx.open_table(BLOB_META)?;
    tx.open_table(UPLOADS_OPEN)?;
    tx.open_table(BLOB_REFS)?;
    tx.open_table(BLOB_WANTED)?;
    tx.open_table(UPLOAD_NAMES)?;
    Ok(())
}

pub fn clear_derived(tx: &WriteTransaction) -> std::result::Result<(), redb::TableError> {
    tx.delete_table(BLOB_REFS)?;
    tx.delete_table(TableDefinition::<(Hash, u128), u8>::new("blob_refs"))?;
    tx.delete_table(BLOB_WANTED)?;
    Ok(())
}

/// A file's state on this node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobMeta {
    #[serde(with = "hex::serde")]
    pub key: Hash,
    pub size: u64,
    /// The type this node recognised the content as (empty until complete).
    pub mime: String,
    pub complete: bool,
    /// Chunks `0..next` are stored.
    pub next: u32,
    /// When it was uploaded or its fetch started (ms since the epoch).
    #[serde(default)]
    pub at_ms: i64,
    /// Fetched whole, and of a kind this node does not take: not fetched again, no bytes kept.
    #[serde(default)]
    pub refused: bool,
    /// The peer a partial fetch came from: only that peer's link resumes it (another starts
    /// afresh), so a file is only ever checked whole against bytes of one sender.
    #[serde(default)]
    pub from: Option<Uuid>,
    /// The org of that peer: a partner's own file may be given back to a node of its org
    /// (`sync_host::blobs`), also once the peer it came from is removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_org: Option<String>,
}

fn bad(hash: &Hash, e: impl std::fmt::Display) -> StoreError {
    StoreError::Record(format!("file {}", hex::encode(hash)), e.to_string())
}

pub fn get_meta(
    t: &impl ReadableTable<Hash, &'static [u8]>,
    hash: &Hash,
) -> Result<Option<BlobMeta>> {
    match t.get(hash)? {
        None => Ok(None),
        Some(v) => serde_json::from_slice(v.value())
            .map(Some)
            .map_err(|e| bad(hash, e)),
    }
}

/// The file's state, from a reader.
pub fn meta(rtx: &ReadTransaction, hash: &Hash) -> Result<Option<BlobMeta>> {
    get_meta(&rtx.open_table(BLOB_META)?, hash)
}

/// The file, if it is complete here.
pub fn present(rtx: &ReadTransaction, hash: &Hash) -> Result<Option<BlobMeta>> {
    Ok(meta(rtx, hash)?.filter(|m| m.complete))
}

pub fn read_chunk(rtx: &ReadTransaction, key: &Hash, idx: u32) -> Result<Option<Vec<u8>>> {
    Ok(rtx
        .open_table(BLOB_CHUNKS)?
        .get((*key, idx))?
        .map(|v| v.value().to_vec()))
}

fn put_meta(tx: &WriteTransaction, hash: &Hash, m: &BlobMeta) -> Result<()> {
    let bytes = serde_json::to_vec(m).map_err(|e| bad(hash, e))?;
    tx.open_table(BLOB_META)?.insert(hash, bytes.as_slice())?;
    Ok(())
}

/// Drops every chunk stored under `key`.
pub(super) fn delete_chunks(tx: &WriteTransaction, key: &Hash) -> Result<()> {
    let mut t = tx.open_table(BLOB_CHUNKS)?;
    t.retain_in((*key, 0)..=(*key, u32::MAX), |_, _| false)?;
    Ok(())
}

/// A new storage key: random, so that no two files or uploads share one.
pub fn new_key() -> Hash {
    let mut k = [0u8; 32];
    k[..16].copy_from_slice(Uuid::new_v4().as_bytes());
    k[16..].copy_from_slice(Uuid::new_v4().as_bytes());
    k
}

/// Records an upload under way (so a restart can drop what it left).
pub fn begin_upload(tx: &WriteTransaction, key: &Hash, now_ms: i64) -> Result<()> {
    tx.open_table(UPLOADS_OPEN)?.insert(key, now_ms)?;
    Ok(())
}

pub fn put_chunk(tx: &WriteTransaction, key: &Hash, idx: u32, bytes: &[u8]) -> Result<()> {
    tx.open_table(BLOB_CHUNKS)?.insert((*key, idx), bytes)?;
    Ok(())
}

/// Publishes a finished upload as file `hash`. If the file is already complete here, the
/// upload's chunks are dropped instead (the file is kept once); a partly fetched copy is
/// replaced. Returns whether the upload's chunks were kept.
pub fn finish_upload(
    tx: &WriteTransaction,
    key: &Hash,
    hash: &Hash,
    size: u64,
    mime: &str,
    now_ms: i64,
) -> Result<bool> {
    tx.open_table(UPLOADS_OPEN)?.remove(key)?;
    let old = get_meta(&tx.open_table(BLOB_META)?, hash)?;
    if let Some(mut m) = old.clone().filter(|m| m.complete) {
        delete_chunks(tx, key)?;
        // Uploaded again: the day it may wait to be attached starts again.
        m.at_ms = m.at_ms.max(now_ms);
        put_meta(tx, hash, &m)?;
        return Ok(false);
    }
    if let Some(m) = old {
        delete_chunks(tx, &m.key)?;
    }
    put_meta(
        tx,
        hash,
        &BlobMeta {
            key: *key,
            size,
            mime: mime.to_string(),
            complete: true,
            next: attachment::chunk_count(size),
            at_ms: now_ms,
            refused: false,
            from: None,
            from_org: None,
        },
    )?;
    tx.open_table(BLOB_WANTED)?.remove(hash)?;
    Ok(true)
}

/// Drops what an upload that failed or was refused had stored.
pub fn abandon_upload(tx: &WriteTransaction, key: &Hash) -> Result<()> {
    tx.open_table(UPLOADS_OPEN)?.remove(key)?;
    delete_chunks(tx, key)
}

/// Drops every upload a previous run left unfinished. Returns how many.
pub fn sweep_open_uploads(tx: &WriteTransaction) -> Result<usize> {
    sweep_uploads_before(tx, i64::MAX)
}

/// Drops the uploads begun before `before_ms` that never finished (no upload takes hours;
/// one whose request vanished without its guard running is found here).
pub fn sweep_uploads_before(tx: &WriteTransaction, before_ms: i64) -> Result<usize> {
    let keys: Vec<Hash> = {
        let t = tx.open_table(UPLOADS_OPEN)?;
        let mut v = Vec::new();
        for item in t.iter()? {
            let (k, started) = item?;
            if started.value() < before_ms {
                v.push(k.value());
            }
        }
        v
    };
    for k in &keys {
        abandon_upload(tx, k)?;
    }
    Ok(keys.len())
}

/// Records the files the messages of `view` new since `before` refer to, and which of them
/// this node does not hold yet. Called wherever a conversation's derived rows are written.
/// (Whether a wanted file is small enough to fetch here is the fetcher's question.)
///
/// Who referred matters: a partner is served a file only if *our* org's message on a
/// conversation shared with it refers to the file, and asked for one only if *its* org's
/// message does. So a partner that writes a reference to a file it learnt the hash of gets
/// nothing, and we never ask a partner for a file it never claimed to have.
pub fn index_refs(
    tx: &WriteTransaction,
    me: &crate::domain::OrgId,
    before: Option<&Conversation>,
    view: &Conversation,
) -> Result<()> {
    let seen: std::collections::HashSet<Uuid> = before
        .map(|b| b.messages.iter().map(|m| m.id).collect())
        .unwrap_or_default();
    let new: Vec<(&AttachmentRef, u8)> = view
        .messages
        .iter()
        .filter(|m| !seen.contains(&m.id))
        .flat_map(|m| {
            let who = if &m.author.org == me { OURS } else { THEIRS };
            m.attachments.iter().map(move |a| (a, who))
        })
        .collect();
    add_refs(tx, view.id.as_u128(), &new)
}

pub fn add_refs(tx: &WriteTransaction, doc: u128, refs: &[(&AttachmentRef, u8)]) -> Result<()> {
    if refs.is_empty() {
        return Ok(());
    }
    let mut t = tx.open_table(BLOB_REFS)?;
    let metas = tx.open_table(BLOB_META)?;
    let mut wanted = tx.open_table(BLOB_WANTED)?;
    for (r, who) in refs {
        let Some(hash) = attachment::parse_sha256(&r.sha256) else {
            continue;
        };
        // Each reference keeps the size it says: a fetch from a peer goes by a size that peer's
        // own side claimed, so one partner's wrong size cannot spoil another's fetch.
        let old = t.get((hash, doc))?.map_or(0, |v| v.value().0);
        t.insert((hash, doc), (old | who, r.size))?;
        let settled = get_meta(&metas, &hash)?.is_some_and(|m| m.complete || m.refused);
        if !settled {
            wanted.insert(hash, r.size)?;
        }
    }
    Ok(())
}

/// Files to fetch: up to `limit`, from `after` on (exclusive), with their sizes.
pub fn wanted(
    rtx: &ReadTransaction,
    after: Option<Hash>,
    limit: usize,
) -> Result<Vec<(Hash, u64)>> {
    let t = rtx.open_table(BLOB_WANTED)?;
    let mut out = Vec::new();
    let range = match after {
        Some(a) => t.range(a..)?,
        None => t.range::<Hash>(..)?,
    };
    for item in range {
        let (k, v) = item?;
        let k = k.value();
        if Some(k) == after {
            continue;
        }
        out.push((k, v.value()));
        if out.len() >= limit {
            break;
        }
    }
    Ok(out)
}

/// The documents that refer to file `hash`, each with who referred ([`OURS`] | [`THEIRS`])
/// and the size its reference says.
pub fn refs_of(rtx: &ReadTransaction, hash: &Hash) -> Result<Vec<(u128, u8, u64)>> {
    let t = rtx.open_table(BLOB_REFS)?;
    let mut out = Vec::new();
    for item in t.range((*hash, 0)..=(*hash, u128::MAX))? {
        let (k, v) = item?;
        let (who, size) = v.value();
        out.push((k.value().1, who, size));
    }
    Ok(out)
}

/// A piece of a file fetched from a peer, for the flush: its chunks are stored in order.
#[derive(Debug, Clone)]
pub enum Received {
    /// Start (or restart) a fetch of `hash` from `from` under storage key `key`.
    Begin {
        hash: Hash,
        key: Hash,
        size: u64,
        from: Uuid,
        from_org: String,
    },
    /// Chunk `idx` of the fetch under `key`.
    Chunk {
        hash: Hash,
        key: Hash,
        idx: u32,
        bytes: Vec<u8>,
    },
    /// Every chunk under `key` is stored and they hash to `hash`: publish it as `mime`.
    Complete { hash: Hash, key: Hash, mime: String },
    /// What was fetched of `hash` is wrong: drop it, to fetch again from the start.
    Reset { hash: Hash },
    /// `hash` arrived whole and right, but is not a kind this node takes: drop its bytes and
    /// remember not to fetch it again.
    Refuse { hash: Hash },
}

/// Writes what a sync session received of files, in order, inside the flush's commit.
pub fn store_received(tx: &WriteTransaction, items: &[Received]) -> Result<()> {
    // A fetch whose chunk did not land as the session checked it (another writer moved the
    // file on meanwhile) is never published from this batch.
    let mut tainted = std::collections::HashSet::new();
    for r in items {
        match r {
            Received::Begin {
                hash,
                key,
                size,
                from,
                from_org,
            } => {
                // Each table handle is dropped before the next opens it (redb allows one).
                let old = get_meta(&tx.open_table(BLOB_META)?, hash)?;
                if let Some(old) = old {
                    if old.complete {
                        continue;
                    }
                    delete_chunks(tx, &old.key)?;
                }
                put_meta(
                    tx,
                    hash,
                    &BlobMeta {
                        key: *key,
                        size: *size,
                        mime: String::new(),
                        complete: false,
                        next: 0,
                        at_ms: 0,
                        refused: false,
                        from: Some(*from),
                        from_org: Some(from_org.clone()),
                    },
                )?;
            }
            Received::Chunk {
                hash,
                key,
                idx,
                bytes,
            } => {
                let Some(mut m) = get_meta(&tx.open_table(BLOB_META)?, hash)? else {
                    tainted.insert(*hash);
                    continue;
                };
                // Only the next chunk of the fetch this session checked extends it: anything
                // else (a copy completed meanwhile by an upload or another peer) is dropped.
                if m.complete || m.key != *key || *idx != m.next {
                    tainted.insert(*hash);
                    continue;
                }
                put_chunk(tx, &m.key, *idx, bytes)?;
                m.next += 1;
                put_meta(tx, hash, &m)?;
            }
            Received::Complete { hash, key, mime } => {
                let Some(mut m) = get_meta(&tx.open_table(BLOB_META)?, hash)? else {
                    continue;
                };
                if m.complete
                    || m.key != *key
                    || tainted.contains(hash)
                    || m.next != attachment::chunk_count(m.size)
                {
                    continue;
                }
                m.complete = true;
                m.mime = mime.clone();
                put_meta(tx, hash, &m)?;
                tx.open_table(BLOB_WANTED)?.remove(hash)?;
            }
            Received::Refuse { hash } => {
                let old = get_meta(&tx.open_table(BLOB_META)?, hash)?;
                if let Some(mut m) = old
                    && !m.complete
                {
                    delete_chunks(tx, &m.key)?;
                    m.next = 0;
                    m.refused = true;
                    put_meta(tx, hash, &m)?;
                    tx.open_table(BLOB_WANTED)?.remove(hash)?;
                }
            }
            Received::Reset { hash } => {
                let old = get_meta(&tx.open_table(BLOB_META)?, hash)?;
                if let Some(m) = old
                    && !m.complete
                {
                    delete_chunks(tx, &m.key)?;
                    tx.open_table(BLOB_META)?.remove(hash)?;
                }
            }
        }
    }
    Ok(())
}

/// The conversations (not team documents) that refer to `hash`, with their feed positions.
pub fn conversations_at(tx: &WriteTransaction, hash: &Hash) -> Result<Vec<(Uuid, u64)>> {
    let refs = tx.open_table(BLOB_REFS)?;
    let pos = tx.open_table(super::tables::FEED_POS)?;
    let mut out = Vec::new();
    for item in refs.range((*hash, 0)..=(*hash, u128::MAX))? {
        let doc = item?.0.value().1;
        if crate::domain::team::is_team_id(doc) {
            continue;
        }
        if let Some(seq) = pos.get(doc)? {
            out.push((Uuid::from_u128(doc), seq.value()));
        }
    }
    Ok(out)
}

pub fn set_upload_name(tx: &WriteTransaction, hash: &Hash, user: &str, name: &str) -> Result<()> {
    tx.open_table(UPLOAD_NAMES)?.insert((*hash, user), name)?;
    Ok(())
}

/// The name `user` uploaded `hash` under, else the name anyone here did.
pub fn upload_name(rtx: &ReadTransaction, hash: &Hash, user: &str) -> Result<Option<String>> {
    let t = rtx.open_table(UPLOAD_NAMES)?;
    if let Some(v) = t.get((*hash, user))? {
        return Ok(Some(v.value().to_string()));
    }
    let mut any = t.range((*hash, "")..)?;
    Ok(match any.next() {
        Some(item) => {
            let (k, v) = item?;
            (k.value().0 == *hash).then(|| v.value().to_string())
        }
        None => None,
    })
}

/// The size of `hash` if this node wants it (referred to, not complete here).
pub fn wanted_size(rtx: &ReadTransaction, hash: &Hash) -> Result<Option<u64>> {
    Ok(rtx.open_table(BLOB_WANTED)?.get(hash)?.map(|v| v.value()))
}

/// Drops files no document refers to that arrived before `before_ms`: uploads never attached
/// (a draft given up). Returns how many. A file a document refers to is never dropped.
pub fn sweep_unreferenced(tx: &WriteTransaction, before_ms: i64) -> Result<usize> {
    let mut doomed = Vec::new();
    {
        let metas = tx.open_table(BLOB_META)?;
        let refs = tx.open_table(BLOB_REFS)?;
        for item in metas.iter()? {
            let (k, v) = item?;
            let hash = k.value();
            let Ok(m) = serde_json::from_slice::<BlobMeta>(v.value()) else {
                continue;
            };
            if m.at_ms >= before_ms {
                continue;
            }
            if refs.range((hash, 0)..=(hash, u128::MAX))?.next().is_none() {
                doomed.push((hash, m.key));
            }
        }
    }
    for (hash, key) in &doomed {
        delete_chunks(tx, key)?;
        tx.open_table(BLOB_META)?.remove(hash)?;
        tx.open_table(UPLOAD_NAMES)?
            .retain_in((*hash, "")..(*hash, "\u{10FFFF}"), |_, _| false)?;
    }
    Ok(doomed.len())
}
