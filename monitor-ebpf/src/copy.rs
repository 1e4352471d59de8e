//! Copying one syscall's bytes into records: a message head in full (up to `HEAD_MAX`),
//! anything else as its first `MAX_DATA` and last `TAIL_DATA` bytes
//! (`monitor_common::head` decides which).
//!
//! One bounded loop sends one record per step, for every segment of the call. Its progress
//! lives in the scratch record, memory whose contents the verifier does not track, so at
//! each step it sees one state whatever path led there. The syscall exit runs it in a
//! program of its own (`copy_call`, by tail call): inside the exit handler the verifier
//! would walk it once for every path through classification, and exceed its budget.

use core::ptr::{addr_of, addr_of_mut, read_volatile, write_volatile};

use aya_ebpf::{
    helpers::bpf_probe_read_user,
    macros::{map, tracepoint},
    maps::ProgramArray,
    programs::TracePointContext,
};
use monitor_common::{counter, head, Direction, MAX_DATA, MAX_IOV};

use crate::{
    emit::{send_bytes, send_gap},
    maps::{count, EventBuffer, CONNS, SCRATCH},
};

/// Index 0 holds `copy_call`; filled by the agent before any program is attached.
#[map]
static COPY: ProgramArray = ProgramArray::with_max_entries(1, 0);

/// Records one flat buffer may need: a head of `HEAD_MAX`, then a tail.
pub(crate) const FLAT_RECORDS: usize = head::HEAD_RECORDS + 1;

/// Records one vectored call may use: a long head in one segment, the ends of the others.
pub(crate) const VECTOR_RECORDS: usize = head::HEAD_RECORDS + 2 * MAX_IOV;

/// Where a syscall's bytes are in the caller's memory.
#[derive(Clone, Copy)]
pub(crate) enum Source {
    Flat(u64),
    /// An iovec array and its entry count.
    Vector(u64, u64),
}

/// The copy in progress, kept in the per-CPU scratch record.
#[repr(C)]
pub(crate) struct Job {
    /// The connection (`CONNS` key) and [`Direction`] whose head budget the copy uses.
    sock: u64,
    direction: u64,
    /// The iovec array, or 0 for the one buffer at `flat`.
    iov: u64,
    iovcnt: u64,
    flat: u64,
    next_iov: u64,
    /// Bytes of the call not yet taken into a segment.
    unassigned: u64,
    /// Stream offset of the next segment.
    next_offset: u64,
    /// The current segment: its address, length (0 when there is none), stream offset,
    /// and how many of its bytes are handled.
    src: u64,
    len: u64,
    offset: u64,
    done: u64,
    /// Its plan (`head::Plan`) and what the head budget becomes after it.
    full: u64,
    tail: u64,
    open_left: u64,
    closes: u64,
}

macro_rules! get {
    ($job:expr, $field:ident) => {
        // SAFETY: the job is in the scratch record owned by this invocation.
        unsafe { read_volatile(addr_of!((*$job).$field)) }
    };
}

macro_rules! set {
    ($job:expr, $field:ident, $value:expr) => {
        // SAFETY: as in `get!`.
        unsafe { write_volatile(addr_of_mut!((*$job).$field), $value) }
    };
}

#[inline(always)]
pub(crate) fn user_u64(addr: u64) -> u64 {
    unsafe { bpf_probe_read_user(addr as *const u64).unwrap_or(0) }
}

/// Sends the `n` bytes a call moved, starting at stream `offset`, in at most `RECORDS`
/// records; whatever does not fit is reported as a gap. `head_left` is the direction's
/// head budget, carried from one segment to the next.
#[inline(always)]
pub(crate) fn send_call<const RECORDS: usize>(
    buf: *mut EventBuffer,
    head_left: *mut u32,
    source: Source,
    n: u64,
    offset: u64,
) {
    let job = begin(buf, source, n, offset);
    run::<RECORDS>(buf, job, head_left);
}

