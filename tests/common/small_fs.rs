//! A small filesystem for the disk-full tests: a tmpfs the test mounts (as root), or a
//! directory under `PARLEY_TEST_SMALL_FS`. Under CI a test that cannot get one fails.

use std::path::PathBuf;
use std::process::Command;

/// A small filesystem for this test, unmounted at the end if this test mounted it.
pub struct SmallFs {
    pub path: PathBuf,
    mounted: bool,
}

impl SmallFs {
    pub fn get(mb: u64) -> Option<SmallFs> {
        if let Ok(p) = std::env::var("PARLEY_TEST_SMALL_FS") {
            let path = PathBuf::from(p).join(uuid::Uuid::new_v4().to_string());
            std::fs::create_dir_all(&path).ok()?;
            return Some(SmallFs {
                path,
                mounted: false,
            });
        }
        let path = std::env::temp_dir().join(format!("parley-diskfull-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&path).ok()?;
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mb}m"), "tmpfs"])
            .arg(&path)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = std::fs::remove_dir(&path);
        }
        ok.then_some(SmallFs {
            path,
            mounted: true,
        })
    }

    pub fn free(&self) -> u64 {
        let s = rustix::fs::statvfs(self.path.as_path()).unwrap();
        s.f_bavail * s.f_frsize
    }

    /// Fills the filesystem until `leave` bytes are free (as near as it can).
    pub fn fill_to(&self, leave: u64) -> PathBuf {
        let filler = self.path.join("filler");
        let size = self.free().saturating_sub(leave);
        // A write that stops short for want of space still leaves the file: the disk is full.
        let _ = std::fs::write(&filler, vec![0u8; size as usize]);
        filler
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        if self.mounted {
            // Lazily: the node may still be closing its files.
            let _ = Command::new("umount").arg("-l").arg(&self.path).status();
            let _ = std::fs::remove_dir(&self.path);
        }
    }
}

/// A small filesystem of `mb` MiB, or `None` (skipped, said why) outside CI.
pub fn small_fs_or_skip(mb: u64) -> Option<SmallFs> {
    match SmallFs::get(mb) {
        Some(fs) => Some(fs),
        None if std::env::var_os("CI").is_some() => {
            panic!(
                "no small filesystem: set PARLEY_TEST_SMALL_FS or run as root (CI must run this test)"
            )
        }
        None => {
            eprintln!("skipped: no small filesystem (set PARLEY_TEST_SMALL_FS or run as root)");
            None
        }
    }
}
