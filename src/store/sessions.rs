//! Browser sessions, keyed by the SHA-256 of the session id so a copy of the database does not
//! hold usable cookies. Local to this node, never synced.

use chrono::{DateTime, Utc};
use redb::{ReadTransaction, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::tables::SESSIONS;
use super::{Result, StoreError};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    pub user: String,
    /// Sent back in `X-CSRF-Token` on every state change made with the session cookie.
    pub csrf: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

fn decode(bytes: &[u8]) -> Result<SessionRecord> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Record("session".into(), e.to_string()))
}

pub fn get(tx: &ReadTransaction, hash: &[u8]) -> Result<Option<SessionRecord>> {
    tx.open_table(SESSIONS)?
        .get(hash)?
        .map(|v| decode(v.value()))
        .transpose()
}

pub fn put(tx: &WriteTransaction, hash: &[u8], s: &SessionRecord) -> Result<()> {
    let json =
        serde_json::to_vec(s).map_err(|e| StoreError::Record("session".into(), e.to_string()))?;
    tx.open_table(SESSIONS)?.insert(hash, json.as_slice())?;
    Ok(())
}

pub fn remove(tx: &WriteTransaction, hash: &[u8]) -> Result<bool> {
    Ok(tx.open_table(SESSIONS)?.remove(hash)?.is_some())
}

/// Drops expired sessions (and unreadable ones). The table holds one row per signed-in
/// browser, so walking it at sign-in is cheap.
pub fn purge_expired(tx: &WriteTransaction, now: DateTime<Utc>) -> Result<usize> {
    let mut t = tx.open_table(SESSIONS)?;
    let gone = t
        .extract_if(|_, v| decode(v).map(|s| s.expires_at <= now).unwrap_or(true))?
        .count();
    Ok(gone)
}
