//! Building ring-buffer records in the per-CPU scratch buffer.

use aya_ebpf::helpers::{
    bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_ktime_get_ns,
    bpf_probe_read_kernel_str_bytes,
    generated::{bpf_probe_read_kernel, bpf_probe_read_user},
};
use monitor_common::{counter, Direction, EventKind, HEADER_SIZE, MAX_DATA, MAX_IOV};

use aya_ebpf::bindings::BPF_RB_NO_WAKEUP;

use crate::maps::{count, ConnState, EventBuffer, EVENTS, SCRATCH};

/// Identity of the connection and direction every record of one syscall shares.
pub(crate) struct Origin<'a> {
    pub sock: u64,
    pub conn: &'a ConnState,
    pub fd: i32,
    /// `None` for records of no direction (a close).
    pub direction: Option<Direction>,
    /// `FLAG_*` bits, e.g. TLS plaintext.
    pub flags: u8,
}

/// Fills the header fields common to all records of one syscall and returns the scratch
/// buffer; the caller then sends one or more segments from it.
#[inline(always)]
pub(crate) fn start(origin: &Origin) -> Option<*mut EventBuffer> {
    let buf = SCRATCH.get_ptr_mut(0)?;
    // SAFETY: the per-CPU slot belongs to this program invocation.
    let h = unsafe { &mut (*buf).header };
    let id = bpf_get_current_pid_tgid();
    h.ts_ns = unsafe { bpf_ktime_get_ns() };
    let c = origin.conn;
    h.sock = origin.sock;
    h.conn_id = c.conn_id;
    h.pid = (id >> 32) as u32;
    h.tid = id as u32;
    h.fd = origin.fd;
    h.role = c.role as u8;
    h.direction = origin.direction.map_or(0, |d| d as u8);
    h.lost = origin.direction.map_or(0, |d| c.lost[d.index()]);
    h.flags = origin.flags;
    h.comm = bpf_get_current_comm().unwrap_or([0; 16]);
    h.family = c.family;
    h.local_port = c.local_port;
    h.remote_port = c.remote_port;
    h.local_addr = c.local_addr;
    h.remote_addr = c.remote_addr;
    Some(buf)
}

#[inline(always)]
fn submit(buf: *mut EventBuffer, len: usize) {
    let size = HEADER_SIZE + len;
    // SAFETY: `len <= MAX_DATA`, so the slice stays inside the scratch record.
    let bytes = unsafe { core::slice::from_raw_parts(buf as *const u8, size) };
    // Never wake the reader: a wakeup costs an interrupt and a context switch per record,
    // and even checking the fill level costs a helper call. The reader polls with a short
    // timeout and poll returns at once while data is waiting, so it drains continuously
    // under load and sleeps at most one timeout when idle.
    if EVENTS
        .output::<[u8]>(bytes, u64::from(BPF_RB_NO_WAKEUP))
        .is_ok()
    {
        count(counter::EVENTS, 1);
        count(counter::BYTES, len as u64);
    } else {
        count(counter::DROPS, 1);
        count(
            counter::DROPPED_BYTES,
            u64::from(unsafe { (*buf).header.orig_len }),
        );
    }
}

/// Where the bytes of a data record are copied from.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Source {
    /// The traced process's memory.
    User,
    /// A copy the programs already made in a map.
    Kernel,
}

/// Sends exactly `len` (at most `MAX_DATA`) bytes at user address `src`.
#[inline(always)]
pub(crate) fn send_bytes(buf: *mut EventBuffer, src: u64, len: usize, offset: u64) {
    send_record(buf, Source::User, src, len, len as u64, offset);
}

/// Sends `len` (at most `MAX_DATA`) bytes already copied into kernel memory at `src`, which
/// stand for the first bytes of `total` bytes of the stream.
#[inline(always)]
pub(crate) fn send_copied(
    buf: *mut EventBuffer,
    src: *const u8,
    len: usize,
    total: u64,
    offset: u64,
) {
    send_record(buf, Source::Kernel, src as u64, len, total, offset);
}

#[inline(always)]
fn send_record(
    buf: *mut EventBuffer,
    source: Source,
    src: u64,
    len: usize,
    total: u64,
    offset: u64,
) {
    let mut len = if len > MAX_DATA { MAX_DATA } else { len };
    // SAFETY: scratch record owned by this invocation; `len` bounded above.
    unsafe {
        let dst = (*buf).data.as_mut_ptr().cast();
        let rc = match source {
            Source::User => bpf_probe_read_user(dst, len as u32, src as *const _),
            Source::Kernel => bpf_probe_read_kernel(dst, len as u32, src as *const _),
        };
        if rc != 0 {
            count(counter::READ_ERRORS, 1);
            len = 0;
        }
    }
    send_data(buf, len, total, offset);
}

