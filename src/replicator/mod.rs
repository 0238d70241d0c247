//! Connections to peers: who dials whom, reconnecting, pushing local changes to every live
//! session, and the status the API shows. Moves opaque frames; the sync engine (`parley_sync`)
//! decides what they say, the store decides what lands.

pub mod admission;
pub mod conn;
pub mod dial;
mod metrics;
pub mod pump;
mod wake;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::domain::OrgId;
use crate::service::{PeerEvent, Service};
use crate::store::peers::Peer;
use crate::store::sync_host::PeerScope;
use admission::{Admission, Limits};
use conn::{Conn, Live, Transport};

struct Entry {
    generation: u64,
    /// The peer's org, and whether it is our own (a site holds every conversation).
    org: OrgId,
    own: bool,
    poke: Arc<Notify>,
    cancel: Arc<Notify>,
    live: Arc<Mutex<Live>>,
    since: DateTime<Utc>,
}

/// Why the last attempt with a peer failed; `stopped` when this node gave up dialing it.
#[derive(Debug, Clone)]
pub struct Failure {
    pub error: String,
    pub stopped: bool,
}

/// Refusals in a row after which a "permanent" dial failure stops the dialer: one refusal can
/// be a race (the peer has not yet recorded a pairing that just completed here).
const PERMANENT_AFTER: u32 = 3;

/// What `/api/v1/peers` shows of a live connection.
#[derive(Debug, Clone, Copy)]
pub struct LinkStatus {
    pub connected_since: DateTime<Utc>,
    pub live: Live,
}

pub struct Replicator {
    svc: Arc<Service>,
    me: Uuid,
    conns: Mutex<HashMap<Uuid, Entry>>,
    /// The last state of each peer's ended link, for "waiting" counts while it is away.
    last_seen: Mutex<HashMap<Uuid, Live>>,
    /// When each peer's last link ended, while it has no link; cleared when one opens.
    away_since: Mutex<HashMap<Uuid, DateTime<Utc>>>,
    dialers: Mutex<HashMap<Uuid, JoinHandle<()>>>,
    failures: Mutex<HashMap<Uuid, Failure>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    next_gen: std::sync::atomic::AtomicU64,
    /// Per away peer (and the feed position its link ended at): when its waiting changes
    /// were last counted, and the count (`metrics`).
    away_counts: Mutex<HashMap<(Uuid, u64), (std::time::Instant, u64)>>,
    /// Restart storms: upgrades per second, first syncs at once.
    admission: Arc<Admission>,
}

impl Replicator {
    /// Starts dialing the peers this node should dial and following local changes.
    pub async fn start(svc: Arc<Service>, limits: Limits) -> anyhow::Result<Arc<Replicator>> {
        let me = svc
            .identity()
            .await?
            .ok_or_else(|| anyhow::anyhow!("no identity"))?
            .node_id;
        let r = Arc::new(Replicator {
            svc: svc.clone(),
            me,
            conns: Mutex::default(),
            last_seen: Mutex::default(),
            away_since: Mutex::default(),
            dialers: Mutex::default(),
            failures: Mutex::default(),
            tasks: Mutex::default(),
            next_gen: Default::default(),
            away_counts: Mutex::default(),
            admission: Arc::new(Admission::new(limits)),
        });
        for p in svc.peers().await? {
            r.maybe_dial(p);
        }
        let (r1, r2) = (r.clone(), r.clone());
        let mut changes = svc.subscribe();
        let t1 = tokio::spawn(async move {
            while let Some(batch) = wake::next_changes(&mut changes).await {
                r1.poke_concerned(batch).await;
            }
        });
        let mut peer_events = svc.subscribe_peers();
        let t2 = tokio::spawn(async move {
            while let Ok(ev) = peer_events.recv().await {
                match ev {
                    PeerEvent::Added(id) => {
                        if let Ok(Some(p)) = r2.svc.peer(id).await {
                            r2.maybe_dial(p);
                        }
                    }
                    PeerEvent::Removed(id) => r2.cut(id),
                }
            }
        });
        if let Ok(mut t) = r.tasks.lock() {
            t.extend([t1, t2]);
        }
        Ok(r)
    }

