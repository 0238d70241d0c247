//! What a scrape of `/metrics` reads from the node itself: the store's counts, the writer's
//! queue, the database file and the process's memory. The replicator adds the peers.

use std::sync::Arc;

use super::{Result, Service};
use crate::metrics::{Channel, Metrics, Snapshot};

impl Service {
    /// The node's registry: handles to bump, and the renderer.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Everything but the peers. Costs a few index lookups (see `store::stats`).
    pub async fn metrics_snapshot(&self) -> Result<Snapshot> {
        // The Overdue folder counts what the daily sweep moved there: sweep first, as an
        // inbox read does, so a scrape on a new day does not report yesterday's count.
        self.store.sweep_overdue(self.clock.today()).await?;
        let counts = self.store.read(crate::store::stats::counts).await?;
        Ok(Snapshot {
            writer_queue_depth: self.store.writer_queue_depth() as u64,
            store_file_bytes: self.store.file_bytes(),
            peers: Vec::new(),
            outbox: vec![
                (Channel::Email, counts.mail_pending),
                (Channel::Webhook, counts.webhook_pending),
            ],
            conversations: counts
                .conversations
                .iter()
                .map(|(k, s, n)| (k.as_str(), s.as_str(), *n))
                .collect(),
            tasks_overdue: Some(counts.tasks_overdue),
            resident_memory_bytes: resident_memory_bytes(),
        })
    }
}

/// Resident set size from `/proc/self/statm` (its second field, in pages); `None` where there
/// is no such file (not Linux).
fn resident_memory_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * rustix::param::page_size() as u64)
}
