//! Descriptor → socket cache: what `(process, fd)` is, learnt once by walking the
//! process's descriptor table (`sock::describe`) and then known for the descriptor's life,
//! so a data syscall costs a map lookup instead of a dozen kernel reads.
//!
//! An answer stays true until the descriptor is closed or replaced, and each way that can
//! happen is hooked (at the syscall's entry: a thread that uses a descriptor while
//! another closes it may cache what it was, as it may use it): `close` forgets the
//! descriptor; `dup2`/`dup3` forget the
//! one they replace; `close_range`, `exec` (close-on-exec descriptors) and the creation of
//! a process (whose id may be a recycled one's) forget all of a process's descriptors at
//! once, by moving its epoch on, which every cached answer is checked against. `connect`
//! and `accept` always walk, so a socket that took over a descriptor closed some way that
//! is not hooked (io_uring, whose traffic is not captured either) is learnt afresh when it
//! connects. Only open descriptors are cached, so one that is not open yet cannot be
//! remembered as "not a socket".

use aya_ebpf::{
    helpers::bpf_get_current_pid_tgid,
    macros::map,
    maps::{Array, LruHashMap},
};
use monitor_common::counter;

use crate::{
    maps::count,
    sock::{describe, Descriptor},
};

#[repr(C)]
#[derive(Clone, Copy)]
struct FdKey {
    tgid: u32,
    fd: i32,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct FdEntry {
    /// The `struct sock` of a TCP socket; 0 for any other open descriptor.
    sock: u64,
    /// The process's epoch when this was learnt: stale once the epoch has moved on.
    epoch: u64,
}

/// LRU: an answer evicted is only walked for again (counted in `FD_WALKS`).
#[map]
static FDS: LruHashMap<FdKey, FdEntry> = LruHashMap::with_max_entries(65536, 0);

/// Slots of `EPOCHS`; processes whose ids share a slot share an epoch, so one's events
/// make the other walk again, never keep a stale answer.
const EPOCH_SLOTS: u32 = 65536;

/// Per process (by id modulo `EPOCH_SLOTS`): moved on whenever all of a process's
/// descriptors may have changed at once.
#[map]
static EPOCHS: Array<u64> = Array::with_max_entries(EPOCH_SLOTS, 0);

#[inline(always)]
fn epoch(tgid: u32) -> u64 {
    EPOCHS.get(tgid & (EPOCH_SLOTS - 1)).copied().unwrap_or(0)
}

#[inline(always)]
fn key(fd: i32) -> FdKey {
    FdKey {
        tgid: (bpf_get_current_pid_tgid() >> 32) as u32,
        fd,
    }
}

/// The `struct sock` of `fd` in the current process when it is an IPv4/IPv6 TCP socket.
#[inline(always)]
pub(crate) fn tcp_sock(fd: i32) -> Option<u64> {
    if fd < 0 {
        return None;
    }
    let key = key(fd);
    let epoch = epoch(key.tgid);
    // SAFETY: the value is copied out at once.
    if let Some(e) = unsafe { FDS.get(key) }.copied() {
        if e.epoch == epoch {
            return (e.sock != 0).then_some(e.sock);
        }
    }
    learn(key, epoch)
}

/// `tcp_sock` from a fresh walk, whatever the cache says: for a descriptor that has just
/// become a connection.
#[inline(always)]
pub(crate) fn tcp_sock_fresh(fd: i32) -> Option<u64> {
    if fd < 0 {
        return None;
    }
    let key = key(fd);
    learn(key, epoch(key.tgid))
}

/// Walks to `key`'s descriptor and caches the answer as of `epoch` (read before the walk,
/// so a change during it leaves the answer stale, not wrong).
#[inline(always)]
fn learn(key: FdKey, epoch: u64) -> Option<u64> {
    count(counter::FD_WALKS, 1);
    let sock = match describe(key.fd) {
        Descriptor::Tcp(sk) => sk,
        Descriptor::Other => 0,
        Descriptor::Unknown => {
            let _ = FDS.remove(key);
            return None;
        }
    };
    let _ = FDS.insert(key, FdEntry { sock, epoch }, 0);
    (sock != 0).then_some(sock)
}

/// The current process closed or replaced `fd`.
#[inline(always)]
pub(crate) fn forget(fd: i32) {
    let _ = FDS.remove(key(fd));
}

/// Every descriptor of process `tgid` may have changed.
#[inline(always)]
pub(crate) fn forget_all(tgid: u32) {
    if let Some(p) = EPOCHS.get_ptr_mut(tgid & (EPOCH_SLOTS - 1)) {
        // SAFETY: a map value, alive while the program runs. Not atomic (the BPF target
        // has no atomics in Rust): two bumps of one slot at once may move it on by one
        // instead of two, which still makes every earlier answer stale.
        unsafe { *p += 1 };
    }
}
