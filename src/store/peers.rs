//! Paired peers, pairing invites, and what sync persists per peer: Automerge sync states and
//! this node's cursor into the peer's changes feed.

use chrono::{DateTime, Utc};
use redb::{ReadTransaction, ReadableTable, WriteTransaction};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::tables::*;
use super::{Result, StoreError};
use crate::domain::{OrgId, Role};

/// Another node this node syncs with: a partner's node, or another site of our own org.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Peer {
    pub node_id: Uuid,
    pub org_id: OrgId,
    pub org_name: String,
    pub role: Role,
    /// Where to dial it; `None` when only the peer dials us.
    pub url: Option<String>,
    /// The shared secret both sides present when connecting.
    pub key: String,
    /// Fingerprint (hex SHA-256) of the certificate the peer serves TLS with, pinned when
    /// dialling its `https://` address; `None` for plain links or a publicly trusted one.
    #[serde(default)]
    pub tls: Option<String>,
    pub created_at: DateTime<Utc>,
    pub last_sync_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Invite {
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

fn decode<T: serde::de::DeserializeOwned>(what: &str, b: &[u8]) -> Result<T> {
    serde_json::from_slice(b).map_err(|e| StoreError::Record(what.into(), e.to_string()))
}

fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(v).map_err(|e| StoreError::Record("encode".into(), e.to_string()))
}

pub fn get_peer(tx: &ReadTransaction, node: Uuid) -> Result<Option<Peer>> {
    tx.open_table(PEERS)?
        .get(node.as_u128())?
        .map(|v| decode("peer", v.value()))
        .transpose()
}

pub fn get_peer_w(tx: &WriteTransaction, node: Uuid) -> Result<Option<Peer>> {
    tx.open_table(PEERS)?
        .get(node.as_u128())?
        .map(|v| decode("peer", v.value()))
        .transpose()
}

pub fn list_peers(tx: &ReadTransaction) -> Result<Vec<Peer>> {
    let t = tx.open_table(PEERS)?;
    let mut out = Vec::new();
    for item in t.iter()? {
        out.push(decode("peer", item?.1.value())?);
    }
    Ok(out)
}

pub fn put_peer(tx: &WriteTransaction, p: &Peer) -> Result<()> {
    tx.open_table(PEERS)?
        .insert(p.node_id.as_u128(), encode(p)?.as_slice())?;
    Ok(())
}

/// Forgets a peer and everything kept for it.
pub fn remove_peer(tx: &WriteTransaction, node: Uuid) -> Result<bool> {
    let id = node.as_u128();
    let had = tx.open_table(PEERS)?.remove(id)?.is_some();
    tx.open_table(SYNC_STATES)?
        .retain_in((id, 0)..=(id, u128::MAX), |_, _| false)?;
    tx.open_table(PEER_CURSORS)?.remove(id)?;
    Ok(had)
}

pub fn put_invite(tx: &WriteTransaction, secret_hash: &[u8], inv: &Invite) -> Result<()> {
    tx.open_table(INVITES)?
        .insert(secret_hash, encode(inv)?.as_slice())?;
    Ok(())
}

/// Looks up an invite without consuming it.
pub fn get_invite(tx: &WriteTransaction, secret_hash: &[u8]) -> Result<Option<Invite>> {
    tx.open_table(INVITES)?
        .get(secret_hash)?
        .map(|v| decode("invite", v.value()))
        .transpose()
}

pub fn remove_invite(tx: &WriteTransaction, secret_hash: &[u8]) -> Result<()> {
    tx.open_table(INVITES)?.remove(secret_hash)?;
    Ok(())
}

pub fn sync_state(tx: &ReadTransaction, peer: Uuid, doc: u128) -> Result<Option<Vec<u8>>> {
    Ok(tx
        .open_table(SYNC_STATES)?
        .get((peer.as_u128(), doc))?
        .map(|v| v.value().to_vec()))
}

pub fn put_sync_state(tx: &WriteTransaction, peer: Uuid, doc: u128, state: &[u8]) -> Result<()> {
    tx.open_table(SYNC_STATES)?
        .insert((peer.as_u128(), doc), state)?;
    Ok(())
}

pub fn cursor(tx: &ReadTransaction, peer: Uuid) -> Result<Option<(u64, u64)>> {
    Ok(tx
        .open_table(PEER_CURSORS)?
        .get(peer.as_u128())?
        .map(|v| v.value()))
}

pub fn put_cursor(tx: &WriteTransaction, peer: Uuid, c: (u64, u64)) -> Result<()> {
    tx.open_table(PEER_CURSORS)?.insert(peer.as_u128(), c)?;
    Ok(())
}