/// [`send_call`] for a syscall exit: the copy runs in `copy_call`, which finds the head
/// budget from `sock` and `direction`. This program ends with the tail call.
#[inline(always)]
pub(crate) fn send_call_later(
    ctx: &TracePointContext,
    buf: *mut EventBuffer,
    sock: u64,
    direction: Direction,
    source: Source,
    n: u64,
    offset: u64,
) {
    let job = begin(buf, source, n, offset);
    set!(job, sock, sock);
    set!(job, direction, direction as u64);
    // SAFETY: the ctx is this program's; on success the call does not return.
    unsafe { COPY.tail_call(ctx, 0) };
    // Only when the agent has not filled `COPY`, or the tail-call limit was reached.
    report_rest(buf, job);
}

/// The copying half of the data syscalls' exit, run by tail call from `sys_exit_data`
/// with the job in the scratch record.
#[tracepoint]
pub(crate) fn copy_call(_ctx: TracePointContext) -> u32 {
    let _ = try_copy_call();
    0
}

fn try_copy_call() -> Option<()> {
    let buf = SCRATCH.get_ptr_mut(0)?;
    // SAFETY: scratch record owned by this invocation.
    let job = unsafe { addr_of_mut!((*buf).job) };
    let Some(st) = CONNS.get_ptr_mut(get!(job, sock)) else {
        // Evicted between the two programs: nothing to carry the head budget in.
        report_rest(buf, job);
        return None;
    };
    let slot = usize::from(get!(job, direction) == Direction::Ingress as u64);
    // SAFETY: a field of the map value just looked up; `slot` is 0 or 1.
    let head_left = unsafe { addr_of_mut!((*st).head_left[slot & 1]) };
    run::<VECTOR_RECORDS>(buf, job, head_left);
    Some(())
}

/// Writes the job for a call into the scratch record.
#[inline(always)]
fn begin(buf: *mut EventBuffer, source: Source, n: u64, offset: u64) -> *mut Job {
    // SAFETY: scratch record owned by this invocation.
    let job = unsafe { addr_of_mut!((*buf).job) };
    let (iov, iovcnt, flat) = match source {
        Source::Flat(p) => (0, 0, p),
        Source::Vector(iov, count) => (iov, count, 0),
    };
    set!(job, iov, iov);
    set!(job, iovcnt, iovcnt);
    set!(job, flat, flat);
    set!(job, next_iov, 0);
    set!(job, unassigned, n);
    set!(job, next_offset, offset);
    set!(job, len, 0);
    job
}

/// Sends the job's records, then reports what did not fit.
#[inline(always)]
fn run<const RECORDS: usize>(buf: *mut EventBuffer, job: *mut Job, head_left: *mut u32) {
    for _ in 0..RECORDS {
        if !step(buf, job, head_left) {
            break;
        }
    }
    report_rest(buf, job);
}

