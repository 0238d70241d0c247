//! The only module that touches redb. It keeps the Automerge documents and every index derived
//! from them, and changes a document and its indexes in one write transaction.
//!
//! Writes go through one writer thread (`writer`) that gathers the jobs waiting at that
//! moment into a single durable commit (group commit): a 2xx after `write` means the fsync'd
//! commit has happened, and many concurrent writers share it. Reads run on the blocking pool.

pub mod accounts;
pub mod audience;
mod backend;
pub mod backup;
pub mod blobs;
mod cache;
pub mod check;
pub mod check_files;
mod compact;
pub mod delivery;
pub mod digest;
mod disk;
pub use disk::DEFAULT_RESERVE_BYTES;
pub mod docs;
pub mod due_sort;
mod fresh;
pub mod hook_queue;
pub mod index;
pub mod mail_queue;
pub mod marks;
mod order;
pub mod outbox;
mod pairs;
pub mod peers;
pub mod query;
pub mod quota;
mod rebuild;
mod recovery;
pub mod reminders;
mod restore;
pub mod search;
pub mod sessions;
pub mod stats;
pub mod sync_host;
pub mod tables;
pub mod team;
pub mod text_words;
pub mod topics;
mod uploads;
pub use uploads::FinishedFile;
mod warm;
pub mod webhooks;
pub use warm::{Change, Prepared};
mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};

use redb::{Database, ReadTransaction, ReadableDatabase};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::{OrgId, Role};
pub use writer::WriteCtx;

/// Bumped whenever the derived tables change shape; a mismatch at open rebuilds them.
/// 6: inbox rows carry a checksum of their bytes.
/// 7: one changes feed per partner org (`audience`).
/// 8: folders (`active_task`, `no_due_date`, finished tasks out of `action_required`), the
///    due-date order and the per-user unread order.
/// 9: the due-date order kept per facet (`all`, `state:open`, `state:resolved`,
///    `active_task`), so a folder's `sort=due` walks only its own dated rows.
pub const INDEX_VERSION: u64 = 10;

/// The shape of the tables that hold the truth (documents, accounts, peers, outbox, files),
/// kept in `META["schema_version"]`. Unlike [`INDEX_VERSION`], a change here cannot be undone
/// by a rebuild: a release opens data of its own schema and older (migrating it), and refuses a
/// data directory or backup of a newer one instead of misreading it.
/// 1: release 0.1 (directories from before the version was recorded are taken as 1).
pub const SCHEMA_VERSION: u64 = 1;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "the data directory {0} is in use by another Parley process (a running node locks its database); \
         stop that node first, or make this change through its HTTP API"
    )]
    Locked(PathBuf),
    #[error("database error: {0}; if this persists, stop the node and run `parley check`")]
    Db(Box<redb::Error>),
    #[error(
        "the database file {0} cannot be opened: {1}. Some page of it was damaged outside Parley \
         (a disk fault, a copy cut short), and the file cannot be recovered after an unclean stop; \
         restore the data directory from a backup"
    )]
    Unopenable(PathBuf, String),
    /// A stored document does not verify: it is neither served nor changed (by a local user
    /// or by sync) until it is restored, and nothing else is affected.
    #[error(
        "conversation {0} is damaged: its stored bytes do not verify ({1}). It is neither shown nor \
         changed until it is restored, and every other conversation keeps working; stop the node, \
         run `parley check` to list the damaged conversations, and restore this one from a backup \
         of the data directory or from a partner's copy"
    )]
    Corrupt(Uuid, String),
    #[error("stored record {0} is unreadable ({1}); run `parley check`")]
    Record(String, String),
    #[error("this write was not saved because another write in the same commit failed; retry it")]
    BatchAborted,
    #[error(
        "conversation {0} changed here while a peer's changes to it were checked, and the merged result is refused ({1}); the changes are checked again on the next exchange"
    )]
    Raced(Uuid, String),
    #[error("the store is shutting down; retry when the node is back")]
    Closed,
    /// Too little free space for a write (below the reserve, or the disk filled during the
    /// commit): nothing of it was saved, and reads keep working.
    #[error(
        "the disk holding the data directory {} is full ({free_mib} MiB free; this node keeps \
         {reserve_mib} MiB free, see disk_reserve_mb), so nothing was saved: free some space on \
         that disk, and writes work again by themselves (reading keeps working)",
        dir.display()
    )]
    DiskFull {
        dir: PathBuf,
        free_mib: u64,
        reserve_mib: u64,
    },
    #[error("the database is being reopened after a failed write; retry in a moment")]
    Reopening,
    #[error(
        "this node has no identity yet: run `parley init --org-id ID --org-name NAME --role retailer|supplier`"
    )]
    NoIdentity,
    #[error(
        "the data directory {0} was written by a newer Parley (store schema {1}; this release reads up to {2}); run that release or a newer one, or restore a backup made by this one"
    )]
    NewerSchema(PathBuf, u64, u64),
}

