//! Documents in redb: the last full `save()` in `DOCS`, then the `save_incremental()` chunks
//! written since, in `CHUNKS`. Loading replays the chunks over the full save; after
//! `COMPACT_AFTER` chunks the next write stores a fresh full save and drops them, in the same
//! transaction, so a document never needs more than a bounded number of reads to load.

use automerge::{AutoCommit, ChangeHash, LoadOptions, OnPartialLoad, ReadDoc, VerificationMode};
use redb::{ReadTransaction, ReadableTable, WriteTransaction};
use uuid::Uuid;

use super::tables::{CHUNKS, DOCS};
use super::{Result, StoreError};

pub(super) const COMPACT_AFTER: u32 = 32;

fn corrupt(id: u128, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(Uuid::from_u128(id), e.to_string())
}

/// The chunks written since the last full save, concatenated: Automerge applies them in one
/// batch, which costs a fraction of applying each chunk on its own (a chunk is usually one
/// change, and every separate apply updates the whole document's columns).
fn chunks_of(chunks: &impl ReadableTable<(u128, u32), &'static [u8]>, id: u128) -> Result<Vec<u8>> {
    let mut all = Vec::new();
    for item in chunks.range((id, 0)..=(id, u32::MAX))? {
        all.extend_from_slice(item?.1.value());
    }
    Ok(all)
}

