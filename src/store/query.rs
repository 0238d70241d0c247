//! Read-side queries over the derived tables: the inbox page and the changes feed.
//!
//! An inbox page walks one facet's entries newest-first from the cursor and stops after
//! `limit` rows, so its cost is an index range of `limit` entries however many conversations
//! are stored. With several filters the facet with the fewest entries drives the walk and the
//! others are checked on each row by key lookups. Totals come from `FACET_COUNTS` for one
//! filter and from `PAIR_COUNTS` for two; only rarer combinations (three filters, or two plus
//! `overdue=false`) count by walking the smallest facet.

use chrono::NaiveDate;
use redb::{ReadTransaction, ReadableTable};
use uuid::Uuid;

use super::Result;
use super::tables::*;
use crate::domain::{Facet, Summary};

/// Position after the last row of a page: (last activity ms, id).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub activity_ms: i64,
    pub id: u128,
}

impl Cursor {
    pub fn encode(&self) -> String {
        format!("{}.{}", self.activity_ms, Uuid::from_u128(self.id).simple())
    }
    pub fn decode(s: &str) -> Option<Cursor> {
        let (a, b) = s.split_once('.')?;
        Some(Cursor {
            activity_ms: a.parse().ok()?,
            id: Uuid::try_parse(b).ok()?.as_u128(),
        })
    }
}

#[derive(Debug, Clone)]
pub struct InboxQuery {
    /// All must match; empty means everything.
    pub filters: Vec<Facet>,
    /// `overdue=false`: leave out overdue tasks.
    pub exclude_overdue: bool,
    pub cursor: Option<Cursor>,
    pub limit: usize,
    pub user: String,
    pub today: NaiveDate,
}

#[derive(Debug, Clone)]
pub struct InboxPage {
    pub items: Vec<(Summary, bool)>,
    pub next_cursor: Option<Cursor>,
    pub total: u64,
    pub unread: u64,
    /// Rows that did not verify and were derived from their documents instead.
    pub damaged_rows: Vec<u128>,
}

fn count(t: &impl ReadableTable<&'static str, u64>, facet: &str) -> Result<u64> {
    Ok(t.get(facet)?.map(|v| v.value()).unwrap_or(0))
}

