//! The store's side of backups and of recovery from a partner: taking a backup from a
//! snapshot, and ending a peer's recovery window.

use std::path::Path;

use uuid::Uuid;

use super::backup::{self, BackupError, Manifest};
use super::{Result, Store, peers};

impl Store {
    /// Writes a backup of the current state to `dest` (see [`backup::write`]): one read
    /// transaction, so writers go on while it runs and it holds exactly what was committed
    /// when it began. Blocking: call it from the blocking pool.
    pub fn backup_to(&self, dest: &Path) -> std::result::Result<Manifest, BackupError> {
        backup::check_target(dest, &self.dir)?;
        let rtx = self.begin_read()?;
        backup::write(rtx, dest)
    }

    /// [`Store::backup_to`] a file of the store's own making under the data directory (a
    /// download's, which is unlinked as soon as it is opened).
    pub fn backup_for_download(&self, dest: &Path) -> std::result::Result<Manifest, BackupError> {
        if !dest.starts_with(self.dir.join("backups")) {
            return Err(BackupError::BadTarget(
                dest.into(),
                "a download's backup is written under the data directory's backups/".into(),
            ));
        }
        let rtx = self.begin_read()?;
        backup::write(rtx, dest)
    }

    /// Ends the recovery window of peer `node` (`Peer::recover_since`): from the next sync
    /// step on, its changes are judged by the normal rules again. Returns whether a window
    /// was open.
    pub async fn end_recovery(&self, node: Uuid) -> Result<bool> {
        self.write(move |ctx| {
            let tx = ctx.tx();
            let Some(mut p) = peers::get_peer_w(tx, node)? else {
                return Ok(false);
            };
            if p.recover_since.take().is_none() {
                return Ok(false);
            }
            peers::put_peer(tx, &p)?;
            Ok(true)
        })
        .await
    }
}
