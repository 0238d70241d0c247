//! Backups of a running node: on request (the CLI, the admin API) and on a schedule
//! (`[backup]` in the config file). The copy itself is the store's (`store::backup`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::{Principal, Result, Service, ServiceError};
use crate::config::ConfigError;
use crate::store::backup::{BackupError, Manifest};

/// `[backup]` in the config file: periodic backups into a directory, off unless `dir` is set.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupFile {
    /// Where periodic backups go (made if missing).
    pub dir: Option<PathBuf>,
    /// Hours between backups (default 24).
    pub every_hours: Option<u64>,
    /// Backups kept in `dir`; older ones are removed (default 7).
    pub keep: Option<usize>,
}

/// Periodic backups, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupSchedule {
    pub dir: PathBuf,
    pub every: Duration,
    pub keep: usize,
}

impl BackupFile {
    pub fn load(self) -> Result<Option<BackupSchedule>, ConfigError> {
        let Some(dir) = self.dir else {
            return Ok(None);
        };
        let hours = self.every_hours.unwrap_or(24);
        if !(1..=24 * 366).contains(&hours) {
            return Err(ConfigError::Invalid {
                field: "backup.every_hours",
                value: hours.to_string(),
                reason: "must be between 1 and 8784 hours".into(),
            });
        }
        let keep = self.keep.unwrap_or(7);
        if !(1..=10_000).contains(&keep) {
            return Err(ConfigError::Invalid {
                field: "backup.keep",
                value: keep.to_string(),
                reason: "must be between 1 and 10000".into(),
            });
        }
        Ok(Some(BackupSchedule {
            dir,
            every: Duration::from_secs(hours * 3600),
            keep,
        }))
    }
}

/// `[backup]` for `parley print-config`.
pub fn schedule_toml(s: Option<&BackupSchedule>) -> String {
    match s {
        None => {
            "\n[backup]\n# dir = \"/var/backups/parley\"   # periodic backups, off unless set\n"
                .into()
        }
        Some(s) => format!(
            "\n[backup]\ndir = {:?}\nevery_hours = {}\nkeep = {}\n",
            s.dir.display().to_string(),
            s.every.as_secs() / 3600,
            s.keep
        ),
    }
}

/// Periodic backups are named by the UTC time they were taken, so they sort by age.
const PREFIX: &str = "parley-";
const SUFFIX: &str = ".backup";

fn from_backup(e: BackupError) -> ServiceError {
    match e {
        BackupError::Store(s) => ServiceError::Store(s),
        BackupError::Io(what, why) if why.contains("No space left") => {
            ServiceError::InsufficientStorage(format!(
                "no room for the backup at {what}; free some space and try again"
            ))
        }
        e => ServiceError::Unavailable(e.to_string()),
    }
}

impl Service {
    /// Periodic backups for [`run_schedule`], from the config.
    pub fn set_backup_schedule(&self, s: Option<BackupSchedule>) {
        if let Ok(mut b) = self.backup_schedule.write() {
            *b = s;
        }
    }

    pub fn backup_schedule(&self) -> Option<BackupSchedule> {
        self.backup_schedule.read().ok().and_then(|b| b.clone())
    }

    /// Writes a checked backup of this node to `dest` (admin). Writers go on meanwhile.
    pub async fn backup_to(&self, p: &Principal, dest: PathBuf) -> Result<Manifest> {
        p.require_admin()?;
        let store = self.store.clone();
        let m = tokio::task::spawn_blocking(move || store.backup_to(&dest))
            .await
            .map_err(|_| ServiceError::Unavailable("the backup was cut short".into()))?
            .map_err(from_backup)?;
        tracing::info!(
            conversations = m.conversations,
            files = m.files,
            "wrote a backup"
        );
        Ok(m)
    }

