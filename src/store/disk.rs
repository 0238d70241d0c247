//! The database handle and the disk under it: refusing writes before the disk fills, and
//! reopening the database after a write met a full disk anyway.
//!
//! Why both. redb latches the first I/O error of a `Database` (`StorageError::PreviousIo`):
//! from then on every read and write on that handle fails until it is reopened. So the writer
//! checks the free space before each group commit and refuses the whole batch below a reserve
//! (Elasticsearch's flood-stage watermark does the same for its indices): in the normal case
//! redb never meets ENOSPC, and reads are never disturbed. When another program fills the
//! disk between the check and the commit, the commit fails; nothing of it is on disk (the
//! commit slot is switched only after its pages are written), and the handle is swapped for a
//! fresh one, opened on first use, so reads and later writes work again without a restart.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redb::{Database, ReadableDatabase};

use super::StoreError;

/// Default reserve: 64 MiB, or 5 % of the filesystem when that is less (a small disk).
pub const DEFAULT_RESERVE_BYTES: u64 = 64 << 20;
const DEFAULT_RESERVE_PERCENT: u64 = 5;

/// How long an open waits for the old handle's last transactions to end (they fail fast on a
/// latched handle) before it gives up for now; the next reader or writer tries again.
const REOPEN_WAIT: Duration = Duration::from_secs(10);

/// The current `Database`, swapped for a new one after an I/O failure.
///
/// Invariant: at most one `Database` of the file is open in this process. A new one is opened
/// only once the old one is out of `current`, and redb's file lock refuses the open (retried
/// here) until every handle and transaction of the old one has ended.
pub(crate) struct DbCell {
    /// The file to reopen; `None` for a database on a storage backend of its own, which is
    /// never given up (`give_up` is then a no-op).
    path: Option<PathBuf>,
    cache_bytes: usize,
    current: Mutex<Option<Arc<Database>>>,
}

impl DbCell {
    /// A database on a storage backend of its own, which cannot be reopened here: after a
    /// latched I/O failure it keeps failing until the process opens it again.
    #[allow(dead_code)]
    pub fn fixed(db: Database) -> DbCell {
        DbCell {
            path: None,
            cache_bytes: 0,
            current: Mutex::new(Some(Arc::new(db))),
        }
    }

    pub fn new(db: Database, path: PathBuf, cache_bytes: usize) -> DbCell {
        DbCell {
            path: Some(path),
            cache_bytes,
            current: Mutex::new(Some(Arc::new(db))),
        }
    }

    /// The database to use now: the current handle, or a fresh one if the last was given up.
    pub fn get(&self) -> Result<Arc<Database>, StoreError> {
        let mut cur = self.current.lock().map_err(|_| StoreError::Closed)?;
        if let Some(db) = cur.as_ref() {
            return Ok(db.clone());
        }
        let Some(path) = &self.path else {
            return Err(StoreError::Closed);
        };
        let deadline = Instant::now() + REOPEN_WAIT;
        loop {
            match Database::builder()
                .set_cache_size(self.cache_bytes)
                .create(path)
            {
                Ok(db) => {
                    tracing::warn!(file = %path.display(), "database reopened after a failed write; reads and writes work again");
                    let db = Arc::new(db);
                    *cur = Some(db.clone());
                    return Ok(db);
                }
                // The old handle's last reader has not finished yet.
                Err(redb::DatabaseError::DatabaseAlreadyOpen) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(redb::DatabaseError::DatabaseAlreadyOpen) => {
                    return Err(StoreError::Reopening);
                }
                Err(e) => {
                    tracing::error!(error = %e, file = %path.display(), "cannot reopen the database; trying again on the next request");
                    return Err(e.into());
                }
            }
        }
    }

    /// Gives up `db` after an I/O failure latched it: the next [`DbCell::get`] opens a fresh
    /// handle. A no-op if `db` was already given up (another caller was first).
    pub fn give_up(&self, db: &Arc<Database>) {
        if self.path.is_none() {
            return;
        }
        if let Ok(mut cur) = self.current.lock()
            && cur.as_ref().is_some_and(|c| Arc::ptr_eq(c, db))
        {
            *cur = None;
        }
    }
}

/// A read transaction on the current database; if its handle turns out latched by an I/O
/// failure, it is given up and the read starts on a fresh one.
pub(crate) fn begin_read(cell: &DbCell) -> Result<redb::ReadTransaction, StoreError> {
    let db = cell.get()?;
    match db.begin_read() {
        Ok(tx) => Ok(tx),
        Err(e) => {
            let e = redb::Error::from(e);
            if !latched(&e) {
                return Err(StoreError::Db(Box::new(e)));
            }
            cell.give_up(&db);
            drop(db);
            Ok(cell.get()?.begin_read()?)
        }
    }
}

/// Whether a redb error is an I/O failure that latched the handle (or the latch itself).
pub(crate) fn latched(e: &redb::Error) -> bool {
    matches!(e, redb::Error::Io(_) | redb::Error::PreviousIo)
}