pub fn inbox(tx: &ReadTransaction, q: &InboxQuery) -> Result<InboxPage> {
    let counts = tx.open_table(FACET_COUNTS)?;
    let facets = tx.open_table(FACETS)?;
    let mut rows = super::rebuild::Rows::new(tx)?;
    let unread_marks = tx.open_table(UNREAD)?;

    // Drive the walk with the smallest facet.
    let mut filters = q.filters.clone();
    Facet::combine(&mut filters);
    if filters.is_empty() {
        filters.push(Facet::All);
    }
    let mut sized = Vec::with_capacity(filters.len());
    for f in filters {
        let key = f.key();
        sized.push((count(&counts, &key)?, key, f));
    }
    sized.sort_by_key(|(n, _, _)| *n);
    let (driver_count, driver, _) = sized[0].clone();
    let rest: Vec<Facet> = sized[1..].iter().map(|(_, _, f)| f.clone()).collect();
    let simple = rest.is_empty() && !q.exclude_overdue;

    let lo = (driver.as_str(), i64::MIN, 0u128);
    let hi = match q.cursor {
        Some(c) => (driver.as_str(), c.activity_ms, c.id),
        None => (driver.as_str(), i64::MAX, u128::MAX),
    };
    let range = if q.cursor.is_some() {
        facets.range(lo..hi)?
    } else {
        facets.range(lo..=hi)?
    };
    // A row passes when it is listed under every other filter's facet and, for
    // `overdue=false`, not under `overdue`. Every facet entry of a conversation carries the
    // same activity time, so membership is one key lookup, with no summary decoded.
    let rest_keys: Vec<String> = rest.iter().map(Facet::key).collect();
    let overdue_key = Facet::Overdue.key();
    let passes = |activity: i64, id: u128| -> Result<bool> {
        for k in &rest_keys {
            if facets.get((k.as_str(), activity, id))?.is_none() {
                return Ok(false);
            }
        }
        Ok(!(q.exclude_overdue && facets.get((overdue_key.as_str(), activity, id))?.is_some()))
    };

    let mut items = Vec::with_capacity(q.limit);
    let mut more = false;
    for entry in range.rev() {
        let (k, _) = entry?;
        let (_, activity, id) = k.value();
        if !simple && !passes(activity, id)? {
            continue;
        }
        if items.len() == q.limit {
            more = true;
            break;
        }
        // A facet entry without a row (its id damaged, or its document damaged) is left out
        // rather than failing the page for everyone; `parley check` reports it.
        let Some(s) = rows.get(id)? else {
            tracing::warn!(conversation = %Uuid::from_u128(id), "an inbox entry has no readable row; run `parley check`");
            continue;
        };
        let unread = unread_marks.get((q.user.as_str(), id))?.is_some();
        items.push((s, unread));
    }
    let next_cursor = next_cursor(&items, more);

    let pairs = tx.open_table(PAIR_COUNTS)?;
    let total = if simple {
        driver_count
    } else if rest.is_empty() && driver == Facet::All.key() {
        driver_count.saturating_sub(count(&counts, &overdue_key)?)
    } else if !q.exclude_overdue
        && rest_keys.len() == 1
        && let Some(n) = super::pairs::count(&pairs, &driver, &rest_keys[0])?
    {
        n
    } else if q.exclude_overdue
        && rest_keys.is_empty()
        && let Some(n) = super::pairs::count(&pairs, &driver, &overdue_key)?
    {
        driver_count.saturating_sub(n)
    } else {
        // Three or more filters, or one that is not paired: count by walking the smallest.
        let mut n = 0;
        for entry in facets
            .range((driver.as_str(), i64::MIN, 0u128)..=(driver.as_str(), i64::MAX, u128::MAX))?
        {
            let (_, activity, id) = entry?.0.value();
            if passes(activity, id)? {
                n += 1;
            }
        }
        n
    };
    let unread = unread_count(tx, &q.user)?;
    Ok(InboxPage {
        items,
        next_cursor,
        total,
        unread,
        damaged_rows: rows.damaged,
    })
}

/// Where the next page starts: after the last row, when there are more rows.
pub(super) fn next_cursor(items: &[(Summary, bool)], more: bool) -> Option<Cursor> {
    let (s, _) = items.last().filter(|_| more)?;
    Some(Cursor {
        activity_ms: s.activity_ms(),
        id: s.id.as_u128(),
    })
}

/// The user's unread count, kept exact by `index::set_unread`.
pub(super) fn unread_count(tx: &ReadTransaction, user: &str) -> Result<u64> {
    Ok(tx
        .open_table(UNREAD_COUNT)?
        .get(user)?
        .map(|v| v.value())
        .unwrap_or(0))
}

/// One entry of the changes feed.
#[derive(Debug, Clone)]
pub struct FeedEntry {
    pub seq: u64,
    pub summary: Summary,
}

/// Conversations changed after `since`, oldest change first, and the feed's last sequence.
pub fn changes(tx: &ReadTransaction, since: u64, limit: usize) -> Result<(Vec<FeedEntry>, u64)> {
    let feed = tx.open_table(FEED)?;
    let mut rows = super::rebuild::Rows::new(tx)?;
    let last = feed.last()?.map(|(k, _)| k.value()).unwrap_or(0);
    let mut out = Vec::new();
    for entry in feed.range(since.saturating_add(1)..)?.take(limit) {
        let (k, v) = entry?;
        if let Some(summary) = rows.get(v.value())? {
            out.push(FeedEntry {
                seq: k.value(),
                summary,
            });
        }
    }
    Ok((out, last))
}
