//! The words of message bodies and internal notes, for search: `(term, conversation) -> n`,
//! the number of messages and notes of the conversation that contain the term. A count, not a
//! mark, because the same word is often in several of them and a note can be edited or
//! deleted: the entry goes when the last text holding the word does.
//!
//! Message bodies never change, so a message adds its words once (`index_view`, for the
//! messages that are new in a version). Notes replace their words when edited (`store::team`).
//! The notes of a conversation exist only on our own org's nodes, so their words are only
//! ever found by our own users. Derived: rebuilt from the documents.

use std::collections::{BTreeMap, HashSet};

use redb::{ReadTransaction, ReadableTable, TableDefinition, WriteTransaction};

use super::Result;
use crate::domain::search;

pub const TEXT_WORDS: TableDefinition<(&str, u128), u32> = TableDefinition::new("text_words");

/// Each text's terms once, counted over the texts.
pub fn tally(texts: &[&str]) -> BTreeMap<String, i64> {
    let mut out = BTreeMap::new();
    for t in texts {
        let mut terms = Vec::new();
        search::terms_of(t, &mut terms);
        terms.sort();
        terms.dedup();
        for term in terms {
            *out.entry(term).or_insert(0) += 1;
        }
    }
    out
}

/// The texts of conversation `conv` were `old` and are now `new` (in part: only the texts that
/// changed need be passed, as long as `old` and `new` name the same ones).
pub fn replace(tx: &WriteTransaction, conv: u128, old: &[&str], new: &[&str]) -> Result<()> {
    let mut delta = tally(new);
    for (term, n) in tally(old) {
        *delta.entry(term).or_insert(0) -= n;
    }
    apply(tx, conv, delta)
}

/// Adds (or, negative, takes away) each term's count for conversation `conv`: `delta` is a
/// [`tally`], worked out wherever it was cheapest (for a conversation received whole, on the
/// thread that loaded it rather than the writer's).
pub fn apply(tx: &WriteTransaction, conv: u128, delta: BTreeMap<String, i64>) -> Result<()> {
    let mut t = tx.open_table(TEXT_WORDS)?;
    for (term, d) in delta.into_iter().filter(|(_, d)| *d != 0) {
        let key = (term.as_str(), conv);
        if d > 0 {
            // Most terms are new for the conversation: one descent of the tree, not two.
            let n = u32::try_from(d).unwrap_or(u32::MAX);
            let old = t.insert(key, n)?.map(|v| v.value());
            if let Some(old) = old {
                t.insert(key, old.saturating_add(n))?;
            }
            continue;
        }
        let cur = t.get(key)?.map(|v| i64::from(v.value())).unwrap_or(0);
        let next = (cur + d).max(0);
        if next == 0 {
            t.remove(key)?;
        } else {
            t.insert(key, u32::try_from(next).unwrap_or(u32::MAX))?;
        }
    }
    Ok(())
}

/// Conversations with a text term starting with `prefix`, at most `cap` (the highest ids, that
/// is the newest conversations, first); `true` if there were more.
pub fn with_prefix(
    tx: &ReadTransaction,
    prefix: &str,
    cap: usize,
    out: &mut HashSet<u128>,
) -> Result<bool> {
    let t = tx.open_table(TEXT_WORDS)?;
    let hi = format!("{prefix}\u{10FFFF}");
    for (n, entry) in t
        .range((prefix, 0u128)..(hi.as_str(), 0u128))?
        .rev()
        .enumerate()
    {
        if n >= cap {
            return Ok(true);
        }
        out.insert(entry?.0.value().1);
    }
    Ok(false)
}

/// How many entries a prefix has, up to `cap + 1`.
pub fn count_prefix(tx: &ReadTransaction, prefix: &str, cap: usize) -> Result<usize> {
    let t = tx.open_table(TEXT_WORDS)?;
    let hi = format!("{prefix}\u{10FFFF}");
    Ok(t.range((prefix, 0u128)..(hi.as_str(), 0u128))?
        .take(cap + 1)
        .count())
}

/// One entry's part of a conversation's digest: FNV-1a of the term and its count. Parts are
/// added (wrapping), so the digest does not depend on the order entries are met in.
fn part(term: &str, n: u64) -> u64 {
    term.bytes()
        .chain(n.to_le_bytes())
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        })
}

/// What the entries of a conversation whose texts are `texts` add up to (for `parley check`).
pub fn digest(texts: &[&str]) -> u64 {
    tally(texts)
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .fold(0u64, |d, (t, n)| d.wrapping_add(part(&t, n as u64)))
}

/// The digest of every conversation's stored entries, in one walk of the table.
pub fn digests(tx: &ReadTransaction) -> Result<std::collections::HashMap<u128, u64>> {
    let mut out = std::collections::HashMap::new();
    for item in tx.open_table(TEXT_WORDS)?.iter()? {
        let (k, v) = item?;
        let (term, id) = k.value();
        let d = out.entry(id).or_insert(0u64);
        *d = d.wrapping_add(part(term, u64::from(v.value())));
    }
    Ok(out)
}

pub fn create_tables(tx: &WriteTransaction) -> std::result::Result<(), redb::TableError> {
    tx.open_table(TEXT_WORDS)?;
    Ok(())
}

pub fn clear_derived(tx: &WriteTransaction) -> std::result::Result<(), redb::TableError> {
    tx.delete_table(TEXT_WORDS)?;
    Ok(())
}