    /// A checked backup for download (admin): the file is opened and then removed from the
    /// data directory, so it goes away with the handle whether or not the download finishes.
    pub async fn backup_for_download(&self, p: &Principal) -> Result<(std::fs::File, Manifest)> {
        p.require_admin()?;
        let dir = self.store.data_dir().join("backups");
        let path = dir.join(format!(".download-{}{SUFFIX}", uuid::Uuid::new_v4()));
        let made = dir.clone();
        tokio::task::spawn_blocking(move || std::fs::create_dir_all(&made))
            .await
            .map_err(|_| ServiceError::Unavailable("the backup was cut short".into()))?
            .map_err(|e| {
                ServiceError::Unavailable(format!("cannot make {}: {e}", dir.display()))
            })?;
        let m = self.backup_to(p, path.clone()).await?;
        let file = std::fs::File::open(&path)
            .map_err(|e| ServiceError::Unavailable(format!("reading the backup: {e}")));
        let _ = std::fs::remove_file(&path);
        Ok((file?, m))
    }
}

/// Takes a backup every `every` into `dir` while the node runs, keeping the newest `keep`.
/// The first one is taken one interval after start, so a node restarting in a loop does not
/// fill the disk with backups.
pub async fn run_schedule(svc: Arc<Service>, s: BackupSchedule) {
    let mut closing = svc.closing();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(s.every) => {}
            _ = async { let _ = closing.wait_for(|c| *c).await; } => return,
        }
        let name = format!("{PREFIX}{}{SUFFIX}", svc.now().format("%Y%m%dT%H%M%S%.3fZ"));
        let dir = s.dir.clone();
        let made = tokio::task::spawn_blocking(move || std::fs::create_dir_all(&dir)).await;
        if let Ok(Err(e)) = made {
            tracing::warn!(dir = %s.dir.display(), error = %e, "cannot make the backup directory; trying again next time");
            continue;
        }
        match svc
            .backup_to(&Principal::operator(), s.dir.join(&name))
            .await
        {
            Ok(_) => tracing::info!(file = %s.dir.join(&name).display(), "periodic backup written"),
            Err(e) => {
                tracing::warn!(error = %e, "the periodic backup failed; trying again next time");
                continue;
            }
        }
        let dir = s.dir.clone();
        let keep = s.keep;
        let _ = tokio::task::spawn_blocking(move || prune(&dir, keep)).await;
    }
}

/// Removes the oldest periodic backups beyond `keep`; other files in `dir` are left alone.
fn prune(dir: &Path, keep: usize) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut ours: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(PREFIX) && n.ends_with(SUFFIX))
        })
        .collect();
    ours.sort();
    let extra = ours.len().saturating_sub(keep);
    for old in &ours[..extra] {
        match std::fs::remove_file(old) {
            Ok(()) => tracing::info!(file = %old.display(), "removed an old periodic backup"),
            Err(e) => {
                tracing::warn!(file = %old.display(), error = %e, "could not remove an old backup")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pruning_keeps_the_newest_and_leaves_other_files() {
        let d = tempfile::tempdir().unwrap();
        for n in [
            "parley-20261101T000000Z.backup",
            "parley-20261102T000000Z.backup",
            "parley-20261103T000000Z.backup",
            "notes.txt",
        ] {
            std::fs::write(d.path().join(n), b"x").unwrap();
        }
        prune(d.path(), 2);
        let mut left: Vec<String> = std::fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                "notes.txt",
                "parley-20261102T000000Z.backup",
                "parley-20261103T000000Z.backup"
            ]
        );
    }

    #[test]
    fn schedule_limits_are_checked() {
        let f = |h, k| {
            BackupFile {
                dir: Some("/x".into()),
                every_hours: h,
                keep: k,
            }
            .load()
        };
        assert!(f(Some(0), None).is_err());
        assert!(f(None, Some(0)).is_err());
        assert_eq!(f(None, None).unwrap().unwrap().keep, 7);
        assert!(BackupFile::default().load().unwrap().is_none());
    }
}
