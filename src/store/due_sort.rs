//! The `sort=due` order: conversations with a due date first, soonest due first (ties by id),
//! then those without one, newest activity first; and the search box within a folder or
//! order that the search index does not page by itself.
//!
//! Cost of a page. `DUE_ORDER` holds each dated conversation once per facet of `ranges()` it
//! is listed under, and a page walks one of those ranges: the narrowest the query implies
//! (`active_task` for the Tasks folder, `state:open` for the Inbox and for Action required,
//! `state:resolved` for Resolved, else `all`). It walks upward from the cursor and checks each
//! entry against the query by key lookups (the entry's value is the row's activity time,
//! which facets are keyed by), so no row is decoded before it is known to pass. It reads the
//! range's entries between the cursor and the page's last row whether they pass or not:
//! `limit` entries when the other filters match most of that facet's dated rows, at worst
//! every dated row of the facet when they match few (for Action required, every dated open
//! conversation, as it changes with the overdue sweep and is not kept as a range). Resolved
//! rows never cost an open folder anything. The undated part is an ordinary activity walk
//! with `no_due_date` as one more filter, so it costs what an inbox page costs. The total is
//! the folder's total, from the counts as for `sort=activity`: the order does not change
//! which conversations match.

use std::cmp::Reverse;
use std::ops::Bound;

use chrono::Datelike;
use redb::{ReadTransaction, WriteTransaction};
use uuid::Uuid;

use super::Result;
use super::query::{Cursor, InboxPage, InboxQuery, PageCursor, Plan, Sort, Tables, unread_count};
use super::tables::*;
use crate::domain::{Facet, State, Summary};

/// Where a `sort=due` page ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DueCursor {
    /// After this dated row.
    Dated { day: i32, id: u128 },
    /// Every dated row is done; after this undated row.
    Undated(Cursor),
}

impl DueCursor {
    pub fn encode(&self) -> String {
        match self {
            DueCursor::Dated { day, id } => format!("d{day}.{}", Uuid::from_u128(*id).simple()),
            DueCursor::Undated(c) => format!("n{}", c.encode()),
        }
    }

    pub fn decode(s: &str) -> Option<DueCursor> {
        if let Some(rest) = s.strip_prefix('d') {
            let (d, id) = rest.split_once('.')?;
            if !d.starts_with(|c: char| c == '-' || c.is_ascii_digit()) {
                return None;
            }
            return Some(DueCursor::Dated {
                day: d.parse().ok()?,
                id: Uuid::try_parse(id).ok()?.as_u128(),
            });
        }
        Cursor::decode(s.strip_prefix('n')?).map(DueCursor::Undated)
    }

    /// The position of a row in this order, comparable with cursors.
    fn of(s: &Summary) -> DueCursor {
        match s.due_date {
            Some(d) => DueCursor::Dated {
                day: d.num_days_from_ce(),
                id: s.id.as_u128(),
            },
            None => DueCursor::Undated(Cursor {
                activity_ms: s.activity_ms(),
                id: s.id.as_u128(),
            }),
        }
    }

    /// Sort key: dated rows before undated ones, each in its own order.
    fn key(&self) -> (u8, i64, u128, Reverse<(i64, u128)>) {
        match *self {
            DueCursor::Dated { day, id } => (0, day.into(), id, Reverse((0, 0))),
            DueCursor::Undated(c) => (1, 0, 0, Reverse((c.activity_ms, c.id))),
        }
    }
}

/// The facets the due-date order is kept for; each is a superset of what some folder lists.
fn ranges() -> [String; 4] {
    [
        Facet::All,
        Facet::State(State::Open),
        Facet::State(State::Resolved),
        Facet::ActiveTask,
    ]
    .map(|f| f.key())
}

/// The narrowest range of `ranges()` that holds every row `filters` can match: each filter
/// looked at implies the facet chosen (awaiting reply, action required and an active task
/// are all open), so walking it and checking the query on each entry loses nothing.
fn range_for(filters: &[Facet]) -> String {
    let mut best = Facet::All;
    for f in filters {
        match f {
            Facet::ActiveTask => return Facet::ActiveTask.key(),
            Facet::State(s) | Facet::StateKind(s, _) => best = Facet::State(*s),
            Facet::AwaitingReply | Facet::ActionRequired | Facet::Overdue => {
                best = Facet::State(State::Open)
            }
            _ => {}
        }
    }
    best.key()
}

/// Keeps `DUE_ORDER` in step with one conversation's row changing from `old` to `new`.
pub(super) fn update(tx: &WriteTransaction, old: Option<&Summary>, new: &Summary) -> Result<()> {
    let keep = ranges();
    let entries = |s: &Summary| -> Vec<(String, i32, i64)> {
        let Some(d) = s.due_date else {
            return Vec::new();
        };
        s.facets()
            .into_iter()
            .filter(|f| keep.contains(f))
            .map(|f| (f, d.num_days_from_ce(), s.activity_ms()))
            .collect()
    };
    let (before, after) = (old.map(entries).unwrap_or_default(), entries(new));
    if before == after {
        return Ok(());
    }
    let id = new.id.as_u128();
    let mut t = tx.open_table(DUE_ORDER)?;
    for (f, day, _) in &before {
        t.remove((f.as_str(), *day, id))?;
    }
    for (f, day, activity) in &after {
        t.insert((f.as_str(), *day, id), *activity)?;
    }
    Ok(())
}

