//! Topic records (orders, items, returns, …) keyed by (kind, ref), in ref order within a kind.

use redb::{ReadTransaction, ReadableTable, WriteTransaction};

use super::tables::{TOPICS, TOPICS_FOLDED};
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
    fold_in(tx, r.kind.as_str(), &r.reference)
}

fn fold_in(tx: &WriteTransaction, kind: &str, reference: &str) -> Result<()> {
    let folded = reference.to_lowercase();
    tx.open_table(TOPICS_FOLDED)?
        .insert((kind, folded.as_str(), reference), ())?;
    Ok(())
}

/// Refills `TOPICS_FOLDED` from `TOPICS` (index rebuild).
pub fn rebuild_folded(tx: &WriteTransaction) -> Result<()> {
    let keys: Vec<(String, String)> = {
        let t = tx.open_table(TOPICS)?;
        let mut v = Vec::new();
        for item in t.iter()? {
            let (k, _) = item?;
            let (kind, r) = k.value();
            v.push((kind.to_string(), r.to_string()));
        }
        v
    };
    for (kind, r) in keys {
        fold_in(tx, &kind, &r)?;
    }
    Ok(())
}

/// Records of one kind in case-insensitive ref order, after the record with ref `after`
/// (exclusive), whose ref starts with `prefix` in any case; `limit + 1` are read so the caller
/// knows whether there are more.
pub fn list(
    tx: &ReadTransaction,
    kind: TopicKind,
    prefix: &str,
    after: Option<&str>,
    limit: usize,
) -> Result<(Vec<TopicRecord>, bool)> {
    let folded = tx.open_table(TOPICS_FOLDED)?;
    let records = tx.open_table(TOPICS)?;
    let k = kind.as_str();
    let prefix = prefix.to_lowercase();
    let after = after.map(|a| (a.to_lowercase(), a));
    let start = match &after {
        Some((fa, a)) if *fa >= prefix => (k, fa.as_str(), *a),
        _ => (k, prefix.as_str(), ""),
    };
    let mut out = Vec::with_capacity(limit);
    for entry in folded.range(start..)? {
        let (key, _) = entry?;
        let (kk, f, r) = key.value();
        if kk != k || !f.starts_with(&prefix) {
            break;
        }
        if after.as_ref().is_some_and(|(_, a)| *a == r) {
            continue;
        }
        if out.len() == limit {
            return Ok((out, true));
        }
        if let Some(rec) = get_in(&records, kind, r)? {
            out.push(rec);
        }
    }
    Ok((out, false))
}
