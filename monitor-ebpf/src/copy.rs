//! Copying one syscall's bytes into records: a message head in full (up to `HEAD_MAX`),
//! anything else as its first `MAX_DATA` and last `TAIL_DATA` bytes
//! (`monitor_common::head` decides which); a segment of HTTP/2 frames frame by frame
//! (`monitor_common::frames`).
//!
//! Bounded loops send at most one record per step, for every segment of the call. Their
//! progress lives in the scratch record, memory whose contents the verifier does not
//! track, so at each step it sees one state whatever path led there. They run in programs
//! of their own (`copy_call` for the syscall exit, `copy_plaintext` for the TLS probes,
//! reached by tail call, and going on by tail call into themselves): inside the hooks the
//! verifier would walk them once for every path through classification, and exceed its
//! budget.

use core::ptr::{addr_of, addr_of_mut, read_volatile, write_volatile};

use aya_ebpf::{
    helpers::{bpf_probe_read_user, generated},
    macros::{map, tracepoint, uprobe},
    maps::ProgramArray,
    programs::{ProbeContext, RetProbeContext, TracePointContext},
};
use monitor_common::{
    counter,
    frames::{Action, Frames, Walk},
    head, Direction, MAX_DATA, MAX_IOV,
};

use crate::{
    emit::{gather, send_bytes, send_data, send_gap},
    maps::{count, Carry, EventBuffer, CONNS, SCRATCH},
};

/// Index 0 holds `copy_call`; filled by the agent before any program is attached.
#[map]
static COPY: ProgramArray = ProgramArray::with_max_entries(1, 0);

/// Index 0 holds `copy_plaintext`, the same for the TLS probes (a tail call stays within
/// one program type).
#[map]
static COPY_PLAINTEXT: ProgramArray = ProgramArray::with_max_entries(1, 0);

/// Steps one run of `copy_call` (or `copy_plaintext`) takes before it goes on in a fresh
/// run by tail call. The kernel's limit on a chain of tail calls (33) bounds the whole copy: hundreds of steps,
/// more than a long head and a walk in one segment and the ends of the others need
/// (`head::HEAD_RECORDS + WALK_STEPS + 2 * MAX_IOV`). Verifying a few steps is cheap;
/// verifying that many in one program would exceed the verifier's budget.
const CALL_STEPS: usize = 24;

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
    /// Non-zero while the segment is copied frame by frame, as `walk` says.
    walking: u64,
    walk: Walk,
    /// The walk's next action, kind and operands, passed through memory (`Frames::settle`).
    action: [u64; 3],
    /// Bytes of the segment the walk skipped.
    skipped: u64,
    /// The call's first `MAX_IOV` iovecs (address, length), read at once
    /// (`load_iovecs`).
    iovs: [[u64; 2]; MAX_IOV],
    /// Non-zero when the call is one segment, gathered from its iovecs into the scratch
    /// record's data before the copy began (`emit::gather`), and how many bytes that took.
    gathered: u64,
    gathered_len: u64,
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

/// Most iovecs a vectored write is added up over: the kernel's own limit (`UIO_MAXIOV`).
const IOV_COUNTED: u64 = 1024;

/// Bytes in a vectored write's iovecs past the first `MAX_IOV`, which the copy does not
/// walk: added up, one length read per iovec (rare calls; a flat loop keeps the verifier's
/// walk short), so that they show as a gap of their true size, not as bytes never sent.
// Not inlined: the verifier then walks the loop once, and the caller's state after it is
// the same whichever iteration ended it.
#[inline(never)]
pub(crate) fn asked_past_walked(iov: u64, iovcnt: u64) -> u64 {
    // A copy the caller's `iovcnt` is not tied to: the verifier narrows every register it
    // knows to hold the same value at each comparison, and the caller's count would leave
    // the loop with a different range at each iteration, each a state of its own for
    // everything after. (The kernel refuses counts this high anyway.)
    let iovcnt = iovcnt & 0xffff_ffff;
    let mut total = 0u64;
    for k in MAX_IOV as u64..IOV_COUNTED {
        if k >= iovcnt {
            break;
        }
        // SAFETY: a read of the caller's memory, checked by the helper.
        let Ok(len) = (unsafe { bpf_probe_read_user((iov + 16 * k + 8) as *const u64) }) else {
            count(counter::READ_ERRORS, 1);
            break;
        };
        total = total.saturating_add(len);
    }
    total
}