/// A `sort=due` page; `unread_only`: the Unread folder of `q.user`.
pub fn page(
    tx: &ReadTransaction,
    q: &InboxQuery,
    unread_only: bool,
    after: Option<DueCursor>,
) -> Result<InboxPage> {
    let t = Tables::open(tx)?;
    let mut rows = super::rebuild::Rows::new(tx)?;
    let unread = unread_count(tx, &q.user)?;
    let plan = Plan::new(&t, q, unread_only, unread)?;
    let mut items = Vec::with_capacity(q.limit);
    let mut last = None;
    let mut more = false;
    if !matches!(after, Some(DueCursor::Undated(_))) {
        let due = tx.open_table(DUE_ORDER)?;
        let mut filters = q.filters.clone();
        Facet::combine(&mut filters);
        let range = range_for(&filters);
        let r = range.as_str();
        let from = match after {
            Some(DueCursor::Dated { day, id }) => Bound::Excluded((r, day, id)),
            _ => Bound::Included((r, i32::MIN, 0)),
        };
        let to = Bound::Included((r, i32::MAX, u128::MAX));
        for entry in due.range::<(&str, i32, u128)>((from, to))? {
            let (k, v) = entry?;
            let ((_, day, id), activity) = (k.value(), v.value());
            if !(plan.in_driver(&t, activity, id)? && plan.passes(&t, activity, id)?) {
                continue;
            }
            if items.len() == q.limit {
                more = true;
                break;
            }
            // As in the activity order, a row that cannot be read is left out.
            let Some(s) = rows.get(id)? else { continue };
            items.push((s, t.marks.get((q.user.as_str(), id))?.is_some()));
            last = Some(DueCursor::Dated { day, id });
        }
    }
    if !more {
        let mut undated = q.clone();
        undated.filters.push(Facet::NoDueDate);
        let plan = Plan::new(&t, &undated, unread_only, unread)?;
        let from = match after {
            Some(DueCursor::Undated(c)) => Some(c),
            _ => None,
        };
        plan.walk(&t, from, |activity_ms, id| {
            if items.len() == q.limit {
                more = true;
                return Ok(false);
            }
            let Some(s) = rows.get(id)? else {
                return Ok(true);
            };
            items.push((s, t.marks.get((q.user.as_str(), id))?.is_some()));
            last = Some(DueCursor::Undated(Cursor { activity_ms, id }));
            Ok(true)
        })?;
    }
    Ok(InboxPage {
        items,
        next_cursor: last.filter(|_| more).map(PageCursor::Due),
        total: plan.total(&t)?,
        unread,
        damaged_rows: rows.damaged,
    })
}

