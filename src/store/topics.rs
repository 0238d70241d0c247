//! Topic records (orders, items, returns, …) keyed by (kind, ref), in ref order within a kind.

use redb::{ReadTransaction, ReadableTable, WriteTransaction};

use super::tables::TOPICS;
use super::{Result, StoreError};
use crate::domain::TopicKind;
use crate::domain::topics::TopicRecord;

fn decode(bytes: &[u8]) -> Result<TopicRecord> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Record("topic".into(), e.to_string()))
}

fn get_in(
    t: &impl ReadableTable<(&'static str, &'static str), &'static [u8]>,
    kind: TopicKind,
    reference: &str,
) -> Result<Option<TopicRecord>> {
    t.get((kind.as_str(), reference))?
        .map(|v| decode(v.value()))
        .transpose()
}

pub fn get(tx: &ReadTransaction, kind: TopicKind, reference: &str) -> Result<Option<TopicRecord>> {
    get_in(&tx.open_table(TOPICS)?, kind, reference)
}

pub fn get_w(
    tx: &WriteTransaction,
    kind: TopicKind,
    reference: &str,
) -> Result<Option<TopicRecord>> {
    get_in(&tx.open_table(TOPICS)?, kind, reference)
}

pub fn put(tx: &WriteTransaction, r: &TopicRecord) -> Result<()> {
    let json =
        serde_json::to_vec(r).map_err(|e| StoreError::Record("topic".into(), e.to_string()))?;
    tx.open_table(TOPICS)?
        .insert((r.kind.as_str(), r.reference.as_str()), json.as_slice())?;
    Ok(())
}

/// Records of one kind in ref order, after `after` (exclusive), whose ref starts with
/// `prefix`; `limit + 1` are read so the caller knows whether there are more.
pub fn list(
    tx: &ReadTransaction,
    kind: TopicKind,
    prefix: &str,
    after: Option<&str>,
    limit: usize,
) -> Result<(Vec<TopicRecord>, bool)> {
    let t = tx.open_table(TOPICS)?;
    let k = kind.as_str();
    let start = match after {
        Some(a) if a >= prefix => a,
        _ => prefix,
    };
    let mut out = Vec::with_capacity(limit);
    for entry in t.range((k, start)..)? {
        let (key, v) = entry?;
        let (kk, r) = key.value();
        if kk != k || !r.starts_with(prefix) {
            break;
        }
        if after == Some(r) {
            continue;
        }
        if out.len() == limit {
            return Ok((out, true));
        }
        out.push(decode(v.value())?);
    }
    Ok((out, false))
}