/// Reads a vectored call's iovec array (its first `MAX_IOV` entries) into the job, in one
/// read; returns the address of the call's first byte and the bytes its iovecs hold.
#[inline(always)]
pub(crate) fn load_iovecs(buf: *mut EventBuffer, iov: u64, iovcnt: u64) -> Option<(u64, u64)> {
    let n = if iovcnt < MAX_IOV as u64 {
        iovcnt as u32
    } else {
        MAX_IOV as u32
    };
    if n == 0 {
        return None;
    }
    // SAFETY: the job in the scratch record owned by this invocation; at most the array.
    let (iovs, rc) = unsafe {
        let iovs = addr_of_mut!((*buf).job.iovs);
        let rc = generated::bpf_probe_read_user(iovs.cast(), n * 16, iov as *const _);
        (iovs, rc)
    };
    if rc != 0 {
        count(counter::READ_ERRORS, 1);
        return None;
    }
    let mut total = 0u64;
    for k in 0..MAX_IOV {
        if k as u32 >= n {
            break;
        }
        // SAFETY: as above.
        total = total.saturating_add(unsafe { read_volatile(addr_of!((*iovs)[k])) }[1]);
    }
    // SAFETY: as above.
    Some((unsafe { read_volatile(addr_of!((*iovs)[0])) }[0], total))
}

