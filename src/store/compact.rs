//! Folding a conversation's incremental chunks into one full save, once it has gone quiet.
//!
//! A conversation is written as a full save followed by one `save_incremental` chunk per write
//! (`docs`), folded on the 32nd write. A hub's history is therefore mostly documents with a
//! handful of chunks each: every load replays them, and a first sync cannot send the stored
//! bytes as they are (`docs::snapshot` wants one compacted whole). Compacting a conversation
//! nobody has touched for a while costs one load and one `save()`, once, and pays for itself
//! on its next first sync, backup or cold load.
//!
//! The load and the save run on the caller's thread from a read snapshot; the writer only
//! swaps the bytes, and only if the document has not changed since (same heads, same number of
//! chunks), so a write that races a compaction always wins and nothing is lost. A document
//! cached by the writer stays valid: its saved heads are the stored heads, and the next chunk
//! it appends goes after the new full save.

use chrono::{DateTime, Duration, Utc};
use redb::{ReadableTable, WriteTransaction};

use super::index::decode_heads;
use super::tables::{ACTIVITY, CHUNKS, DOCS, HEADS};
use super::{Store, StoreError, docs};

/// Documents folded per writer commit: bounds how long one swap holds the writer.
const PER_COMMIT: usize = 256;

struct Folded {
    id: u128,
    heads: Vec<u8>,
    chunks: usize,
    full: Vec<u8>,
}

impl Store {
    /// Compacts up to `limit` documents that have chunks and whose last inbox activity is
    /// older than `quiet` before `now` (documents without an inbox row, such as team
    /// documents, count as quiet). Blocking; returns how many were compacted. A damaged
    /// document is left as it is (loading it reports the damage where it is used).
    pub fn compact_quiet(
        &self,
        now: DateTime<Utc>,
        quiet: Duration,
        limit: usize,
    ) -> Result<usize, StoreError> {
        let before = (now - quiet).timestamp_millis();
        let mut done = 0;
        let mut from = Some(0u128);
        while let Some(start) = from
            && done < limit
        {
            let (batch, next) = self.fold_some(start, before, PER_COMMIT.min(limit - done))?;
            from = next;
            if !batch.is_empty() {
                done += self.write_blocking(move |ctx| -> Result<usize, StoreError> {
                    swap(ctx.tx(), &batch)
                })?;
            }
        }
        Ok(done)
    }

    /// Loads and saves up to `n` candidates with ids from `from` on, from one read snapshot;
    /// also returns where the next call starts, `None` once the chunk table is exhausted.
    fn fold_some(
        &self,
        from: u128,
        quiet_before: i64,
        n: usize,
    ) -> Result<(Vec<Folded>, Option<u128>), StoreError> {
        let rtx = self.begin_read()?;
        let chunks = rtx.open_table(CHUNKS)?;
        let activity = rtx.open_table(ACTIVITY)?;
        let heads = rtx.open_table(HEADS)?;
        let mut out = Vec::new();
        let mut next = Some(from);
        let mut looked = 0usize;
        while let Some(at) = next {
            // Bounded work per snapshot, whether or not the candidates are quiet.
            if out.len() >= n || looked >= n * 8 {
                break;
            }
            let Some(first) = chunks.range((at, 0)..)?.next() else {
                return Ok((out, None));
            };
            let id = first?.0.value().0;
            looked += 1;
            next = id.checked_add(1);
            let quiet = activity.get(id)?.is_none_or(|a| a.value() < quiet_before);
            if !quiet {
                continue;
            }
            let count = chunks.range((id, 0)..=(id, u32::MAX))?.count();
            let Some(h) = heads.get(id)? else { continue };
            let doc = match docs::load_automerge(&rtx, id) {
                Ok(Some(d)) => d,
                Ok(None) | Err(StoreError::Corrupt(..)) => continue,
                Err(e) => return Err(e),
            };
            // The heads index and the document agree, or this is not the time to fold it.
            if decode_heads(h.value()) != doc.get_heads() {
                continue;
            }
            out.push(Folded {
                id,
                heads: h.value().to_vec(),
                chunks: count,
                full: doc.save(),
            });
        }
        Ok((out, next))
    }
}

/// In the writer: replaces each document's full save and chunks with its folded save, if it
/// is still exactly as it was folded.
fn swap(tx: &WriteTransaction, batch: &[Folded]) -> Result<usize, StoreError> {
    let heads = tx.open_table(HEADS)?;
    let mut chunks = tx.open_table(CHUNKS)?;
    let mut docs_t = tx.open_table(DOCS)?;
    let mut n = 0;
    for f in batch {
        let same_heads = heads.get(f.id)?.is_some_and(|h| h.value() == f.heads);
        if !same_heads || chunks.range((f.id, 0)..=(f.id, u32::MAX))?.count() != f.chunks {
            continue;
        }
        docs_t.insert(f.id, f.full.as_slice())?;
        chunks.retain_in((f.id, 0)..=(f.id, u32::MAX), |_, _| false)?;
        n += 1;
    }
    Ok(n)
}
