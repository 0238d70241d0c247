//! Mail rows waiting to be folded into mails, per user, with each user's first and last
//! queueing time kept beside them, so the sender sees who has settled by reading one short
//! table instead of every waiting row (a storm of writes queues thousands).
//!
//! Invariant: a user has a `MAIL_PENDING` entry exactly while they have rows in `MAIL_ROWS`.

use chrono::Utc;
use redb::{ReadTransaction, ReadableTable, TableDefinition, WriteTransaction};
use uuid::Uuid;

use super::outbox::{MailItem, OutMail, put_out_mail};
use super::{Result, StoreError};

/// (user, row id v7) → JSON [`MailItem`].
pub const MAIL_ROWS: TableDefinition<(&str, u128), &[u8]> = TableDefinition::new("mail_rows");
/// user → (first queued ms, last queued ms, any row late), wall-clock times.
pub const MAIL_PENDING: TableDefinition<&str, (i64, i64, bool)> =
    TableDefinition::new("mail_pending");

pub fn create_tables(tx: &WriteTransaction) -> std::result::Result<(), redb::TableError> {
    tx.open_table(MAIL_ROWS)?;
    tx.open_table(MAIL_PENDING)?;
    Ok(())
}

fn encode(it: &MailItem) -> Result<Vec<u8>> {
    serde_json::to_vec(it).map_err(|e| StoreError::Record("mail row".into(), e.to_string()))
}

/// Queues one row for its user.
pub fn queue(tx: &WriteTransaction, item: &MailItem) -> Result<()> {
    let user = item.user.as_str();
    tx.open_table(MAIL_ROWS)?
        .insert((user, Uuid::now_v7().as_u128()), encode(item)?.as_slice())?;
    let now = Utc::now().timestamp_millis();
    let mut p = tx.open_table(MAIL_PENDING)?;
    let next = match p.get(user)?.map(|v| v.value()) {
        Some((first, _, late)) => (first, now, late || item.late),
        None => (now, now, item.late),
    };
    p.insert(user, next)?;
    Ok(())
}

/// Every user with rows waiting: (user, first ms, last ms, any late).
pub fn pending(tx: &ReadTransaction) -> Result<Vec<(String, i64, i64, bool)>> {
    let t = tx.open_table(MAIL_PENDING)?;
    let mut out = Vec::new();
    for item in t.iter()? {
        let (k, v) = item?;
        let (a, b, c) = v.value();
        out.push((k.value().to_string(), a, b, c));
    }
    Ok(out)
}

/// A user's waiting rows, oldest first, at most `limit`.
pub fn rows(tx: &ReadTransaction, user: &str, limit: usize) -> Result<Vec<(u128, MailItem)>> {
    let t = tx.open_table(MAIL_ROWS)?;
    let mut out = Vec::new();
    for item in t.range((user, 0u128)..=(user, u128::MAX))?.take(limit) {
        let (k, v) = item?;
        let it = serde_json::from_slice(v.value())
            .map_err(|e| StoreError::Record("mail row".into(), e.to_string()))?;
        out.push((k.value().1, it));
    }
    Ok(out)
}

pub fn len(tx: &ReadTransaction) -> Result<u64> {
    use redb::ReadableTableMetadata;
    Ok(tx.open_table(MAIL_ROWS)?.len()?)
}

/// Replaces a user's rows with the mails made of them (none: the rows just go), in one
/// transaction; the user's entry stays while rows queued meanwhile remain.
pub fn fold(tx: &WriteTransaction, user: &str, rows: &[u128], mails: &[OutMail]) -> Result<()> {
    let mut t = tx.open_table(MAIL_ROWS)?;
    for r in rows {
        t.remove((user, *r))?;
    }
    let left = t.range((user, 0u128)..=(user, u128::MAX))?.next().is_some();
    drop(t);
    let mut p = tx.open_table(MAIL_PENDING)?;
    if left {
        // Rows came in while these were folded: their own wait starts now.
        let now = Utc::now().timestamp_millis();
        let late = p.get(user)?.is_some_and(|v| v.value().2);
        p.insert(user, (now, now, late))?;
    } else {
        p.remove(user)?;
    }
    drop(p);
    for m in mails {
        put_out_mail(tx, m)?;
    }
    Ok(())
}
