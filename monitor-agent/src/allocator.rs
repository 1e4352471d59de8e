//! Giving freed memory back to the system. The binary's allocator (mimalloc) keeps freed
//! pages in the thread that freed them, and returns them to the OS only a second later, the
//! next time some thread allocates: an agent that went quiet kept its last garbage resident,
//! such as the kernel's BTF parsed at startup (26 MiB at idle where 6 are in use).
//!
//! Returning pages at once everywhere costs the data path about a fifth of its CPU per call
//! (records are freed by another thread than the one that built them, so pages empty and
//! refill all the time): only startup runs that way.

use libmimalloc_sys::{mi_collect, mi_option_get, mi_option_set, mi_option_t};

/// `mi_option_purge_delay` in `mimalloc.h` (v2 and v3 alike); the crate names no constant
/// for it.
const PURGE_DELAY: mi_option_t = 15;

/// Runs the agent's startup with freed memory going back to the OS at once, hands back what
/// the calling thread still keeps, then restores the allocator's delay for the data path.
pub(crate) fn starting_up<T>(startup: impl FnOnce() -> T) -> T {
    // SAFETY: these take no pointers. Setting an option races only with another thread
    // reading it, which reads one of the two values.
    let delay = unsafe { mi_option_get(PURGE_DELAY) };
    unsafe { mi_option_set(PURGE_DELAY, 0) };
    let started = startup();
    unsafe {
        mi_collect(true);
        mi_option_set(PURGE_DELAY, delay);
    }
    started
}

/// Hands back the free pages the calling thread has kept for a while. Cheap: for a
/// thread's periodic housekeeping, so that memory freed by a wave of closed connections
/// goes back even when traffic stops.
pub(crate) fn tidy() {
    // SAFETY: takes no pointers; may be called from any thread at any time. Without
    // mimalloc as the global allocator it only sweeps mimalloc's own empty heap.
    unsafe { mi_collect(false) }
}
