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
        if dir.as_os_str().is_empty() {
            return Err(ConfigError::Invalid {
                field: "backup.dir",
                value: String::new(),
                reason: "give a directory, or leave backup.dir out to take no periodic backups"
                    .into(),
            });
        }
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

/// Periodic backups are named by the UTC time they were taken, so they sort by age, and only
/// names of exactly that shape are ever pruned.
const PREFIX: &str = "parley-";
const SUFFIX: &str = ".backup";
const STAMP: &str = "%Y%m%dT%H%M%S%.3fZ";
/// Backups being written for a download, in `<data dir>/backups`.
const DOWNLOAD: &str = ".download-";

/// Whether `name` is a periodic backup's (`parley-20261202T120000.000Z.backup`).
fn is_periodic(name: &str) -> bool {
    name.strip_prefix(PREFIX)
        .and_then(|n| n.strip_suffix(SUFFIX))
        .is_some_and(|stamp| chrono::NaiveDateTime::parse_from_str(stamp, STAMP).is_ok())
}

/// Drops what a download left when the node stopped while writing it (a day old or more, so
/// a download under way now is never touched).
fn sweep_downloads(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.filter_map(|e| e.ok()) {
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > Duration::from_secs(24 * 3600));
        if old && e.file_name().to_string_lossy().starts_with(DOWNLOAD) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

fn from_backup(e: BackupError) -> ServiceError {
    // ENOSPC reaches here as an I/O error of redb or of the file system alike.
    if e.to_string().contains("No space left") {
        return ServiceError::InsufficientStorage(format!(
            "no room for the backup ({e}); nothing was kept. Free some space and try again"
        ));
    }
    match e {
        BackupError::Store(s) => ServiceError::Store(s),
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
        let m = in_background("parley-backup", move || store.backup_to(&dest))
            .await?
            .map_err(from_backup)?;
        tracing::info!(
            conversations = m.conversations,
            files = m.files,
            "wrote a backup"
        );
        Ok(m)
    }

    /// A checked backup for download (admin). It is written under the data directory, then
    /// opened and unlinked in the same blocking task, so it goes away with the handle —
    /// whether the download finishes or the request is dropped while it is being written.
    pub async fn backup_for_download(&self, p: &Principal) -> Result<(std::fs::File, Manifest)> {
        p.require_admin()?;
        let store = self.store.clone();
        let dir = self.store.data_dir().join("backups");
        let (file, m) = in_background("parley-backup", move || {
            std::fs::create_dir_all(&dir)
                .map_err(|e| BackupError::Io(dir.display().to_string(), e.to_string()))?;
            sweep_downloads(&dir);
            let path = dir.join(format!("{DOWNLOAD}{}{SUFFIX}", uuid::Uuid::new_v4()));
            let made = store.backup_for_download(&path);
            let opened = made.and_then(|m| {
                std::fs::File::open(&path)
                    .map(|f| (f, m))
                    .map_err(|e| BackupError::Io(path.display().to_string(), e.to_string()))
            });
            let _ = std::fs::remove_file(&path);
            opened
        })
        .await?
        .map_err(from_backup)?;
        tracing::info!(
            conversations = m.conversations,
            files = m.files,
            "wrote a backup for download"
        );
        Ok((file, m))
    }
}

/// Runs a backup on a thread of its own at the lowest CPU priority: on a small machine it
/// would otherwise take a whole core from the writers it must not slow down (BENCHMARKS.md);
/// with it, it uses what they leave. A thread of its own, since a thread's priority cannot be
/// raised again without privileges, and pooled threads are reused.
pub(super) async fn in_background<T: Send + 'static>(
    name: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            #[cfg(target_os = "linux")]
            if let Err(e) = rustix::process::setpriority_process(
                rustix::process::Pid::from_raw(rustix::thread::gettid().as_raw_nonzero().get()),
                19,
            ) {
                tracing::debug!(error = %e, "background work runs at normal priority");
            }
            let _ = tx.send(f());
        })
        .map_err(|e| ServiceError::Unavailable(format!("cannot start {name}: {e}")))?;
    rx.await
        .map_err(|_| ServiceError::Unavailable(format!("{name} was cut short")))
}

/// Takes a backup every `every` into `dir` while the node runs, keeping the newest `keep`.
/// The first one is taken one interval after start, so a node restarting in a loop does not
/// fill the disk with backups.
pub async fn run_schedule(svc: Arc<Service>, s: BackupSchedule) {
    let mut closing = svc.closing();
    // Said at start, not only after the first interval: a directory the node cannot write,
    // or one inside its data directory, would otherwise go unnoticed for a day.
    let (dir, data) = (s.dir.clone(), svc.store.data_dir().to_path_buf());
    let usable = tokio::task::spawn_blocking(move || {
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        crate::store::backup::check_target(&dir.join("probe.backup"), &data)
            .map_err(|e| e.to_string())?;
        let probe = dir.join(".parley-write-probe");
        std::fs::write(&probe, b"").map_err(|e| e.to_string())?;
        std::fs::remove_file(&probe).map_err(|e| e.to_string())
    })
    .await;
    match usable {
        Ok(Ok(())) => tracing::info!(
            dir = %s.dir.display(),
            every_hours = s.every.as_secs() / 3600,
            keep = s.keep,
            "periodic backups on"
        ),
        Ok(Err(e)) => tracing::error!(
            dir = %s.dir.display(),
            error = %e,
            "periodic backups cannot be written there; fix [backup] dir (under systemd, allow it with ReadWritePaths=)"
        ),
        Err(_) => {}
    }
    loop {
        tokio::select! {
            _ = tokio::time::sleep(s.every) => {}
            _ = async { let _ = closing.wait_for(|c| *c).await; } => return,
        }
        let name = format!("{PREFIX}{}{SUFFIX}", svc.now().format(STAMP));
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
                .is_some_and(is_periodic)
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
        let names = [
            "parley-20261101T000000.000Z.backup",
            "parley-20261102T000000.000Z.backup",
            "parley-20261103T000000.000Z.backup",
            // Not periodic backups: a download's name, and anything else.
            "parley-acme-20261104T000000Z.backup",
            "parley-latest.backup",
            "notes.txt",
        ];
        for n in names {
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
                "parley-20261102T000000.000Z.backup",
                "parley-20261103T000000.000Z.backup",
                "parley-acme-20261104T000000Z.backup",
                "parley-latest.backup",
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
