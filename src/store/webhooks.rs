//! Webhook endpoint records and the sender's settings the writer needs. The tables are the
//! outbox's (`store::outbox`); this file keeps the records apart from the queue.

use redb::{ReadTransaction, ReadableTable, WriteTransaction};
use uuid::Uuid;

use super::Result;
use super::outbox::{
    DEFAULT_MAX_PENDING, HOOK_LOG, HOOK_LOG_COUNT, HOOK_PENDING, HOOK_SETTINGS, HOOKS, decode,
    encode,
};
use crate::domain::hooks::Endpoint;

/// Sets `max_pending` for [`super::outbox::try_queue_delivery`].
pub fn set_max_pending(tx: &WriteTransaction, n: u64) -> Result<()> {
    tx.open_table(HOOK_SETTINGS)?
        .insert("max_pending", n.max(1))?;
    Ok(())
}

pub fn max_pending(tx: &ReadTransaction) -> Result<u64> {
    Ok(tx
        .open_table(HOOK_SETTINGS)?
        .get("max_pending")?
        .map(|v| v.value())
        .unwrap_or(DEFAULT_MAX_PENDING))
}

// ---- webhook endpoints ----

pub fn list_endpoints(tx: &ReadTransaction) -> Result<Vec<Endpoint>> {
    let t = tx.open_table(HOOKS)?;
    let mut out = Vec::new();
    for item in t.iter()? {
        out.push(decode("webhook", item?.1.value())?);
    }
    Ok(out)
}

pub fn list_endpoints_w(tx: &WriteTransaction) -> Result<Vec<Endpoint>> {
    let t = tx.open_table(HOOKS)?;
    let mut out = Vec::new();
    for item in t.iter()? {
        out.push(decode("webhook", item?.1.value())?);
    }
    Ok(out)
}

pub fn get_endpoint(tx: &ReadTransaction, id: Uuid) -> Result<Option<Endpoint>> {
    tx.open_table(HOOKS)?
        .get(id.as_u128())?
        .map(|v| decode("webhook", v.value()))
        .transpose()
}

pub fn get_endpoint_w(tx: &WriteTransaction, id: Uuid) -> Result<Option<Endpoint>> {
    tx.open_table(HOOKS)?
        .get(id.as_u128())?
        .map(|v| decode("webhook", v.value()))
        .transpose()
}

pub fn put_endpoint(tx: &WriteTransaction, ep: &Endpoint) -> Result<()> {
    tx.open_table(HOOKS)?
        .insert(ep.id.as_u128(), encode(ep)?.as_slice())?;
    Ok(())
}

/// Removes an endpoint with everything queued for it and its log.
///
/// What waited for it stays in the queue for the sender to drop in small batches
/// ([`super::outbox::drop_delivery`]): a long queue must not hold the writer in one transaction.
pub fn remove_endpoint(tx: &WriteTransaction, id: Uuid) -> Result<bool> {
    let existed = tx.open_table(HOOKS)?.remove(id.as_u128())?.is_some();
    tx.open_table(HOOK_PENDING)?.remove(id.as_u128())?;
    super::hook_queue::mark_removed(tx, id.as_u128())?;
    tx.open_table(HOOK_LOG_COUNT)?.remove(id.as_u128())?;
    let mut log = tx.open_table(HOOK_LOG)?;
    log.retain_in((id.as_u128(), 0)..=(id.as_u128(), u128::MAX), |_, _| false)?;
    Ok(existed)
}
