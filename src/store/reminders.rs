//! Due-soon and overdue reminders, queued into the outbox by a sweep.
//!
//! A task reminds the org that must act on it: the participant that did not create it. Each
//! reminder is sent once per due date (`outbox::REMINDED`), so moving the due date arms it
//! again, and a task that is completed, cancelled or resolved is never reminded of.

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use redb::{ReadableTable, WriteTransaction};

use super::index::get_summary;
use super::outbox::{self, MailItem};
use super::tables::{DUE_ORDER, SUMMARIES, USERS};
use super::{Result, StoreError, accounts, docs};
use crate::domain::notify::{Mode, NotifyKind};
use crate::domain::{hooks, overdue_eligible};

pub const DUE_SOON: &str = "due_soon";
pub const OVERDUE: &str = "overdue";

/// Queues every reminder due by `today` (the node's local date): due soon for tasks due on
/// or before `soon_until`, overdue for tasks due before `today`. Answers how many were queued.
pub fn sweep(
    tx: &WriteTransaction,
    today: NaiveDate,
    soon_until: NaiveDate,
    now: DateTime<Utc>,
) -> Result<usize> {
    let Some(ident) = accounts::read_identity_w(tx)? else {
        return Ok(0);
    };
    let me = ident.org_id;
    let until = soon_until.num_days_from_ce();
    let candidates: Vec<(i32, u128)> = {
        let t = tx.open_table(DUE_ORDER)?;
        let mut v = Vec::new();
        for item in t.range(("active_task", i32::MIN, 0u128)..=("active_task", until, u128::MAX))? {
            let (k, _) = item?;
            let (_, day, id) = k.value();
            v.push((day, id));
        }
        v
    };
    if candidates.is_empty() {
        return Ok(0);
    }
    let users = people(tx)?;
    let endpoints = outbox::list_endpoints_w(tx)?;
    let mut queued = 0;
    for (day, id) in candidates {
        let summaries = tx.open_table(SUMMARIES)?;
        let Some(s) = get_summary(&summaries, id)? else {
            continue;
        };
        drop(summaries);
        if s.created_by.org == me || !overdue_eligible(s.kind, s.state, s.progress) {
            continue;
        }
        let Some(due) = s.due_date else { continue };
        let kind = if due < today { OVERDUE } else { DUE_SOON };
        if outbox::reminded(tx, s.id, kind)? == Some(day) {
            continue;
        }
        outbox::set_reminded(tx, s.id, kind, day)?;
        if kind == OVERDUE {
            // Overdue says more than due soon: no due-soon reminder for this date after it.
            outbox::set_reminded(tx, s.id, DUE_SOON, day)?;
        }
        let nk = if kind == OVERDUE {
            NotifyKind::Overdue
        } else {
            NotifyKind::DueSoon
        };
        for (name, prefs) in &users {
            let item = MailItem {
                user: name.clone(),
                conversation: s.id,
                kind: nk,
                activity: None,
                queued_at: Utc::now(),
                late: false,
            };
            match prefs.mode(nk) {
                Mode::Never => {}
                Mode::Immediate => super::mail_queue::queue(tx, &item)?,
                Mode::Digest => outbox::queue_digest(tx, &item)?,
            }
        }
        let event = if kind == OVERDUE {
            "task.overdue"
        } else {
            "task.due_soon"
        };
        let wanting: Vec<_> = endpoints.iter().filter(|e| e.wants(event)).collect();
        if !wanting.is_empty() {
            let Some(d) = docs::load(tx, id)? else {
                continue;
            };
            let conv = crate::domain::doc::read(&d.doc)
                .map_err(|e| StoreError::Corrupt(s.id, e.to_string()))?;
            let body = hooks::reminder_payload(&me, &conv, event, now);
            for ep in wanting {
                outbox::queue_delivery(tx, ep, event, Some(s.id), &body, now)?;
            }
        }
        queued += 1;
    }
    Ok(queued)
}

fn people(tx: &WriteTransaction) -> Result<Vec<(String, crate::domain::notify::Prefs)>> {
    let t = tx.open_table(USERS)?;
    let mut out = Vec::new();
    for item in t.iter()? {
        let (k, v) = item?;
        let u: accounts::User = serde_json::from_slice(v.value())
            .map_err(|e| StoreError::Record(k.value().to_string(), e.to_string()))?;
        if u.kind == accounts::UserKind::Person && u.notify.email.is_some() {
            out.push((u.name, u.notify.prefs));
        }
    }
    Ok(out)
}

/// The date `n` working days (Monday to Friday) after `d`; `n = 0` is `d` itself.
pub fn add_working_days(d: NaiveDate, n: u32) -> NaiveDate {
    let mut out = d;
    let mut left = n;
    while left > 0 {
        out = out.succ_opt().unwrap_or(out);
        if out.weekday().num_days_from_monday() < 5 {
            left -= 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_working_day_before_skips_the_weekend() {
        let fri = NaiveDate::from_ymd_opt(2026, 12, 4).unwrap();
        let mon = NaiveDate::from_ymd_opt(2026, 12, 7).unwrap();
        assert_eq!(add_working_days(fri, 1), mon, "Friday reminds of Monday");
        assert_eq!(add_working_days(fri, 0), fri);
        let thu = NaiveDate::from_ymd_opt(2026, 12, 3).unwrap();
        assert_eq!(add_working_days(thu, 1), fri);
    }
}
