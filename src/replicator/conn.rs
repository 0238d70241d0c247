//! Drives one sync session over one connection: frames from the peer and local changes in,
//! frames to the peer out. Session and store work run on the blocking pool; what a step
//! collected is committed (one durable commit) before the step's frames are sent.

use std::sync::{Arc, Mutex};

use parley_sync::{Config, Event, Progress, Session, SessionError};
use tokio::sync::{Notify, mpsc};
use uuid::Uuid;

use super::admission::{Admission, Standing, Turn};
use crate::service::Service;
use crate::store::StoreError;
use crate::store::sync_host::{PeerScope, SyncHost};

/// Frames to and from the peer. Dropping `tx` closes the connection; `rx` ends when it closes.
pub struct Transport {
    pub tx: mpsc::Sender<Vec<u8>>,
    pub rx: mpsc::Receiver<Vec<u8>>,
    /// Both ends opened the link as `parley-sync.2`: files travel on it.
    pub blobs: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    #[error(transparent)]
    Session(#[from] SessionError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the connection closed while sending")]
    Closed,
}

impl ConnError {
    /// Whether reconnecting can help.
    pub fn is_permanent(&self) -> bool {
        match self {
            ConnError::Session(e) => e.is_permanent(),
            ConnError::Store(e) => !e.is_transient() && !matches!(e, StoreError::Db(_)),
            ConnError::Closed => false,
        }
    }
}

/// Ends a link's claims on files when the link's future ends, even by being dropped.
struct ReleaseClaims {
    store: Arc<crate::store::Store>,
    peer: Uuid,
}

impl Drop for ReleaseClaims {
    fn drop(&mut self) {
        self.store.release_blobs_of(self.peer);
    }
}

/// Frames, and bytes, kept from a peer while its first sync waits for a turn; beyond either
/// the peer waits (the pump stops reading from it).
const HOLD: usize = 256;
const HOLD_BYTES: usize = 8 * 1024 * 1024;

/// How often a link looks again at files it could not fetch.
const FILES_AGAIN: std::time::Duration = std::time::Duration::from_secs(30);

/// How often a link whose peer's changes were refused for want of space looks for room.
const SPACE_AGAIN: std::time::Duration = std::time::Duration::from_secs(5);

/// Frames already waiting when a step starts are taken into it, up to these bounds: they
/// are processed in turn with one host and stored with ONE commit, so a peer answering faster
/// than we store costs a commit per batch rather than one per frame.
const FRAMES_PER_STEP: usize = 8;
const BYTES_PER_STEP: usize = 8 * 1024 * 1024;

/// `first` and the frames already queued behind it, within the bounds above.
fn take_waiting(first: Vec<u8>, rx: &mut mpsc::Receiver<Vec<u8>>) -> Vec<Vec<u8>> {
    let mut size = first.len();
    let mut batch = vec![first];
    while batch.len() < FRAMES_PER_STEP && size < BYTES_PER_STEP {
        let Ok(more) = rx.try_recv() else { break };
        size += more.len();
        batch.push(more);
    }
    batch
}

enum Step {
    Start,
    /// Frames from the peer, in order.
    Receive(Vec<Vec<u8>>),
    Local,
    /// Look again at the files still wanted (`Session::retry_blobs`).
    FilesAgain,
}

/// What the status endpoint shows for a live connection.
#[derive(Debug, Clone, Copy, Default)]
pub struct Live {
    pub progress: Progress,
    /// The end of our feed when `progress` was taken: what the peer still needs after the link
    /// drops is `progress` plus the shared changes after this position.
    pub local_high: u64,
}

pub struct Conn {
    pub svc: Arc<Service>,
    pub scope: PeerScope,
    pub poke: Arc<Notify>,
    pub live: Arc<Mutex<Live>>,
    /// This link has ended the peer's recovery window (`Peer::recover_since`).
    pub recovery_ended: std::sync::atomic::AtomicBool,
    /// First syncs take turns (`admission`).
    pub admission: Arc<Admission>,
}

impl Conn {
    /// Runs until the connection closes or fails.
    pub async fn run(self, t: Transport) -> Result<(), ConnError> {
        // However the link ends, returning or dropped (cut, replaced, shut down), a fetch it
        // had under way can be taken up by another peer's link.
        let _claims = ReleaseClaims {
            store: self.svc.store().clone(),
            peer: self.scope.peer.node_id,
        };
        self.run_session(t).await
    }

