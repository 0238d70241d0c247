//! The seam between the engine and the node that runs it.
//!
//! A [`Host`] is the local node *as seen by one peer's session*: every question it answers
//! ("is this document shared?", "what changed since N?") is about that one peer. The main crate
//! implements it over its store, typically as a short-lived view `(store, peer)` created for each
//! call into the session. All methods are synchronous; a host that does blocking I/O calls the
//! session from a blocking context.

use std::fmt;

use automerge::{Automerge, Change, ChangeHash};

use crate::ids::{Cursor, DocId};
use crate::wire::FeedEntry;

/// A page of the local changes feed, already filtered to documents shared with the peer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FeedPage {
    /// Shared documents whose latest feed position is in `(since, scanned_to]`, in seq order.
    pub entries: Vec<FeedEntry>,
    /// How far the feed was read. Equal to `since` only when nothing follows `since`.
    /// Positions of unshared documents are covered by it without being listed.
    pub scanned_to: u64,
}

/// Whether the local node holds a document and the given heads of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Presence {
    /// No such document here.
    Missing,
    /// The document exists but lacks at least one of the heads.
    Lacks,
    /// The document contains every one of the heads.
    Has,
}

/// A new version of a document received from the peer, offered to the host to validate and
/// store. `after` is a copy: nothing of it is visible to the node unless `store_doc` keeps it.
pub struct DocUpdate<'a> {
    pub doc: DocId,
    /// The stored version the changes were applied to; `None` when the peer is creating the
    /// document here.
    pub before: Option<&'a Automerge>,
    /// The stored version with the peer's changes applied.
    pub after: &'a Automerge,
    /// When the document is new here and the peer sent it whole: the bytes `after` was
    /// loaded from, already checked to be one Automerge document whose checksum and heads
    /// verify and that loads strictly (no change waiting for a missing dependency). They load
    /// to exactly `after` again, so the host may store them as they are instead of saving
    /// `after` anew (one deflate pass less per document).
    pub received: Option<&'a [u8]>,
    /// What [`crate::Config::prepare`] made of `after` on a loading thread, when it ran.
    pub prepared: Option<Prepared>,
}

/// The host's own result of [`Prepare`], passed back to it untyped.
pub type Prepared = Box<dyn std::any::Any + Send>;

/// Host work on a document new here that needs nothing but the document, run on any thread.
pub type Prepare = fn(&Automerge) -> Prepared;

impl DocUpdate<'_> {
    /// The changes the peer's message added, in causal order.
    pub fn new_changes(&self) -> Vec<Change> {
        let base = self.before.map(|b| b.get_heads()).unwrap_or_default();
        self.after.get_changes(&base)
    }
}

/// A document's stored bytes as one compacted whole (an Automerge `save()`), with its heads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    pub bytes: Vec<u8>,
    pub heads: Vec<ChangeHash>,
}

/// A storage failure in the host. The session that hit it ends; `permanent` says whether
/// reconnecting can help.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostError {
    pub message: String,
    pub permanent: bool,
}

impl HostError {
    /// A failure a later retry may not hit (I/O error, busy database).
    pub fn transient(message: impl Into<String>) -> Self {
        HostError {
            message: message.into(),
            permanent: false,
        }
    }

    /// A failure that will recur until someone acts (corrupt store, disk full).
    pub fn permanent(message: impl Into<String>) -> Self {
        HostError {
            message: message.into(),
            permanent: true,
        }
    }
}

impl fmt::Display for HostError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for HostError {}

/// Why [`Host::store_doc`] did not store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreError {
    /// The update breaks a rule; nothing was stored. The reason is sent to the peer.
    Rejected(String),
    /// Storage failed; nothing was stored. The session ends with this error.
    Host(HostError),
}

impl From<HostError> for StoreError {
    fn from(e: HostError) -> Self {
        StoreError::Host(e)
    }
}

/// A file the node lacks, for a fetch from this peer: `size` bytes, chunks `0..next` already
/// stored here (a cut fetch resumes there).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlobWant {
    pub file: [u8; 32],
    pub size: u64,
    pub next: u32,
}

/// What [`Host::store_blob_chunk`] made of a chunk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BlobStored {
    /// Kept; more chunks follow.
    Stored,
    /// The last chunk: the whole file verified and is complete here.
    Complete,
    /// Not kept, and the fetch ends (the whole file did not hash to its name, or it is not a
    /// kind of file this node takes). What was stored of it is dropped.
    Refused(String),
}

/// The local node, as one peer's session sees it.
///
/// Invariants the engine relies on:
/// - `store_doc` is atomic and durable when it returns `Ok`: the document, the feed entry it
///   adds, and the derived indexes land together (Parley: one fsync'd redb transaction).
/// - the feed is monotonic: a document's latest change has the highest seq, and seqs never go
///   back within one `feed_id`.
/// - `is_shared` is the single authority on isolation; `feed_since` must agree with it (the
///   engine checks it again before every send).
pub trait Host {
    /// This node's feed incarnation. Change it when the feed is rebuilt or the store is restored
    /// from a backup, so peers do not trust cursors into the old feed.
    fn feed_id(&mut self) -> u64;

