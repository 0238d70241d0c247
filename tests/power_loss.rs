//! Power loss: "a 2xx means durable", proven over thousands of crash points.
//!
//! `tests/crash.rs` kills the process, which leaves the kernel's page cache to finish every
//! write: it shows that no answer goes out before its commit was written, not that the commit
//! was flushed. A power cut is harsher. Whatever was written but not yet flushed may be on
//! the disk whole, not at all, or torn at sector boundaries, and the file length may not have
//! reached the disk either. If a commit were answered before its last `sync_data`, or if redb
//! (with quick repair, as Parley runs it) could be left by such a cut with a file it cannot
//! open, a user would have been told "saved" for a reply that is gone, or lose the node.
//!
//! The store runs here on a disk that loses power (`common::crash_disk`), under a workload
//! through the real service (`common::power`): concurrent writers making conversations,
//! replies, team notes, read marks, users, a token and an attached file. Each run cuts the
//! power live at a random operation, and its log of operations is replayed to cut it just
//! before every operation up to there, each with its own random fate for every unflushed
//! write. After each cut: `parley check`'s offline check passes on the crashed file, the node
//! starts on it, every acknowledged write is there, every conversation is whole or absent,
//! the live check passes, and the node takes one more write.
//!
//! `PARLEY_CRASH_POINTS` (default 10,000) sets how many crash points run, and
//! `PARLEY_CRASH_SEED` the seed, which fixes where each cut strikes and what becomes of
//! every unflushed write (the writers' interleaving is the scheduler's). A failure names its
//! seed, run and operation.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use common::crash_disk::{CrashDisk, Op, Replay, Rng};
use common::power::{Ledger, workload};
use common::power_verify::{Depth, verify};

const WRITERS: usize = 3;
const ROUNDS: usize = 1;
const THREADS: usize = 2;
/// Every crash point gets the restart, the reads of every acknowledged write and the next
/// write. `parley check` (every document against its indexes, and every page checksum) runs
/// on one point in 4, and the restarted node's own check on one in 16, so that 10,000 points
/// fit in a CI run of a debug build.
const OFFLINE_CHECK_EVERY: u64 = 4;
const LIVE_CHECK_EVERY: u64 = 16;

struct Plan {
    points: usize,
    seed: u64,
    /// `false`: the disk acknowledges `sync_data` without persisting anything.
    honest_sync: bool,
    /// Stop at the first failure (the real test); the negative control counts them all.
    stop_at_failure: bool,
}

#[derive(Debug, Default)]
struct Outcome {
    points: usize,
    runs: usize,
    unflushed: usize,
    failures: Vec<String>,
}

/// One run of the workload on a disk that dies at operation `freeze` (from 0; never: `None`).
fn run(
    rt: &tokio::runtime::Runtime,
    dir: &std::path::Path,
    freeze: Option<usize>,
    seed: u64,
) -> (Vec<Op>, Ledger) {
    let disk = CrashDisk::new(freeze);
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    rt.block_on(workload(dir, &disk, &ledger, WRITERS, ROUNDS, seed));
    let ledger = std::mem::take(&mut *ledger.lock().unwrap());
    (disk.log(), ledger)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn env_number(name: &str) -> Option<u64> {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().replace('_', "").parse().ok())
}

