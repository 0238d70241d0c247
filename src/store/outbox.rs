//! The outbox: notifications and webhook deliveries, written in the same write transaction as
//! the change that causes them, so a crash can neither lose one nor invent one.
//!
//! - `mail_queue`: one row per (user, activity) to be mailed soon; the mail sender folds rows
//!   into mails, writing each mail to `MAIL_OUT` (with its `Message-ID` fixed) in the same
//!   transaction that removes the rows, then sends and removes it. A crash between the SMTP
//!   server's `250` and that removal sends the same mail again, with the same `Message-ID`.
//! - `DIGEST_QUEUE`: rows for the daily digest, per user.
//! - `HOOK_QUEUE`: one row per (endpoint, event), in the order queued; `HOOK_LOG` keeps the
//!   last finished deliveries of each endpoint.
//! - `REMINDED`: which reminder was sent for which due date, so a moved due date re-arms it.
//!
//! Local bookkeeping like `UNREAD`: not derived from the documents, so a rebuild leaves it be.

use chrono::{DateTime, Utc};
use redb::{
    ReadTransaction, ReadableTable, ReadableTableMetadata, TableDefinition, WriteTransaction,
};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use uuid::Uuid;

use super::{Result, StoreError, tables::USERS};
use crate::domain::activity::{self, Activity};
use crate::domain::hooks;
use crate::domain::notify::{Mode, NotifyKind, kind_for};
use crate::domain::{Conversation, OrgId};

pub use super::hook_queue::{
    deliveries, deliveries_by_key, deliveries_by_key_w, drop_delivery, pending_count,
    queue_delivery, queued_page, try_queue_delivery, update_delivery,
};
pub use super::webhooks::{
    get_endpoint, get_endpoint_w, list_endpoints, list_endpoints_w, max_pending, put_endpoint,
    remove_endpoint, set_max_pending,
};

pub const DIGEST_QUEUE: TableDefinition<(&str, u128), &[u8]> = TableDefinition::new("digest_queue");
pub const MAIL_OUT: TableDefinition<u128, &[u8]> = TableDefinition::new("mail_out");
/// Webhook endpoint records (`store::webhooks`).
pub const HOOKS: TableDefinition<u128, &[u8]> = TableDefinition::new("webhooks");
pub const HOOK_QUEUE: TableDefinition<u128, &[u8]> = TableDefinition::new("hook_queue");
pub const HOOK_LOG: TableDefinition<(u128, u128), &[u8]> = TableDefinition::new("hook_log");
/// Deliveries waiting per endpoint, kept exact with `HOOK_QUEUE`.
pub const HOOK_PENDING: TableDefinition<u128, u64> = TableDefinition::new("hook_pending");
pub const REMINDED: TableDefinition<(u128, &str), i32> = TableDefinition::new("reminded");
/// The sender's settings the writer needs: `max_pending`, written from the configuration
/// when the sender starts.
pub const HOOK_SETTINGS: TableDefinition<&str, u64> = TableDefinition::new("hook_settings");
/// `max_pending` until the configuration is written.
pub const DEFAULT_MAX_PENDING: u64 = 100_000;

/// Finished deliveries kept per endpoint in its log.
pub const LOG_KEEP: usize = 200;
/// How far past `LOG_KEEP` a log grows before it is trimmed back.
pub(super) const LOG_SLACK: usize = 64;
/// Entries in each endpoint's `HOOK_LOG`, kept with it.
pub const HOOK_LOG_COUNT: TableDefinition<u128, u64> = TableDefinition::new("hook_log_count");

pub fn create_tables(tx: &WriteTransaction) -> std::result::Result<(), redb::TableError> {
    super::mail_queue::create_tables(tx)?;
    tx.open_table(DIGEST_QUEUE)?;
    tx.open_table(MAIL_OUT)?;
    tx.open_table(HOOKS)?;
    tx.open_table(HOOK_QUEUE)?;
    tx.open_table(HOOK_LOG)?;
    tx.open_table(HOOK_PENDING)?;
    tx.open_table(HOOK_LOG_COUNT)?;
    super::hook_queue::create_tables(tx)?;
    tx.open_table(REMINDED)?;
    tx.open_table(HOOK_SETTINGS)?;
    Ok(())
}

/// One thing to tell one user, as queued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailItem {
    pub user: String,
    pub conversation: Uuid,
    pub kind: NotifyKind,
    /// `None` for reminders (`kind` says which).
    pub activity: Option<Activity>,
    /// Wall-clock time of queueing (what the sender's settle wait measures).
    pub queued_at: DateTime<Utc>,
    /// Arrived by sync long after it happened (a partner back after days away, a first sync):
    /// told in a summary, never in a mail of its own.
    #[serde(default)]
    pub late: bool,
}

