//! Upkeep of `UNREAD_ORDER`, the Unread folder's order: one (user, activity, id) entry per
//! unread mark of a listed conversation. Marks are truth (local read state); the entries are
//! derived from them and the inbox rows, in the write transaction that changes either.
//!
//! Invariant: `UNREAD_ORDER` holds `(u, a, id)` exactly when `UNREAD` holds `(u, id)` and the
//! inbox row of `id` has activity time `a`.

use redb::{ReadableTable, WriteTransaction};

use super::Result;
use super::index::get_summary;
use super::tables::*;
use crate::domain::Summary;

fn users(tx: &WriteTransaction) -> Result<Vec<String>> {
    let t = tx.open_table(USERS)?;
    let mut v = Vec::new();
    for item in t.iter()? {
        v.push(item?.0.value().to_string());
    }
    Ok(v)
}

/// A conversation's row changed from `old` to `new`: its unread entries follow its activity
/// time. A new row (or one listed afresh) gets an entry for every mark it already has.
pub(super) fn row_changed(
    tx: &WriteTransaction,
    old: Option<&Summary>,
    new: &Summary,
) -> Result<()> {
    let from = old.map(Summary::activity_ms);
    let to = new.activity_ms();
    if from == Some(to) {
        return Ok(());
    }
    let id = new.id.as_u128();
    let marks = tx.open_table(UNREAD)?;
    let mut order = tx.open_table(UNREAD_ORDER)?;
    for u in users(tx)? {
        if marks.get((u.as_str(), id))?.is_none() {
            continue;
        }
        if let Some(a) = from {
            order.remove((u.as_str(), a, id))?;
        }
        order.insert((u.as_str(), to, id), ())?;
    }
    Ok(())
}

/// `user`'s mark for `id` was just set (`unread`) or cleared.
pub(super) fn mark_changed(
    tx: &WriteTransaction,
    user: &str,
    id: u128,
    unread: bool,
) -> Result<()> {
    let stored = get_summary(&tx.open_table(SUMMARIES)?, id);
    let row = match stored {
        Ok(r) => r,
        // Only the row's bytes are bad; its document says when it was last active.
        Err(_) => super::rebuild::derive_w(tx, id)?,
    };
    // Not listed: it gets its entry when it is (`row_changed` with no old row).
    let Some(row) = row else { return Ok(()) };
    let mut order = tx.open_table(UNREAD_ORDER)?;
    if unread {
        order.insert((user, row.activity_ms(), id), ())?;
    } else {
        order.remove((user, row.activity_ms(), id))?;
    }
    Ok(())
}
