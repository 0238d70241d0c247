//! `parley check` for files: every complete file's chunks hash to its name, and the derived
//! references (`BLOB_REFS`, `BLOB_WANTED`) say what the documents say. `--repair` drops a file
//! that does not verify (its conversations then fetch it again from the partner) and rebuilds
//! the references with the other indexes.

use std::collections::{BTreeMap, BTreeSet};

use redb::{ReadTransaction, ReadableTable, WriteTransaction};
use sha2::{Digest, Sha256};

use super::blobs::{self, BLOB_META, BLOB_REFS, BLOB_WANTED, Hash};
use super::{Result, docs};
use crate::domain::attachment;
use crate::domain::team::is_team_id;

/// What the file check found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FileReport {
    /// Complete files checked.
    pub files: usize,
    /// Complete files whose chunks are missing or do not hash to their name (hex).
    pub damaged: Vec<String>,
    /// References or wanted entries that differ from what the documents say.
    pub refs_mismatched: usize,
}

impl FileReport {
    pub fn is_clean(&self) -> bool {
        self.damaged.is_empty() && self.refs_mismatched == 0
    }
}

/// Whether every chunk of the complete file `m` is there and they hash to `hash`. A chunk that
/// cannot be read counts as damaged, like one that reads wrong.
fn verifies(
    chunks: &impl ReadableTable<(Hash, u32), &'static [u8]>,
    hash: &Hash,
    m: &blobs::BlobMeta,
) -> bool {
    let mut sha = Sha256::new();
    for idx in 0..attachment::chunk_count(m.size) {
        match chunks.get((m.key, idx)) {
            Ok(Some(c)) if c.value().len() == attachment::chunk_len(m.size, idx) => {
                sha.update(c.value())
            }
            _ => return false,
        }
    }
    <[u8; 32]>::from(sha.finalize()) == *hash
}

pub fn check_files(tx: &ReadTransaction) -> Result<FileReport> {
    let mut r = FileReport::default();
    let me = super::accounts::read_identity(tx)?;
    let metas = tx.open_table(BLOB_META)?;
    let mut complete = BTreeSet::new();
    for item in metas.iter()? {
        let (k, _) = item?;
        let hash = k.value();
        let Some(m) = blobs::get_meta(&metas, &hash).ok().flatten() else {
            r.damaged.push(hex::encode(hash));
            continue;
        };
        if !m.complete {
            continue;
        }
        r.files += 1;
        if verifies(&tx.open_table(blobs::BLOB_CHUNKS)?, &hash, &m) {
            complete.insert(hash);
        } else {
            r.damaged.push(hex::encode(hash));
        }
    }
    // What the documents say: who refers to which file, and which are still to come.
    let mut refs = BTreeMap::<(Hash, u128), u8>::new();
    let mut sizes = BTreeMap::<(Hash, u128), u64>::new();
    let mut wanted = BTreeMap::<Hash, u64>::new();
    if let Some(me) = &me {
        for id in docs::all_ids(tx)? {
            if is_team_id(id) {
                continue;
            }
            let Ok(Some(d)) = docs::load_read(tx, id) else {
                continue; // a damaged document is the document check's to report
            };
            let Ok(c) = crate::domain::doc::read(&d) else {
                continue;
            };
            for m in &c.messages {
                let who = if m.author.org == me.org_id {
                    blobs::OURS
                } else {
                    blobs::THEIRS
                };
                for a in &m.attachments {
                    let Some(h) = attachment::parse_sha256(&a.sha256) else {
                        continue;
                    };
                    *refs.entry((h, id)).or_default() |= who;
                    sizes.insert((h, id), a.size);
                    if !is_settled(&metas, &h)? {
                        wanted.insert(h, a.size);
                    }
                }
            }
        }
    }
    let mut stored_refs = BTreeMap::<(Hash, u128), u8>::new();
    let mut stored_sizes = BTreeMap::<(Hash, u128), u64>::new();
    for item in tx.open_table(BLOB_REFS)?.iter()? {
        let (k, v) = item?;
        let (who, size) = v.value();
        stored_refs.insert(k.value(), who);
        stored_sizes.insert(k.value(), size);
    }
    // Which files are wanted, not the size noted beside them (the last reference's).
    let stored_wanted: BTreeMap<Hash, ()> = tx
        .open_table(BLOB_WANTED)?
        .iter()?
        .map(|i| i.map(|(k, _)| (k.value(), ())))
        .collect::<std::result::Result<_, _>>()?;
    let wanted: BTreeMap<Hash, ()> = wanted.into_keys().map(|k| (k, ())).collect();
    r.refs_mismatched = differ(&refs, &stored_refs)
        + differ(&sizes, &stored_sizes)
        + differ(&wanted, &stored_wanted);
    Ok(r)
}

/// Complete, or refused for its kind: not wanted either way.
fn is_settled(metas: &impl ReadableTable<Hash, &'static [u8]>, h: &Hash) -> Result<bool> {
    Ok(blobs::get_meta(metas, h)?.is_some_and(|m| m.complete || m.refused))
}

fn differ<K: Ord, V: PartialEq>(a: &BTreeMap<K, V>, b: &BTreeMap<K, V>) -> usize {
    let missing = a.iter().filter(|(k, v)| b.get(k) != Some(v)).count();
    let extra = b.keys().filter(|k| !a.contains_key(k)).count();
    missing + extra
}

/// Drops every complete file that does not verify, so that its conversations fetch it again;
/// run before the indexes are rebuilt (which lists it as wanted). Returns how many.
pub fn drop_damaged(tx: &WriteTransaction) -> Result<usize> {
    let hashes: Vec<Hash> = {
        let metas = tx.open_table(BLOB_META)?;
        let mut v = Vec::new();
        for item in metas.iter()? {
            v.push(item?.0.value());
        }
        v
    };
    let mut dropped = 0;
    for h in hashes {
        let meta = blobs::get_meta(&tx.open_table(BLOB_META)?, &h)
            .ok()
            .flatten();
        let ok = match &meta {
            Some(m) if m.complete => verifies(&tx.open_table(blobs::BLOB_CHUNKS)?, &h, m),
            Some(_) => true,
            None => false,
        };
        if !ok {
            if let Some(m) = &meta {
                blobs::delete_chunks(tx, &m.key)?;
            }
            tx.open_table(BLOB_META)?.remove(h)?;
            dropped += 1;
        }
    }
    Ok(dropped)
}
