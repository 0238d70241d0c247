//! Backups: a consistent copy of everything that is not derived, and restoring one into an
//! empty data directory.
//!
//! redb has no backup API and its file must not be copied while written (cberner/redb#634), so
//! a backup copies rows, like SQLite's `VACUUM INTO`: every table in `kept_tables!` is read from ONE
//! read transaction (a snapshot: writers go on meanwhile, and nothing committed after it
//! starts is in it) into a new redb file, with a [`Manifest`] naming the node and how many
//! rows each table holds. The file is checked (integrity, manifest, counts) before it is
//! renamed into place, so a backup file that exists is whole.
//!
//! A backup file is itself a Parley database holding only the truth; restoring copies it into
//! the new data directory, and the derived indexes are rebuilt from the documents when the
//! store opens it. Two things change on the way, because a restored node has lost whatever it
//! wrote after the backup while its partners still hold it:
//!
//! - it writes as a new, random Automerge actor ([`super::Identity::actor`]), so its first
//!   write cannot reuse an (actor, sequence number) pair a partner already holds;
//! - its sync bookkeeping starts afresh (sync states and feed cursors are not in a backup, and
//!   its own feed gets a new id), and each partner's node may give back, once, our own org's
//!   changes the backup lacks ([`super::peers::Peer::recover_since`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use redb::{
    Database, Durability, Key, ReadTransaction, ReadableDatabase, ReadableTable,
    ReadableTableMetadata, TableDefinition, TableHandle, Value,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::tables::*;
use super::{Identity, SCHEMA_VERSION, StoreError, accounts};

/// What a backup file says about itself, in its `META` under `backup_manifest`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Always [`FORMAT`].
    pub format: String,
    /// [`FORMAT_VERSION`] of the release that wrote it.
    pub format_version: u32,
    /// The store schema of the node it was taken from ([`SCHEMA_VERSION`]).
    pub schema_version: u64,
    pub parley_version: String,
    pub node_id: Uuid,
    pub org_id: String,
    pub org_name: String,
    pub made_at: DateTime<Utc>,
    pub conversations: u64,
    pub files: u64,
    /// Rows per table, checked against the file before it is trusted.
    pub tables: BTreeMap<String, u64>,
}

