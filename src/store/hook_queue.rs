//! Indexes over the webhook queue (`outbox::HOOK_QUEUE`) so the sender reads only what it can
//! send now, however long the queue of a dead receiver grows:
//!
//! - `HOOK_LANES` (endpoint, conversation, key): the deliveries of each conversation to each
//!   endpoint in queue order. Only the first of a lane may be sent: order per conversation.
//! - `HOOK_DUE` (next attempt ms, key): the deliveries that may be sent at that time — the
//!   first of each lane, and test events (which belong to no lane).
//!
//! Invariant: a queued delivery is in `HOOK_DUE` exactly when it is first in its lane (or has
//! no lane), with its `next_attempt_at`.

use redb::{ReadTransaction, ReadableTable, TableDefinition, WriteTransaction};

use super::Result;
use crate::domain::hooks::Delivery;

pub const HOOK_LANES: TableDefinition<(u128, u128, u128), ()> = TableDefinition::new("hook_lanes");
pub const HOOK_DUE: TableDefinition<(i64, u128), ()> = TableDefinition::new("hook_due");
/// Endpoints removed while deliveries still waited for them; the sender drops those in
/// batches, then the entry.
pub const HOOK_REMOVED: TableDefinition<u128, ()> = TableDefinition::new("hook_removed");

pub fn create_tables(tx: &WriteTransaction) -> std::result::Result<(), redb::TableError> {
    tx.open_table(HOOK_LANES)?;
    tx.open_table(HOOK_DUE)?;
    tx.open_table(HOOK_REMOVED)?;
    Ok(())
}

fn lane(d: &Delivery) -> Option<(u128, u128)> {
    d.conversation.map(|c| (d.endpoint.as_u128(), c.as_u128()))
}

fn first_in_lane(
    t: &impl ReadableTable<(u128, u128, u128), ()>,
    (ep, conv): (u128, u128),
) -> Result<Option<u128>> {
    Ok(t.range((ep, conv, 0u128)..=(ep, conv, u128::MAX))?
        .next()
        .transpose()?
        .map(|(k, _)| k.value().2))
}

/// A delivery was queued.
pub fn queued(tx: &WriteTransaction, key: u128, d: &Delivery) -> Result<()> {
    let at = d.next_attempt_at.timestamp_millis();
    match lane(d) {
        None => {
            tx.open_table(HOOK_DUE)?.insert((at, key), ())?;
        }
        Some(l) => {
            let mut lanes = tx.open_table(HOOK_LANES)?;
            let head = first_in_lane(&lanes, l)?.is_none();
            lanes.insert((l.0, l.1, key), ())?;
            if head {
                tx.open_table(HOOK_DUE)?.insert((at, key), ())?;
            }
        }
    }
    Ok(())
}

/// A delivery waits for a retry: its due time moves from `old` to `new`'s.
pub fn rescheduled(tx: &WriteTransaction, key: u128, old: &Delivery, new: &Delivery) -> Result<()> {
    let mut due = tx.open_table(HOOK_DUE)?;
    if due
        .remove((old.next_attempt_at.timestamp_millis(), key))?
        .is_some()
    {
        due.insert((new.next_attempt_at.timestamp_millis(), key), ())?;
    }
    Ok(())
}

/// A delivery left the queue (delivered, failed or dropped): the next of its lane, if any,
/// may be sent now (it is due as of the finished one's due time, which has passed).
pub fn finished(tx: &WriteTransaction, key: u128, d: &Delivery) -> Result<()> {
    let now_ms = d.next_attempt_at.timestamp_millis();
    let mut due = tx.open_table(HOOK_DUE)?;
    due.remove((now_ms, key))?;
    if let Some(l) = lane(d) {
        let mut lanes = tx.open_table(HOOK_LANES)?;
        lanes.remove((l.0, l.1, key))?;
        if let Some(next) = first_in_lane(&lanes, l)? {
            due.insert((now_ms, next), ())?;
        }
    }
    Ok(())
}

/// Keys due by `now_ms`, in due order, at most `limit`; and the due time of the next one.
pub fn due(tx: &ReadTransaction, now_ms: i64, limit: usize) -> Result<(Vec<u128>, Option<i64>)> {
    let t = tx.open_table(HOOK_DUE)?;
    let mut keys = Vec::new();
    for item in t
        .range((i64::MIN, 0u128)..=(now_ms, u128::MAX))?
        .take(limit)
    {
        keys.push(item?.0.value().1);
    }
    let next = t
        .range((now_ms + 1, 0u128)..)?
        .next()
        .transpose()?
        .map(|(k, _)| k.value().0);
    Ok((keys, next))
}

/// Up to `limit` queued keys of endpoint `ep` that belong to a conversation, whatever their
/// due time (for failing or dropping what waits for a disabled or removed endpoint).
pub fn keys_of_endpoint(tx: &ReadTransaction, ep: u128, limit: usize) -> Result<Vec<u128>> {
    let t = tx.open_table(HOOK_LANES)?;
    let mut out = Vec::new();
    for item in t
        .range((ep, 0u128, 0u128)..=(ep, u128::MAX, u128::MAX))?
        .take(limit)
    {
        out.push(item?.0.value().2);
    }
    Ok(out)
}

pub fn mark_removed(tx: &WriteTransaction, ep: u128) -> Result<()> {
    tx.open_table(HOOK_REMOVED)?.insert(ep, ())?;
    Ok(())
}

pub fn removed(tx: &ReadTransaction) -> Result<Vec<u128>> {
    let t = tx.open_table(HOOK_REMOVED)?;
    let mut out = Vec::new();
    for item in t.iter()? {
        out.push(item?.0.value());
    }
    Ok(out)
}

pub fn forget_removed(tx: &WriteTransaction, ep: u128) -> Result<()> {
    tx.open_table(HOOK_REMOVED)?.remove(ep)?;
    Ok(())
}