impl StoreError {
    /// Whether trying the same request again may succeed. A read that began on a handle a
    /// failed commit latched (`PreviousIo`) succeeds on the fresh one (`disk`).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            StoreError::BatchAborted
                | StoreError::Closed
                | StoreError::Raced(..)
                | StoreError::DiskFull { .. }
                | StoreError::Reopening
        ) || matches!(self, StoreError::Db(e) if matches!(**e, redb::Error::PreviousIo))
    }
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self { StoreError::Db(Box::new(e.into())) }
        }
    )*};
}
from_redb!(
    redb::Error,
    redb::StorageError,
    redb::TableError,
    redb::TransactionError,
    redb::CommitError,
    redb::DatabaseError
);

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Narrows `path` to `mode`; a file system without Unix modes keeps what it has (logged).
fn private(path: &Path, mode: u32) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Err(e) = std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)) {
            tracing::warn!(path = %path.display(), error = %e, "could not make this readable by its owner only");
        }
    }
    #[cfg(not(unix))]
    let _ = (path, mode);
}

/// Every write transaction of the store: with quick repair, so that a damaged page cannot make
/// the whole database unopenable.
///
/// After an unclean stop redb must rebuild its allocator state. Without quick repair it does
/// so by walking every page and verifying its checksum, and refuses the file ("All roots are
/// corrupted") if one page fails, even a page holding only derived index data: one flipped
/// byte then took every document with it. With quick repair each commit records the
/// allocator state and uses two-phase commit, so recovery loads that state and needs no
/// walk; damage stays in the records it hit, where Parley's own checks find it (documents
/// verify on load, inbox rows carry a checksum, `parley check` compares every index with
/// the documents and verifies page checksums on a copy). The price is a second flush per
/// commit, shared by every write in a group commit.
pub(crate) fn begin_write(db: &Database) -> Result<redb::WriteTransaction> {
    let mut tx = db.begin_write()?;
    tx.set_quick_repair(true);
    Ok(tx)
}

/// Who this node is. Created once by `parley init` (or the first `serve`), never changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub node_id: Uuid,
    pub org_id: OrgId,
    pub org_name: String,
    pub role: Role,
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// The Automerge actor this node writes as since it was last restored from a backup
    /// (hex, 16 random bytes, made by `store::backup::restore`); absent for a node never
    /// restored, which writes as its node id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
}

impl Identity {
    /// This node's Automerge actor: its node id, so no two nodes share one — or, after a
    /// restore, a random one made by that restore.
    ///
    /// Why a new one after a restore: Automerge names every change by (actor, sequence
    /// number). A node restored from a backup has lost its changes made after the backup,
    /// which its partners still hold; writing again as the same actor would reuse sequence
    /// numbers they already hold with other content, which Automerge refuses
    /// (`DuplicateSeqNumber`) and which would stop the document from ever converging. Random,
    /// not counted: two restores of the same backup must not share an actor either.
    pub fn actor(&self) -> automerge::ActorId {
        let restored = self.actor.as_deref().and_then(|h| hex::decode(h).ok());
        match restored {
            Some(bytes) if bytes.len() == 16 => automerge::ActorId::from(bytes.as_slice()),
            _ => automerge::ActorId::from(self.node_id.as_bytes().as_slice()),
        }
    }
}

