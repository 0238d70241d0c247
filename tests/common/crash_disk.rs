//! A disk that loses power: a redb storage backend that keeps what a real disk would have
//! made durable apart from what was only written, and builds the image a power cut leaves.
//!
//! The model. Reads see every write at once (the page cache). A write or a length change
//! reaches the platter only at the next `sync_data`; until then, when the power goes, each
//! write independently is either
//! - applied whole,
//! - dropped, or
//! - torn: some of its 512-byte sectors landed (a prefix of them, as a disk writing in order
//!   leaves, or any subset, as a disk reordering its queue leaves) and the rest did not;
//!
//! and the file length is the one it had at some moment since the last flush (a size change
//! is metadata that reaches the disk in order, or not yet): bytes past that end are gone, and
//! what a lost growth would have held reads as zeros. What was flushed is never lost.
//!
//! Two ways to crash, sharing that model. Live: the disk dies at a chosen mutating operation,
//! which fails with an I/O error as every later one does (reads too), so the store sees the
//! error paths a dying disk shows it, and whatever it answered after that counts. Replayed: every mutating operation is logged,
//! and [`Replay`] walks the log and builds the image of a crash just before any operation in
//! it, so one run of a workload yields a crash point per operation. Reads and length queries
//! are not crash points of their own: a crash between two of them leaves the image a crash at
//! the next mutating operation leaves.

use std::io::{Error, ErrorKind};
use std::sync::{Arc, Mutex};

use redb::StorageBackend;

pub const SECTOR: usize = 512;

/// A small seeded generator (SplitMix64), so a failing crash point can be run again.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// One mutating operation, as the store made it.
#[derive(Debug, Clone)]
pub enum Op {
    Write { offset: u64, data: Vec<u8> },
    SetLen(u64),
    Sync,
}

#[derive(Debug, Default)]
struct State {
    live: Vec<u8>,
    /// Every mutating operation that succeeded, in order.
    log: Vec<Op>,
    /// Where in `log` the last `sync_data` is.
    last_sync: Option<usize>,
    /// The mutating operation (0-based) at which the disk dies.
    freeze_at: Option<usize>,
    frozen: bool,
}

/// The backend. Clones share one disk, so the test keeps a handle while redb owns another.
#[derive(Debug, Clone, Default)]
pub struct CrashDisk(Arc<Mutex<State>>);

fn dead() -> Error {
    Error::other("the disk lost power")
}

