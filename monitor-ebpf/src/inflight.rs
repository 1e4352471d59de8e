//! What a thread's syscall entry leaves for its exit: the arguments of a read (or connect)
//! on a socket, needed once the kernel has said how many bytes moved.
//!
//! Kept in task-local storage: one slot per thread, found from the thread itself in
//! constant time whatever the load, and freed by the kernel when the thread exits. A hash
//! keyed by thread costs more per lookup as it fills, takes a bucket lock on every insert
//! and remove, and keeps the entries of threads that died in a syscall until swept.
//!
//! Reads already blocked when the agent attached never ran the entry program: the agent
//! writes those (`BLOCKED_READS`, keyed by pid_tgid), and exits look there only while the
//! agent says some are left (`BLOCKED_READS_LEFT`), so an ordinary exit pays nothing for it.

use aya_ebpf::{
    bindings::{bpf_map_type::BPF_MAP_TYPE_TASK_STORAGE, BPF_F_NO_PREALLOC},
    helpers::{
        bpf_get_current_pid_tgid,
        generated::{bpf_get_current_task_btf, bpf_task_storage_get},
    },
    macros::{btf_map, map},
    maps::{Array, HashMap},
};
use monitor_common::SyscallArgs;

/// `BPF_LOCAL_STORAGE_GET_F_CREATE`.
const CREATE: u64 = 1;

/// A task-local storage map in the BTF map format (aya-ebpf 0.2 has no wrapper for it):
/// the loader reads the map's type, key, value and flags from these fields' types.
#[repr(C)]
pub(crate) struct TaskStorage<T> {
    r#type: *const [i32; BPF_MAP_TYPE_TASK_STORAGE as usize],
    key: *const i32,
    value: *const T,
    max_entries: *const [i32; 0],
    map_flags: *const [i32; BPF_F_NO_PREALLOC as usize],
}

// SAFETY: placeholder pointers the loader patches, never dereferenced.
unsafe impl<T> Sync for TaskStorage<T> {}

impl<T> TaskStorage<T> {
    const fn new() -> Self {
        TaskStorage {
            r#type: core::ptr::null(),
            key: core::ptr::null(),
            value: core::ptr::null(),
            max_entries: core::ptr::null(),
            map_flags: core::ptr::null(),
        }
    }

    /// The current thread's value; created (zeroed) first when `create`. Null when the
    /// kernel has none or cannot make one (out of memory, or another BPF program is using
    /// this thread's storage on this CPU).
    #[inline(always)]
    fn current(&self, create: bool) -> *mut T {
        // SAFETY: the map pointer is this static's; the task is the current one, which the
        // helper takes as a trusted BTF pointer.
        unsafe {
            bpf_task_storage_get(
                core::ptr::from_ref(self).cast_mut().cast(),
                bpf_get_current_task_btf(),
                core::ptr::null_mut(),
                if create { CREATE } else { 0 },
            )
            .cast()
        }
    }
}

/// The calling thread's syscall in flight; `shape` 0 when there is none.
#[btf_map]
static IN_FLIGHT: TaskStorage<SyscallArgs> = TaskStorage::new();

/// Reads that were blocked when the agent attached, by pid_tgid: written by the agent,
/// taken by the exit. Sized by `--kernel-inflight-syscalls`.
#[map]
pub(crate) static BLOCKED_READS: HashMap<u64, SyscallArgs> = HashMap::with_max_entries(32768, 0);

/// Slot 0 is non-zero while `BLOCKED_READS` may hold entries; the agent clears it once the
/// table is empty (nothing else adds to it).
#[map]
static BLOCKED_READS_LEFT: Array<u32> = Array::with_max_entries(1, 0);

/// Keeps `args` for this thread's syscall exit; false when there is no room for it.
#[inline(always)]
pub(crate) fn keep(args: SyscallArgs) -> bool {
    let slot = IN_FLIGHT.current(true);
    if slot.is_null() {
        return false;
    }
    // SAFETY: a map value the helper returned for this thread.
    unsafe { *slot = args };
    true
}

/// Takes back what this thread's syscall entry kept, or what the agent wrote for a read
/// this thread was already blocked in when the agent attached.
#[inline(always)]
pub(crate) fn take() -> Option<SyscallArgs> {
    let slot = IN_FLIGHT.current(false);
    if !slot.is_null() {
        // SAFETY: a map value the helper returned for this thread.
        let args = unsafe { &mut *slot };
        if args.shape != 0 {
            let kept = *args;
            args.shape = 0;
            return Some(kept);
        }
    }
    if BLOCKED_READS_LEFT.get(0).is_none_or(|left| *left == 0) {
        return None;
    }
    let id = bpf_get_current_pid_tgid();
    // SAFETY: copied out before removal.
    let args = unsafe { *BLOCKED_READS.get(id)? };
    let _ = BLOCKED_READS.remove(id);
    Some(args)
}