pub const FORMAT: &str = "parley-backup";
pub const FORMAT_VERSION: u32 = 1;
pub(super) const MANIFEST_KEY: &str = "backup_manifest";
/// The database a restore works on, in the target directory, until it is published.
pub(super) const RESTORING: &str = "parley.redb.restoring";

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error(
        "{0} is not a Parley backup ({1}); give a file that `parley backup` or the backup API wrote"
    )]
    NotABackup(PathBuf, String),
    #[error(
        "the backup {0} is damaged or cut short ({1}); nothing was restored. Use another backup, or copy this one again from where it was kept"
    )]
    Damaged(PathBuf, String),
    #[error(
        "the backup {0} was written by a newer Parley (backup format {1}, schema {2}); restore it with that release or a newer one"
    )]
    Newer(PathBuf, u32, u64),
    #[error(
        "the backup {path} is of org {found}, not {expected}; give a backup of this org, or leave out the expected org"
    )]
    OtherOrg {
        path: PathBuf,
        found: String,
        expected: String,
    },
    #[error("cannot write a backup to {0}: {1}")]
    BadTarget(PathBuf, String),
    #[error(
        "the data directory {0} is not empty; restore into a new, empty directory (a node never restores over data it holds)"
    )]
    NotEmpty(PathBuf),
    #[error("{0}: {1}")]
    Io(String, String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl BackupError {
    pub(super) fn io(what: &Path, e: impl std::fmt::Display) -> Self {
        BackupError::Io(what.display().to_string(), e.to_string())
    }
}

impl<E: Into<redb::Error>> From<E> for BackupError {
    fn from(e: E) -> Self {
        BackupError::Store(StoreError::Db(Box::new(e.into())))
    }
}

pub(super) type Result<T, E = BackupError> = std::result::Result<T, E>;

pub use super::restore::{RestoreOptions, restore};

/// Rows copied per destination commit: bounds the memory a backup's write transaction holds.
const ROWS_PER_COMMIT: u64 = 10_000;
/// Bytes copied per destination commit (documents and file chunks are large rows).
const BYTES_PER_COMMIT: usize = 64 * 1024 * 1024;

/// Runs `$m!(TABLE)` for every table a backup keeps: the truth. Everything else is either
/// derived from the documents (rebuilt on open) or in [`LEFT_OUT`].
macro_rules! kept_tables {
    ($m:ident) => {
        $m!(DOCS);
        $m!(CHUNKS);
        $m!(USERS);
        $m!(TOKENS);
        $m!(PARTNERS);
        $m!(UNREAD);
        $m!(UNREAD_COUNT);
        $m!(IDEMPOTENCY);
        $m!(PEERS);
        $m!(INVITES);
        $m!(TOPICS);
        $m!(UNDELIVERED);
        $m!(crate::store::audience::PARTNER_FEED_HIGH);
        $m!(crate::store::quota::PEER_USAGE);
        $m!(crate::store::outbox::DIGEST_QUEUE);
        $m!(crate::store::outbox::MAIL_OUT);
        $m!(crate::store::mail_queue::MAIL_ROWS);
        $m!(crate::store::mail_queue::MAIL_PENDING);
        $m!(crate::store::outbox::HOOKS);
        $m!(crate::store::outbox::HOOK_QUEUE);
        $m!(crate::store::outbox::HOOK_LOG);
        $m!(crate::store::outbox::HOOK_PENDING);
        $m!(crate::store::outbox::HOOK_LOG_COUNT);
        $m!(crate::store::outbox::HOOK_SETTINGS);
        $m!(crate::store::outbox::REMINDED);
        $m!(crate::store::hook_queue::HOOK_LANES);
        $m!(crate::store::hook_queue::HOOK_DUE);
        $m!(crate::store::hook_queue::HOOK_REMOVED);
        $m!(crate::store::blobs::BLOB_CHUNKS);
        $m!(crate::store::blobs::BLOB_META);
        $m!(crate::store::blobs::UPLOAD_NAMES);
        // Kept so the restored node's sweep at open drops the chunks of uploads that were
        // under way at the backup, as it does after any restart.
        $m!(crate::store::blobs::UPLOADS_OPEN);
    };
}

/// Tables that are neither derived nor kept: sync bookkeeping a restored node must start
/// afresh (`sync_states`, `peer_cursors`) and browser sessions (people sign in again after a
/// restore: a stolen backup opens no session).
pub const LEFT_OUT: &[&str] = &["sync_states", "peer_cursors", "sessions"];

/// redb's page cache for the backup file, written and checked: a backup of a large node must
/// not take a large share of its memory (redb's default is 1 GiB).
pub(super) const BACKUP_CACHE_BYTES: usize = 32 * 1024 * 1024;

/// `META` keys a backup keeps: who the node is and its identity key. The others are derived
/// (`index_version`, `swept_day`, `feed_floor`) or must change on restore (`feed_id`: peers'
/// cursors into the old feed mean nothing for the restored one).
const META_KEPT: &[&str] = &["identity", "node_key", "schema_version"];

/// Copies one table from the snapshot into `dst`, committing every so many rows so a large
/// table never sits whole in one write transaction. Returns the rows copied.
fn copy_table<K: Key + 'static, V: Value + 'static>(
    src: &ReadTransaction,
    dst: &Database,
    def: TableDefinition<K, V>,
) -> Result<u64> {
    let table = src.open_table(def)?;
    let mut rows = table.iter()?;
    let mut n = 0u64;
    loop {
        let mut tx = dst.begin_write()?;
        // Only the last commit of the backup is durable; the file is renamed into place only
        // after it, so an interrupted backup leaves nothing that looks whole.
        tx.set_durability(Durability::None)
            .map_err(|e| BackupError::Io("backup".into(), e.to_string()))?;
        let mut more = false;
        {
            let mut t = tx.open_table(def)?;
            let (mut rows_in, mut bytes_in) = (0u64, 0usize);
            for r in rows.by_ref() {
                let (k, v) = r?;
                t.insert(k.value(), v.value())?;
                n += 1;
                rows_in += 1;
                bytes_in += V::as_bytes(&v.value()).as_ref().len();
                if rows_in >= ROWS_PER_COMMIT || bytes_in >= BYTES_PER_COMMIT {
                    more = true;
                    break;
                }
            }
        }
        tx.commit()?;
        if !more {
            return Ok(n);
        }
    }
}

/// Writes a backup of the snapshot `src` to `dest`, through `<dest>.partial`, checked before
/// it is renamed into place (an existing `dest` is replaced only by a whole, checked backup).
/// Blocking.
pub fn write(src: ReadTransaction, dest: &Path) -> Result<Manifest> {
    let ident = accounts::read_identity(&src)?.ok_or(StoreError::NoIdentity)?;
    let partial = partial_path(dest);
    let _ = std::fs::remove_file(&partial);
    let written = write_partial(&src, &ident, &partial);
    // The snapshot keeps the live file from reusing pages freed since it began: let go of it
    // as soon as the copy is written, before the check.
    drop(src);
    let result = written.and_then(|m| {
        let checked = verify(&partial)?;
        if checked != m {
            return Err(BackupError::Damaged(
                partial.clone(),
                "the file read back differs from what was written".into(),
            ));
        }
        std::fs::rename(&partial, dest).map_err(|e| BackupError::io(dest, e))?;
        sync_dir(dest);
        Ok(m)
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    result
}

/// Refuses a backup target that would destroy what it backs up or something else: inside the
/// data directory (its database above all), or an existing path that is not a regular file
/// (`/dev/null`, a directory).
pub fn check_target(dest: &Path, data_dir: &Path) -> Result<()> {
    let bad = |why: &str| Err(BackupError::BadTarget(dest.into(), why.into()));
    match std::fs::symlink_metadata(dest) {
        Ok(m) if !m.file_type().is_file() => {
            return bad("it exists and is not a regular file; give the path of a file");
        }
        _ => {}
    }
    let Some(name) = dest.file_name() else {
        return bad("give the path of a file");
    };
    let parent = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let Ok(parent) = std::fs::canonicalize(parent) else {
        return bad("its directory does not exist");
    };
    let inside = std::fs::canonicalize(data_dir)
        .map(|d| parent.join(name).starts_with(d))
        .unwrap_or(false);
    if inside {
        return bad("it is inside the node's data directory; keep backups elsewhere");
    }
    Ok(())
}

fn partial_path(dest: &Path) -> PathBuf {
    let mut name = dest.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    dest.with_file_name(name)
}

/// Makes a rename durable: the directory entry, not only the file.
pub(super) fn sync_dir(path: &Path) {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        && let Ok(d) = std::fs::File::open(dir)
    {
        let _ = d.sync_all();
    }
}

fn write_partial(src: &ReadTransaction, ident: &Identity, partial: &Path) -> Result<Manifest> {
    let db = Database::builder()
        .set_cache_size(BACKUP_CACHE_BYTES)
        .create(partial)
        .map_err(|e| BackupError::io(partial, e))?;
    super::private(partial, 0o600);
    let mut tables = BTreeMap::new();
    macro_rules! copy {
        ($t:expr) => {
            let def = $t;
            tables.insert(def.name().to_string(), copy_table(src, &db, def)?);
        };
    }
    kept_tables!(copy);
    let meta = src.open_table(META)?;
    let mut m = Manifest {
        format: FORMAT.into(),
        format_version: FORMAT_VERSION,
        schema_version: SCHEMA_VERSION,
        parley_version: env!("CARGO_PKG_VERSION").into(),
        node_id: ident.node_id,
        org_id: ident.org_id.to_string(),
        org_name: ident.org_name.clone(),
        made_at: Utc::now(),
        // One inbox row per conversation, in the same snapshot (team documents have none).
        conversations: src.open_table(SUMMARIES)?.len()?,
        files: src.open_table(super::blobs::BLOB_META)?.len()?,
        tables: BTreeMap::new(),
    };
    let tx = db.begin_write()?;
    {
        let mut out = tx.open_table(META)?;
        let mut kept = 0;
        for key in META_KEPT {
            if let Some(v) = meta.get(*key)? {
                out.insert(*key, v.value())?;
                kept += 1;
            }
        }
        tables.insert("meta".into(), kept + 1);
        m.tables = tables;
        let json = serde_json::to_vec(&m).map_err(|e| BackupError::io(partial, e))?;
        out.insert(MANIFEST_KEY, json.as_slice())?;
    }
    tx.commit()?;
    Ok(m)
}

/// Reads and checks a backup file: redb's integrity check, the manifest, and every table's
/// row count against it. Opens the file for writing (redb does), so give it a copy when the
/// original must stay untouched.
pub fn verify(path: &Path) -> Result<Manifest> {
    let meta = std::fs::metadata(path).map_err(|e| BackupError::io(path, e))?;
    if !meta.is_file() {
        return Err(BackupError::NotABackup(path.into(), "not a file".into()));
    }
    let mut db = match Database::builder()
        .set_cache_size(BACKUP_CACHE_BYTES)
        .open(path)
    {
        Ok(db) => db,
        Err(redb::DatabaseError::Storage(redb::StorageError::Corrupted(e))) => {
            return Err(BackupError::Damaged(path.into(), e));
        }
        Err(redb::DatabaseError::DatabaseAlreadyOpen) => {
            return Err(BackupError::NotABackup(
                path.into(),
                "it is the database of a running node".into(),
            ));
        }
        Err(e) => return Err(not_a_backup_or_damaged(path, meta.len(), e.to_string())),
    };
    match db.check_integrity() {
        Ok(true) => {}
        Ok(false) => {
            return Err(BackupError::Damaged(
                path.into(),
                "pages failed their checksums".into(),
            ));
        }
        Err(e) => return Err(BackupError::Damaged(path.into(), e.to_string())),
    }
    let rtx = db.begin_read()?;
    let manifest = read_manifest(path, &rtx)?;
    if manifest.format_version > FORMAT_VERSION || manifest.schema_version > SCHEMA_VERSION {
        return Err(BackupError::Newer(
            path.into(),
            manifest.format_version,
            manifest.schema_version,
        ));
    }
    let ident = accounts::read_identity(&rtx)
        .map_err(|e| BackupError::Damaged(path.into(), e.to_string()))?
        .ok_or_else(|| BackupError::Damaged(path.into(), "it holds no node identity".into()))?;
    if ident.node_id != manifest.node_id || ident.org_id.as_str() != manifest.org_id {
        return Err(BackupError::Damaged(
            path.into(),
            "its manifest names another node than its identity".into(),
        ));
    }
    let mut found = BTreeMap::new();
    macro_rules! count {
        ($t:expr) => {
            let def = $t;
            let n = match rtx.open_table(def) {
                Ok(t) => t.len()?,
                Err(redb::TableError::TableDoesNotExist(_)) => 0,
                Err(e) => return Err(BackupError::Damaged(path.into(), e.to_string())),
            };
            found.insert(def.name().to_string(), n);
        };
    }
    kept_tables!(count);
    found.insert("meta".into(), rtx.open_table(META)?.len()?);
    if found != manifest.tables {
        let differs: Vec<String> = manifest
            .tables
            .iter()
            .filter(|(k, v)| found.get(*k) != Some(v))
            .map(|(k, v)| format!("{k}: {} rows, manifest {v}", found.get(k).unwrap_or(&0)))
            .collect();
        return Err(BackupError::Damaged(
            path.into(),
            format!("rows differ from its manifest ({})", differs.join(", ")),
        ));
    }
    Ok(manifest)
}

fn not_a_backup_or_damaged(path: &Path, len: u64, e: String) -> BackupError {
    let mut head = [0u8; 9];
    let starts = std::fs::File::open(path)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut head))
        .is_ok();
    // Every redb file starts with this magic number: a file that has it was a database, and
    // is then damaged or cut short rather than something else.
    if starts && head == *b"redb\x1A\x0A\xA9\x0D\x0A" {
        BackupError::Damaged(path.into(), format!("{e} ({len} bytes)"))
    } else {
        BackupError::NotABackup(path.into(), e)
    }
}

fn read_manifest(path: &Path, rtx: &ReadTransaction) -> Result<Manifest> {
    let not = |why: &str| BackupError::NotABackup(path.into(), why.into());
    let meta = match rtx.open_table(META) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Err(not("it has no Parley tables")),
        Err(e) => return Err(not(&e.to_string())),
    };
    let Some(raw) = meta.get(MANIFEST_KEY)? else {
        return Err(not(
            "it has no backup manifest: a node's own database file is not a backup",
        ));
    };
    let m: Manifest = serde_json::from_slice(raw.value())
        .map_err(|e| BackupError::Damaged(path.into(), format!("its manifest: {e}")))?;
    if m.format != FORMAT {
        return Err(not("its manifest is of another format"));
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// The tables rebuilt from the documents by `rebuild` (and emptied by `clear_derived`).
    const DERIVED: &[&str] = &[
        "summaries",
        "facets",
        "facet_counts",
        "pair_counts",
        "due_pending",
        "due_order_by_facet",
        "unread_order",
        "feed",
        "feed_pos",
        "heads",
        "search_terms",
        "row_activity",
        "topics_folded",
        "partner_feed",
        "partner_feed_pos",
        "team_assignee",
        "text_words",
        "blob_refs_v2",
        "blob_wanted",
    ];

    /// Every table a store creates is kept by a backup, derived, or left out on purpose: a
    /// new table must be put in one of the three (and a truth table in `kept_tables!`), or
    /// this fails.
    #[test]
    fn every_table_is_kept_derived_or_left_out() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::create(dir.path().join("d.redb")).unwrap();
        let tx = db.begin_write().unwrap();
        create_all(&tx).unwrap();
        let all: BTreeSet<String> = tx
            .list_tables()
            .unwrap()
            .map(|t| t.name().to_string())
            .collect();
        let mut placed: BTreeSet<String> = DERIVED.iter().map(|s| s.to_string()).collect();
        placed.extend(LEFT_OUT.iter().map(|s| s.to_string()));
        placed.insert("meta".into());
        macro_rules! name {
            ($t:expr) => {
                assert!(
                    placed.insert($t.name().to_string()),
                    "{} is placed twice",
                    $t.name()
                );
            };
        }
        kept_tables!(name);
        assert_eq!(all, placed);
    }
}
