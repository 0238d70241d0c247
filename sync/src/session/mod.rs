//! A sync session with one connected peer: frames in, frames out.
//!
//! The session holds only what one connection needs (positions in the two feeds, documents with
//! an exchange in progress). Everything that must survive a disconnect — documents, per-document
//! sync states, the cursor — goes through the [`Host`], each written only after what it depends
//! on is durable. Dropping a session at any point therefore loses nothing but time.

mod blobs;
mod docs;
mod inbound;
mod outbound;

use crate::error::{ProtocolError, SessionError};
use crate::host::{Host, Presence};
use crate::ids::{Cursor, DocId};
use crate::outbox::{Outbox, Staged};
use crate::wire::{FeedEntry, Record, decode_frame};

/// Most announced-but-unconfirmed documents a peer may have outstanding with us. A peer's
/// `Config::window` must not exceed it.
pub const MAX_WINDOW: usize = 4096;

/// Tuning for one session. The defaults suit a WAN link and a store of tens of thousands of
/// documents.
#[derive(Clone, Debug)]
pub struct Config {
    /// Announced documents the peer may leave unconfirmed before we pause announcing (≤ [`MAX_WINDOW`]).
    pub window: usize,
    /// Documents we ask the peer for at once during catch-up.
    pub max_requests: usize,
    /// Requests per frame. The peer answers a frame at a time, so with several frames of
    /// requests out it prepares the next answer while we store the last one: both nodes work
    /// at once instead of taking turns.
    pub requests_per_frame: usize,
    /// Documents whose in-memory sync state is kept between messages.
    pub max_active_docs: usize,
    /// Entries asked of `Host::feed_since` per call.
    pub feed_page: usize,
    /// Soft size of an outgoing frame; a single larger record still gets a frame of its own.
    pub frame_target_bytes: usize,
    /// Whether files travel on this link (both ends opened it as `parley-sync.2`).
    pub blobs: bool,
    /// Files fetched from the peer at once.
    pub blob_fetches: usize,
    /// File chunks asked for and not yet arrived, over all fetches (≤ `wire::MAX_BLOB_WANT`).
    /// At 256 KiB a chunk, the default keeps 1 MiB in flight: enough to fill a fast link,
    /// little enough that a reply waits behind at most that much.
    pub blob_window: u32,
    /// Answer a peer that holds nothing of a document with the document's stored compacted
    /// bytes ([`crate::Host::stored_snapshot`]) instead of loading it and generating a message,
    /// and take a whole document a peer sends into an empty one with one strict load, offering
    /// the host the received bytes to store as they are. On by default; off reproduces the
    /// path through Automerge's own `generate`/`receive` byte for byte (used to compare them).
    pub snapshot_first_sync: bool,
    /// Threads that load, ahead of the session's in-order processing, the whole documents a
    /// frame brings for documents we lack (a first sync): the one Automerge pass each costs
    /// is spread over the cores. 1 loads them in turn on the session's thread.
    pub load_threads: usize,
    /// Work the host does on a document new here that depends on nothing but the document
    /// (parsing it into its own types, measuring its changes), run on the loading threads
    /// next to the load; the result reaches [`crate::Host::store_doc`] as
    /// [`crate::DocUpdate::prepared`]. `None`: nothing is prepared.
    pub prepare: Option<crate::host::Prepare>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            window: 512,
            max_requests: 192,
            requests_per_frame: 64,
            max_active_docs: 4096,
            feed_page: 512,
            frame_target_bytes: 32 * 1024,
            blobs: false,
            blob_fetches: 2,
            blob_window: 4,
            snapshot_first_sync: true,
            load_threads: std::thread::available_parallelism().map_or(1, |n| n.get().min(4)),
            prepare: None,
        }
    }
}

/// Things the host may want to log or show. Drained with [`Session::take_events`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// We refused the peer's changes to `doc` (or could not process them); nothing landed.
    Rejected { doc: DocId, reason: String },
    /// The peer refused our changes to `doc`.
    RejectedByPeer { doc: DocId, reason: String },
    /// The peer could not give us `doc` although it was announced or asked about.
    Unavailable { doc: DocId },
    /// A file arrived whole and verified.
    BlobFetched { file: [u8; 32] },
    /// A chunk arrived damaged and is asked for again.
    BlobChunkDamaged { file: [u8; 32], index: u32 },
    /// A file's fetch from this peer ended without it, for this session.
    BlobRefused { file: [u8; 32], reason: String },
}

