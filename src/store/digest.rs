//! A digest of each document and derived table: what two nodes must agree on byte for byte
//! when they hold the same conversations (used to show that two ways of receiving a first
//! sync store the same thing). Sync bookkeeping, feeds' incarnation ids and accounts are not
//! included: they differ between nodes by design.

use redb::{Key, ReadTransaction, ReadableTable, TableDefinition, Value};
use sha2::{Digest, Sha256};

use super::tables::*;
use super::{Store, StoreError};

/// One table's digest: its name, row count and SHA-256 over every key and value in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableDigest {
    pub table: &'static str,
    pub rows: u64,
    pub sha256: [u8; 32],
}

fn digest<K: Key + 'static, V: Value + 'static>(
    tx: &ReadTransaction,
    name: &'static str,
    def: TableDefinition<K, V>,
) -> Result<TableDigest, StoreError> {
    let t = tx.open_table(def)?;
    let mut h = Sha256::new();
    let mut rows = 0;
    for e in t.iter()? {
        let (k, v) = e?;
        let (k, v) = (k.value(), v.value());
        let (kb, vb) = (K::as_bytes(&k), V::as_bytes(&v));
        h.update((kb.as_ref().len() as u64).to_le_bytes());
        h.update(kb.as_ref());
        h.update((vb.as_ref().len() as u64).to_le_bytes());
        h.update(vb.as_ref());
        rows += 1;
    }
    Ok(TableDigest {
        table: name,
        rows,
        sha256: h.finalize().into(),
    })
}

impl Store {
    /// Digests of the documents, their chunks and every table derived from them. Blocking.
    pub fn table_digests(&self) -> Result<Vec<TableDigest>, StoreError> {
        use super::{audience, blobs, team, text_words};
        let tx = self.begin_read()?;
        macro_rules! all {
            ($($t:expr),* $(,)?) => {
                vec![$(digest(&tx, stringify!($t), $t)?),*]
            };
        }
        Ok(all![
            DOCS,
            CHUNKS,
            SUMMARIES,
            FACETS,
            FACET_COUNTS,
            PAIR_COUNTS,
            DUE_PENDING,
            DUE_ORDER,
            UNREAD_ORDER,
            HEADS,
            FEED,
            FEED_POS,
            WORDS,
            ACTIVITY,
            TOPICS_FOLDED,
            audience::PARTNER_FEED,
            audience::PARTNER_FEED_POS,
            team::TEAM_ASSIGNEE,
            text_words::TEXT_WORDS,
            blobs::BLOB_REFS,
            blobs::BLOB_WANTED,
        ])
    }
}