/// A mail ready to send, fixed before the first attempt so every retry is the same mail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutMail {
    pub id: Uuid,
    pub user: String,
    pub to: String,
    pub message_id: String,
    pub in_reply_to: Option<String>,
    pub subject: String,
    pub text: String,
    pub html: String,
    pub unsubscribe: Option<String>,
    pub created_at: DateTime<Utc>,
    pub attempts: u32,
    pub next_attempt_at: DateTime<Utc>,
    pub last_error: Option<String>,
}

pub(super) fn decode<T: DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Record(what.into(), e.to_string()))
}

pub(super) fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(v).map_err(|e| StoreError::Record("outbox".into(), e.to_string()))
}

/// What a late activity is: older than this when it arrives by sync. An hour, so that a
/// partner's clock a little off does not turn its news into summaries.
pub const LATE_AFTER: chrono::TimeDelta = chrono::TimeDelta::hours(1);

/// Queues what the change from `before` to `view` tells each user and endpoint. Called by
/// `index::index_view`, the one place local writes and synced documents both pass, inside
/// their write transaction. `actor` is the local user who made the change (`None`: by sync).
pub fn enqueue_change(
    tx: &WriteTransaction,
    me: &OrgId,
    before: Option<&Conversation>,
    view: &Conversation,
    actor: Option<&str>,
    now: DateTime<Utc>,
) -> Result<()> {
    let acts = activity::between(before, view);
    if acts.is_empty() {
        return Ok(());
    }
    let users = notifiable_users(tx)?;
    if !users.is_empty() {
        for (name, prefs) in &users {
            for a in &acts {
                let Some(kind) = kind_for(a, me, name) else {
                    continue;
                };
                if actor == Some(name.as_str()) {
                    continue;
                }
                let item = MailItem {
                    user: name.clone(),
                    conversation: view.id,
                    kind,
                    activity: Some(a.clone()),
                    // Wall time, not `now`: the sender's settle wait runs on it.
                    queued_at: Utc::now(),
                    late: actor.is_none() && now - a.at > LATE_AFTER,
                };
                match prefs.mode(kind) {
                    Mode::Never => {}
                    Mode::Immediate => super::mail_queue::queue(tx, &item)?,
                    Mode::Digest => queue_digest(tx, &item)?,
                }
            }
        }
    }
    let endpoints = list_endpoints_w(tx)?;
    for ep in endpoints.iter().filter(|e| e.disabled.is_none()) {
        for a in &acts {
            let t = a.what.event_type();
            if ep.wants(t) {
                let body = hooks::payload(me, view, a, now);
                queue_delivery(tx, ep, t, Some(view.id), &body, now)?;
            }
        }
    }
    Ok(())
}

/// `user` was just assigned conversation `conv` by someone else (here or at another site of
/// ours): tells them, as their preference for `task_assigned` says. Written
/// with the team document's change. What is told comes from the conversation alone, never
/// from the team document's notes.
pub fn enqueue_assigned(tx: &WriteTransaction, conv: Uuid, user: &str) -> Result<()> {
    let kind = NotifyKind::TaskAssigned;
    // Only this one user's record: people with an address, as `notifiable_users` takes them.
    let Some(u) = super::accounts::get_user_w(tx, user)? else {
        return Ok(());
    };
    if u.kind == super::accounts::UserKind::Person && u.notify.email.is_some() {
        let prefs = u.notify.prefs;
        let item = MailItem {
            user: u.name,
            conversation: conv,
            kind,
            activity: None,
            queued_at: Utc::now(),
            late: false,
        };
        match prefs.mode(kind) {
            Mode::Never => {}
            Mode::Immediate => super::mail_queue::queue(tx, &item)?,
            Mode::Digest => queue_digest(tx, &item)?,
        }
    }
    Ok(())
}

/// Users with an address whose mail may be wanted: people, not integrations.
fn notifiable_users(tx: &WriteTransaction) -> Result<Vec<(String, crate::domain::notify::Prefs)>> {
    let t = tx.open_table(USERS)?;
    let mut out = Vec::new();
    for item in t.iter()? {
        let (k, v) = item?;
        let u: super::accounts::User = decode(k.value(), v.value())?;
        if u.kind == super::accounts::UserKind::Person && u.notify.email.is_some() {
            out.push((u.name, u.notify.prefs));
        }
    }
    Ok(out)
}

// ---- mail (the rows before folding live in `mail_queue`) ----