    /// The seq of the latest entry in the local feed (0 when empty).
    fn feed_high(&mut self) -> Result<u64, HostError>;

    /// Up to `limit` (≥ 1) entries with seq > `since`, shared with the peer, in seq order; each
    /// with the document's current heads. A document appears once, at its latest seq.
    fn feed_since(&mut self, since: u64, limit: usize) -> Result<FeedPage, HostError>;

    /// Whether `doc` exists here and the peer may receive its id and content.
    fn is_shared(&mut self, doc: DocId) -> Result<bool, HostError>;

    /// The stored document, or `None` if it does not exist here.
    fn load_doc(&mut self, doc: DocId) -> Result<Option<Automerge>, HostError>;

    /// The document's current heads, or `None` if it does not exist here. The default loads the
    /// document; a host with a heads index should answer from it: the engine asks this before
    /// deciding whether a message about the document needs the document at all (a peer's
    /// acknowledgement of heads we hold does not).
    fn heads(&mut self, doc: DocId) -> Result<Option<Vec<ChangeHash>>, HostError> {
        Ok(self.load_doc(doc)?.map(|d| d.get_heads()))
    }

    /// Whether `doc` contains all of `heads`. The default loads the document; a host with a
    /// heads index should answer the common "heads are equal" case without loading.
    fn has_heads(&mut self, doc: DocId, heads: &[ChangeHash]) -> Result<Presence, HostError> {
        Ok(match self.load_doc(doc)? {
            None => Presence::Missing,
            Some(d) if contains_all(&d, heads) => Presence::Has,
            Some(_) => Presence::Lacks,
        })
    }

    /// The document's stored bytes, if they are one compacted document (a `save()` with
    /// nothing written after it) whose checksum verifies, with its current heads; `None`
    /// otherwise, or if it does not exist here or is not the peer's to see. Asked only when
    /// the peer holds nothing of a shared document: the engine then sends these bytes as the
    /// whole-document answer Automerge itself would build with a load and a `save()`. The
    /// default has no snapshots, and the engine loads the document as before.
    fn stored_snapshot(&mut self, doc: DocId) -> Result<Option<Snapshot>, HostError> {
        let _ = doc;
        Ok(None)
    }

    /// Validate the peer's update and, if it passes, store `after` (and its feed entry)
    /// atomically and durably. Return [`StoreError::Rejected`] to refuse it whole.
    fn store_doc(&mut self, update: DocUpdate<'_>) -> Result<(), StoreError>;

    /// The persisted Automerge sync state (`sync::State::encode`) for this peer and `doc`.
    fn load_sync_state(&mut self, doc: DocId) -> Result<Option<Vec<u8>>, HostError>;

    /// Persist the sync state for this peer and `doc`. Called only after the document changes
    /// it describes are durable.
    fn save_sync_state(&mut self, doc: DocId, state: &[u8]) -> Result<(), HostError>;

    /// This node's persisted cursor into the peer's feed.
    fn load_cursor(&mut self) -> Result<Option<Cursor>, HostError>;

    /// Persist this node's cursor into the peer's feed.
    fn save_cursor(&mut self, cursor: Cursor) -> Result<(), HostError>;

    /// Up to `limit` files this node lacks that this peer may give it (a document shared with
    /// the peer refers to each), none of `exclude`. Each returned file is this session's to
    /// fetch until [`Host::blob_released`]. The default wants nothing.
    fn blobs_wanted(
        &mut self,
        limit: usize,
        exclude: &[[u8; 32]],
    ) -> Result<Vec<BlobWant>, HostError> {
        let _ = (limit, exclude);
        Ok(Vec::new())
    }

    /// Chunk `index` of file `file` and the file's size, if the file is complete here **and**
    /// a document shared with this peer refers to it; `None` otherwise (whether or not it
    /// exists here). The default has no files.
    fn blob_chunk(
        &mut self,
        file: &[u8; 32],
        index: u32,
    ) -> Result<Option<(u64, Vec<u8>)>, HostError> {
        let _ = (file, index);
        Ok(None)
    }

    /// Keep chunk `index` of a file this session is fetching. Chunks come in order; the
    /// engine has checked the chunk's digest and the file's size against the want.
    fn store_blob_chunk(
        &mut self,
        file: &[u8; 32],
        index: u32,
        bytes: Vec<u8>,
    ) -> Result<BlobStored, HostError> {
        let _ = (file, index, bytes);
        Ok(BlobStored::Refused("this node keeps no files".into()))
    }

    /// This session stopped fetching `file` (done, refused, or given up).
    fn blob_released(&mut self, file: &[u8; 32]) {
        let _ = file;
    }
}

/// Whether `doc` contains every hash in `heads`. An empty `heads` means "unknown" (the sender
/// had too many heads to list), so it is never contained.
pub fn contains_all(doc: &Automerge, heads: &[ChangeHash]) -> bool {
    !heads.is_empty()
        && heads
            .iter()
            .all(|h| doc.get_change_meta_by_hash(h).is_some())
}
