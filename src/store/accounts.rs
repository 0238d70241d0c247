//! Records that are not conversations: the node's identity, local users, API tokens,
//! partners, and idempotency keys. Small JSON values in their own tables.

use chrono::{DateTime, Utc};
use redb::{ReadTransaction, ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use uuid::Uuid;

use super::tables::*;
use super::{Identity, Result, StoreError};
use crate::domain::{OrgId, Role};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UserKind {
    /// A person who signs in with a password.
    Person,
    /// An integration that only uses API tokens.
    Integration,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct User {
    pub id: Uuid,
    pub name: String,
    /// Argon2 PHC string; `None` for integrations.
    pub password_hash: Option<String>,
    pub admin: bool,
    pub kind: UserKind,
    pub created_at: DateTime<Utc>,
    /// Email address and notification preferences; absent in records written before them.
    #[serde(default)]
    pub notify: crate::domain::notify::UserNotify,
    /// The name colleagues see ("Ann Lee"); absent in records written before it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenRecord {
    pub id: Uuid,
    pub name: String,
    /// The user the token acts as.
    pub user: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Partner {
    pub id: OrgId,
    pub name: String,
    pub role: Role,
    pub created_at: DateTime<Utc>,
}

/// What a request with an `Idempotency-Key` produced the first time.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IdempotentResult {
    pub conversation: Uuid,
    pub message: Option<Uuid>,
}

fn decode<T: DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Record(what.into(), e.to_string()))
}

fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(v).map_err(|e| StoreError::Record("encode".into(), e.to_string()))
}

fn get_json<T: DeserializeOwned>(
    t: &impl ReadableTable<&'static str, &'static [u8]>,
    key: &str,
) -> Result<Option<T>> {
    t.get(key)?.map(|v| decode(key, v.value())).transpose()
}

fn all_json<T: DeserializeOwned>(
    tx: &ReadTransaction,
    def: TableDefinition<&str, &[u8]>,
) -> Result<Vec<T>> {
    let t = tx.open_table(def)?;
    let mut out = Vec::new();
    for item in t.iter()? {
        let (k, v) = item?;
        out.push(decode(k.value(), v.value())?);
    }
    Ok(out)
}

pub fn read_identity(tx: &ReadTransaction) -> Result<Option<Identity>> {
    get_json(&tx.open_table(META)?, "identity")
}

pub fn read_identity_w(tx: &WriteTransaction) -> Result<Option<Identity>> {
    get_json(&tx.open_table(META)?, "identity")
}

pub fn write_identity(tx: &WriteTransaction, id: &Identity) -> Result<()> {
    tx.open_table(META)?
        .insert("identity", encode(id)?.as_slice())?;
    Ok(())
}

pub fn get_user(tx: &ReadTransaction, name: &str) -> Result<Option<User>> {
    get_json(&tx.open_table(USERS)?, name)
}

pub fn get_user_w(tx: &WriteTransaction, name: &str) -> Result<Option<User>> {
    get_json(&tx.open_table(USERS)?, name)
}

pub fn list_users(tx: &ReadTransaction) -> Result<Vec<User>> {
    all_json(tx, USERS)
}

pub fn put_user(tx: &WriteTransaction, u: &User) -> Result<()> {
    tx.open_table(USERS)?
        .insert(u.name.as_str(), encode(u)?.as_slice())?;
    Ok(())
}

pub fn token_by_hash(tx: &ReadTransaction, hash: &[u8]) -> Result<Option<TokenRecord>> {
    tx.open_table(TOKENS)?
        .get(hash)?
        .map(|v| decode("token", v.value()))
        .transpose()
}

pub fn put_token(tx: &WriteTransaction, hash: &[u8], t: &TokenRecord) -> Result<()> {
    tx.open_table(TOKENS)?.insert(hash, encode(t)?.as_slice())?;
    Ok(())
}

pub fn list_tokens(tx: &ReadTransaction) -> Result<Vec<TokenRecord>> {
    let t = tx.open_table(TOKENS)?;
    let mut out = Vec::new();
    for item in t.iter()? {
        out.push(decode("token", item?.1.value())?);
    }
    Ok(out)
}

/// The stored key (hash) of the token with this id.
pub fn find_token(tx: &WriteTransaction, id: Uuid) -> Result<Option<Vec<u8>>> {
    let t = tx.open_table(TOKENS)?;
    for item in t.iter()? {
        let (k, v) = item?;
        let rec: TokenRecord = decode("token", v.value())?;
        if rec.id == id {
            return Ok(Some(k.value().to_vec()));
        }
    }
    Ok(None)
}

pub fn remove_token(tx: &WriteTransaction, key: &[u8]) -> Result<()> {
    tx.open_table(TOKENS)?.remove(key)?;
    Ok(())
}

pub fn get_partner(tx: &ReadTransaction, id: &OrgId) -> Result<Option<Partner>> {
    get_json(&tx.open_table(PARTNERS)?, id.as_str())
}

pub fn get_partner_w(tx: &WriteTransaction, id: &OrgId) -> Result<Option<Partner>> {
    get_json(&tx.open_table(PARTNERS)?, id.as_str())
}

pub fn list_partners(tx: &ReadTransaction) -> Result<Vec<Partner>> {
    all_json(tx, PARTNERS)
}

pub fn put_partner(tx: &WriteTransaction, p: &Partner) -> Result<()> {
    tx.open_table(PARTNERS)?
        .insert(p.id.as_str(), encode(p)?.as_slice())?;
    Ok(())
}

pub fn get_idempotent(
    tx: &WriteTransaction,
    user: &str,
    key: &str,
) -> Result<Option<IdempotentResult>> {
    tx.open_table(IDEMPOTENCY)?
        .get((user, key))?
        .map(|v| decode("idempotency", v.value()))
        .transpose()
}

pub fn put_idempotent(
    tx: &WriteTransaction,
    user: &str,
    key: &str,
    r: &IdempotentResult,
) -> Result<()> {
    tx.open_table(IDEMPOTENCY)?
        .insert((user, key), encode(r)?.as_slice())?;
    Ok(())
}
