//! The search index: one `WORDS` entry per search term of a conversation, kept beside its
//! facets in the same write transaction, and the search box's query over it.
//!
//! A query walks the entries of its most selective term by prefix (a range scan of the words that
//! start with it), so its cost depends on how many conversations match, not on how many are
//! stored. At most [`MAX_CANDIDATES`] entries are read; a query so broad that it matches more
//! is answered from the newest of them and says so with `truncated`.

use std::collections::HashMap;

use chrono::NaiveDate;
use redb::{ReadTransaction, WriteTransaction};

use super::index::get_summary;
use super::query::{Cursor, InboxPage};
use super::tables::*;
use super::{Result, StoreError};
use crate::domain::{Facet, Summary, search};

pub const MAX_CANDIDATES: usize = 5_000;

/// Replaces the search entries of one conversation (`old` as indexed, `new` as derived now).
pub fn index_terms(tx: &WriteTransaction, old: Option<&Summary>, new: &Summary) -> Result<()> {
    let id = new.id.as_u128();
    let mut words = tx.open_table(WORDS)?;
    if let Some(o) = old {
        for t in search::terms(o) {
            words.remove((t.as_str(), o.activity_ms(), id))?;
        }
    }
    for t in search::terms(new) {
        words.insert((t.as_str(), new.activity_ms(), id), ())?;
    }
    Ok(())
}

#[derive(Debug, Clone)]
pub struct SearchQuery {
    /// From [`search::query_terms`]; not empty.
    pub terms: Vec<String>,
    pub filters: Vec<Facet>,
    pub exclude_overdue: bool,
    pub cursor: Option<Cursor>,
    pub limit: usize,
    pub user: String,
    pub today: NaiveDate,
}

/// Conversations whose terms start with every query term and that pass the filters, newest
/// activity first, paged like the inbox.
pub fn search(tx: &ReadTransaction, q: &SearchQuery) -> Result<(InboxPage, bool)> {
    let words = tx.open_table(WORDS)?;
    let summaries = tx.open_table(SUMMARIES)?;
    let unread_marks = tx.open_table(UNREAD)?;
    // Drive with the term that has the fewest entries (each counted up to the cap), e.g. a
    // reference rather than a common word.
    let mut driver = String::new();
    let mut fewest = usize::MAX;
    for t in &q.terms {
        let mut n = 0;
        for entry in words.range((t.as_str(), i64::MIN, 0u128)..)? {
            if !entry?.0.value().0.starts_with(t.as_str()) || n > MAX_CANDIDATES {
                break;
            }
            n += 1;
        }
        if n < fewest {
            (fewest, driver) = (n, t.clone());
        }
    }

    // Candidates: (activity, id), deduplicated (a row has several terms under one prefix).
    let mut cands: HashMap<u128, i64> = HashMap::new();
    let mut truncated = false;
    for (n, entry) in words
        .range((driver.as_str(), i64::MIN, 0u128)..)?
        .enumerate()
    {
        let (k, _) = entry?;
        let (word, ms, id) = k.value();
        if !word.starts_with(driver.as_str()) {
            break;
        }
        if n >= MAX_CANDIDATES {
            truncated = true;
            break;
        }
        cands.insert(id, ms);
    }
    let mut order: Vec<(i64, u128)> = cands.into_iter().map(|(id, ms)| (ms, id)).collect();
    order.sort_unstable_by(|a, b| b.cmp(a));

    let mut items = Vec::with_capacity(q.limit);
    let mut total = 0u64;
    let mut more = false;
    for (ms, id) in order {
        let s = get_summary(&summaries, id)?.ok_or_else(|| {
            StoreError::Record(format!("summary {id:x}"), "searchable but missing".into())
        })?;
        let ok = q.filters.iter().all(|f| s.matches(f, q.today))
            && !(q.exclude_overdue && s.overdue(q.today))
            && search::matches(&search::terms(&s), &q.terms);
        if !ok {
            continue;
        }
        total += 1;
        let after_cursor = q.cursor.is_none_or(|c| (ms, id) < (c.activity_ms, c.id));
        if !after_cursor {
            continue;
        }
        if items.len() == q.limit {
            more = true;
            continue;
        }
        let unread = unread_marks.get((q.user.as_str(), id))?.is_some();
        items.push((s, unread));
    }
    let next_cursor = if more {
        items.last().map(|(s, _)| Cursor {
            activity_ms: s.activity_ms(),
            id: s.id.as_u128(),
        })
    } else {
        None
    };
    let unread = tx
        .open_table(UNREAD_COUNT)?
        .get(q.user.as_str())?
        .map(|v| v.value())
        .unwrap_or(0);
    Ok((
        InboxPage {
            items,
            next_cursor,
            total,
            unread,
        },
        truncated,
    ))
}
