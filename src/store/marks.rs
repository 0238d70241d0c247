//! Reading one user's read mark inside a write, so a caller can tell whether marking a
//! conversation read or unread changes anything (the bulk actions report "unchanged").

use redb::{ReadableTable, WriteTransaction};

use super::Result;
use super::tables::UNREAD;

/// Whether `user` has conversation `id` marked unread.
pub fn is_unread(tx: &WriteTransaction, user: &str, id: u128) -> Result<bool> {
    Ok(tx.open_table(UNREAD)?.get((user, id))?.is_some())
}
