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

use chrono::{DateTime, Utc};
use redb::{ReadTransaction, ReadableTable, TableDefinition, WriteTransaction};
use uuid::Uuid;

use super::Result;
use super::outbox::{
    DEFAULT_MAX_PENDING, HOOK_LOG, HOOK_LOG_COUNT, HOOK_PENDING, HOOK_QUEUE, HOOK_SETTINGS,
    LOG_KEEP, LOG_SLACK, decode, encode, get_endpoint_w, put_endpoint,
};
use crate::domain::hooks::{self, Delivery, Endpoint};

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

// ---- the queue itself (`outbox::HOOK_QUEUE`), kept in step with the indexes above ----

/// Queues one delivery for `ep` and answers its `msg_id`; an empty string when refused (see
/// [`try_queue_delivery`]).
pub fn queue_delivery(
    tx: &WriteTransaction,
    ep: &Endpoint,
    event_type: &str,
    conversation: Option<Uuid>,
    body: &serde_json::Value,
    now: DateTime<Utc>,
) -> Result<String> {
    Ok(try_queue_delivery(tx, ep, event_type, conversation, body, now)?.unwrap_or_default())
}

/// Queues one delivery for `ep`; `None` when refused. Refused once the endpoint has
/// `max_pending` deliveries waiting: a receiver gone for good must not fill the disk, so the
/// endpoint is disabled instead (with the reason) and the sender fails what waits for it.
/// Never an error for being full: the change that queues it must still commit.
pub fn try_queue_delivery(
    tx: &WriteTransaction,
    ep: &Endpoint,
    event_type: &str,
    conversation: Option<Uuid>,
    body: &serde_json::Value,
    now: DateTime<Utc>,
) -> Result<Option<String>> {
    let mut pending = tx.open_table(HOOK_PENDING)?;
    let waiting = pending
        .get(ep.id.as_u128())?
        .map(|v| v.value())
        .unwrap_or(0);
    let cap = tx
        .open_table(HOOK_SETTINGS)?
        .get("max_pending")?
        .map(|v| v.value())
        .unwrap_or(DEFAULT_MAX_PENDING);
    if waiting >= cap {
        if let Some(mut cur) = get_endpoint_w(tx, ep.id)?
            && cur.disabled.is_none()
        {
            cur.disabled = Some(hooks::Disabled {
                at: now,
                reason: format!(
                    "{waiting} deliveries were waiting, the most max_pending allows: the receiver is not taking them; fix it, then enable the endpoint"
                ),
            });
            put_endpoint(tx, &cur)?;
        }
        return Ok(None);
    }
    let id = Uuid::now_v7();
    let d = Delivery {
        msg_id: hooks::msg_id(id),
        endpoint: ep.id,
        event_type: event_type.into(),
        conversation,
        payload: body.to_string(),
        created_at: now,
        attempts: 0,
        next_attempt_at: now,
        status: "pending".into(),
        last_status_code: None,
        last_error: None,
        last_attempt_at: None,
    };
    tx.open_table(HOOK_QUEUE)?
        .insert(id.as_u128(), encode(&d)?.as_slice())?;
    pending.insert(ep.id.as_u128(), waiting + 1)?;
    queued(tx, id.as_u128(), &d)?;
    Ok(Some(d.msg_id))
}

pub fn pending_count(tx: &ReadTransaction, endpoint: Uuid) -> Result<u64> {
    Ok(tx
        .open_table(HOOK_PENDING)?
        .get(endpoint.as_u128())?
        .map(|v| v.value())
        .unwrap_or(0))
}

/// Queued deliveries in queue order after key `after`, at most `limit`.
pub fn queued_page(
    tx: &ReadTransaction,
    after: Option<u128>,
    limit: usize,
) -> Result<Vec<(u128, Delivery)>> {
    let t = tx.open_table(HOOK_QUEUE)?;
    let from = match after {
        None => 0,
        Some(u128::MAX) => return Ok(Vec::new()),
        Some(k) => k + 1,
    };
    let mut out = Vec::new();
    for item in t.range(from..)?.take(limit) {
        let (k, v) = item?;
        out.push((k.value(), decode("delivery", v.value())?));
    }
    Ok(out)
}