/// Up to `limit` mails due by `now`, oldest first, and when the next of the others is due.
/// Reads every waiting mail: a backlog of retries must not hide newer mails behind it.
pub fn due_mails(
    tx: &ReadTransaction,
    now: DateTime<Utc>,
    limit: usize,
) -> Result<(Vec<OutMail>, Option<DateTime<Utc>>)> {
    let t = tx.open_table(MAIL_OUT)?;
    let (mut due, mut next) = (Vec::new(), None::<DateTime<Utc>>);
    for item in t.iter()? {
        let m: OutMail = decode("mail", item?.1.value())?;
        if m.next_attempt_at <= now {
            if due.len() < limit {
                due.push(m);
            }
        } else {
            next = Some(next.map_or(m.next_attempt_at, |n| n.min(m.next_attempt_at)));
        }
    }
    Ok((due, next))
}

/// Mails waiting to be sent, oldest first.
pub fn out_mails(tx: &ReadTransaction, limit: usize) -> Result<Vec<OutMail>> {
    let t = tx.open_table(MAIL_OUT)?;
    let mut out = Vec::new();
    for item in t.iter()?.take(limit) {
        out.push(decode("mail", item?.1.value())?);
    }
    Ok(out)
}

pub fn put_out_mail(tx: &WriteTransaction, m: &OutMail) -> Result<()> {
    tx.open_table(MAIL_OUT)?
        .insert(m.id.as_u128(), encode(m)?.as_slice())?;
    Ok(())
}

pub fn mail_sent(tx: &WriteTransaction, id: Uuid) -> Result<()> {
    tx.open_table(MAIL_OUT)?.remove(id.as_u128())?;
    Ok(())
}

pub fn out_mail_len(tx: &ReadTransaction) -> Result<u64> {
    Ok(tx.open_table(MAIL_OUT)?.len()?)
}

/// A `META`-like marker of the outbox: the local day the digest last went out.
pub fn digest_day(tx: &ReadTransaction) -> Result<Option<i32>> {
    Ok(tx
        .open_table(REMINDED)?
        .get((0u128, "digest_day"))?
        .map(|v| v.value()))
}

pub fn set_digest_day(tx: &WriteTransaction, day: i32) -> Result<()> {
    tx.open_table(REMINDED)?
        .insert((0u128, "digest_day"), day)?;
    Ok(())
}

/// Digest rows per user: (user, [(row key, item)]).
pub type DigestRows = Vec<(String, Vec<(u128, MailItem)>)>;

/// Digest rows of every user, grouped by user.
pub fn digest_items(tx: &ReadTransaction) -> Result<DigestRows> {
    let t = tx.open_table(DIGEST_QUEUE)?;
    let mut out: Vec<(String, Vec<(u128, MailItem)>)> = Vec::new();
    for item in t.iter()? {
        let (k, v) = item?;
        let (user, id) = k.value();
        let it: MailItem = decode("digest item", v.value())?;
        match out.last_mut() {
            Some((u, rows)) if u == user => rows.push((id, it)),
            _ => out.push((user.to_string(), vec![(id, it)])),
        }
    }
    Ok(out)
}

/// Replaces a user's digest rows with the digest mail (or just drops them: `mail` `None`).
pub fn fold_digest(
    tx: &WriteTransaction,
    user: &str,
    rows: &[u128],
    mail: Option<&OutMail>,
) -> Result<()> {
    let mut t = tx.open_table(DIGEST_QUEUE)?;
    for r in rows {
        t.remove((user, *r))?;
    }
    drop(t);
    if let Some(m) = mail {
        put_out_mail(tx, m)?;
    }
    Ok(())
}

/// Queues a digest row (a reminder for a user who wants reminders in the digest).
pub fn queue_digest(tx: &WriteTransaction, item: &MailItem) -> Result<()> {
    tx.open_table(DIGEST_QUEUE)?.insert(
        (item.user.as_str(), Uuid::now_v7().as_u128()),
        encode(item)?.as_slice(),
    )?;
    Ok(())
}

// ---- reminders ----

/// The due date (days since 1970) a reminder of `kind` was last sent for, if any.
pub fn reminded(tx: &WriteTransaction, conv: Uuid, kind: &str) -> Result<Option<i32>> {
    Ok(tx
        .open_table(REMINDED)?
        .get((conv.as_u128(), kind))?
        .map(|v| v.value()))
}

pub fn set_reminded(tx: &WriteTransaction, conv: Uuid, kind: &str, day: i32) -> Result<()> {
    tx.open_table(REMINDED)?
        .insert((conv.as_u128(), kind), day)?;
    Ok(())
}