/// Where the session stands, for "first sync 40%" and "12 waiting" displays.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// The peer's HELLO has arrived.
    pub peer_connected: bool,
    /// Both sides hold everything the other's feed had when the session started.
    pub initial_sync_complete: bool,
    /// Documents announced to the peer that it has not yet confirmed holding.
    pub docs_awaiting_peer: usize,
    /// Positions of our feed not yet announced to the peer (an upper bound on documents).
    pub feed_unannounced: u64,
    /// Documents the peer announced that we do not hold yet.
    pub docs_to_fetch: usize,
    /// Positions of the peer's feed (as of its HELLO) not yet announced to us.
    pub peer_feed_unannounced: u64,
    /// Files being fetched from the peer.
    pub files_fetching: usize,
}

impl Progress {
    /// Documents (at most) still to go to the peer.
    pub fn pending_to_send(&self) -> u64 {
        self.docs_awaiting_peer as u64 + self.feed_unannounced
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    New,
    Running,
    Failed,
}

#[derive(Clone, Copy)]
struct PeerHello {
    /// The peer's feed end when the session started.
    high: u64,
}

/// One peer connection's sync engine. See the crate docs for the protocol.
pub struct Session {
    config: Config,
    phase: Phase,
    next_send: u64,
    next_recv: u64,
    local_feed_id: u64,
    local_high_at_start: u64,
    peer: Option<PeerHello>,
    inbound: inbound::Inbound,
    outbound: outbound::Outbound,
    docs: docs::Docs,
    /// Pending documents re-announced while a request for them was out; asked again in `settle`.
    reask: Vec<DocId>,
    events: Vec<Event>,
    blobs: blobs::Blobs,
    /// File chunks the frame being processed asked for so far.
    blob_asked: u32,
}

impl Session {
    pub fn new(mut config: Config) -> Self {
        config.window = config.window.clamp(1, MAX_WINDOW);
        config.max_requests = config.max_requests.max(1);
        config.requests_per_frame = config.requests_per_frame.max(1);
        config.max_active_docs = config.max_active_docs.max(1);
        Session {
            config,
            phase: Phase::New,
            next_send: 0,
            next_recv: 0,
            local_feed_id: 0,
            local_high_at_start: 0,
            peer: None,
            inbound: Default::default(),
            outbound: Default::default(),
            docs: Default::default(),
            reask: Vec::new(),
            events: Vec::new(),
            blobs: Default::default(),
            blob_asked: 0,
        }
    }

    /// Begin the session: returns the HELLO frame to send. Both sides call it on connect,
    /// without waiting for the other.
    pub fn start<H: Host>(&mut self, host: &mut H) -> Result<Vec<Vec<u8>>, SessionError> {
        self.guarded(host, |s, host, out| s.start_into(host, out))
            .map(Staged::all)
    }

    /// Process one frame from the peer; returns the frames to send back (possibly none).
    pub fn receive<H: Host>(
        &mut self,
        frame: &[u8],
        host: &mut H,
    ) -> Result<Vec<Vec<u8>>, SessionError> {
        self.guarded(host, |s, host, out| s.receive_into(frame, host, out))
            .map(Staged::all)
    }

    /// Process several frames from the peer in order, with one host (so its writes can land
    /// in one commit); the answers come [`Staged`]: the early frames may be sent while the
    /// host's writes are still being committed, the late ones only after.
    pub fn receive_batch<H: Host>(
        &mut self,
        frames: &[Vec<u8>],
        host: &mut H,
    ) -> Result<Staged, SessionError> {
        self.guarded(host, |s, host, out| {
            for f in frames {
                s.receive_into(f, host, out)?;
            }
            Ok(())
        })
    }

    /// The local feed grew (a local edit, or a document stored from another peer): returns the
    /// frames that announce it and push it to the peer.
    pub fn local_changed<H: Host>(&mut self, host: &mut H) -> Result<Vec<Vec<u8>>, SessionError> {
        self.guarded(host, |s, host, out| s.settle(host, out))
            .map(Staged::all)
    }

    pub fn progress(&self) -> Progress {
        let peer_high = self.peer.map_or(0, |p| p.high);
        Progress {
            peer_connected: self.peer.is_some(),
            initial_sync_complete: self.peer.is_some()
                && self.inbound.saved >= peer_high
                && self.outbound.peer_acked >= self.local_high_at_start,
            docs_awaiting_peer: self.outbound.unacked(),
            feed_unannounced: self
                .outbound
                .local_high
                .saturating_sub(self.outbound.announced_to),
            docs_to_fetch: self.inbound.len(),
            peer_feed_unannounced: peer_high.saturating_sub(self.inbound.announced_to),
            files_fetching: self.blobs.fetching(),
        }
    }

