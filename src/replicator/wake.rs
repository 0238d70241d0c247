//! Waking links for local changes: only those of the peers a change concerns.

use tokio::sync::broadcast;
use uuid::Uuid;

use super::{Entry, Replicator};
use crate::domain::OrgId;
use crate::service::{ChangeEvent, Concern};

impl Replicator {
    pub(super) fn poke_all(&self) {
        self.poke_where(|_| true);
    }

    /// Wakes the links a batch of local changes concerns: our own sites (they hold every
    /// conversation) and the nodes of each changed conversation's partner org. At a hub with
    /// thousands of partners one reply wakes a few links, not all of them. Whatever cannot be
    /// told (a lagged batch, a conversation without an inbox row, a failed read) wakes every
    /// link: a wake too many costs a step, a wake too few would leave a change unsent until
    /// the next one.
    pub(super) async fn poke_concerned(&self, batch: Changes) {
        let ids = match batch {
            Changes::Lagged => return self.poke_all(),
            Changes::Some(ids) => ids,
        };
        let Ok(concerns) = self.svc.concerns(ids).await else {
            return self.poke_all();
        };
        let mut orgs: Vec<OrgId> = Vec::new();
        for c in concerns {
            match c {
                Concern::Unknown => return self.poke_all(),
                Concern::OwnSites => {}
                Concern::Partner(o) => {
                    if !orgs.contains(&o) {
                        orgs.push(o);
                    }
                }
            }
        }
        self.poke_where(|e| e.own || orgs.contains(&e.org));
    }

    fn poke_where(&self, wake: impl Fn(&Entry) -> bool) {
        let sync = &self.svc.metrics().sync;
        if let Ok(c) = self.conns.lock() {
            for (id, e) in c.iter() {
                if wake(e) {
                    e.poke.notify_one();
                    sync.woken(&id.to_string());
                }
            }
        }
    }
}

/// Local changes, as one batch for [`Replicator::poke_concerned`].
pub(super) enum Changes {
    Some(Vec<Uuid>),
    /// Changes were missed: which conversations is unknown.
    Lagged,
}

/// Most conversations looked up for one round of wakes.
const BATCH: usize = 1024;

/// Waits for the next local change and takes the others already queued with it, so a burst
/// of writes costs one lookup and one wake per link. `None` once the node stops.
pub(super) async fn next_changes(rx: &mut broadcast::Receiver<ChangeEvent>) -> Option<Changes> {
    use broadcast::error::{RecvError, TryRecvError};
    let mut ids = match rx.recv().await {
        Ok(e) => vec![e.conversation],
        Err(RecvError::Lagged(_)) => return Some(Changes::Lagged),
        Err(RecvError::Closed) => return None,
    };
    while ids.len() < BATCH {
        match rx.try_recv() {
            Ok(e) => {
                if !ids.contains(&e.conversation) {
                    ids.push(e.conversation);
                }
            }
            Err(TryRecvError::Lagged(_)) => return Some(Changes::Lagged),
            Err(TryRecvError::Empty | TryRecvError::Closed) => break,
        }
    }
    Some(Changes::Some(ids))
}