/// Tuning knobs, from the config.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Documents kept loaded by the writer.
    pub doc_cache: usize,
    /// redb page cache in bytes.
    pub db_cache_bytes: usize,
    /// Raw change bytes accepted from one peer per UTC day ([`quota`]).
    pub peer_quota_bytes_per_day: u64,
    /// Which files this node takes, by upload and from peers ([`blobs`]).
    pub attachments: AttachmentRules,
    /// Bytes left free on the data directory's disk: writes below it are refused
    /// ([`StoreError::DiskFull`]). `None`: [`DEFAULT_RESERVE_BYTES`] or 5 % of the disk.
    pub disk_reserve: Option<u64>,
}

/// The files a node takes: at most `max_bytes` each, of the kinds named (see
/// `domain::attachment::KINDS`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachmentRules {
    pub max_bytes: u64,
    pub kinds: Vec<&'static str>,
}

impl Default for AttachmentRules {
    fn default() -> Self {
        AttachmentRules {
            max_bytes: 25 * 1024 * 1024,
            kinds: crate::domain::attachment::default_kinds(),
        }
    }
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            // About 20 KB of live heap each (benches/store.rs): a small, bounded working set.
            doc_cache: 256,
            db_cache_bytes: 64 * 1024 * 1024,
            peer_quota_bytes_per_day: quota::DEFAULT_PEER_BYTES_PER_DAY,
            attachments: AttachmentRules::default(),
            disk_reserve: None,
        }
    }
}

pub struct Store {
    /// The database, reopened after a write met a full disk (`disk`).
    db: Arc<disk::DbCell>,
    /// The free space every group commit checks first.
    space: disk::Space,
    writer: writer::Handle,
    /// The day (days from CE) up to which overdue tasks have been swept into the `overdue`
    /// facet; mirrors `META["swept_day"]` so queries need not read it.
    swept_day: AtomicI32,
    /// This store's changes-feed incarnation, created with the database; peers' cursors into
    /// our feed are only trusted for this id.
    feed_id: u64,
    /// Conversations whose damaged records this process has rewritten already.
    contained: std::sync::Mutex<std::collections::HashSet<u128>>,
    peer_quota_bytes_per_day: u64,
    attachments: AttachmentRules,
    /// Files being fetched, and from which peer: one fetch per file at a time.
    blob_claims: std::sync::Mutex<std::collections::HashMap<blobs::Hash, Uuid>>,
    /// The data directory (for the free space a file needs).
    dir: PathBuf,
    /// When a fetch was last put off for want of space (logged at most every 10 minutes).
    low_space_logged: std::sync::Mutex<Option<std::time::Instant>>,
    /// Per peer, the wanted file its sessions looked at last (`uploads::wanted_cursor`).
    wanted_cursors: std::sync::Mutex<std::collections::HashMap<Uuid, blobs::Hash>>,
    /// What the writer reports (commit time, jobs per commit, cached documents).
    metrics: crate::metrics::StoreMetrics,
    /// Conversations kept loaded for local commands prepared off the writer (`warm`).
    warm: warm::WarmCache,
}

