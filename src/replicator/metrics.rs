//! The peers as a scrape of `/metrics` reports them, and the same `pending` count that
//! `GET /api/v1/peers` shows.

use std::time::{Duration, Instant};

use super::Replicator;
use crate::metrics::PeerGauges;
use crate::store::peers::Peer;

/// How long a scrape may reuse the count of changes waiting for a peer that is away: that
/// count reads the changes feed since the link dropped, which grows while the peer is gone.
pub const AWAY_COUNT_TTL: Duration = Duration::from_secs(10);

/// The feed is read this far at most for one away peer.
const AWAY_CAP: usize = 100_000;

impl Replicator {
    /// What the peer still has to receive from this node: while linked, what the session has
    /// not sent; while away, what was still waiting when the link dropped plus what changed
    /// since (counted afresh when the last count is older than `max_age`). `None` when this
    /// node has not had a link with it since it started.
    pub async fn pending(&self, p: &Peer, max_age: Duration) -> Option<u64> {
        if let Some(link) = self.status(p.node_id) {
            return Some(link.live.progress.pending_to_send());
        }
        let last = self.last_seen(p.node_id)?;
        let key = (p.node_id, last.local_high);
        if let Some((at, n)) = self.away_counts.lock().ok()?.get(&key).copied()
            && at.elapsed() <= max_age
        {
            return Some(n);
        }
        let changed = self
            .svc
            .shared_changes_since(p, last.local_high, AWAY_CAP)
            .await
            .ok()?;
        let n = changed + last.progress.pending_to_send();
        if let Ok(mut c) = self.away_counts.lock() {
            // One entry per peer: the one for its latest link.
            c.retain(|(id, _), _| *id != p.node_id);
            c.insert(key, (Instant::now(), n));
        }
        Some(n)
    }

    /// Every paired peer: linked or not, when it last synced, what it still has to receive.
    pub async fn peer_gauges(&self) -> Vec<PeerGauges> {
        let Ok(peers) = self.svc.peers().await else {
            return Vec::new();
        };
        let mut out = Vec::with_capacity(peers.len());
        for p in peers {
            out.push(PeerGauges {
                peer: p.node_id.to_string(),
                connected: self.status(p.node_id).is_some(),
                last_sync: p.last_sync_at.map(|t| t.timestamp_millis() as f64 / 1000.0),
                pending: self.pending(&p, AWAY_COUNT_TTL).await,
            });
        }
        out
    }
}