/// The search box within the Unread folder or in the due-date order. The search index
/// orders its matches by activity only, so this takes every match (the search reads them all
/// anyway, up to `search::MAX_CANDIDATES`), keeps the unread ones if asked, orders and pages
/// them: the cost of the search itself.
pub fn search(
    tx: &ReadTransaction,
    terms: &[String],
    q: &InboxQuery,
    unread_only: bool,
    sort: Sort,
    after: Option<PageCursor>,
) -> Result<InboxPage> {
    let mut all = q.clone();
    all.cursor = None;
    all.limit = super::search::MAX_CANDIDATES;
    let (found, _) = super::search::search(tx, terms, &all)?;
    let mut rows: Vec<(Summary, bool)> = found
        .items
        .into_iter()
        .filter(|(_, unread)| !unread_only || *unread)
        .collect();
    let pos = |s: &Summary| match sort {
        Sort::Activity => PageCursor::Activity(Cursor {
            activity_ms: s.activity_ms(),
            id: s.id.as_u128(),
        }),
        Sort::Due => PageCursor::Due(DueCursor::of(s)),
    };
    let key = |c: &PageCursor| match c {
        PageCursor::Activity(c) => (0, 0, 0, Reverse((c.activity_ms, c.id))),
        PageCursor::Due(d) => d.key(),
    };
    rows.sort_by_key(|(s, _)| key(&pos(s)));
    let total = rows.len() as u64;
    let start = after.map_or(0, |a| {
        rows.partition_point(|(s, _)| key(&pos(s)) <= key(&a))
    });
    let mut items: Vec<(Summary, bool)> = rows.drain(start..).collect();
    let more = items.len() > q.limit;
    items.truncate(q.limit);
    let next_cursor = items.last().filter(|_| more).map(|(s, _)| pos(s));
    Ok(InboxPage {
        items,
        next_cursor,
        total,
        unread: found.unread,
        damaged_rows: found.damaged_rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Author, Kind, OrgId, Progress};
    use redb::{ReadableDatabase, ReadableTable};

    fn dated_task(day: &str) -> Summary {
        let t = chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let acme = OrgId::parse("acme").unwrap();
        Summary {
            id: Uuid::now_v7(),
            kind: Kind::Task,
            partner: OrgId::parse("bolt").unwrap(),
            subject: "s".into(),
            topic: None,
            reference_id: None,
            state: State::Open,
            progress: Some(Progress::Open),
            due_date: Some(day.parse().unwrap()),
            created_by: Author {
                org: acme,
                user: "u".into(),
            },
            created_at: t,
            last_activity_at: t,
            message_count: 0,
            last_message_org: None,
            last_message_preview: None,
            assignee: None,
        }
    }

    /// The ranges of `DUE_ORDER` that hold `id`.
    fn ranges_of(db: &redb::Database, id: Uuid) -> Vec<String> {
        let tx = db.begin_read().unwrap();
        let t = tx.open_table(DUE_ORDER).unwrap();
        let mut out: Vec<String> = t
            .iter()
            .unwrap()
            .filter_map(|e| {
                let (k, _) = e.unwrap();
                let (f, _, i) = k.value();
                (i == id.as_u128()).then(|| f.to_string())
            })
            .collect();
        out.sort();
        out
    }

    /// A resolved task leaves the open ranges, so the Inbox, Tasks and Action required never
    /// walk it; a finished task leaves `active_task`; an undated row is in none.
    #[test]
    fn each_dated_row_is_in_the_ranges_of_its_facets_only() {
        let db = redb::Database::builder()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .unwrap();
        let write = |old: Option<&Summary>, new: &Summary| {
            let tx = db.begin_write().unwrap();
            update(&tx, old, new).unwrap();
            tx.commit().unwrap();
        };
        let open = dated_task("2030-01-01");
        write(None, &open);
        assert_eq!(
            ranges_of(&db, open.id),
            ["active_task", "all", "state:open"]
        );
        let mut done = open.clone();
        done.progress = Some(Progress::Completed);
        write(Some(&open), &done);
        assert_eq!(ranges_of(&db, open.id), ["all", "state:open"]);
        let mut shut = done.clone();
        shut.state = State::Resolved;
        write(Some(&done), &shut);
        assert_eq!(ranges_of(&db, open.id), ["all", "state:resolved"]);
        let mut undated = shut.clone();
        undated.due_date = None;
        write(Some(&shut), &undated);
        assert!(ranges_of(&db, open.id).is_empty());
    }

    #[test]
    fn each_folder_walks_the_narrowest_range_that_holds_it() {
        let open = Facet::State(State::Open);
        for (filters, want) in [
            (vec![], "all"),
            (vec![Facet::Kind(Kind::Task)], "all"),
            (vec![open.clone()], "state:open"),
            (vec![Facet::ActiveTask], "active_task"),
            (vec![Facet::ActionRequired], "state:open"),
            (vec![Facet::Overdue, Facet::Kind(Kind::Task)], "state:open"),
            (
                vec![Facet::StateKind(State::Resolved, Kind::Task)],
                "state:resolved",
            ),
            (vec![Facet::State(State::Resolved)], "state:resolved"),
        ] {
            assert_eq!(range_for(&filters), want, "{filters:?}");
        }
    }

    /// Each order reads back its own cursors and refuses the other's, so a cursor can never
    /// be taken for a position in an order it was not made in.
    #[test]
    fn cursors_round_trip_within_their_sort_only() {
        let id = Uuid::now_v7().as_u128();
        let activity = Cursor {
            activity_ms: -5,
            id,
        };
        let dated = DueCursor::Dated { day: 739_000, id };
        let undated = DueCursor::Undated(Cursor {
            activity_ms: 1_780_000_000_000,
            id,
        });
        let a = PageCursor::Activity(activity).encode();
        assert_eq!(
            PageCursor::decode(&a, Sort::Activity),
            Some(PageCursor::Activity(activity))
        );
        assert_eq!(PageCursor::decode(&a, Sort::Due), None);
        for d in [dated, undated] {
            let s = PageCursor::Due(d).encode();
            assert_eq!(PageCursor::decode(&s, Sort::Due), Some(PageCursor::Due(d)));
            assert_eq!(PageCursor::decode(&s, Sort::Activity), None, "{s}");
        }
        for bad in [
            "",
            "d",
            "n",
            "d1",
            "d+1.x",
            "n+1.x",
            "1.",
            "+1.00000000000000000000000000000000",
        ] {
            assert_eq!(PageCursor::decode(bad, Sort::Activity), None, "{bad}");
            assert_eq!(PageCursor::decode(bad, Sort::Due), None, "{bad}");
        }
    }
}
