//! Restoring a backup (`store::backup`) into an empty data directory, with a new Automerge
//! actor and a recovery window for every partner peer (see the module docs of `backup`).

use std::path::Path;

use chrono::Utc;
use redb::Database;

use super::backup::{
    BACKUP_CACHE_BYTES, BackupError, MANIFEST_KEY, Manifest, RESTORING, Result, sync_dir, verify,
};
use super::tables::*;
use super::{StoreError, accounts, peers};

/// How to restore.
#[derive(Debug, Clone)]
pub struct RestoreOptions {
    /// Refuse a backup of any other org.
    pub expect_org: Option<String>,
    /// Write with a new Automerge actor after the restore. Always `true` in use; `false` only
    /// shows what goes wrong without it (the restore test's negative control).
    pub new_actor: bool,
}

impl Default for RestoreOptions {
    fn default() -> Self {
        RestoreOptions {
            expect_org: None,
            new_actor: true,
        }
    }
}

/// What a data directory may hold and still count as empty: its config file.
fn is_empty_dir(dir: &Path) -> Result<bool> {
    match std::fs::read_dir(dir) {
        Ok(entries) => {
            for e in entries {
                let e = e.map_err(|e| BackupError::io(dir, e))?;
                // What an interrupted restore left: never published, so not data.
                if e.file_name() != crate::config::CONFIG_FILE && e.file_name() != RESTORING {
                    return Ok(false);
                }
            }
            Ok(true)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(BackupError::io(dir, e)),
    }
}

/// Restores the backup `file` into the empty data directory `dir`. The derived indexes are
/// rebuilt by the next [`super::Store::open`]. Nothing is left in `dir` if it fails. Blocking.
pub fn restore(file: &Path, dir: &Path, opts: &RestoreOptions) -> Result<Manifest> {
    if !is_empty_dir(dir)? {
        return Err(BackupError::NotEmpty(dir.into()));
    }
    let created = !dir.exists();
    std::fs::create_dir_all(dir).map_err(|e| BackupError::io(dir, e))?;
    super::private(dir, 0o700);
    let work = dir.join(RESTORING);
    let _ = std::fs::remove_file(&work);
    let result = restore_into(file, &work, opts).and_then(|m| {
        // Published with a link that fails if a database appeared meanwhile (a node started
        // on this directory while the restore ran): never replace one.
        let db = dir.join("parley.redb");
        std::fs::hard_link(&work, &db).map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => BackupError::NotEmpty(dir.into()),
            _ => BackupError::io(&db, e),
        })?;
        let _ = std::fs::remove_file(&work);
        sync_dir(&db);
        Ok(m)
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&work);
        if created {
            let _ = std::fs::remove_dir(dir);
        }
    }
    result
}

fn restore_into(file: &Path, work: &Path, opts: &RestoreOptions) -> Result<Manifest> {
    // Checked on a copy: the backup itself is never opened for writing.
    std::fs::copy(file, work).map_err(|e| BackupError::io(file, e))?;
    super::private(work, 0o600);
    let m = verify(work).map_err(|e| match e {
        BackupError::NotABackup(_, why) => BackupError::NotABackup(file.into(), why),
        BackupError::Damaged(_, why) => BackupError::Damaged(file.into(), why),
        BackupError::Newer(_, f, s) => BackupError::Newer(file.into(), f, s),
        e => e,
    })?;
    if let Some(expected) = &opts.expect_org
        && *expected != m.org_id
    {
        return Err(BackupError::OtherOrg {
            path: file.into(),
            found: m.org_id.clone(),
            expected: expected.clone(),
        });
    }
    let db = Database::builder()
        .set_cache_size(BACKUP_CACHE_BYTES)
        .open(work)
        .map_err(|e| BackupError::io(work, e))?;
    let tx = super::begin_write(&db)?;
    {
        tx.open_table(META)?.remove(MANIFEST_KEY)?;
    }
    let mut ident = accounts::read_identity_w(&tx)?.ok_or(StoreError::NoIdentity)?;
    if opts.new_actor {
        let mut actor = [0u8; 16];
        getrandom::fill(&mut actor)
            .map_err(|e| BackupError::Io("the system's random source".into(), e.to_string()))?;
        ident.actor = Some(hex::encode(actor));
        accounts::write_identity(&tx, &ident)?;
    }
    // Invites open at the backup may have been used since; a restore must not make a used
    // one-time code good again.
    tx.delete_table(INVITES)?;
    tx.open_table(INVITES)?;
    let now = Utc::now();
    for mut p in peers::list_peers_w(&tx)? {
        if p.org_id != ident.org_id {
            p.recover_since = Some(now);
            peers::put_peer(&tx, &p)?;
        }
    }
    tx.commit()?;
    drop(db);
    tracing::info!(
        node = %m.node_id,
        org = %m.org_id,
        made_at = %m.made_at,
        conversations = m.conversations,
        actor = ident.actor.as_deref().unwrap_or("the node id"),
        "restored a backup; each partner's node may give back, once, what this node wrote after it"
    );
    Ok(m)
}