    async fn run_session(&self, mut t: Transport) -> Result<(), ConnError> {
        let config = Config {
            blobs: t.blobs,
            prepare: Some(crate::store::sync_host::prepare_new),
            ..Config::default()
        };
        let mut session = Some(Session::new(config));
        self.step(&mut session, Step::Start, &t.tx).await?;
        // Now and then, files still wanted are looked at again: a peer that could not give
        // one may have it by now, and one put off for want of disk space may fit.
        let mut files_again = tokio::time::interval(FILES_AGAIN);
        files_again.reset();
        // Changes refused while the disk was full are not asked for again within a session:
        // once there is room, the link ends (once, not in a loop) and the next one fetches them.
        let peer = self.scope.peer.node_id;
        let store = self.svc.store().clone();
        store.space().forget_peer(peer);
        let mut space_again = tokio::time::interval(SPACE_AGAIN);
        space_again.reset();
        let Some((held, mut turn)) = self.take_turn(&mut t).await else {
            return Ok(());
        };
        // What waited for the turn is stored in steps of the usual bounds, like any frames
        // that queue.
        let mut held = held.into_iter().peekable();
        while held.peek().is_some() {
            let mut size = 0;
            let mut batch = Vec::new();
            while let Some(f) = held.next_if(|f| {
                batch.is_empty()
                    || (batch.len() < FRAMES_PER_STEP && size + f.len() <= BYTES_PER_STEP)
            }) {
                size += f.len();
                batch.push(f);
            }
            self.step(&mut session, Step::Receive(batch), &t.tx).await?;
        }
        loop {
            if turn.is_some()
                && self
                    .live
                    .lock()
                    .is_ok_and(|l| l.progress.initial_sync_complete)
            {
                // The first sync is done: the next waiting link may start.
                turn = None;
            }
            tokio::select! {
                frame = t.rx.recv() => match frame {
                    Some(bytes) => {
                        let batch = take_waiting(bytes, &mut t.rx);
                        match self.step(&mut session, Step::Receive(batch), &t.tx).await {
                            Err(ConnError::Closed) => {
                                self.store_what_arrived(&mut session, &mut t).await;
                                return Err(ConnError::Closed);
                            }
                            r => r?,
                        }
                    }
                    None => return Ok(()),
                },
                _ = self.poke.notified() => self.step(&mut session, Step::Local, &t.tx).await?,
                _ = space_again.tick() => {
                    if store.space().room_again_for(peer) {
                        tracing::info!(peer = %peer, "the disk has room again: reconnecting to fetch the changes refused meanwhile");
                        return Ok(());
                    }
                }
                _ = files_again.tick(), if t.blobs => {
                    if self.svc.store().wants_files().await? {
                        self.step(&mut session, Step::FilesAgain, &t.tx).await?;
                    }
                }
            }
        }
    }

    /// The link closed while frames the peer sent before the cut were still queued here: they
    /// are processed and stored all the same (their answers cannot be sent), so that what
    /// crossed before a cut is not asked for again on the next link.
    async fn store_what_arrived(&self, session: &mut Option<Session>, t: &mut Transport) {
        while let Some(bytes) = t.rx.recv().await {
            let batch = take_waiting(bytes, &mut t.rx);
            match self.step(session, Step::Receive(batch), &t.tx).await {
                Ok(()) | Err(ConnError::Closed) => {}
                Err(_) => return,
            }
        }
    }

    /// Reads the peer's HELLO and, if this link is a first sync ([`Standing::is_first_sync`]),
    /// waits for a turn before the session sees it. Meanwhile the pump keeps the link alive
    /// and what else the peer sends is kept, in order (up to [`HOLD`] frames; beyond that the
    /// peer waits, as the engine's flow control lets it). Returns the frames to give the
    /// session, and the turn to hold until the first sync completes; `None` if the link
    /// closed meanwhile.
    async fn take_turn(&self, t: &mut Transport) -> Option<(Vec<Vec<u8>>, Option<Turn>)> {
        let first = t.rx.recv().await?;
        let Some(standing) = self.standing(&first).await else {
            return Some((vec![first], None));
        };
        if !standing.is_first_sync() {
            return Some((vec![first], None));
        }
        let peer = self.scope.peer.node_id;
        let mut held_bytes = first.len();
        let mut held = vec![first];
        let wait = self.admission.turn(peer);
        tokio::pin!(wait);
        loop {
            tokio::select! {
                turn = &mut wait => return Some((held, Some(turn))),
                frame = t.rx.recv(), if held.len() < HOLD && held_bytes < HOLD_BYTES => {
                    let frame = frame?;
                    held_bytes += frame.len();
                    held.push(frame);
                }
            }
        }
    }

    /// Where the peer and this node stand in each other's feeds, from the peer's HELLO (the
    /// first record of its first frame) and this node's store. `None` when the frame is not a
    /// HELLO the engine would take (the session then ends the link itself) or the store
    /// cannot tell (the session meets the same error).
    async fn standing(&self, frame: &[u8]) -> Option<Standing> {
        let hello = parley_sync::decode_frame(frame).ok()?;
        let Some(parley_sync::Record::Hello {
            feed_id,
            feed_high,
            cursor_feed_id,
            cursor_seq,
        }) = hello.records.first().cloned()
        else {
            return None;
        };
        let store = self.svc.store().clone();
        let scope = self.scope.clone();
        let now = self.svc.now();
        tokio::task::spawn_blocking(move || {
            use parley_sync::Host;
            let mut host = SyncHost::new(&store, &scope, now).ok()?;
            let ours = (host.feed_id(), host.feed_high().ok()?);
            let cursor = host.load_cursor().ok()?;
            Some(Standing {
                our_feed: ours,
                peer_cursor: (cursor_feed_id, cursor_seq),
                their_feed: (feed_id, feed_high),
                our_cursor: cursor.map(|c| (c.feed_id, c.seq)),
            })
        })
        .await
        .ok()?
    }

