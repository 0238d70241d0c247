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
    /// Legacy shared secret, kept only for peers paired before nodes had identity keys: both
    /// sides prove they hold it with an HMAC over a fresh challenge; it never travels. Empty
    /// for peers paired since, which are proven by [`Peer::public_key`].
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub key: String,
    /// The peer's Ed25519 identity key (hex), exchanged at pairing: it signs every challenge
    /// when a sync connection opens. `None` for a peer paired before identity keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
    /// Fingerprint (hex SHA-256) of the certificate the peer serves TLS with, pinned when
    /// dialling its `https://` address; `None` for plain links or a publicly trusted one.
    #[serde(default)]
    pub tls: Option<String>,
    pub created_at: DateTime<Utc>,
    pub last_sync_at: Option<DateTime<Utc>>,
    /// Set while this partner's node may restore our own org's past changes to us (a recovery
    /// pairing, or the first exchange after a restore): its changes are then judged under
    /// `Authority::Recovery`. Cleared, and logged, once the first full exchange with it has
    /// completed (`Store::end_recovery`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recover_since: Option<DateTime<Utc>>,
}

/// How long a recovery window (`Peer::recover_since`) stays open at most, should the first
/// full exchange with that partner never complete: a partner cannot hold it open.
pub const RECOVERY_WINDOW: chrono::TimeDelta = chrono::TimeDelta::days(14);

/// Who an invite is for, chosen by the admin who made it. Pairing succeeds only if the
/// accepting node presents exactly this.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum InviteFor {
    /// A node of a partner org: a new partner, or one more node of a known one.
    Partner {
        org_id: OrgId,
        org_name: String,
        role: Role,
    },
    /// Another site of this node's own org.
    OwnSite,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Invite {
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// `None` only for an invite made before invites named their org; such an invite is
    /// refused (it would pair whoever holds it as whatever they claim).
    #[serde(default)]
    pub intended: Option<InviteFor>,
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

pub fn list_peers_w(tx: &WriteTransaction) -> Result<Vec<Peer>> {
    let t = tx.open_table(PEERS)?;
    let mut out = Vec::new();
    for item in t.iter()? {
        out.push(decode("peer", item?.1.value())?);
    }
    Ok(out)
}

/// Records a peer. Callers check first that no peer has this node id: re-pairing must never
/// overwrite a peer (its sync states and cursor would pass to the newcomer).
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

/// This node's Ed25519 identity key (the 32-byte seed), made on first use. It lives beside
/// the node's identity (`META`), so a backup of the database carries both.
pub fn node_key(tx: &WriteTransaction) -> Result<[u8; 32]> {
    let mut t = tx.open_table(META)?;
    if let Some(v) = t.get(NODE_KEY)? {
        return <[u8; 32]>::try_from(v.value()).map_err(|_| {
            StoreError::Record(
                "node key".into(),
                "is not 32 bytes; restore the database from a backup".into(),
            )
        });
    }
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed)
        .map_err(|e| StoreError::Record("node key".into(), format!("no randomness: {e}")))?;
    t.insert(NODE_KEY, seed.as_slice())?;
    Ok(seed)
}

const NODE_KEY: &str = "node_key";

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
