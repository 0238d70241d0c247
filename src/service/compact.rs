//! The background compactor: conversations quiet for [`QUIET_MINUTES`] get their incremental
//! chunks folded into one full save (`Store::compact_quiet`), a batch every
//! [`EVERY_MINUTES`], on a thread at the lowest CPU priority. It is what makes a hub's history
//! sendable as stored bytes on a partner's first sync (the partner's node loads each
//! conversation once and stores the bytes as received) and keeps cold loads short.

use std::sync::Arc;
use std::time::Duration;

use super::Service;

/// A conversation untouched this long is folded.
pub const QUIET_MINUTES: i64 = 10;
/// How often the compactor looks.
pub const EVERY_MINUTES: u64 = 10;
/// Most conversations folded in one round: at ~0.3 ms of one core each, about 3 s of work
/// at the lowest priority; a larger backlog takes several rounds.
const PER_ROUND: usize = 10_000;

/// Runs until the node stops.
pub async fn run_compactor(svc: Arc<Service>) {
    let mut closing = svc.closing();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(EVERY_MINUTES * 60)) => {}
            _ = async { let _ = closing.wait_for(|c| *c).await; } => return,
        }
        let store = svc.store.clone();
        let now = svc.now();
        let quiet = chrono::Duration::minutes(QUIET_MINUTES);
        match super::backup::in_background("parley-compact", move || {
            store.compact_quiet(now, quiet, PER_ROUND)
        })
        .await
        {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => tracing::debug!(conversations = n, "compacted quiet conversations"),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "compacting quiet conversations failed; it is tried again later")
            }
            Err(e) => tracing::warn!(error = %e, "compacting quiet conversations did not run"),
        }
    }
}
