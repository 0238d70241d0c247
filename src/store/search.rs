//! The search index: one `WORDS` entry per search term of a conversation, kept beside its
//! facets in the same write transaction, and the search box's query over it.
//!
//! Entries are keyed by (term, id) with no activity time, so a reply, which changes the
//! activity time but not the terms, leaves them alone; only a new subject, reference ID or
//! topic touches them. A query walks the entries of its most selective term by prefix (a range
//! scan of the words that start with it), reads those rows and orders them newest activity
//! first, so its cost depends on how many conversations match, not on how many are stored. At
//! most [`MAX_CANDIDATES`] entries are read, the most recently created first; a query so broad
//! that it matches more is answered from those and says so with `truncated`.

use std::collections::HashSet;

use redb::{ReadTransaction, WriteTransaction};

use super::Result;
use super::query::{InboxPage, InboxQuery, next_cursor, unread_count};
use super::tables::*;
use crate::domain::search;

pub const MAX_CANDIDATES: usize = 5_000;

/// Replaces the search entries of one conversation (`old` as indexed, `new` as derived now);
/// touches nothing when its terms did not change.
pub fn index_terms(
    tx: &WriteTransaction,
    old: Option<&crate::domain::Summary>,
    new: &crate::domain::Summary,
) -> Result<()> {
    let id = new.id.as_u128();
    let new_terms = search::terms(new);
    let old_terms = old.map(search::terms).unwrap_or_default();
    if old_terms == new_terms {
        return Ok(());
    }
    let mut words = tx.open_table(WORDS)?;
    for t in old_terms.iter().filter(|t| !new_terms.contains(t)) {
        words.remove((t.as_str(), id))?;
    }
    for t in new_terms.iter().filter(|t| !old_terms.contains(t)) {
        words.insert((t.as_str(), id), ())?;
    }
    Ok(())
}

/// Every key of `WORDS` whose term starts with `prefix`, newest conversation first.
fn prefix_range<'t>(
    words: &'t redb::ReadOnlyTable<(&'static str, u128), ()>,
    prefix: &str,
) -> Result<redb::Range<'t, (&'static str, u128), ()>> {
    // Terms are UTF-8, so every term starting with `prefix` sorts below `prefix` followed
    // by the largest scalar value.
    let hi = format!("{prefix}\u{10FFFF}");
    Ok(words.range((prefix, 0u128)..(hi.as_str(), 0u128))?)
}

/// Conversations whose terms start with every one of `terms` (from
/// [`search::query_terms`], not empty) and that pass the inbox query's filters, newest activity
/// first, paged like the inbox.
pub fn search(tx: &ReadTransaction, terms: &[String], q: &InboxQuery) -> Result<(InboxPage, bool)> {
    let words = tx.open_table(WORDS)?;
    let mut summaries = super::rebuild::Rows::new(tx)?;
    let unread_marks = tx.open_table(UNREAD)?;
    // Each term's conversations: by their subject, reference ID or topic ref (`WORDS`), or by
    // the words of a message body or one of our notes (`text_words`), each read up to the
    // cap. A row must be in every term's set; the smallest set drives.
    let mut truncated = false;
    let mut sets: Vec<HashSet<u128>> = Vec::with_capacity(terms.len());
    for t in terms {
        let mut set = HashSet::new();
        for (n, entry) in prefix_range(&words, t)?.rev().enumerate() {
            if n >= MAX_CANDIDATES {
                truncated = true;
                break;
            }
            set.insert(entry?.0.value().1);
        }
        truncated |= super::text_words::with_prefix(tx, t, MAX_CANDIDATES, &mut set)?;
        sets.push(set);
    }
    sets.sort_by_key(|s| s.len());
    let mut sets = sets.into_iter();
    let mut cands = sets.next().unwrap_or_default();
    for s in sets {
        cands.retain(|id| s.contains(id));
    }
    // Order and filter the candidates by key lookups (each row's activity time, then its
    // facet entries, which carry that time), and decode only the rows of the page: a common
    // word has thousands of candidates, and decoding each was most of a search's cost.
    let activity = tx.open_table(ACTIVITY)?;
    let facets = tx.open_table(FACETS)?;
    let keys: Vec<String> = q.filters.iter().map(|f| f.key()).collect();
    let overdue = crate::domain::Facet::Overdue.key();
    let mut rows: Vec<(i64, u128)> = Vec::with_capacity(cands.len());
    for id in cands {
        // Not listed (a damaged document, or an id that is not a conversation's).
        let Some(at) = activity.get(id)?.map(|v| v.value()) else {
            continue;
        };
        let mut ok = true;
        for k in &keys {
            if facets.get((k.as_str(), at, id))?.is_none() {
                ok = false;
                break;
            }
        }
        if ok && q.exclude_overdue && facets.get((overdue.as_str(), at, id))?.is_some() {
            ok = false;
        }
        if ok {
            rows.push((at, id));
        }
    }
    rows.sort_unstable_by(|x, y| y.cmp(x));

    let total = rows.len() as u64;
    let mut items = Vec::with_capacity(q.limit);
    let mut more = false;
    for key in rows {
        if q.cursor.is_some_and(|c| key >= (c.activity_ms, c.id)) {
            continue;
        }
        if items.len() == q.limit {
            more = true;
            break;
        }
        // A damaged entry or document leaves the row out instead of failing the search.
        let Some(s) = summaries.get(key.1)? else {
            continue;
        };
        let unread = unread_marks.get((q.user.as_str(), key.1))?.is_some();
        items.push((s, unread));
    }
    let next_cursor = next_cursor(&items, more);
    let unread = unread_count(tx, &q.user)?;
    Ok((
        InboxPage {
            items,
            next_cursor,
            total,
            unread,
            damaged_rows: summaries.damaged,
        },
        truncated,
    ))
}