/// Sends the next record; false when the call is done (or its iovecs are).
#[inline(always)]
fn step(buf: *mut EventBuffer, job: *mut Job, head_left: *mut u32) -> bool {
    if get!(job, len) == 0 {
        if !next_segment(job) {
            return false;
        }
        if get!(job, len) == 0 {
            return true;
        }
    }
    let (src, len, offset, done) = (
        get!(job, src),
        get!(job, len),
        get!(job, offset),
        get!(job, done),
    );
    if done == 0 {
        let first = if len > MAX_DATA as u64 {
            MAX_DATA
        } else {
            len as usize
        };
        send_bytes(buf, src, first, offset);
        let start = segment_start(buf);
        // SAFETY: a map value field of this invocation. Volatile, like the job's fields:
        // kept in a register across steps, its value would differ by path.
        let left = unsafe { read_volatile(head_left) };
        let budget = head::budget(start, u64::from(left));
        let plan = head::plan(len, budget);
        set!(job, full, plan.full);
        set!(job, tail, plan.tail);
        set!(job, open_left, budget.saturating_sub(len));
        set!(job, closes, u64::from(start.closes_on_blank_line()));
        set!(job, done, first as u64);
    } else if done < get!(job, full) {
        let rest = get!(job, full) - done;
        let part = if rest < MAX_DATA as u64 {
            rest as usize
        } else {
            MAX_DATA
        };
        send_bytes(buf, src + done, part, offset + done);
        set!(job, done, done + part as u64);
    } else {
        let tail = get!(job, tail);
        let skipped = tail.saturating_sub(done);
        if skipped > 0 {
            count(counter::TRUNCATIONS, 1);
            count(counter::TRUNCATED_BYTES, skipped);
        }
        send_bytes(
            buf,
            src + tail,
            len.saturating_sub(tail) as usize,
            offset + tail,
        );
        set!(job, done, len);
        set!(job, tail, len);
    }
    if get!(job, done) >= get!(job, full) && get!(job, tail) >= len {
        let left = if get!(job, closes) != 0 && blank_line_end(buf) {
            0
        } else {
            get!(job, open_left) as u32
        };
        // SAFETY: as above.
        unsafe { write_volatile(head_left, left) };
        set!(job, len, 0);
    }
    true
}

/// Takes the next segment of the call; false when there is none.
#[inline(always)]
fn next_segment(job: *mut Job) -> bool {
    let unassigned = get!(job, unassigned);
    if unassigned == 0 {
        return false;
    }
    let iov = get!(job, iov);
    let (src, len) = if iov == 0 {
        (get!(job, flat), unassigned)
    } else {
        let k = get!(job, next_iov);
        if k >= get!(job, iovcnt) || k >= MAX_IOV as u64 {
            return false;
        }
        set!(job, next_iov, k + 1);
        let len = user_u64(iov + 16 * k + 8);
        (
            user_u64(iov + 16 * k),
            if len < unassigned { len } else { unassigned },
        )
    };
    let offset = get!(job, next_offset);
    set!(job, unassigned, unassigned - len);
    set!(job, next_offset, offset + len);
    set!(job, src, src);
    set!(job, len, len);
    set!(job, offset, offset);
    set!(job, done, 0);
    true
}

/// Reports the bytes the records could not hold (more iovecs than `MAX_IOV`, or more
/// records than the loop allows) as one gap.
#[inline(always)]
fn report_rest(buf: *mut EventBuffer, job: *mut Job) {
    let len = get!(job, len);
    let in_segment = len.saturating_sub(get!(job, done));
    let rest = get!(job, unassigned) + in_segment;
    if rest == 0 {
        return;
    }
    let at = if len > 0 {
        get!(job, offset) + get!(job, done)
    } else {
        get!(job, next_offset)
    };
    count(counter::TRUNCATIONS, 1);
    count(counter::TRUNCATED_BYTES, rest);
    send_gap(buf, rest, at);
}

/// What the first record of a segment, still in the scratch buffer, starts.
#[inline(always)]
fn segment_start(buf: *mut EventBuffer) -> head::Start {
    // SAFETY: scratch record owned by this invocation; its header says how much is real.
    let (len, data) = unsafe { ((*buf).header.len as usize, &(*buf).data) };
    head::start(data, len)
}

/// Whether the last record sent, still in the scratch buffer, ends with `\r\n\r\n`.
#[inline(always)]
fn blank_line_end(buf: *mut EventBuffer) -> bool {
    // SAFETY: as in `segment_start`.
    let (len, data) = unsafe { ((*buf).header.len as usize, &(*buf).data) };
    // Masked and compared again so that the verifier sees the index bounded.
    let i = len.wrapping_sub(4) & (MAX_DATA - 1);
    if len < 4 || i > MAX_DATA - 4 {
        return false;
    }
    data[i] == b'\r' && data[i + 1] == b'\n' && data[i + 2] == b'\r' && data[i + 3] == b'\n'
}
