//! A database file that a power cut left before redb finished creating it.
//!
//! redb creates a file in steps: it sets the file's length, writes the header without its
//! magic number, flushes, writes the magic number and flushes again, so that a half-made
//! file is never taken for a database. But an existing file without the magic number is
//! refused on every later open ("not a redb database"), so a power cut in that window (the
//! node's very first start) left a node that could never start again, although nothing was
//! ever stored in the file. Such a file is told apart by its bytes: no magic number, and
//! nothing but zeros past the header's first sector. It is emptied, and redb creates the
//! database afresh. Any other file without the magic number is left alone and refused as
//! before: it may be a damaged database that a backup must replace.

use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

use redb::StorageBackend;

/// redb's magic number, the first bytes of every database it finished creating.
const MAGIC: [u8; 9] = [b'r', b'e', b'd', b'b', 0x1A, 0x0A, 0xA9, 0x0D, 0x0A];
/// What redb writes before the magic number: its header (320 bytes in redb 4), in one sector.
const HEADER: u64 = 512;
/// A file being created is one initial layout long (about a megabyte); a larger file without
/// the magic number is no such file, and is not read through.
const LARGEST: u64 = 64 << 20;

/// Whether `len` bytes, read through `read`, are a database redb began and never finished.
fn never_created(
    len: u64,
    mut read: impl FnMut(u64, &mut [u8]) -> io::Result<()>,
) -> io::Result<bool> {
    if len == 0 {
        return Ok(true);
    }
    if len > LARGEST {
        return Ok(false);
    }
    if len >= MAGIC.len() as u64 {
        let mut head = [0u8; MAGIC.len()];
        read(0, &mut head)?;
        if head == MAGIC {
            return Ok(false);
        }
    }
    let mut buf = vec![0u8; 64 << 10];
    let mut at = HEADER.min(len);
    while at < len {
        let n = (len - at).min(buf.len() as u64) as usize;
        read(at, &mut buf[..n])?;
        if buf[..n].iter().any(|b| *b != 0) {
            return Ok(false);
        }
        at += n as u64;
    }
    Ok(true)
}

fn reset_noted(what: &str) {
    tracing::warn!(
        file = what,
        "the database file was never finished (the power went while it was first created) and holds nothing; creating it afresh"
    );
}

/// Whether `path` holds a database redb never finished creating (an empty file counts; a
/// missing or unreadable one does not).
pub(super) fn file_never_created(path: &Path) -> bool {
    let check = || -> io::Result<bool> {
        let mut f = std::fs::File::open(path)?;
        let len = f.metadata()?.len();
        never_created(len, |at, buf| {
            f.seek(SeekFrom::Start(at))?;
            f.read_exact(buf)
        })
    };
    check().unwrap_or(false)
}

/// [`file_never_created`] for a database on a storage backend.
pub(super) fn backend_never_created(backend: &dyn StorageBackend) -> bool {
    let Ok(len) = backend.len() else { return false };
    never_created(len, |at, buf| backend.read(at, buf)).unwrap_or(false)
}

/// Empties `path` when it is a database redb never finished creating. Errors are left to
/// the open that follows, which reports them as for any other file.
pub(super) fn reset_file(path: &Path) {
    if std::fs::metadata(path).map_or(true, |m| m.len() == 0) || !file_never_created(path) {
        return;
    }
    let reset = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|f| f.set_len(0).and_then(|()| f.sync_all()));
    if reset.is_ok() {
        reset_noted(&path.display().to_string());
    }
}

/// [`reset_file`] for a database on a storage backend.
pub(super) fn reset_backend(backend: &dyn StorageBackend) {
    if backend.len().map_or(true, |l| l == 0) || !backend_never_created(backend) {
        return;
    }
    if backend
        .set_len(0)
        .and_then(|()| backend.sync_data())
        .is_ok()
    {
        reset_noted("(storage backend)");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(bytes: &[u8]) -> bool {
        never_created(bytes.len() as u64, |at, buf| {
            let at = at as usize;
            buf.copy_from_slice(&bytes[at..at + buf.len()]);
            Ok(())
        })
        .unwrap()
    }

    #[test]
    fn only_a_file_redb_never_finished_counts_as_never_created() {
        assert!(check(&[0u8; 8192]), "lengthened, nothing written yet");
        let mut header_only = vec![0u8; 8192];
        header_only[9..320].fill(7);
        assert!(check(&header_only), "the header without its magic number");
        assert!(check(&[]), "made, nothing written yet");
        let mut finished = header_only.clone();
        finished[..9].copy_from_slice(&MAGIC);
        assert!(!check(&finished), "a database");
        let mut damaged = header_only;
        damaged[5000] = 1;
        assert!(
            !check(&damaged),
            "data past the header: a damaged database, kept"
        );
    }
}