impl Store {
    /// Opens (or creates) the database in `dir`, creates missing tables, and rebuilds the
    /// derived indexes if they are missing or from another version. Blocking: call it before
    /// serving or from the blocking pool.
    pub fn open(dir: &Path, opts: StoreOptions) -> Result<Arc<Store>> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Record(dir.display().to_string(), e.to_string()))?;
        let path = dir.join("parley.redb");
        fresh::reset_file(&path);
        let db = Database::builder()
            .set_cache_size(opts.db_cache_bytes)
            .create(&path)
            .map_err(|e| match e {
                redb::DatabaseError::DatabaseAlreadyOpen => StoreError::Locked(dir.to_path_buf()),
                redb::DatabaseError::Storage(redb::StorageError::Corrupted(e)) => {
                    StoreError::Unopenable(path.clone(), e)
                }
                e => e.into(),
            })?;
        // The file holds the node's identity key and hashed credentials: its owner only.
        private(dir, 0o700);
        private(&path, 0o600);
        Self::open_db(dir, opts, db, Some(path))
    }

    /// [`Store::open`] on a database kept by `backend` instead of `dir/parley.redb`, for tests
    /// and tools (the power-loss test runs the store on a disk that loses unflushed writes).
    /// `dir` still holds what the store keeps beside the database.
    pub fn open_on_backend(
        dir: &Path,
        opts: StoreOptions,
        backend: Box<dyn redb::StorageBackend>,
    ) -> Result<Arc<Store>> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Record(dir.display().to_string(), e.to_string()))?;
        fresh::reset_backend(&*backend);
        let db = Database::builder()
            .set_cache_size(opts.db_cache_bytes)
            .create_with_backend(backend::Boxed(backend))
            .map_err(|e| match e {
                redb::DatabaseError::Storage(redb::StorageError::Corrupted(e)) => {
                    StoreError::Unopenable(dir.to_path_buf(), e)
                }
                e => e.into(),
            })?;
        Self::open_db(dir, opts, db, None)
    }

    /// What both opens share once redb has the database (kept in the file `path`, if any: a
    /// database on a file is reopened after an I/O failure, one on a backend is not).
    fn open_db(
        dir: &Path,
        opts: StoreOptions,
        db: Database,
        path: Option<PathBuf>,
    ) -> Result<Arc<Store>> {
        let tx = begin_write(&db)?;
        // Before anything else: a newer release's tables may not even open as ours.
        match index::schema_version(&tx)? {
            Some(v) if v > SCHEMA_VERSION => {
                return Err(StoreError::NewerSchema(
                    dir.to_path_buf(),
                    v,
                    SCHEMA_VERSION,
                ));
            }
            Some(v) if v == SCHEMA_VERSION => {}
            // Older, or from before versions were recorded: nothing to migrate yet.
            _ => index::set_meta_i64(&tx, "schema_version", SCHEMA_VERSION as i64)?,
        }
        tables::create_all(&tx)?;
        let feed_id = index::feed_id_or_create(&tx)?;
        let dropped = blobs::sweep_open_uploads(&tx)?;
        tx.commit()?;
        if dropped > 0 {
            tracing::info!(
                uploads = dropped,
                "dropped uploads a previous run left unfinished"
            );
        }
        let identity = accounts::read_identity(&db.begin_read()?)?;
        rebuild::if_needed(&db, identity.as_ref())?;
        let swept = index::read_swept_day(&db.begin_read()?)?;
        let db = Arc::new(match path {
            Some(path) => disk::DbCell::new(db, path, opts.db_cache_bytes),
            None => disk::DbCell::fixed(db),
        });
        let space = disk::Space::new(dir, opts.disk_reserve);
        let metrics = crate::metrics::StoreMetrics::default();
        let writer = writer::spawn(
            db.clone(),
            space.clone(),
            identity,
            opts.doc_cache,
            metrics.clone(),
        );
        Ok(Arc::new(Store {
            db,
            space,
            writer,
            swept_day: AtomicI32::new(swept),
            feed_id,
            contained: Default::default(),
            peer_quota_bytes_per_day: opts.peer_quota_bytes_per_day,
            attachments: opts.attachments,
            blob_claims: Default::default(),
            dir: dir.to_path_buf(),
            low_space_logged: Default::default(),
            wanted_cursors: Default::default(),
            metrics,
            warm: warm::WarmCache::new(opts.doc_cache),
        }))
    }

    /// Runs `f` on a read transaction on the blocking pool.
    pub async fn read<T, E, F>(&self, f: F) -> std::result::Result<T, E>
    where
        F: FnOnce(&ReadTransaction) -> std::result::Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || {
            let tx = disk::begin_read(&db)?;
            f(&tx)
        })
        .await
        .map_err(|_| StoreError::Closed)?
    }

    /// Runs `f` inside the next group commit and answers once that commit is durable.
    /// `f` must return `Err` only before its first write; an error after writing aborts the
    /// whole commit (every job in it then gets [`StoreError::BatchAborted`]).
    pub async fn write<T, E, F>(&self, f: F) -> std::result::Result<T, E>
    where
        F: FnOnce(&mut WriteCtx<'_>) -> std::result::Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        self.writer.submit(f).await
    }

    /// Same as [`Store::write`], for callers outside an async runtime (tests, tools).
    pub fn write_blocking<T, E, F>(&self, f: F) -> std::result::Result<T, E>
    where
        F: FnOnce(&mut WriteCtx<'_>) -> std::result::Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        self.writer.submit_blocking(f)
    }

    /// What one peer may add per day ([`quota`]).
    pub fn peer_quota_per_day(&self) -> u64 {
        self.peer_quota_bytes_per_day
    }

    /// The files this node takes.
    pub fn attachment_rules(&self) -> &AttachmentRules {
        &self.attachments
    }

    pub fn feed_id(&self) -> u64 {
        self.feed_id
    }

    /// The data directory this store lives in.
    pub fn data_dir(&self) -> &Path {
        &self.dir
    }

    /// A read transaction for synchronous callers already off the executor (the sync host).
    pub fn begin_read(&self) -> Result<ReadTransaction> {
        disk::begin_read(&self.db)
    }

    /// `Err(DiskFull)` when the data directory's disk is below the reserve: a write now
    /// would be refused.
    pub fn check_space(&self) -> Result<()> {
        self.space.check()
    }

    /// The disk space rules as the sync host and links use them (`disk`).
    pub(crate) fn space(&self) -> &disk::Space {
        &self.space
    }

    pub fn swept_day(&self) -> i32 {
        self.swept_day.load(Ordering::Acquire)
    }

    /// Moves tasks whose due day is before `today` into the `overdue` facet. Cheap when
    /// already done today: the common case does not touch the database.
    pub async fn sweep_overdue(&self, today: chrono::NaiveDate) -> Result<()> {
        use chrono::Datelike;
        let day = today.num_days_from_ce();
        if self.swept_day() >= day {
            return Ok(());
        }
        match self.write(move |ctx| index::sweep(ctx, day)).await {
            Ok(()) => {}
            // Reads must keep working on a full disk: the sweep waits for the next query, and
            // until then the overdue facet lacks the tasks that fell due since the last one.
            Err(StoreError::DiskFull { .. } | StoreError::Reopening) => return Ok(()),
            Err(e) => return Err(e),
        }
        self.swept_day.fetch_max(day, Ordering::AcqRel);
        Ok(())
    }

    /// Stops the writer after the jobs already queued; called on shutdown.
    pub fn shutdown(&self) {
        self.writer.close();
    }
}

/// Closes the database cleanly when the last handle goes, also when nobody called
/// [`Store::shutdown`] (every one-off CLI command). A process that exits with the file open
/// leaves it needing recovery on the next open, which (for a file last written without quick
/// repair, see `begin_write`) verifies every page checksum and fails the whole open for one
/// damaged page. Joining the writer drops its handle on the database, so ours is the last.
impl Drop for Store {
    fn drop(&mut self) {
        // The writer cannot wait for itself; then its own handle closes the file as it ends.
        if std::thread::current().name() != Some("parley-writer") {
            self.writer.close();
        }
    }
}
