//! Bounding what glibc's allocator keeps.
//!
//! Under heavy writes the process's live heap stays flat (redb's page cache plus the document
//! cache), but its RSS does not: once a large block served by `mmap` is freed, glibc raises
//! its mmap threshold, and the large transient buffers that follow (document saves, commit
//! pages) come from per-thread arenas, which keep the memory. BENCHMARKS.md measured 476 MB of
//! RSS against 33 MB of live heap that way, and 46 MB with the threshold fixed at 128 KiB. So
//! the threshold is fixed at start: blocks of 128 KiB and more always go back to the system
//! when freed. Throughput was the same.
//!
//! The arenas are bounded too, at one per core (glibc's default is eight per core). Limiting
//! them did not help against the threshold alone, but since local commands do their Automerge
//! work on the blocking pool, each of its many threads would otherwise get an arena that
//! keeps its own free memory: the store bench at 100,000 conversations ended at 294 MB of RSS
//! without the bound and at 132 MB with it, the live heap 70 MB in both (BENCHMARKS.md).
//!
//! An operator who sets `MALLOC_MMAP_THRESHOLD_` or `MALLOC_ARENA_MAX` (or runs another
//! allocator) keeps that choice.

/// The mmap threshold set at start.
pub const MMAP_THRESHOLD: usize = 128 * 1024;

/// Fixes glibc's mmap threshold at [`MMAP_THRESHOLD`] and its arenas at one per core, each
/// unless the environment chose it. Returns whether the threshold was set. Call once, early;
/// a no-op on other C libraries.
pub fn bound() -> bool {
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        set(Knob::ArenaMax, cores.max(2));
    }
    if std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_some() {
        return false;
    }
    set(Knob::MmapThreshold, MMAP_THRESHOLD)
}

enum Knob {
    MmapThreshold,
    ArenaMax,
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn set(knob: Knob, value: usize) -> bool {
    let param = match knob {
        Knob::MmapThreshold => libc::M_MMAP_THRESHOLD,
        Knob::ArenaMax => libc::M_ARENA_MAX,
    };
    let value = libc::c_int::try_from(value).unwrap_or(libc::c_int::MAX);
    // SAFETY: mallopt only changes allocator parameters; it is called before other threads
    // exist (at the top of main) or, in benches, before the store is opened.
    unsafe { libc::mallopt(param, value) == 1 }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn set(_knob: Knob, _value: usize) -> bool {
    false
}
