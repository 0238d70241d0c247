//! One changes feed per partner org, beside the node's own feed.
//!
//! A partner's sync session reads its positions from here, never from the node's feed: the
//! positions it sees in HELLO and FEED then count only the changes to conversations shared
//! with it, so it learns nothing of how much we do with anyone else, or when. Sites of our
//! own org hold everything and read the node's feed (`FEED`). Like `FEED`, each conversation
//! appears once, at its latest change; the entries are derived (rebuilt with the other
//! indexes), the counters are not, so positions keep rising across a rebuild.

use redb::{ReadTransaction, ReadableTable, TableDefinition, WriteTransaction};
use sha2::{Digest, Sha256};

use super::Result;

/// (partner org, seq) -> conversation.
pub const PARTNER_FEED: TableDefinition<(&str, u64), u128> = TableDefinition::new("partner_feed");
/// (partner org, conversation) -> its seq in that partner's feed.
pub const PARTNER_FEED_POS: TableDefinition<(&str, u128), u64> =
    TableDefinition::new("partner_feed_pos");
/// The last seq handed out per partner org. Not derived: kept through rebuilds.
pub const PARTNER_FEED_HIGH: TableDefinition<&str, u64> = TableDefinition::new("partner_feed_high");

/// The feed incarnation a partner sees: derived from ours, so it changes when ours does, and
/// differs from ours, so a cursor a partner kept into the node's feed (before partner feeds
/// existed) is not mistaken for a position in its own.
pub fn feed_id(node_feed: u64, partner: &str) -> u64 {
    let mut h = Sha256::new();
    h.update(b"parley partner feed\0");
    h.update(node_feed.to_le_bytes());
    h.update(partner.as_bytes());
    let d = h.finalize();
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    u64::from_le_bytes(b) | 1
}

/// Moves conversation `id` to the head of `partner`'s feed.
pub fn bump(tx: &WriteTransaction, partner: &str, id: u128) -> Result<u64> {
    let mut high = tx.open_table(PARTNER_FEED_HIGH)?;
    let seq = high.get(partner)?.map(|v| v.value()).unwrap_or(0) + 1;
    high.insert(partner, seq)?;
    let mut pos = tx.open_table(PARTNER_FEED_POS)?;
    let mut feed = tx.open_table(PARTNER_FEED)?;
    if let Some(old) = pos.insert((partner, id), seq)? {
        feed.remove((partner, old.value()))?;
    }
    feed.insert((partner, seq), id)?;
    Ok(seq)
}

/// The end of `partner`'s feed.
pub fn high(rtx: &ReadTransaction, partner: &str) -> Result<u64> {
    Ok(rtx
        .open_table(PARTNER_FEED_HIGH)?
        .get(partner)?
        .map(|v| v.value())
        .unwrap_or(0))
}

/// Up to `limit` entries of `partner`'s feed after `since`, oldest first.
pub fn since(
    rtx: &ReadTransaction,
    partner: &str,
    since: u64,
    limit: usize,
) -> Result<Vec<(u64, u128)>> {
    let feed = rtx.open_table(PARTNER_FEED)?;
    let mut out = Vec::new();
    for item in feed.range((partner, since.saturating_add(1))..=(partner, u64::MAX))? {
        if out.len() >= limit {
            break;
        }
        let (k, v) = item?;
        out.push((k.value().1, v.value()));
    }
    Ok(out)
}

pub fn create_tables(tx: &WriteTransaction) -> std::result::Result<(), redb::TableError> {
    tx.open_table(PARTNER_FEED)?;
    tx.open_table(PARTNER_FEED_POS)?;
    tx.open_table(PARTNER_FEED_HIGH)?;
    Ok(())
}

pub fn clear_derived(tx: &WriteTransaction) -> std::result::Result<(), redb::TableError> {
    tx.delete_table(PARTNER_FEED)?;
    tx.delete_table(PARTNER_FEED_POS)?;
    Ok(())
}

/// Which peers a change to a conversation can concern, for waking only their links.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Concern {
    /// Our own sites and the nodes of this partner org.
    Partner(crate::domain::OrgId),
    /// Our own sites only (a team document).
    OwnSites,
    /// Not known here (no inbox row, or a damaged one): every link is woken.
    Unknown,
}

impl super::Store {
    /// [`Concern`] of each of `ids`, in order, from the inbox rows (one read transaction, no
    /// document loaded).
    pub fn concerns(&self, ids: &[u128]) -> Result<Vec<Concern>> {
        let rtx = self.begin_read()?;
        let rows = rtx.open_table(super::tables::SUMMARIES)?;
        let mut out = Vec::with_capacity(ids.len());
        for &id in ids {
            out.push(if crate::domain::team::is_team_id(id) {
                Concern::OwnSites
            } else {
                match super::index::get_summary(&rows, id) {
                    Ok(Some(s)) => Concern::Partner(s.partner),
                    _ => Concern::Unknown,
                }
            });
        }
        Ok(out)
    }
}