    /// The lower node id dials when both know each other's address; a node without a public
    /// address always dials, since the peer cannot reach it.
    fn should_dial(&self, p: &Peer) -> bool {
        p.url.is_some() && (self.me < p.node_id || self.svc.public_url().is_none())
    }

    fn maybe_dial(self: &Arc<Self>, p: Peer) {
        if !self.should_dial(&p) {
            return;
        }
        let me = self.clone();
        let id = p.node_id;
        let handle = tokio::spawn(async move { me.dial_loop(id).await });
        if let Ok(mut d) = self.dialers.lock()
            && let Some(old) = d.insert(id, handle)
        {
            old.abort();
        }
    }

    async fn dial_loop(self: Arc<Self>, id: Uuid) {
        let mut attempt = 0u32;
        let mut refusals = 0u32;
        loop {
            let mut come_back = None;
            let peer = match self.svc.peer(id).await {
                Ok(Some(p)) => p,
                _ => return, // removed
            };
            match dial::connect(&self.svc, &peer, self.me).await {
                Ok(t) => {
                    refusals = 0;
                    self.set_failure(id, None);
                    let started = std::time::Instant::now();
                    tracing::info!(peer = %id, org = %peer.org_id, "connected to peer");
                    let r = self.run(peer, t).await;
                    if started.elapsed() > std::time::Duration::from_secs(10) {
                        attempt = 0;
                    }
                    if let Err(e) = r {
                        tracing::warn!(peer = %id, error = %e, "sync connection ended");
                        let stop = e.is_permanent();
                        self.set_failure(
                            id,
                            Some(Failure {
                                error: e.to_string(),
                                stopped: stop,
                            }),
                        );
                        if stop {
                            tracing::warn!(peer = %id, error = %e, "stopped dialing the peer: retrying cannot help");
                            return;
                        }
                    }
                }
                Err(e) => {
                    come_back = e.retry_after;
                    refusals = if e.permanent { refusals + 1 } else { 0 };
                    let stop = refusals >= PERMANENT_AFTER;
                    self.set_failure(
                        id,
                        Some(Failure {
                            error: e.message.clone(),
                            stopped: stop,
                        }),
                    );
                    if stop {
                        tracing::warn!(peer = %id, error = %e, "stopped dialing the peer: retrying cannot help");
                        return;
                    }
                    tracing::debug!(peer = %id, error = %e, "cannot reach peer");
                }
            }
            tokio::time::sleep(match come_back {
                Some(floor) => dial::after(floor, attempt),
                None => dial::backoff(attempt),
            })
            .await;
            attempt = attempt.saturating_add(1);
        }
    }

    fn set_failure(&self, id: Uuid, f: Option<Failure>) {
        if let Ok(mut m) = self.failures.lock() {
            match f {
                Some(f) => m.insert(id, f),
                None => m.remove(&id),
            };
        }
    }

    /// Why the last attempt with this peer failed, if it did.
    pub fn failure(&self, id: Uuid) -> Option<Failure> {
        self.failures.lock().ok()?.get(&id).cloned()
    }

    /// Serves a connection the peer opened (already authenticated).
    pub async fn serve_incoming(self: &Arc<Self>, peer: Peer, t: Transport) {
        let id = peer.node_id;
        tracing::info!(peer = %id, org = %peer.org_id, "peer connected");
        self.set_failure(id, None);
        if let Err(e) = self.run(peer, t).await {
            tracing::warn!(peer = %id, error = %e, "sync connection ended");
            self.set_failure(
                id,
                Some(Failure {
                    error: e.to_string(),
                    stopped: false,
                }),
            );
        }
    }