/// Writes back a delivery after an attempt. A finished one (delivered or failed) leaves the
/// queue for the endpoint's log, which keeps the newest [`LOG_KEEP`].
pub fn update_delivery(tx: &WriteTransaction, key: u128, d: &Delivery) -> Result<()> {
    let mut q = tx.open_table(HOOK_QUEUE)?;
    let Some(old) = q
        .get(key)?
        .map(|v| decode::<Delivery>("delivery", v.value()))
    else {
        // Dropped meanwhile (its endpoint was removed).
        return Ok(());
    };
    let old = old?;
    if d.status == "pending" {
        q.insert(key, encode(d)?.as_slice())?;
        drop(q);
        return rescheduled(tx, key, &old, d);
    }
    q.remove(key)?;
    drop(q);
    finished(tx, key, &old)?;
    let ep = d.endpoint.as_u128();
    let mut pending = tx.open_table(HOOK_PENDING)?;
    let n = pending.get(ep)?.map(|v| v.value()).unwrap_or(1);
    pending.insert(ep, n.saturating_sub(1))?;
    let mut log = tx.open_table(HOOK_LOG)?;
    log.insert((ep, key), encode(d)?.as_slice())?;
    // Counted, not walked, per delivery; trimmed in steps, so the log holds LOG_KEEP to
    // LOG_KEEP + LOG_SLACK entries.
    let mut counts = tx.open_table(HOOK_LOG_COUNT)?;
    let n = counts.get(ep)?.map(|v| v.value()).unwrap_or(0) + 1;
    if n as usize > LOG_KEEP + LOG_SLACK {
        let have = log.range((ep, 0)..=(ep, u128::MAX))?.count();
        let old: Vec<u128> = log
            .range((ep, 0)..=(ep, u128::MAX))?
            .take(have.saturating_sub(LOG_KEEP))
            .map(|r| r.map(|(k, _)| k.value().1))
            .collect::<std::result::Result<_, _>>()?;
        for k in old {
            log.remove((ep, k))?;
        }
        counts.insert(ep, have.min(LOG_KEEP) as u64)?;
    } else {
        counts.insert(ep, n)?;
    }
    Ok(())
}

/// Drops a queued delivery of an endpoint that was removed: no log, since the endpoint's
/// log went with it.
pub fn drop_delivery(tx: &WriteTransaction, key: u128) -> Result<()> {
    let old = tx
        .open_table(HOOK_QUEUE)?
        .remove(key)?
        .map(|v| decode::<Delivery>("delivery", v.value()));
    if let Some(old) = old {
        finished(tx, key, &old?)?;
    }
    Ok(())
}

/// The queued deliveries with these keys (those still queued), in the order given.
pub fn deliveries_by_key(tx: &ReadTransaction, keys: &[u128]) -> Result<Vec<(u128, Delivery)>> {
    by_key(&tx.open_table(HOOK_QUEUE)?, keys)
}

/// Like [`deliveries_by_key`], inside a write transaction.
pub fn deliveries_by_key_w(tx: &WriteTransaction, keys: &[u128]) -> Result<Vec<(u128, Delivery)>> {
    by_key(&tx.open_table(HOOK_QUEUE)?, keys)
}

fn by_key(
    t: &impl ReadableTable<u128, &'static [u8]>,
    keys: &[u128],
) -> Result<Vec<(u128, Delivery)>> {
    let mut out = Vec::new();
    for k in keys {
        if let Some(v) = t.get(*k)? {
            out.push((*k, decode("delivery", v.value())?));
        }
    }
    Ok(out)
}

/// The endpoint's deliveries, newest first: waiting ones, then its log.
pub fn deliveries(tx: &ReadTransaction, endpoint: Uuid, limit: usize) -> Result<Vec<Delivery>> {
    let mut out = Vec::new();
    let q = tx.open_table(HOOK_QUEUE)?;
    for item in q.iter()?.rev() {
        let d: Delivery = decode("delivery", item?.1.value())?;
        if d.endpoint == endpoint {
            out.push(d);
            if out.len() >= limit {
                return Ok(out);
            }
        }
    }
    let log = tx.open_table(HOOK_LOG)?;
    let ep = endpoint.as_u128();
    for item in log.range((ep, 0)..=(ep, u128::MAX))?.rev() {
        out.push(decode("delivery", item?.1.value())?);
        if out.len() >= limit {
            break;
        }
    }
    Ok(out)
}