/// Whether an I/O error says the disk (or the user's quota on it) is full.
pub(crate) fn is_full(e: &redb::Error) -> bool {
    let redb::Error::Io(io) = e else {
        return false;
    };
    matches!(
        io.kind(),
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
    )
}

/// The disk the data directory is on, and how much of it writes leave free.
#[derive(Debug, Clone)]
pub(crate) struct Space {
    dir: PathBuf,
    /// Bytes to keep free; `None`: [`DEFAULT_RESERVE_BYTES`] or 5 % of the filesystem.
    reserve: Option<u64>,
    /// When refused writes were last logged (at most once a minute: a full disk refuses
    /// every write, and the log must not fill what is left).
    logged: Arc<Mutex<Option<Instant>>>,
    /// Peers whose changes were refused for want of space since their link last started.
    refused: Arc<Mutex<std::collections::HashSet<uuid::Uuid>>>,
}

impl Space {
    pub fn new(dir: &Path, reserve: Option<u64>) -> Space {
        Space {
            dir: dir.to_path_buf(),
            reserve,
            logged: Default::default(),
            refused: Default::default(),
        }
    }

    /// Notes that `peer`'s changes were refused for want of space.
    pub fn refused_peer(&self, peer: uuid::Uuid) {
        if let Ok(mut r) = self.refused.lock() {
            r.insert(peer);
        }
    }

    /// Whether `peer`'s changes were refused and there is room again (asked once: true at
    /// most once per refusal). A link then starts afresh, and the changes are fetched again.
    pub fn room_again_for(&self, peer: uuid::Uuid) -> bool {
        let Ok(mut r) = self.refused.lock() else {
            return false;
        };
        if r.contains(&peer) && self.check().is_ok() {
            r.remove(&peer);
            return true;
        }
        false
    }

    /// Forgets `peer`'s refusals: its link starts afresh anyway.
    pub fn forget_peer(&self, peer: uuid::Uuid) {
        if let Ok(mut r) = self.refused.lock() {
            r.remove(&peer);
        }
    }

    /// Logs a refusal for want of space, at most once a minute.
    pub fn warn_refused(&self, e: &StoreError, what: &str) {
        let Ok(mut last) = self.logged.lock() else {
            return;
        };
        if last.is_some_and(|t| t.elapsed() < Duration::from_secs(60)) {
            return;
        }
        *last = Some(Instant::now());
        tracing::warn!(error = %e, "{what} refused: the disk is below its reserve");
    }

    /// `Err(DiskFull)` when fewer bytes than the reserve are free; `Ok` when there are
    /// enough, or the system does not say.
    pub fn check(&self) -> Result<(), StoreError> {
        match self.free_and_reserve() {
            Some((free, reserve)) if free < reserve => Err(self.full(free, reserve)),
            _ => Ok(()),
        }
    }

    /// Bytes free beyond the reserve (`None` if the system does not say).
    pub fn usable(&self) -> Option<u64> {
        self.free_and_reserve()
            .map(|(free, reserve)| free.saturating_sub(reserve))
    }

    fn free_and_reserve(&self) -> Option<(u64, u64)> {
        let s = rustix::fs::statvfs(self.dir.as_path()).ok()?;
        let free = s.f_bavail.saturating_mul(s.f_frsize);
        let total = s.f_blocks.saturating_mul(s.f_frsize);
        let reserve = self
            .reserve
            .unwrap_or_else(|| DEFAULT_RESERVE_BYTES.min(total / 100 * DEFAULT_RESERVE_PERCENT));
        Some((free, reserve))
    }

    /// The error for a write refused (or failed) for want of space.
    pub fn full(&self, free: u64, reserve: u64) -> StoreError {
        StoreError::DiskFull {
            dir: self.dir.clone(),
            free_mib: free >> 20,
            reserve_mib: reserve.div_ceil(1 << 20),
        }
    }

    /// The error for a commit that met a full disk although the check passed.
    pub fn met_full(&self) -> StoreError {
        let free = rustix::fs::statvfs(self.dir.as_path())
            .map(|s| s.f_bavail.saturating_mul(s.f_frsize))
            .unwrap_or(0);
        self.full(free, self.reserve.unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reserve_above_the_free_space_refuses() {
        let d = tempfile::tempdir().unwrap();
        assert!(Space::new(d.path(), Some(0)).check().is_ok());
        let e = Space::new(d.path(), Some(u64::MAX)).check().unwrap_err();
        assert!(matches!(e, StoreError::DiskFull { .. }), "{e}");
        let msg = e.to_string();
        assert!(
            msg.contains("nothing was saved") && msg.contains("free some space"),
            "{msg}"
        );
    }

    #[test]
    fn enospc_counts_as_full() {
        let e = redb::Error::Io(std::io::Error::from_raw_os_error(28));
        assert!(is_full(&e) && latched(&e));
        let other = redb::Error::Io(std::io::Error::from_raw_os_error(5));
        assert!(!is_full(&other) && latched(&other));
    }
}