    /// Events since the last call.
    pub fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    /// Run `f`, pack its records into frames, and poison the session on error (after an error
    /// the in-memory state may disagree with the peer's; only a new session is safe).
    fn guarded<H: Host>(
        &mut self,
        host: &mut H,
        f: impl FnOnce(&mut Self, &mut H, &mut Outbox) -> Result<(), SessionError>,
    ) -> Result<Staged, SessionError> {
        if self.phase == Phase::Failed {
            return Err(SessionError::Closed);
        }
        let mut out = Outbox::default();
        if let Err(e) = f(self, host, &mut out) {
            self.phase = Phase::Failed;
            return Err(e);
        }
        if out.is_empty() {
            return Ok(Staged::default());
        }
        Ok(out.into_staged(&mut self.next_send, self.config.frame_target_bytes))
    }

    fn start_into<H: Host>(&mut self, host: &mut H, out: &mut Outbox) -> Result<(), SessionError> {
        if self.phase != Phase::New {
            return Ok(());
        }
        let cursor = host.load_cursor()?.unwrap_or_default();
        self.local_feed_id = host.feed_id();
        self.local_high_at_start = host.feed_high()?;
        self.outbound.local_high = self.local_high_at_start;
        self.inbound.reset(cursor.feed_id, cursor.seq);
        out.push(Record::Hello {
            feed_id: self.local_feed_id,
            feed_high: self.local_high_at_start,
            cursor_feed_id: cursor.feed_id,
            cursor_seq: cursor.seq,
        });
        self.phase = Phase::Running;
        Ok(())
    }

    fn receive_into<H: Host>(
        &mut self,
        bytes: &[u8],
        host: &mut H,
        out: &mut Outbox,
    ) -> Result<(), SessionError> {
        self.start_into(host, out)?;
        let frame = decode_frame(bytes)?;
        if frame.seq < self.next_recv {
            // A duplicate of a frame already processed.
            return Ok(());
        }
        if frame.seq > self.next_recv {
            return Err(ProtocolError::FrameOutOfOrder {
                expected: self.next_recv,
                got: frame.seq,
            }
            .into());
        }
        self.next_recv += 1;
        self.blob_asked = 0;
        if self.config.snapshot_first_sync {
            self.preload(&frame.records);
        }
        for record in frame.records {
            self.on_record(record, host, out)?;
        }
        self.settle(host, out)
    }

    fn on_record<H: Host>(
        &mut self,
        record: Record,
        host: &mut H,
        out: &mut Outbox,
    ) -> Result<(), SessionError> {
        match record {
            Record::Hello {
                feed_id,
                feed_high,
                cursor_feed_id,
                cursor_seq,
            } => self.on_hello(feed_id, feed_high, cursor_feed_id, cursor_seq, host)?,
            _ if self.peer.is_none() => return Err(ProtocolError::HelloMissing.into()),
            Record::Feed { from, to, entries } => self.on_feed(from, to, entries, host)?,
            Record::Ack { cursor } => self.outbound.on_ack(cursor)?,
            Record::Sync { doc, message } => self.on_sync(doc, &message, host, out)?,
            Record::Unavailable { doc } => self.on_unavailable(doc),
            Record::Reject { doc, reason } => self.on_peer_reject(doc, reason, host)?,
            Record::BlobWant { .. } | Record::BlobChunk { .. } | Record::BlobNone { .. }
                if !self.config.blobs =>
            {
                return Err(ProtocolError::BlobsNotAgreed.into());
            }
            Record::BlobWant { file, from, count } => {
                let mut asked = self.blob_asked;
                self.on_blob_want(file, from, count, &mut asked, host, out)?;
                self.blob_asked = asked;
            }
            Record::BlobChunk {
                file,
                size,
                index,
                digest,
                bytes,
            } => self.on_blob_chunk(file, size, index, digest, bytes, host)?,
            Record::BlobNone { file } => self.on_blob_none(file, host),
        }
        Ok(())
    }