    /// Runs one connection; a newer connection with the same peer replaces this one.
    async fn run(self: &Arc<Self>, peer: Peer, t: Transport) -> Result<(), conn::ConnError> {
        let me_org = self.svc.identity().await.ok().flatten().map(|i| i.org_id);
        let Some(me_org) = me_org else { return Ok(()) };
        let id = peer.node_id;
        let generation = self
            .next_gen
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (poke, cancel, live) = (
            Arc::new(Notify::new()),
            Arc::new(Notify::new()),
            Arc::new(Mutex::new(Live::default())),
        );
        if let Ok(mut c) = self.conns.lock() {
            let entry = Entry {
                generation,
                own: peer.org_id == me_org,
                org: peer.org_id.clone(),
                poke: poke.clone(),
                cancel: cancel.clone(),
                live: live.clone(),
                since: Utc::now(),
            };
            if let Some(old) = c.insert(id, entry) {
                old.cancel.notify_one();
            }
        }
        if let Ok(mut a) = self.away_since.lock() {
            a.remove(&id);
        }
        let c = Conn {
            svc: self.svc.clone(),
            scope: PeerScope { peer, me: me_org },
            poke,
            live: live.clone(),
            recovery_ended: Default::default(),
            admission: self.admission.clone(),
        };
        let result = tokio::select! {
            r = c.run(t) => r,
            _ = cancel.notified() => Ok(()),
        };
        if let Ok(mut c) = self.conns.lock()
            && c.get(&id).is_some_and(|e| e.generation == generation)
        {
            c.remove(&id);
            // Only the link that is current ends the connection; a replaced one does not.
            if let Ok(mut a) = self.away_since.lock() {
                a.insert(id, Utc::now());
            }
        }
        if let (Ok(mut seen), Ok(l)) = (self.last_seen.lock(), live.lock()) {
            seen.insert(id, *l);
        }
        result
    }

    /// Cuts a revoked peer off: its dialer stops and its connection closes.
    fn cut(&self, id: Uuid) {
        self.set_failure(id, None);
        if let Ok(mut a) = self.away_since.lock() {
            a.remove(&id);
        }
        if let Some(d) = self.dialers.lock().ok().and_then(|mut d| d.remove(&id)) {
            d.abort();
        }
        if let Some(e) = self.conns.lock().ok().and_then(|mut c| c.remove(&id)) {
            e.cancel.notify_one();
        }
    }

    /// The state of the peer's last link, if it has had one since this node started.
    pub fn last_seen(&self, id: Uuid) -> Option<Live> {
        self.last_seen.lock().ok()?.get(&id).copied()
    }

    /// Since when the peer has had no link, if it had one since this node started.
    pub fn away_since(&self, id: Uuid) -> Option<DateTime<Utc>> {
        if self.status(id).is_some() {
            return None;
        }
        self.away_since.lock().ok()?.get(&id).copied()
    }

    pub fn status(&self, id: Uuid) -> Option<LinkStatus> {
        let c = self.conns.lock().ok()?;
        let e = c.get(&id)?;
        let live = *e.live.lock().ok()?;
        Some(LinkStatus {
            connected_since: e.since,
            live,
        })
    }

    /// Takes one sync upgrade from the rate limit, or says when to come back.
    pub fn try_accept(&self) -> Result<(), std::time::Duration> {
        self.admission.try_accept()
    }

    /// While the peer's first sync waits for a turn: its place in the line (1 = next).
    pub fn waiting_turn(&self, id: Uuid) -> Option<u64> {
        self.admission.place(id)
    }

    /// How many first syncs wait for a turn.
    pub fn waiting_turns(&self) -> usize {
        self.admission.waiting()
    }

    /// Stops dialing and closes every connection.
    pub fn stop(&self) {
        for t in self
            .tasks
            .lock()
            .map(|mut t| std::mem::take(&mut *t))
            .unwrap_or_default()
        {
            t.abort();
        }
        for (_, d) in self
            .dialers
            .lock()
            .map(|mut d| std::mem::take(&mut *d))
            .unwrap_or_default()
        {
            d.abort();
        }
        for (_, e) in self
            .conns
            .lock()
            .map(|mut c| std::mem::take(&mut *c))
            .unwrap_or_default()
        {
            e.cancel.notify_one();
        }
    }
}