    async fn step(
        &self,
        slot: &mut Option<Session>,
        step: Step,
        tx: &mpsc::Sender<Vec<u8>>,
    ) -> Result<(), ConnError> {
        let mut s = slot
            .take()
            .ok_or(ConnError::Session(SessionError::Closed))?;
        let store = self.svc.store().clone();
        let scope = self.scope.clone();
        let now = self.svc.now();
        let sync = &self.svc.metrics().sync;
        let peer = self.scope.peer.node_id.to_string();
        if let Step::Receive(batch) = &step {
            for b in batch {
                sync.received(&peer, b.len());
            }
        }
        let early_tx = tx.clone();
        let (s, frames, flushed, events, progress, local_high, early_sent) =
            tokio::task::spawn_blocking(move || -> Result<_, ConnError> {
                let mut host = SyncHost::new(&store, &scope, now)?;
                let mut early_sent = Vec::new();
                let frames = match step {
                    Step::Start => s.start(&mut host),
                    Step::Receive(batch) => s.receive_batch(&batch, &mut host).map(|staged| {
                        // Requests for what we lack and documents sent whole from what is
                        // stored claim nothing about this step's writes: the peer starts on
                        // them while we commit. A closed link is noticed with the late frames,
                        // after what arrived is stored.
                        for f in staged.early {
                            let n = f.len();
                            if early_tx.blocking_send(f).is_err() {
                                break;
                            }
                            early_sent.push(n);
                        }
                        staged.late
                    }),
                    Step::Local => s.local_changed(&mut host),
                    Step::FilesAgain => {
                        s.retry_blobs(&mut host);
                        s.local_changed(&mut host)
                    }
                }?;
                let local_high = parley_sync::Host::feed_high(&mut host).unwrap_or(0);
                let pending = host.into_pending();
                let flushed = store.flush_sync(scope.peer.node_id, pending, now)?;
                let events = s.take_events();
                let progress = s.progress();
                Ok((s, frames, flushed, events, progress, local_high, early_sent))
            })
            .await
            .map_err(|_| ConnError::Store(StoreError::Closed))??;
        *slot = Some(s);
        for n in early_sent {
            sync.sent(&peer, n);
        }
        if let Ok(mut l) = self.live.lock() {
            *l = Live {
                progress,
                local_high,
            };
        }
        for e in events {
            if matches!(e, Event::Rejected { .. }) {
                sync.rejected(&peer, 1);
            }
            log_event(&self.scope, e);
        }
        if progress.initial_sync_complete {
            self.end_recovery().await;
        }
        for (id, seq) in flushed {
            self.svc.notify(id, seq);
        }
        for f in frames {
            let n = f.len();
            tx.send(f).await.map_err(|_| ConnError::Closed)?;
            sync.sent(&peer, n);
        }
        Ok(())
    }
}

impl Conn {
    /// A recovering peer (`parley peer add --recover`, or the first exchange after a restore)
    /// has given us everything it holds of ours: from now on its changes are judged by the
    /// normal rules again. Once per link; a failed write is tried again at the next step.
    async fn end_recovery(&self) {
        use std::sync::atomic::Ordering;
        if self.scope.peer.recover_since.is_none()
            || self.recovery_ended.swap(true, Ordering::AcqRel)
        {
            return;
        }
        let peer = self.scope.peer.node_id;
        match self.svc.store().end_recovery(peer).await {
            Ok(true) => tracing::warn!(
                %peer,
                org = self.scope.peer.org_id.as_str(),
                "recovery from this partner's node is complete: its changes are judged by the normal rules again"
            ),
            Ok(false) => {}
            Err(e) => {
                self.recovery_ended.store(false, Ordering::Release);
                tracing::warn!(%peer, error = %e, "could not end the recovery window; trying again at the next exchange");
            }
        }
    }
}

fn log_event(scope: &PeerScope, e: Event) {
    let peer = scope.peer.node_id;
    let org = scope.peer.org_id.as_str();
    match e {
        Event::Rejected { doc, reason } => {
            tracing::warn!(%peer, org, conversation = %Uuid::from_bytes(doc.0), %reason, "refused a peer's changes")
        }
        Event::RejectedByPeer { doc, reason } => {
            tracing::warn!(%peer, org, conversation = %Uuid::from_bytes(doc.0), %reason, "the peer refused our changes")
        }
        Event::Unavailable { doc } => {
            tracing::debug!(%peer, conversation = %Uuid::from_bytes(doc.0), "the peer could not give a conversation")
        }
        Event::BlobFetched { file } => {
            tracing::info!(%peer, file = %hex::encode(file), "fetched a file from the peer")
        }
        Event::BlobChunkDamaged { file, index } => {
            tracing::warn!(%peer, file = %hex::encode(file), index, "a chunk of a file arrived damaged; asking for it again")
        }
        Event::BlobRefused { file, reason } => {
            tracing::warn!(%peer, org, file = %hex::encode(file), %reason, "a file from the peer was not kept")
        }
    }
}
