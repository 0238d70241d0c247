//! What each peer may add to our disk per day, and the stored size of a conversation.
//!
//! The write gate bounds one change and one conversation; this bounds a peer: a partner that
//! creates conversation after conversation, each within its limits, still stops at
//! [`DEFAULT_PEER_BYTES_PER_DAY`] of accepted changes per UTC day (raw Automerge bytes), and
//! the rest of the node keeps working. Honest traffic is text and stays far below it.

use redb::{ReadTransaction, ReadableTable, TableDefinition, WriteTransaction};

use super::Result;
use super::tables::{CHUNKS, DOCS};

/// Accepted bytes per peer: node id -> (day from CE, bytes that day).
pub const PEER_USAGE: TableDefinition<u128, (i32, u64)> = TableDefinition::new("peer_usage");

pub const DEFAULT_PEER_BYTES_PER_DAY: u64 = 256 * 1024 * 1024;

pub fn create_tables(tx: &WriteTransaction) -> std::result::Result<(), redb::TableError> {
    tx.open_table(PEER_USAGE)?;
    Ok(())
}

/// Bytes accepted from `peer` on `day` so far.
pub fn used(rtx: &ReadTransaction, peer: u128, day: i32) -> Result<u64> {
    Ok(match rtx.open_table(PEER_USAGE)?.get(peer)? {
        Some(v) if v.value().0 == day => v.value().1,
        _ => 0,
    })
}

/// Adds `bytes` to what `peer` used on `day`.
pub fn add(tx: &WriteTransaction, peer: u128, day: i32, bytes: u64) -> Result<()> {
    let mut t = tx.open_table(PEER_USAGE)?;
    let cur = match t.get(peer)? {
        Some(v) if v.value().0 == day => v.value().1,
        _ => 0,
    };
    t.insert(peer, (day, cur.saturating_add(bytes)))?;
    Ok(())
}

/// Bytes a stored conversation takes: its last full save and the chunks after it.
pub fn stored_bytes(rtx: &ReadTransaction, id: u128) -> Result<u64> {
    let mut n = rtx
        .open_table(DOCS)?
        .get(id)?
        .map(|v| v.value().len() as u64)
        .unwrap_or(0);
    for item in rtx.open_table(CHUNKS)?.range((id, 0)..=(id, u32::MAX))? {
        n += item?.1.value().len() as u64;
    }
    Ok(n)
}
