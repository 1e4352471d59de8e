//! Giving freed memory back to the system. The binary's allocator (mimalloc) keeps freed
//! pages in the thread that freed them, and by default returns them to the OS only a second
//! later, the next time some thread allocates: an agent that went quiet kept its last
//! garbage resident (the kernel's BTF parsed at startup, the state of a wave of connections
//! that has closed), 26 MiB at idle where 6 are in use.

/// `mi_option_purge_delay` in `mimalloc.h` (v2 and v3 alike); the crate names no constant
/// for it.
const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Pages the allocator's arenas get back go to the OS at once instead of after a delay.
pub(crate) fn configure() {
    // SAFETY: `mi_option_set` takes no pointers; options may be set at any time.
    unsafe { libmimalloc_sys::mi_option_set(PURGE_DELAY, 0) }
}

/// Hands every free page the calling thread keeps back to the arenas (and so to the OS).
/// Costly (it walks all of the thread's pages): for after startup, not the data path.
pub(crate) fn give_back() {
    // SAFETY: `mi_collect` takes no pointers and may be called from any thread at any time;
    // without mimalloc as the global allocator it only sweeps mimalloc's own empty heap.
    unsafe { libmimalloc_sys::mi_collect(true) }
}

/// Hands back the free pages the calling thread has kept for a while. Cheap: for a
/// thread's periodic housekeeping.
pub(crate) fn tidy() {
    // SAFETY: as in `give_back`.
    unsafe { libmimalloc_sys::mi_collect(false) }
}