/// Where a copy goes on: the program type of the hook that starts it, and the table that
/// holds the copying program of that type.
pub(crate) enum Copier<'a> {
    Syscall(&'a TracePointContext),
    Probe(&'a ProbeContext),
    Return(&'a RetProbeContext),
}

/// Sends the `n` bytes a call moved, starting at stream `offset`, on `sock` in
/// `direction`: the copy runs in `copy_call` or `copy_plaintext`, by tail call, which
/// find what the segment before left them (`Carry`) from `sock` and `direction`; whatever
/// does not fit is reported as a gap. This program ends with the tail call.
#[inline(always)]
pub(crate) fn send_call_later(
    copier: Copier<'_>,
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
    if let Source::Vector(_, iovcnt) = source {
        if iovcnt <= MAX_IOV as u64 && n <= MAX_DATA as u64 {
            // Here, not in the copying program, whose steps the verifier walks many times.
            // SAFETY: the job in the scratch record owned by this invocation.
            let iovs = unsafe { addr_of!((*job).iovs) };
            set!(job, gathered_len, gather(buf, iovs, iovcnt, n));
            set!(job, gathered, 1);
        }
    }
    // SAFETY: the ctx is this program's; on success the call does not return.
    unsafe {
        match copier {
            Copier::Syscall(ctx) => COPY.tail_call(ctx, 0),
            Copier::Probe(ctx) => COPY_PLAINTEXT.tail_call(ctx, 0),
            Copier::Return(ctx) => COPY_PLAINTEXT.tail_call(ctx, 0),
        }
    };
    // Only when the agent has not filled the table, or the tail-call limit was reached.
    report_rest(buf, job);
}

/// The copying half of the data syscalls' exit, run by tail call from `sys_exit_data`
/// (and from itself) with the job in the scratch record.
#[tracepoint]
pub(crate) fn copy_call(ctx: TracePointContext) -> u32 {
    if let Some((buf, job)) = copy_steps() {
        // SAFETY: the ctx is this program's; on success the call does not return.
        unsafe { COPY.tail_call(&ctx, 0) };
        report_rest(buf, job);
    }
    0
}

/// `copy_call` for the TLS probes' plaintext.
#[uprobe]
pub(crate) fn copy_plaintext(ctx: ProbeContext) -> u32 {
    if let Some((buf, job)) = copy_steps() {
        // SAFETY: as in `copy_call`.
        unsafe { COPY_PLAINTEXT.tail_call(&ctx, 0) };
        report_rest(buf, job);
    }
    0
}

/// Takes `CALL_STEPS` steps of the job in the scratch record; the job when it is not done,
/// to go on in a fresh run (or, if the kernel allows no more, to report what is left).
#[inline(always)]
fn copy_steps() -> Option<(*mut EventBuffer, *mut Job)> {
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
    let carry = unsafe { addr_of_mut!((*st).carry[slot & 1]) };
    for _ in 0..CALL_STEPS {
        if !step(buf, job, carry) {
            report_rest(buf, job);
            return None;
        }
    }
    Some((buf, job))
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
    set!(job, walking, 0);
    set!(job, gathered, 0);
    set!(job, gathered_len, 0);
    job
}

/// Sends the next record; false when the call is done (or its iovecs are).
#[inline(always)]
fn step(buf: *mut EventBuffer, job: *mut Job, carry: *mut Carry) -> bool {
    if get!(job, len) == 0 {
        if !next_segment(job) {
            return false;
        }
        if get!(job, len) == 0 {
            return true;
        }
    }
    if get!(job, walking) != 0 {
        walk_step(buf, job, carry);
        return true;
    }
    let (src, len, offset, done) = (
        get!(job, src),
        get!(job, len),
        get!(job, offset),
        get!(job, done),
    );
    if done == 0 {
        if first_record(buf, job, carry) {
            return true;
        }
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
        let next = Carry {
            head_left: left,
            ..Carry::NONE
        };
        // SAFETY: a map value field of this invocation. Volatile, like the job's fields:
        // kept in a register across steps, its value would differ by path.
        unsafe { write_volatile(carry, next) };
        set!(job, len, 0);
    }
    true
}

/// Sends a segment's first record and decides how the rest is copied: frame by frame when
/// the segment before said where the next HTTP/2 frame starts, or this one starts with
/// frames; else as a head and a tail. True when it is to be walked.
#[inline(always)]
fn first_record(buf: *mut EventBuffer, job: *mut Job, carry: *mut Carry) -> bool {
    let (src, len, offset) = (get!(job, src), get!(job, len), get!(job, offset));
    let first = if len > MAX_DATA as u64 {
        MAX_DATA as u64
    } else {
        len
    };
    if get!(job, gathered) != 0 {
        let copied = get!(job, gathered_len);
        send_data(buf, copied as usize, first, offset);
    } else {
        send_bytes(buf, src, first as usize, offset);
    }
    set!(job, done, first);
    let start = segment_start(buf);
    // SAFETY: as in `step`.
    let Carry {
        head_left,
        frame_at,
        ..
    } = unsafe { read_volatile(carry) };
    let left = u64::from(head_left);
    let walk = if frame_at != 0 && frame_at >= offset {
        Walk::resume(first, frame_at - offset, left, len)
    } else if let Some(frame) = start.frames_at() {
        Walk::resume(first, frame, 0, len)
    } else {
        let budget = head::budget(start, left);
        let plan = head::plan(len, budget);
        set!(job, full, plan.full);
        set!(job, tail, plan.tail);
        set!(job, open_left, budget.saturating_sub(len));
        set!(job, closes, u64::from(start.closes_on_blank_line()));
        return false;
    };
    // Through memory, so that the verifier passes over the copied frames in one state
    // whichever way the walk began.
    set!(job, walk, walk);
    let mut walk = get!(job, walk);
    // SAFETY: the scratch record, holding the first record just sent.
    walk.pass_copied(unsafe { &(*buf).data });
    if walk.done >= len && walk.next(len) == Action::Finish {
        // The whole segment was in the first record (the common case): done already.
        end_walk(job, carry, &walk, len);
        return true;
    }
    set!(job, walking, 1);
    set!(job, walk, walk);
    set!(job, skipped, 0);
    true
}

/// One step of a walk over a segment's HTTP/2 frames: at most one frame header read and
/// one record sent.
#[inline(always)]
fn walk_step(buf: *mut EventBuffer, job: *mut Job, carry: *mut Carry) {
    let len = get!(job, len);
    let mut walk = get!(job, walk);
    let mut skipped = 0;
    let more = walk.step(len, &mut Writer { buf, job }, &mut skipped);
    if skipped > 0 {
        count(counter::TRUNCATED_BYTES, skipped);
        let total = get!(job, skipped) + skipped;
        set!(job, skipped, total);
    }
    set!(job, walk, walk);
    set!(job, done, walk.done);
    if !more {
        if get!(job, skipped) > 0 {
            count(counter::TRUNCATIONS, 1);
        }
        end_walk(job, carry, &walk, len);
    }
}

/// Ends a walked segment: what the next segment of the direction is to know.
#[inline(always)]
fn end_walk(job: *mut Job, carry: *mut Carry, walk: &Walk, len: u64) {
    let next = Carry {
        head_left: walk.head_left() as u32,
        _pad: 0,
        frame_at: walk.next_frame(len).map_or(0, |f| get!(job, offset) + f),
    };
    // SAFETY: a map value field of this invocation, as in `step`.
    unsafe { write_volatile(carry, next) };
    set!(job, walking, 0);
    set!(job, len, 0);
}

/// The writer's segment, as a walk sees it.
struct Writer {
    buf: *mut EventBuffer,
    job: *mut Job,
}

impl Frames for Writer {
    fn header(&mut self, at: u64) -> Option<[u8; 9]> {
        if get!(self.job, gathered) != 0 {
            return gathered_header(self.buf, at);
        }
        let src = get!(self.job, src);
        // SAFETY: a read of the writer's memory, checked by the helper.
        unsafe { bpf_probe_read_user((src + at) as *const [u8; 9]).ok() }
    }

    fn copy(&mut self, at: u64, len: u64) {
        let (src, offset) = (get!(self.job, src), get!(self.job, offset));
        send_bytes(self.buf, src + at, len as usize, offset + at);
    }

    fn settle(&mut self, action: Action) -> Action {
        let (kind, at, len) = match action {
            Action::Read(at) => (0, at, 0),
            Action::Copy { at, len } => (1, at, len),
            Action::Finish => (2, 0, 0),
        };
        set!(self.job, action, [kind, at, len]);
        let [kind, at, len] = get!(self.job, action);
        match kind {
            0 => Action::Read(at),
            1 => Action::Copy { at, len },
            _ => Action::Finish,
        }
    }

    fn settle_walk(&mut self, walk: Walk) -> Walk {
        set!(self.job, walk, walk);
        get!(self.job, walk)
    }
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
        let iovcnt = get!(job, iovcnt);
        if k >= iovcnt || k >= MAX_IOV as u64 {
            return false;
        }
        if get!(job, gathered) != 0 {
            // The whole call, already in the scratch record: one segment.
            set!(job, next_iov, iovcnt);
            (0, unassigned)
        } else {
            set!(job, next_iov, k + 1);
            // SAFETY: the job in the scratch record; `k` below MAX_IOV.
            let [base, len] =
                unsafe { read_volatile(addr_of!((*job).iovs[(k as usize) & (MAX_IOV - 1)])) };
            (base, if len < unassigned { len } else { unassigned })
        }
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

/// A frame header at `at` in a gathered segment, all of whose bytes are in the scratch
/// record (sent as its first record, and nothing sent since).
#[inline(always)]
fn gathered_header(buf: *mut EventBuffer, at: u64) -> Option<[u8; 9]> {
    // SAFETY: scratch record owned by this invocation; nine bytes below MAX_DATA.
    let (copied, data) = unsafe { (u64::from((*buf).header.len), &(*buf).data) };
    if at + 9 > copied {
        return None;
    }
    let i = (at as usize) & (MAX_DATA - 1);
    if i > MAX_DATA - 9 {
        return None;
    }
    let mut h = [0u8; 9];
    h.copy_from_slice(&data[i..i + 9]);
    Some(h)
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