/// Loads the full save followed by its chunks, strictly: every stored byte must verify, or
/// the whole load fails and the document is damaged.
///
/// `load_incremental` is lenient by design: it stops at the first chunk that fails to parse or
/// whose checksum does not match, logs a warning and keeps what came before, and it queues
/// changes whose dependencies are missing instead of refusing them. One flipped byte in an
/// early chunk thus used to load as a document with every later change silently missing.
/// Here the full save and the chunks are loaded as one input with
/// `OnPartialLoad::Error` and `VerificationMode::Check`, so a chunk that does not parse or
/// verify (each Automerge chunk carries a checksum of its bytes, and the full save its heads)
/// fails the load, and a change left waiting for a missing dependency fails it too.
fn strict_load<D>(
    id: u128,
    full: &[u8],
    rest: &[u8],
    load: impl FnOnce(&[u8], LoadOptions<'static>) -> Result<D, automerge::AutomergeError>,
    missing: impl FnOnce(&mut D) -> usize,
) -> Result<D> {
    let joined;
    let bytes = if rest.is_empty() {
        full
    } else {
        joined = [full, rest].concat();
        &joined
    };
    let opts = LoadOptions::new()
        .on_partial_load(OnPartialLoad::Error)
        .verification_mode(VerificationMode::Check);
    // An empty input loads as an empty document: a stored save is never empty.
    if full.is_empty() {
        return Err(corrupt(id, "its stored save is empty"));
    }
    let mut doc = load(bytes, opts).map_err(|e| corrupt(id, e))?;
    let n = missing(&mut doc);
    if n > 0 {
        return Err(corrupt(
            id,
            format!("{n} of its stored changes depend on changes that are not stored"),
        ));
    }
    Ok(doc)
}

fn load_with(
    docs: &impl ReadableTable<u128, &'static [u8]>,
    chunks: &impl ReadableTable<(u128, u32), &'static [u8]>,
    id: u128,
) -> Result<Option<AutoCommit>> {
    let Some(full) = docs.get(id)? else {
        return Ok(None);
    };
    let rest = chunks_of(chunks, id)?;
    strict_load(
        id,
        full.value(),
        &rest,
        AutoCommit::load_with_options,
        |d| d.get_missing_deps(&[]).len(),
    )
    .map(Some)
}

/// A document loaded for writing, with the heads that are already stored: `AutoCommit::load`
/// does not remember them, so `save_incremental` after a load would write the whole document.
pub struct Loaded {
    pub doc: AutoCommit,
    pub saved: Vec<ChangeHash>,
}

impl Loaded {
    pub fn new(mut doc: AutoCommit) -> Self {
        let saved = doc.get_heads();
        Loaded { doc, saved }
    }
}

/// Loads a document inside a write transaction.
pub fn load(tx: &WriteTransaction, id: u128) -> Result<Option<Loaded>> {
    Ok(load_with(&tx.open_table(DOCS)?, &tx.open_table(CHUNKS)?, id)?.map(Loaded::new))
}

/// Loads a document inside a read transaction.
pub fn load_read(tx: &ReadTransaction, id: u128) -> Result<Option<AutoCommit>> {
    load_with(&tx.open_table(DOCS)?, &tx.open_table(CHUNKS)?, id)
}

/// Loads a document as a plain `Automerge` (what the sync engine works on). A damaged document
/// is an error here too, so sync neither sends it nor merges into it.
pub fn load_automerge(tx: &ReadTransaction, id: u128) -> Result<Option<automerge::Automerge>> {
    let docs = tx.open_table(DOCS)?;
    let Some(full) = docs.get(id)? else {
        return Ok(None);
    };
    let rest = chunks_of(&tx.open_table(CHUNKS)?, id)?;
    strict_load(
        id,
        full.value(),
        &rest,
        automerge::Automerge::load_with_options,
        |d| d.get_missing_deps(&[]).len(),
    )
    .map(Some)
}

/// The stored bytes of a document and its heads, if they are one compacted whole: a full
/// save with no chunk written after it, whose Automerge checksum verifies (a damaged record
/// is never handed out; loading it reports the damage). `None` otherwise.
pub fn snapshot(tx: &ReadTransaction, id: u128) -> Result<Option<(Vec<u8>, Vec<ChangeHash>)>> {
    let docs = tx.open_table(DOCS)?;
    let Some(full) = docs.get(id)? else {
        return Ok(None);
    };
    if tx
        .open_table(CHUNKS)?
        .range((id, 0)..=(id, u32::MAX))?
        .next()
        .is_some()
    {
        return Ok(None);
    }
    let bytes = full.value();
    if !parley_sync::is_whole_document(bytes) {
        return Ok(None);
    }
    let Some(heads) = tx.open_table(super::tables::HEADS)?.get(id)? else {
        return Ok(None);
    };
    Ok(Some((
        bytes.to_vec(),
        super::index::decode_heads(heads.value()),
    )))
}

pub fn exists(tx: &ReadTransaction, id: u128) -> Result<bool> {
    Ok(tx.open_table(DOCS)?.get(id)?.is_some())
}

/// Whether the document exists, as the write transaction sees it.
pub fn exists_w(tx: &WriteTransaction, id: u128) -> Result<bool> {
    Ok(tx.open_table(DOCS)?.get(id)?.is_some())
}

/// Stores a new document from its full save (`save()` bytes).
pub fn insert_saved(tx: &WriteTransaction, id: u128, full: &[u8]) -> Result<()> {
    tx.open_table(DOCS)?.insert(id, full)?;
    Ok(())
}

pub fn insert_new(tx: &WriteTransaction, id: u128, doc: &mut Loaded) -> Result<()> {
    tx.open_table(DOCS)?.insert(id, doc.doc.save().as_slice())?;
    doc.saved = doc.doc.get_heads();
    Ok(())
}

/// The number the next chunk of document `id` gets (one past its last; 0 if it has none).
pub(super) fn next_chunk(
    chunks: &impl ReadableTable<(u128, u32), &'static [u8]>,
    id: u128,
) -> Result<u32> {
    Ok(chunks
        .range((id, 0)..=(id, u32::MAX))?
        .next_back()
        .transpose()?
        .map_or(0, |(k, _)| k.value().1 + 1))
}

/// Writes what changed in `doc` since it was loaded or last saved.
pub fn append(tx: &WriteTransaction, id: u128, loaded: &mut Loaded) -> Result<()> {
    let doc = &mut loaded.doc;
    let mut chunks = tx.open_table(CHUNKS)?;
    let next = next_chunk(&chunks, id)?;
    if next >= COMPACT_AFTER {
        let full = doc.save();
        tx.open_table(DOCS)?.insert(id, full.as_slice())?;
        chunks.retain_in((id, 0)..=(id, u32::MAX), |_, _| false)?;
    } else {
        let bytes = doc.save_after(&loaded.saved);
        if !bytes.is_empty() {
            chunks.insert((id, next), bytes.as_slice())?;
        }
    }
    loaded.saved = doc.get_heads();
    Ok(())
}

/// Writes a document's stored records back unchanged, so that the pages holding them get fresh
/// checksums. A document whose bytes were damaged outside redb (a bad sector, a flipped bit)
/// stays damaged, and still fails to load and says so, but its pages verify again: redb's
/// `check_integrity` (what `parley check` runs) passes, and so would a recovery that walks the
/// file (one without quick repair, see `begin_write`), which refuses the whole file
/// when one page fails.
pub fn rewrite_stored(tx: &WriteTransaction, id: u128) -> Result<()> {
    let mut docs = tx.open_table(DOCS)?;
    let full = docs.get(id)?.map(|v| v.value().to_vec());
    if let Some(full) = full {
        docs.insert(id, full.as_slice())?;
    }
    let mut chunks = tx.open_table(CHUNKS)?;
    let all: Vec<((u128, u32), Vec<u8>)> = chunks
        .range((id, 0)..=(id, u32::MAX))?
        .map(|e| e.map(|(k, v)| (k.value(), v.value().to_vec())))
        .collect::<std::result::Result<_, _>>()?;
    for (k, v) in all {
        chunks.insert(k, v.as_slice())?;
    }
    Ok(())
}

/// Ids of every stored document, in order; only the index rebuild walks them all.
pub fn all_ids(tx: &ReadTransaction) -> Result<Vec<u128>> {
    let t = tx.open_table(DOCS)?;
    let mut ids = Vec::new();
    for item in t.iter()? {
        ids.push(item?.0.value());
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;
    use automerge::{ROOT, ReadDoc, transaction::Transactable};
    use redb::ReadableDatabase;

    #[test]
    fn chunks_hold_only_new_changes_and_compact() {
        let db = redb::Database::builder()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .unwrap();
        let id = 7u128;
        let mut doc = Loaded::new(AutoCommit::new());
        doc.doc.put(ROOT, "body", "x".repeat(5000)).unwrap();
        let tx = db.begin_write().unwrap();
        insert_new(&tx, id, &mut doc).unwrap();
        tx.commit().unwrap();
        for n in 0..(COMPACT_AFTER + 3) {
            let tx = db.begin_write().unwrap();
            // A fresh load each time, as after a cache eviction.
            let mut d = load(&tx, id).unwrap().unwrap();
            d.doc.set_actor(automerge::ActorId::random());
            d.doc.put(ROOT, "n", n as u64).unwrap();
            append(&tx, id, &mut d).unwrap();
            tx.commit().unwrap();
        }
        let tx = db.begin_read().unwrap();
        let chunks = tx.open_table(CHUNKS).unwrap();
        let sizes: Vec<usize> = chunks
            .iter()
            .unwrap()
            .map(|e| e.unwrap().1.value().len())
            .collect();
        assert!(
            sizes.len() < COMPACT_AFTER as usize,
            "compacted: {} chunks",
            sizes.len()
        );
        assert!(
            sizes.iter().all(|s| *s < 400),
            "a chunk carries only its own change: {sizes:?}"
        );
        let mut d = load_read(&tx, id).unwrap().unwrap();
        let (v, _) = d.get(ROOT, "n").unwrap().unwrap();
        assert_eq!(v.to_string(), format!("{}", COMPACT_AFTER + 2));
        // The chunks applied in one batch give the document a chunk-by-chunk replay gives.
        let mut one_by_one = AutoCommit::load(
            tx.open_table(DOCS)
                .unwrap()
                .get(id)
                .unwrap()
                .unwrap()
                .value(),
        )
        .unwrap();
        for item in chunks.range((id, 0)..=(id, u32::MAX)).unwrap() {
            one_by_one
                .load_incremental(item.unwrap().1.value())
                .unwrap();
        }
        assert_eq!(d.get_heads(), one_by_one.get_heads());
        let am = load_automerge(&tx, id).unwrap().unwrap();
        assert_eq!(am.get_heads(), one_by_one.get_heads());
    }

    /// Every byte of the full save and of every chunk is covered: flipping any one of them,
    /// in any way tried, makes the load fail instead of yielding a document with parts
    /// missing or changed.
    #[test]
    fn a_flipped_byte_anywhere_fails_the_load() {
        let db = redb::Database::builder()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .unwrap();
        let id = 9u128;
        let mut doc = Loaded::new(AutoCommit::new());
        doc.doc.put(ROOT, "subject", "a conversation").unwrap();
        let tx = db.begin_write().unwrap();
        insert_new(&tx, id, &mut doc).unwrap();
        tx.commit().unwrap();
        // Three chunks: a small change, a large (compressed) one, and one more after it.
        for body in ["short", &"long body ".repeat(200), "last"] {
            let tx = db.begin_write().unwrap();
            doc.doc.put(ROOT, "body", body).unwrap();
            append(&tx, id, &mut doc).unwrap();
            tx.commit().unwrap();
        }
        let tx = db.begin_read().unwrap();
        let full = tx
            .open_table(DOCS)
            .unwrap()
            .get(id)
            .unwrap()
            .unwrap()
            .value()
            .to_vec();
        let chunks: Vec<Vec<u8>> = tx
            .open_table(CHUNKS)
            .unwrap()
            .range((id, 0)..=(id, u32::MAX))
            .unwrap()
            .map(|e| e.unwrap().1.value().to_vec())
            .collect();
        assert_eq!(chunks.len(), 3);
        let heads = doc.doc.get_heads();
        let strict = |full: &[u8], chunks: &[Vec<u8>]| {
            let a = strict_load(
                id,
                full,
                &chunks.concat(),
                AutoCommit::load_with_options,
                |d| d.get_missing_deps(&[]).len(),
            );
            let b = strict_load(
                id,
                full,
                &chunks.concat(),
                automerge::Automerge::load_with_options,
                |d| d.get_missing_deps(&[]).len(),
            );
            assert_eq!(a.is_ok(), b.is_ok());
            a.map(|mut d| d.get_heads())
        };
        assert_eq!(strict(&full, &chunks).unwrap(), heads, "intact bytes load");
        for mask in [0x01u8, 0x80, 0xff] {
            for i in 0..full.len() {
                let mut f = full.clone();
                f[i] ^= mask;
                let r = strict(&f, &chunks);
                assert!(
                    matches!(r, Err(StoreError::Corrupt(..))),
                    "byte {i} of the full save flipped with {mask:#x} went unnoticed: {r:?}"
                );
            }
            for c in 0..chunks.len() {
                for i in 0..chunks[c].len() {
                    let mut cs = chunks.clone();
                    cs[c][i] ^= mask;
                    let r = strict(&full, &cs);
                    assert!(
                        matches!(r, Err(StoreError::Corrupt(..))),
                        "byte {i} of chunk {c} flipped with {mask:#x} went unnoticed: {r:?}"
                    );
                }
            }
        }
        // A lost chunk in the middle leaves the later one without its dependency.
        let r = strict(&full, &[chunks[0].clone(), chunks[2].clone()]);
        assert!(matches!(r, Err(StoreError::Corrupt(..))), "{r:?}");
        // What the old lenient path did with the same damage: loaded, with changes missing.
        let mut cs = chunks.clone();
        cs[0][10] ^= 0xff;
        let mut lenient = AutoCommit::load(&full).unwrap();
        lenient.load_incremental(&cs.concat()).unwrap();
        assert_ne!(lenient.get_heads(), heads);
    }
}
