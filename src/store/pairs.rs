//! Counts of conversations per pair of facets, so an inbox query with two filters (say one
//! partner's overdue tasks) answers its total from one row instead of walking a facet.
//!
//! Only low-cardinality facets pair up: kind, state, progress, partner, topic kind, overdue,
//! awaiting reply, action required. A topic ref or reference ID matches a handful of
//! conversations, so a query with one walks that handful; pairing them would add a row per
//! conversation. `all` pairs with nothing: its pair with `x` is `x`'s own count.
//!
//! Invariant: for every pair `(a, b)` with `a < b`, the row equals the number of conversations
//! listed under both `a` and `b` in `FACETS`. It changes only when a conversation's set of
//! facets changes (not on every reply), in the transaction that changes the facets.

use std::collections::BTreeSet;

use redb::{ReadableTable, Table, WriteTransaction};

use super::Result;
use super::tables::PAIR_COUNTS;
use crate::domain::Facet;

/// Whether a facet key takes part in pair counts.
pub fn pairable(key: &str) -> bool {
    key != Facet::All.key()
        && !key.starts_with(&Facet::TopicRef(String::new()).key())
        && !key.starts_with(&Facet::ReferenceId(String::new()).key())
}

/// The pairs of a set of facet keys, each ordered `(smaller, larger)`.
pub fn pairs_of(facets: &[String]) -> BTreeSet<(String, String)> {
    let mut keys: Vec<&String> = facets.iter().filter(|k| pairable(k)).collect();
    keys.sort();
    keys.dedup();
    let mut out = BTreeSet::new();
    for (i, a) in keys.iter().enumerate() {
        for b in &keys[i + 1..] {
            out.insert(((*a).clone(), (*b).clone()));
        }
    }
    out
}

fn add(
    t: &mut Table<(&'static str, &'static str), u64>,
    k: &(String, String),
    d: i64,
) -> Result<()> {
    let key = (k.0.as_str(), k.1.as_str());
    let cur = t.get(key)?.map(|v| v.value()).unwrap_or(0);
    let next = (cur as i64 + d).max(0) as u64;
    if next == 0 {
        t.remove(key)?;
    } else {
        t.insert(key, next)?;
    }
    Ok(())
}

/// Moves one conversation's pair counts from facet set `old` to `new`.
pub fn update(tx: &WriteTransaction, old: &[String], new: &[String]) -> Result<()> {
    // Most writes (a reply) keep a conversation's facets as they were; placement lists them in
    // a fixed order, so comparing the lists spares building the pair sets.
    if old == new {
        return Ok(());
    }
    let (old, new) = (pairs_of(old), pairs_of(new));
    if old == new {
        return Ok(());
    }
    let mut t = tx.open_table(PAIR_COUNTS)?;
    for p in old.difference(&new) {
        add(&mut t, p, -1)?;
    }
    for p in new.difference(&old) {
        add(&mut t, p, 1)?;
    }
    Ok(())
}

/// Conversations listed under both facets; `None` if the pair is not counted.
pub fn count(
    t: &impl ReadableTable<(&'static str, &'static str), u64>,
    a: &str,
    b: &str,
) -> Result<Option<u64>> {
    if !pairable(a) || !pairable(b) || a == b {
        return Ok(None);
    }
    let key = if a < b { (a, b) } else { (b, a) };
    Ok(Some(t.get(key)?.map(|v| v.value()).unwrap_or(0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_leave_out_all_and_per_conversation_values() {
        let f: Vec<String> = [
            "all",
            "kind:task",
            "partner:bolt",
            "topic_ref:PO-1",
            "overdue",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let p = pairs_of(&f);
        assert_eq!(p.len(), 3, "{p:?}");
        assert!(p.contains(&("kind:task".into(), "partner:bolt".into())));
        assert!(p.contains(&("kind:task".into(), "overdue".into())));
        assert!(p.contains(&("overdue".into(), "partner:bolt".into())));
    }
}
