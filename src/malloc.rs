//! Bounding what glibc's allocator keeps.
//!
//! Under heavy writes the process's live heap stays flat (redb's page cache plus the document
//! cache), but its RSS does not: once a large block served by `mmap` is freed, glibc raises
//! its mmap threshold, and the large transient buffers that follow (document saves, commit
//! pages) come from per-thread arenas, which keep the memory. BENCHMARKS.md measured 476 MB of
//! RSS against 33 MB of live heap that way, and 46 MB with the threshold fixed at 128 KiB;
//! limiting the number of arenas did not help. So the threshold is fixed at start: blocks of
//! 128 KiB and more always go back to the system when freed. Throughput was the same.
//!
//! An operator who sets `MALLOC_MMAP_THRESHOLD_` (or runs another allocator) keeps the choice.

/// The mmap threshold set at start.
pub const MMAP_THRESHOLD: usize = 128 * 1024;

/// Fixes glibc's mmap threshold at [`MMAP_THRESHOLD`] unless the environment chose one.
/// Returns whether it was set. Call once, early; a no-op on other C libraries.
pub fn bound() -> bool {
    if std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_some() {
        return false;
    }
    set_threshold()
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn set_threshold() -> bool {
    // SAFETY: mallopt only changes allocator parameters; it is called before other threads
    // exist (at the top of main) or, in benches, before the store is opened.
    unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD as libc::c_int) == 1 }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn set_threshold() -> bool {
    false
}