impl CrashDisk {
    /// A disk whose mutating operation number `freeze_at` (from 0) fails, as does every
    /// operation after it (never with `None`): its log then holds `freeze_at` operations.
    pub fn new(freeze_at: Option<usize>) -> CrashDisk {
        let d = CrashDisk::default();
        d.state().freeze_at = freeze_at;
        d
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic elsewhere while holding the lock leaves the state as it was: read through.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Cuts the power now (the store's own shutdown then writes nothing).
    pub fn freeze(&self) {
        self.state().frozen = true;
    }

    pub fn is_frozen(&self) -> bool {
        self.state().frozen
    }

    /// The index in the log of the last flush so far: whatever was acknowledged after it
    /// was durable by a crash at any later point.
    pub fn last_sync(&self) -> Option<usize> {
        self.state().last_sync
    }

    /// The operations so far.
    pub fn log(&self) -> Vec<Op> {
        self.state().log.clone()
    }

    /// Counts a mutating operation; `false` once the disk is dead.
    fn admit(s: &mut State) -> bool {
        if s.frozen || s.freeze_at.is_some_and(|f| s.log.len() >= f) {
            s.frozen = true;
            return false;
        }
        true
    }
}

impl StorageBackend for CrashDisk {
    fn len(&self) -> std::io::Result<u64> {
        let s = self.state();
        if s.frozen {
            return Err(dead());
        }
        Ok(s.live.len() as u64)
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> std::io::Result<()> {
        let s = self.state();
        if s.frozen {
            return Err(dead());
        }
        let start = usize::try_from(offset).map_err(|_| Error::from(ErrorKind::InvalidInput))?;
        let src = s
            .live
            .get(start..start + out.len())
            .ok_or_else(|| Error::from(ErrorKind::UnexpectedEof))?;
        out.copy_from_slice(src);
        Ok(())
    }

    fn set_len(&self, len: u64) -> std::io::Result<()> {
        let mut s = self.state();
        if !Self::admit(&mut s) {
            return Err(dead());
        }
        let n = usize::try_from(len).map_err(|_| Error::from(ErrorKind::InvalidInput))?;
        s.live.resize(n, 0);
        s.log.push(Op::SetLen(len));
        Ok(())
    }

    fn sync_data(&self) -> std::io::Result<()> {
        let mut s = self.state();
        if !Self::admit(&mut s) {
            return Err(dead());
        }
        s.log.push(Op::Sync);
        s.last_sync = Some(s.log.len() - 1);
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> std::io::Result<()> {
        let mut s = self.state();
        if !Self::admit(&mut s) {
            return Err(dead());
        }
        let start = usize::try_from(offset).map_err(|_| Error::from(ErrorKind::InvalidInput))?;
        // Like a file: a write past the end extends it.
        if s.live.len() < start + data.len() {
            s.live.resize(start + data.len(), 0);
        }
        s.live[start..start + data.len()].copy_from_slice(data);
        s.log.push(Op::Write {
            offset,
            data: data.to_vec(),
        });
        Ok(())
    }
}

/// What happens to one unflushed write in a crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Applied,
    Dropped,
    /// Sectors from the start, up to (not including) this one.
    TornPrefix(usize),
    /// Each sector a coin flip.
    TornSubset,
}

/// Walks a log forward and builds crash images. With `honest_sync: false` it models a disk
/// that acknowledges `sync_data` without persisting anything (the negative control): then
/// nothing is ever durable and every write stays at the mercy of the crash.
pub struct Replay<'a> {
    log: &'a [Op],
    honest_sync: bool,
    /// The image as of the last flush before `at`.
    durable: Vec<u8>,
    /// Operations after that flush and before `at`.
    pending: std::ops::Range<usize>,
    at: usize,
}

impl<'a> Replay<'a> {
    pub fn new(log: &'a [Op], honest_sync: bool) -> Replay<'a> {
        Replay {
            log,
            honest_sync,
            durable: Vec::new(),
            pending: 0..0,
            at: 0,
        }
    }

    /// Moves to a crash just before operation `n` (`n` ≥ the current point, ≤ the log's length).
    pub fn advance_to(&mut self, n: usize) {
        assert!(n >= self.at && n <= self.log.len());
        for i in self.at..n {
            if matches!(self.log[i], Op::Sync) && self.honest_sync {
                for op in &self.log[self.pending.start..i] {
                    apply(&mut self.durable, op);
                }
                self.pending = i + 1..i + 1;
            }
        }
        self.pending.end = n;
        self.at = n;
    }

    /// The operations that were in flight: not flushed at this crash point.
    pub fn unflushed(&self) -> usize {
        self.pending.len()
    }

    /// One image a crash at this point may leave.
    pub fn image(&self, rng: &mut Rng) -> Vec<u8> {
        let ops = &self.log[self.pending.clone()];
        // The length: the one the file had after some prefix of the pending size changes.
        let resizes = ops.iter().filter(|o| matches!(o, Op::SetLen(_))).count();
        let kept_resizes = rng.below(resizes as u64 + 1) as usize;
        let mut image = self.durable.clone();
        let mut seen = 0;
        for op in ops {
            match op {
                Op::SetLen(len) => {
                    if seen < kept_resizes {
                        image.resize(*len as usize, 0);
                    }
                    seen += 1;
                }
                Op::Write { offset, data } => {
                    let fate = match rng.below(4) {
                        0 => Fate::Applied,
                        1 => Fate::Dropped,
                        2 => {
                            Fate::TornPrefix(rng.below(sectors(*offset, data.len()) as u64) as usize)
                        }
                        _ => Fate::TornSubset,
                    };
                    write_fated(&mut image, *offset, data, fate, rng);
                }
                // Only a disk that lies about its flushes has them among the pending.
                Op::Sync => {}
            }
        }
        image
    }
}

fn apply(image: &mut Vec<u8>, op: &Op) {
    match op {
        Op::Write { offset, data } => {
            let start = *offset as usize;
            if image.len() < start + data.len() {
                image.resize(start + data.len(), 0);
            }
            image[start..start + data.len()].copy_from_slice(data);
        }
        Op::SetLen(len) => image.resize(*len as usize, 0),
        Op::Sync => {}
    }
}

/// The disk sectors a write touches.
fn sectors(offset: u64, len: usize) -> usize {
    let first = offset as usize / SECTOR;
    let last = (offset as usize + len).div_ceil(SECTOR);
    (last - first).max(1)
}

/// Lays the surviving sectors of a write over `image`; bytes past the image's end are lost
/// (their size change did not reach the disk).
fn write_fated(image: &mut [u8], offset: u64, data: &[u8], fate: Fate, rng: &mut Rng) {
    let start = offset as usize;
    let first_sector = start / SECTOR;
    let mut i = 0;
    while i < data.len() {
        let at = start + i;
        let sector = at / SECTOR - first_sector;
        let end = ((at / SECTOR + 1) * SECTOR - start).min(data.len());
        let lands = match fate {
            Fate::Applied => true,
            Fate::Dropped => false,
            Fate::TornPrefix(k) => sector < k,
            Fate::TornSubset => rng.below(2) == 0,
        };
        if lands && at < image.len() {
            let stop = (start + end).min(image.len());
            image[at..stop].copy_from_slice(&data[i..stop - start]);
        }
        i = end;
    }
}

/// The disk after the power came back: it holds a crash image, in memory. (redb's own
/// in-memory backend would first zero-fill the image's length and then copy it in.)
#[derive(Debug)]
pub struct MemDisk(Mutex<Vec<u8>>);

impl MemDisk {
    pub fn new(image: Vec<u8>) -> MemDisk {
        MemDisk(Mutex::new(image))
    }

    fn bytes(&self) -> std::sync::MutexGuard<'_, Vec<u8>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl StorageBackend for MemDisk {
    fn len(&self) -> std::io::Result<u64> {
        Ok(self.bytes().len() as u64)
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> std::io::Result<()> {
        let b = self.bytes();
        let start = usize::try_from(offset).map_err(|_| Error::from(ErrorKind::InvalidInput))?;
        let src = b
            .get(start..start + out.len())
            .ok_or_else(|| Error::from(ErrorKind::UnexpectedEof))?;
        out.copy_from_slice(src);
        Ok(())
    }

    fn set_len(&self, len: u64) -> std::io::Result<()> {
        let n = usize::try_from(len).map_err(|_| Error::from(ErrorKind::InvalidInput))?;
        self.bytes().resize(n, 0);
        Ok(())
    }

    fn sync_data(&self) -> std::io::Result<()> {
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> std::io::Result<()> {
        let mut b = self.bytes();
        let start = usize::try_from(offset).map_err(|_| Error::from(ErrorKind::InvalidInput))?;
        if b.len() < start + data.len() {
            b.resize(start + data.len(), 0);
        }
        b[start..start + data.len()].copy_from_slice(data);
        Ok(())
    }
}