    fn on_hello<H: Host>(
        &mut self,
        feed_id: u64,
        feed_high: u64,
        cursor_feed_id: u64,
        cursor_seq: u64,
        host: &mut H,
    ) -> Result<(), SessionError> {
        if self.peer.is_some() {
            return Err(ProtocolError::HelloRepeated.into());
        }
        // Both sides apply the same rule to the same numbers, so they agree on where the
        // announcements start without another round trip: a cursor into another incarnation
        // of the feed, or beyond its end, starts over at 0.
        let start =
            if cursor_feed_id == self.local_feed_id && cursor_seq <= self.local_high_at_start {
                cursor_seq
            } else {
                0
            };
        // A peer whose own feed went back behind what we hold of it lost part of its store
        // (a restored file, a rolled-back disk): what it acknowledged on earlier links is no
        // proof of what it holds now, so nothing is skipped when announcing to it.
        let peer_went_back = self.inbound.feed_id == feed_id && self.inbound.saved > feed_high;
        self.outbound.begin(start, !peer_went_back);
        if self.inbound.feed_id != feed_id || self.inbound.saved > feed_high {
            self.inbound.reset(feed_id, 0);
            host.save_cursor(Cursor { feed_id, seq: 0 })?;
        }
        self.peer = Some(PeerHello { high: feed_high });
        Ok(())
    }

    fn on_feed<H: Host>(
        &mut self,
        from: u64,
        to: u64,
        entries: Vec<FeedEntry>,
        host: &mut H,
    ) -> Result<(), SessionError> {
        let bad = |detail: &str| ProtocolError::FeedRange {
            from,
            to,
            detail: detail.to_owned(),
        };
        if to < from {
            return Err(bad("range ends before it starts").into());
        }
        if from > self.inbound.announced_to {
            return Err(ProtocolError::FeedGap {
                expected_from: self.inbound.announced_to,
                got_from: from,
            }
            .into());
        }
        let mut last = from;
        for e in &entries {
            if e.seq <= last || e.seq > to {
                return Err(bad("entries out of order or outside the range").into());
            }
            last = e.seq;
        }
        for e in entries {
            if e.seq > self.inbound.announced_to {
                self.on_announced(e, host)?;
            }
        }
        self.inbound.announced_to = self.inbound.announced_to.max(to);
        if self.inbound.len() > MAX_WINDOW {
            return Err(ProtocolError::WindowExceeded {
                pending: self.inbound.len(),
                max: MAX_WINDOW,
            }
            .into());
        }
        Ok(())
    }

    fn on_announced<H: Host>(&mut self, e: FeedEntry, host: &mut H) -> Result<(), SessionError> {
        self.docs.note_peer_heads(e.doc, e.heads.clone());
        if self.docs.closed.contains(&e.doc) {
            self.inbound.resolve(e.doc);
            return Ok(());
        }
        let presence = host.has_heads(e.doc, &e.heads)?;
        let missing = match presence {
            Presence::Has => {
                self.inbound.resolve(e.doc);
                return Ok(());
            }
            // Exists here but is not shared with this peer: never engage about it.
            Presence::Lacks if !host.is_shared(e.doc)? => {
                self.inbound.resolve(e.doc);
                return Ok(());
            }
            Presence::Lacks => false,
            Presence::Missing => true,
        };
        if self.inbound.insert(e.doc, e.seq, e.heads, missing) {
            // A request for older heads is already out; its state may be waiting on a reply
            // that does not cover the new heads. It is re-sent from `settle`.
            self.reask.push(e.doc);
        }
        Ok(())
    }

    /// After input: start queued requests, announce our feed, persist and acknowledge the
    /// cursor. The cursor is saved last, after every document it covers was stored.
    fn settle<H: Host>(&mut self, host: &mut H, out: &mut Outbox) -> Result<(), SessionError> {
        if self.peer.is_none() {
            return Ok(());
        }
        for doc in std::mem::take(&mut self.reask) {
            if self.inbound.is_pending(&doc) {
                self.request_doc(doc, host, out)?;
            }
        }
        let mut in_frame = 0;
        while let Some(doc) = self.inbound.next_to_request(self.config.max_requests) {
            if in_frame == self.config.requests_per_frame {
                out.cut();
                in_frame = 0;
            }
            self.request_doc(doc, host, out)?;
            in_frame += 1;
        }
        self.pump(host, out)?;
        self.pump_blobs(host, out)?;
        let cursor = self.inbound.cursor();
        if cursor > self.inbound.saved {
            host.save_cursor(Cursor {
                feed_id: self.inbound.feed_id,
                seq: cursor,
            })?;
            self.inbound.saved = cursor;
            out.ack(cursor);
        }
        Ok(())
    }
}
