//! Read-side queries over the derived tables: the inbox page and the changes feed.
//!
//! An inbox page walks one range newest-first from the cursor and stops after `limit` rows,
//! so its cost is an index range of `limit` entries however many conversations are stored.
//! The range is one facet's entries or, for the Unread folder, the user's `UNREAD_ORDER`
//! entries; with several filters the range with the fewest entries drives the walk and the
//! others are checked on each row by key lookups. Totals come from `FACET_COUNTS` for one
//! filter, from `PAIR_COUNTS` for two and from `UNREAD_COUNT` for the Unread folder alone (so
//! that folder's total is the header's unread count by construction); only rarer
//! combinations (three filters, two plus `overdue=false`, the Unread folder with a filter)
//! count by walking the smallest range.

use chrono::NaiveDate;
use redb::{ReadOnlyTable, ReadTransaction, ReadableTable};
use uuid::Uuid;

use super::Result;
use super::due_sort::DueCursor;
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
        // `i64::from_str` takes a leading `+`; a cursor this node wrote never has one.
        if !a.starts_with(|c: char| c == '-' || c.is_ascii_digit()) {
            return None;
        }
        Some(Cursor {
            activity_ms: a.parse().ok()?,
            id: Uuid::try_parse(b).ok()?.as_u128(),
        })
    }
}

/// The order of an inbox page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Sort {
    /// Newest activity first.
    #[default]
    Activity,
    /// Soonest due date first (ties by id), then those without one, newest activity first.
    Due,
}

/// Where the next page starts, in the order of the page it came from. The encodings of the
/// two orders never parse as each other, so a cursor of one order is refused by the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageCursor {
    Activity(Cursor),
    Due(DueCursor),
}