/// Sends the `len` bytes at the start of the scratch record's data as the bytes at stream
/// `offset`, standing for `total` bytes.
#[inline(always)]
pub(crate) fn send_data(buf: *mut EventBuffer, len: usize, total: u64, offset: u64) {
    let len = if len > MAX_DATA { MAX_DATA } else { len };
    // SAFETY: scratch record owned by this invocation.
    unsafe {
        let h = &mut (*buf).header;
        h.kind = EventKind::Data as u8;
        h.stream_offset = offset;
        h.orig_len = total as u32;
        h.len = len as u32;
    }
    submit(buf, len);
}

/// Copies the first `len` (at most `MAX_DATA`) bytes of a vectored call into the scratch
/// record's data, gathered from its `count` iovecs (address, length), to be sent as one
/// record (`send_data`) where a writer that sends a head and a body in two buffers would
/// otherwise make two; returns how many it copied (a buffer that cannot be read ends the
/// copy there).
#[inline(always)]
pub(crate) fn gather(
    buf: *mut EventBuffer,
    iovs: *const [[u64; 2]; MAX_IOV],
    count_: u64,
    len: u64,
) -> u64 {
    let mut at = 0u64;
    for k in 0..MAX_IOV {
        if k as u64 >= count_ || at >= len || at >= MAX_DATA as u64 {
            break;
        }
        // SAFETY: the job's copy of the iovec array, in the scratch record.
        let [base, size] = unsafe { core::ptr::read_volatile(core::ptr::addr_of!((*iovs)[k])) };
        let want = len - at;
        let part = if size < want { size } else { want };
        // Through memory: the compiler knows `part` is below MAX_DATA and would drop the
        // bound the verifier needs to see.
        // SAFETY: a local.
        let part = unsafe { core::ptr::read_volatile(&raw const part) };
        let part = if part > MAX_DATA as u64 {
            MAX_DATA
        } else {
            part as usize
        };
        let i = (at as usize) & (MAX_DATA - 1);
        // SAFETY: below MAX_DATA bytes at an offset below MAX_DATA: inside `data` and
        // `room`; `at + part` stays within MAX_DATA since `at + want` is `len`.
        let rc = unsafe {
            bpf_probe_read_user(
                (*buf).data.as_mut_ptr().add(i).cast(),
                part as u32,
                base as *const _,
            )
        };
        if rc != 0 {
            count(counter::READ_ERRORS, 1);
            break;
        }
        at += part as u64;
    }
    at
}

/// Reports `n` bytes that moved without being captured.
#[inline(always)]
pub(crate) fn send_gap(buf: *mut EventBuffer, n: u64, offset: u64) {
    // SAFETY: scratch record owned by this invocation.
    unsafe {
        let h = &mut (*buf).header;
        h.kind = EventKind::Gap as u8;
        h.stream_offset = offset;
        h.orig_len = n as u32;
        h.len = 0;
    }
    submit(buf, 0);
}

/// Longest executable path reported with an exec; longer ones are cut.
const EXE_MAX: usize = 256;

#[inline(always)]
/// `filename` points at the exec tracepoint's (kernel) copy of the path that was executed:
/// reported so the agent knows what a process is even when it exits before /proc can be read.
pub(crate) fn send_exec(filename: *const u8) {
    let Some(buf) = SCRATCH.get_ptr_mut(0) else {
        return;
    };
    let id = bpf_get_current_pid_tgid();
    // SAFETY: scratch record owned by this invocation.
    unsafe {
        let h = &mut (*buf).header;
        h.ts_ns = bpf_ktime_get_ns();
        h.kind = EventKind::Exec as u8;
        h.pid = (id >> 32) as u32;
        h.tid = id as u32;
        h.sock = 0;
        h.conn_id = 0;
        h.stream_offset = 0;
        h.orig_len = 0;
        h.len = 0;
        h.comm = bpf_get_current_comm().unwrap_or([0; 16]);
    }
    let mut len = 0;
    if !filename.is_null() {
        // SAFETY: the scratch record is ours; the source is kernel memory of the tracepoint.
        let dst = unsafe { &mut (&mut (*buf).data)[..EXE_MAX] };
        if let Ok(s) = unsafe { bpf_probe_read_kernel_str_bytes(filename, dst) } {
            len = s.len().min(EXE_MAX);
        }
    }
    // SAFETY: as above.
    unsafe { (*buf).header.len = len as u32 };
    submit(buf, len);
}

#[inline(always)]
pub(crate) fn send_close(buf: *mut EventBuffer) {
    // SAFETY: scratch record owned by this invocation.
    unsafe {
        let h = &mut (*buf).header;
        h.kind = EventKind::Close as u8;
        h.stream_offset = 0;
        h.orig_len = 0;
        h.len = 0;
    }
    submit(buf, 0);
}
