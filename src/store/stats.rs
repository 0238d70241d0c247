//! Counts a scrape of `/metrics` reports, read from what the store keeps counted anyway: the
//! facet counts of the inbox and the lengths redb keeps for each table. Nothing here walks
//! rows, so a scrape costs a few lookups however many conversations are stored.

use redb::{ReadTransaction, ReadableTableMetadata};

use super::tables::FACET_COUNTS;
use super::{Result, Store};
use crate::domain::{Facet, Kind, State};

/// What waits in the outbox and how the conversations divide.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    /// Mail rows not yet folded into mails, plus mails not yet sent.
    pub mail_pending: u64,
    /// Webhook deliveries queued.
    pub webhook_pending: u64,
    /// Conversations per (kind, state), every pair present.
    pub conversations: Vec<(Kind, State, u64)>,
    /// The Overdue folder's count.
    pub tasks_overdue: u64,
}

pub fn counts(tx: &ReadTransaction) -> Result<Counts> {
    let facets = tx.open_table(FACET_COUNTS)?;
    let count = |f: Facet| -> Result<u64> {
        Ok(facets
            .get(f.key().as_str())?
            .map(|v| v.value())
            .unwrap_or(0))
    };
    let mut conversations = Vec::new();
    for &k in Kind::ALL {
        for &s in State::ALL {
            conversations.push((k, s, count(Facet::StateKind(s, k))?));
        }
    }
    let mail_pending = super::mail_queue::len(tx)? + super::outbox::out_mail_len(tx)?;
    let webhook_pending = tx.open_table(super::outbox::HOOK_QUEUE)?.len()?;
    Ok(Counts {
        mail_pending,
        webhook_pending,
        conversations,
        tasks_overdue: count(Facet::Overdue)?,
    })
}

impl Store {
    /// The writer's metrics, for the node's registry.
    pub fn metrics(&self) -> &crate::metrics::StoreMetrics {
        &self.metrics
    }

    /// Write jobs waiting for the writer thread.
    pub fn writer_queue_depth(&self) -> usize {
        self.writer.queue_depth()
    }

    /// The size of the database file; `None` if it cannot be read.
    pub fn file_bytes(&self) -> Option<u64> {
        std::fs::metadata(self.dir.join("parley.redb"))
            .ok()
            .map(|m| m.len())
    }
}