impl PageCursor {
    pub fn encode(&self) -> String {
        match self {
            PageCursor::Activity(c) => c.encode(),
            PageCursor::Due(c) => c.encode(),
        }
    }
    /// A cursor of `sort`; `None` if `s` is not one this node issued for that order.
    pub fn decode(s: &str, sort: Sort) -> Option<PageCursor> {
        match sort {
            Sort::Activity => Cursor::decode(s).map(PageCursor::Activity),
            Sort::Due => DueCursor::decode(s).map(PageCursor::Due),
        }
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
    pub next_cursor: Option<PageCursor>,
    pub total: u64,
    pub unread: u64,
    /// Rows that did not verify and were derived from their documents instead.
    pub damaged_rows: Vec<u128>,
}

fn count(t: &impl ReadableTable<&'static str, u64>, facet: &str) -> Result<u64> {
    Ok(t.get(facet)?.map(|v| v.value()).unwrap_or(0))
}

/// The tables a page reads, opened once.
pub(super) struct Tables {
    pub facets: ReadOnlyTable<(&'static str, i64, u128), ()>,
    pub marks: ReadOnlyTable<(&'static str, u128), ()>,
    unread_order: ReadOnlyTable<(&'static str, i64, u128), ()>,
    counts: ReadOnlyTable<&'static str, u64>,
    pairs: ReadOnlyTable<(&'static str, &'static str), u64>,
}

impl Tables {
    pub fn open(tx: &ReadTransaction) -> Result<Tables> {
        Ok(Tables {
            facets: tx.open_table(FACETS)?,
            marks: tx.open_table(UNREAD)?,
            unread_order: tx.open_table(UNREAD_ORDER)?,
            counts: tx.open_table(FACET_COUNTS)?,
            pairs: tx.open_table(PAIR_COUNTS)?,
        })
    }
}

/// Which range drives a walk: one facet's entries, or the user's unread entries. Both are
/// keyed (name, activity ms, id), so a row found in one is looked up in the others by key.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Driver {
    Facet(String),
    Unread,
}

/// How rows are chosen for a query: the driving range and what every row must also pass.
pub(super) struct Plan {
    driver: Driver,
    driver_count: u64,
    /// Facet keys every row is also listed under.
    rest: Vec<String>,
    /// Rows must be unread by `user`, and the driver is a facet.
    unread_check: bool,
    exclude_overdue: bool,
    user: String,
}

impl Plan {
    /// `unread_only`: the Unread folder of `q.user`, whose unread count is `unread`.
    pub fn new(t: &Tables, q: &InboxQuery, unread_only: bool, unread: u64) -> Result<Plan> {
        let mut filters = q.filters.clone();
        Facet::combine(&mut filters);
        if filters.is_empty() && !unread_only {
            filters.push(Facet::All);
        }
        let mut sized = Vec::with_capacity(filters.len());
        for f in filters {
            let key = f.key();
            if !sized.iter().any(|(_, k)| *k == key) {
                sized.push((count(&t.counts, &key)?, key));
            }
        }
        sized.sort();
        let by_unread = unread_only && sized.first().is_none_or(|(n, _)| unread <= *n);
        let (driver, driver_count, rest) = if by_unread {
            let rest = sized.into_iter().map(|(_, k)| k).collect();
            (Driver::Unread, unread, rest)
        } else {
            let mut keys = sized.into_iter();
            let (n, k) = keys.next().unwrap_or((0, Facet::All.key()));
            (Driver::Facet(k), n, keys.map(|(_, k)| k).collect())
        };
        Ok(Plan {
            driver,
            driver_count,
            rest,
            unread_check: unread_only && !by_unread,
            exclude_overdue: q.exclude_overdue,
            user: q.user.clone(),
        })
    }

    /// Plain: every row of the driving range passes.
    fn simple(&self) -> bool {
        self.rest.is_empty() && !self.unread_check && !self.exclude_overdue
    }

    /// A row of the driving range passes the other checks: listed under every other facet,
    /// unread if the folder asks, and not overdue for `overdue=false`. Every entry of a
    /// conversation carries the same activity time, so each check is one key lookup, with no
    /// row decoded.
    pub fn passes(&self, t: &Tables, activity: i64, id: u128) -> Result<bool> {
        for k in &self.rest {
            if t.facets.get((k.as_str(), activity, id))?.is_none() {
                return Ok(false);
            }
        }
        if self.unread_check && t.marks.get((self.user.as_str(), id))?.is_none() {
            return Ok(false);
        }
        Ok(!(self.exclude_overdue
            && t.facets
                .get((Facet::Overdue.key().as_str(), activity, id))?
                .is_some()))
    }

    /// Whether a row found elsewhere (the due-date order) is in the driving range too.
    pub fn in_driver(&self, t: &Tables, activity: i64, id: u128) -> Result<bool> {
        Ok(match &self.driver {
            Driver::Facet(k) => t.facets.get((k.as_str(), activity, id))?.is_some(),
            Driver::Unread => t.marks.get((self.user.as_str(), id))?.is_some(),
        })
    }

    /// Calls `visit` with every passing row after `after`, newest activity first, until it
    /// returns `false`.
    pub fn walk(
        &self,
        t: &Tables,
        after: Option<Cursor>,
        mut visit: impl FnMut(i64, u128) -> Result<bool>,
    ) -> Result<()> {
        let (table, name) = match &self.driver {
            Driver::Facet(k) => (&t.facets, k.as_str()),
            Driver::Unread => (&t.unread_order, self.user.as_str()),
        };
        let lo = (name, i64::MIN, 0u128);
        let range = match after {
            Some(c) => table.range(lo..(name, c.activity_ms, c.id))?,
            None => table.range(lo..=(name, i64::MAX, u128::MAX))?,
        };
        let simple = self.simple();
        for entry in range.rev() {
            let (_, activity, id) = entry?.0.value();
            if (simple || self.passes(t, activity, id)?) && !visit(activity, id)? {
                break;
            }
        }
        Ok(())
    }

    /// How many rows pass: from the counts where they say, else by walking the driver.
    pub fn total(&self, t: &Tables) -> Result<u64> {
        if self.simple() {
            return Ok(self.driver_count);
        }
        let overdue = Facet::Overdue.key();
        if let (Driver::Facet(d), false) = (&self.driver, self.unread_check) {
            if self.rest.is_empty() && *d == Facet::All.key() {
                return Ok(self
                    .driver_count
                    .saturating_sub(count(&t.counts, &overdue)?));
            }
            if !self.exclude_overdue
                && self.rest.len() == 1
                && let Some(n) = super::pairs::count(&t.pairs, d, &self.rest[0])?
            {
                return Ok(n);
            }
            if self.exclude_overdue
                && self.rest.is_empty()
                && let Some(n) = super::pairs::count(&t.pairs, d, &overdue)?
            {
                return Ok(self.driver_count.saturating_sub(n));
            }
        }
        // Three or more filters, or ones that are not paired: count by walking the smallest.
        let mut n = 0;
        self.walk(t, None, |_, _| {
            n += 1;
            Ok(true)
        })?;
        Ok(n)
    }
}

pub fn inbox(tx: &ReadTransaction, q: &InboxQuery) -> Result<InboxPage> {
    folder_page(tx, q, false)
}

/// An inbox page newest activity first; `unread_only`: the Unread folder of `q.user`.
pub fn folder_page(tx: &ReadTransaction, q: &InboxQuery, unread_only: bool) -> Result<InboxPage> {
    let t = Tables::open(tx)?;
    let mut rows = super::rebuild::Rows::new(tx)?;
    let unread = unread_count(tx, &q.user)?;
    let plan = Plan::new(&t, q, unread_only, unread)?;
    let mut items = Vec::with_capacity(q.limit);
    let mut more = false;
    plan.walk(&t, q.cursor, |_, id| {
        if items.len() == q.limit {
            more = true;
            return Ok(false);
        }
        // A facet entry without a row (its id damaged, or its document damaged) is left out
        // rather than failing the page for everyone; `parley check` reports it.
        let Some(s) = rows.get(id)? else {
            tracing::warn!(conversation = %Uuid::from_u128(id), "an inbox entry has no readable row; run `parley check`");
            return Ok(true);
        };
        let unread = t.marks.get((q.user.as_str(), id))?.is_some();
        items.push((s, unread));
        Ok(true)
    })?;
    let next_cursor = next_cursor(&items, more);
    Ok(InboxPage {
        items,
        next_cursor,
        total: plan.total(&t)?,
        unread,
        damaged_rows: rows.damaged,
    })
}

/// Where the next page starts: after the last row, when there are more rows.
pub(super) fn next_cursor(items: &[(Summary, bool)], more: bool) -> Option<PageCursor> {
    let (s, _) = items.last().filter(|_| more)?;
    Some(PageCursor::Activity(Cursor {
        activity_ms: s.activity_ms(),
        id: s.id.as_u128(),
    }))
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
    let pos = tx.open_table(FEED_POS)?;
    let mut rows = super::rebuild::Rows::new(tx)?;
    let last = feed.last()?.map(|(k, _)| k.value()).unwrap_or(0);
    let mut out = Vec::new();
    for entry in feed.range(since.saturating_add(1)..)?.take(limit) {
        let (k, v) = entry?;
        // A team document's change (an assignment, a note) is told as its conversation's,
        // and a conversation is listed once, at the later of its own and its team
        // document's latest change.
        use crate::domain::team::{conversation_of, is_team_id, team_id};
        let seq = k.value();
        let (id, twin) = match v.value() {
            t if is_team_id(t) => (conversation_of(t).as_u128(), t),
            c => (c, team_id(Uuid::from_u128(c))),
        };
        let other = if id == v.value() { twin } else { id };
        if pos.get(other)?.is_some_and(|p| p.value() > seq) {
            continue;
        }
        if let Some(summary) = rows.get(id)? {
            out.push(FeedEntry {
                seq: k.value(),
                summary,
            });
        }
    }
    Ok((out, last))
}