fn crash_points(plan: Plan) -> Outcome {
    // A full run first: its length is the range the live cuts of the other runs fall in.
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let full = run(&rt, dir.path(), None, plan.seed);
    let full_len = full.0.len() as u64;
    drop(rt);
    let first = Mutex::new(Some(full));
    let done = AtomicUsize::new(0);
    let next_run = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let outcome = Mutex::new(Outcome::default());
    std::thread::scope(|s| {
        for _ in 0..THREADS {
            s.spawn(|| {
                let rt = runtime();
                let dir = tempfile::tempdir().unwrap();
                loop {
                    if stop.load(Ordering::Acquire) || done.load(Ordering::Acquire) >= plan.points {
                        return;
                    }
                    let r = next_run.fetch_add(1, Ordering::AcqRel);
                    let seed = plan
                        .seed
                        .wrapping_add(r.wrapping_mul(0x9E37_79B9_7F4A_7C15));
                    let mut rng = Rng::new(seed);
                    let prepared = if r == 0 {
                        first.lock().unwrap().take()
                    } else {
                        None
                    };
                    let (log, ledger) = prepared.unwrap_or_else(|| {
                        let freeze = 1 + rng.below(full_len) as usize;
                        run(&rt, dir.path(), Some(freeze), seed)
                    });
                    let mut replay = Replay::new(&log, plan.honest_sync);
                    let (mut points, mut unflushed, mut failures) = (0, 0, vec![]);
                    for n in 1..=log.len() {
                        if stop.load(Ordering::Acquire)
                            || done.fetch_add(1, Ordering::AcqRel) >= plan.points
                        {
                            break;
                        }
                        replay.advance_to(n);
                        let image = replay.image(&mut rng);
                        points += 1;
                        unflushed += replay.unflushed();
                        // Drawn, not by position: commits have a rhythm of operations that
                        // a fixed stride could fall in step with.
                        let depth = Depth {
                            offline_check: rng.below(OFFLINE_CHECK_EVERY) == 0,
                            live_check: rng.below(LIVE_CHECK_EVERY) == 0,
                        };
                        if let Err(e) = rt.block_on(verify(dir.path(), image, &ledger, n, depth)) {
                            failures.push(format!(
                                "PARLEY_CRASH_SEED={} run {r}: a crash before operation {n} of {} \
                                 ({} unflushed): {e}",
                                plan.seed,
                                log.len(),
                                replay.unflushed()
                            ));
                            if plan.stop_at_failure {
                                stop.store(true, Ordering::Release);
                            }
                        }
                    }
                    let mut o = outcome.lock().unwrap();
                    o.points += points;
                    o.runs += 1;
                    o.unflushed += unflushed;
                    o.failures.extend(failures);
                }
            });
        }
    });
    outcome.into_inner().unwrap()
}

#[test]
fn every_acknowledged_write_survives_power_loss_at_any_point() {
    let points = env_number("PARLEY_CRASH_POINTS").unwrap_or(10_000) as usize;
    let seed = env_number("PARLEY_CRASH_SEED").unwrap_or(0x9A7_1E7);
    let started = Instant::now();
    let o = crash_points(Plan {
        points,
        seed,
        honest_sync: true,
        stop_at_failure: true,
    });
    println!(
        "power loss: {} crash points in {:.1} s over {} runs (seed {seed}; {:.1} unflushed operations per crash on average)",
        o.points,
        started.elapsed().as_secs_f64(),
        o.runs,
        o.unflushed as f64 / o.points.max(1) as f64
    );
    assert!(o.failures.is_empty(), "{}", o.failures.join("\n"));
    assert!(o.points >= points, "only {} crash points ran", o.points);
}

/// The negative control: the same harness on a disk that acknowledges `sync_data` without
/// persisting anything must find acknowledged writes lost (or the node unable to start), so
/// the test above is known to catch a store whose answers run ahead of the disk.
#[test]
fn a_disk_that_does_not_persist_its_flushes_is_caught() {
    let o = crash_points(Plan {
        points: 300,
        seed: 0x5EED,
        honest_sync: false,
        stop_at_failure: false,
    });
    let lost = o.failures.iter().filter(|f| f.contains("is lost")).count();
    println!(
        "lying disk: {} of {} crash points failed, {lost} of them with an acknowledged write lost",
        o.failures.len(),
        o.points
    );
    assert!(
        lost > 0,
        "no acknowledged write was found lost: {:?}",
        o.failures
    );
}

/// The first crash point the harness found: the power went while redb created the file (it
/// sets the length, writes the header, flushes, and only then writes its magic number). The
/// file holds nothing, so the node must start on it, and `parley check` must find nothing
/// wrong; a file with data past its header but no magic number is a damaged database and is
/// still refused, untouched.
#[test]
fn a_database_file_cut_off_while_first_created_is_made_afresh() {
    use parley::store::check::check_offline;
    use parley::store::{Store, StoreError};

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("parley.redb");
    let mut unfinished = vec![0u8; 1 << 20];
    unfinished[9..320].fill(0x5A);
    std::fs::write(&path, &unfinished).unwrap();
    let report = check_offline(dir.path()).unwrap();
    assert!(report.is_clean(), "{report:?}");
    let store = Store::open(dir.path(), common::power::options()).unwrap();
    store.shutdown();
    drop(store);
    assert!(check_offline(dir.path()).unwrap().is_clean());

    let damaged_dir = tempfile::tempdir().unwrap();
    let damaged_path = damaged_dir.path().join("parley.redb");
    let mut damaged = unfinished;
    damaged[300_000] = 1;
    std::fs::write(&damaged_path, &damaged).unwrap();
    let refused = Store::open(damaged_dir.path(), common::power::options());
    assert!(
        matches!(refused, Err(StoreError::Db(_) | StoreError::Unopenable(..))),
        "a damaged file must be refused, not replaced"
    );
    assert_eq!(
        std::fs::read(&damaged_path).unwrap(),
        damaged,
        "and left as it was"
    );
}
