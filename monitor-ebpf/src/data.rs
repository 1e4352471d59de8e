//! read/write family: arguments are stashed at syscall entry and the bytes are captured at
//! exit, when the kernel has said how many actually moved (partial writes, EAGAIN).

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_probe_read_user},
    macros::tracepoint,
    programs::TracePointContext,
};
use aya_log_ebpf::warn;
use monitor_common::{
    counter, head::HEAD_MAX, Direction, SyscallArgs, SHAPE_CONNECT, SHAPE_FLAT, SHAPE_IOVEC,
    SHAPE_MSGHDR, SHAPE_SENDFILE,
};

use crate::{
    conn::{advance, classify, egress_position, passes_by, state_of, Class},
    copy::{load_iovecs, send_call_later, Copier, Source},
    emit::{send_copied, send_gap, start, Origin},
    fds::{tcp_sock, tcp_sock_fresh},
    inflight,
    maps::{count, is_agent, Carry, ConnState, EventBuffer, PROTO_HTTP, PROTO_TLS, SCRATCH},
    tls::on_tls_syscall,
};

const MSG_PEEK: u64 = 2;
/// Offset of `msg_iov`, followed by `msg_iovlen`, in the userspace `struct msghdr` (a
/// stable ABI).
const MSGHDR_IOV: u64 = 16;

/// The iovec array and count of a `struct msghdr` in the caller's memory, in one read.
#[inline(always)]
pub(crate) fn msghdr_iovecs(msg: u64) -> (u64, u64) {
    // SAFETY: a read of the caller's memory, checked by the helper.
    let pair = unsafe { bpf_probe_read_user((msg + MSGHDR_IOV) as *const [u64; 2]) };
    pair.map_or((0, 0), |[iov, count]| (iov, count))
}

#[inline(always)]
pub(crate) fn arg(ctx: &TracePointContext, n: usize) -> u64 {
    // Syscall tracepoint arguments are 8-byte slots starting at offset 16.
    unsafe { ctx.read_at::<u64>(16 + 8 * n).unwrap_or(0) }
}

/// Remembers the arguments of a syscall on a TCP socket that may carry HTTP.
#[inline(always)]
pub(crate) fn stash(
    ctx: &TracePointContext,
    fd: i32,
    buf: u64,
    count_or_len: u64,
    shape: u8,
    direction: Direction,
) {
    let id = bpf_get_current_pid_tgid();
    if is_agent(id) {
        return;
    }
    // A connect makes the descriptor a connection: learnt afresh, whatever was cached.
    let sock = if shape == SHAPE_CONNECT {
        tcp_sock_fresh(fd)
    } else {
        tcp_sock(fd)
    };
    let Some(sock) = sock else { return };
    if shape != SHAPE_CONNECT && passes_by(sock, direction) {
        return;
    }
    let args = SyscallArgs {
        sock,
        buf,
        count: count_or_len,
        fd,
        syscall_nr: 0,
        shape,
        direction: direction as u8,
        _pad: [0; 6],
    };
    if !inflight::keep(args) {
        count(counter::ARGS_LOST, 1);
        // The state is created if need be, so that a stream whose first bytes were lost is
        // not taken for one seen from its start.
        if let Some(st) = state_of(sock) {
            // SAFETY: map value pointer from a lookup in this invocation.
            let lost = unsafe { &mut (*st).lost[direction.index()] };
            *lost = lost.wrapping_add(1);
            // Where the next frame starts is no longer known.
            unsafe { (*st).carry(direction).frame_at = 0 };
        }
        warn!(
            ctx,
            "no room for a syscall's state: lost a syscall of thread {}", id as u32
        );
    }
}

fn try_exit_data(ctx: &TracePointContext) -> Option<()> {
    let mut args = inflight::take()?;
    let ret = arg(ctx, 0) as i64;
    if ret <= 0 || args.shape == SHAPE_CONNECT {
        return None;
    }
    if args.syscall_nr != 0 {
        // Written by the agent for a thread blocked in a read when it attached: only valid
        // if this exit is that very syscall.
        let nr = unsafe { ctx.read_at::<i32>(8).unwrap_or(-1) };
        if nr as u32 != args.syscall_nr {
            return None;
        }
    }
    if args.sock == 0 {
        args.sock = tcp_sock(args.fd)?;
    }
    let direction = Direction::from_u8(args.direction)?;
    let n = ret as u64;
    // Resolve the iovec array for vectored calls; flat buffers are one segment.
    let (iov, iovcnt) = match args.shape {
        SHAPE_IOVEC => (args.buf, args.count),
        SHAPE_MSGHDR => msghdr_iovecs(args.buf),
        _ => (0, 0),
    };
    let first = if iov != 0 {
        load_iovecs(SCRATCH.get_ptr_mut(0)?, iov, iovcnt)?.0
    } else {
        args.buf
    };
    let st = state_of(args.sock)?;
    let held = if args.shape == SHAPE_SENDFILE {
        // File bytes sent straight from the page cache: nothing to sniff, only to account.
        // SAFETY: map value pointer from this invocation.
        if unsafe { (*st).proto } != PROTO_HTTP {
            return None;
        }
        0
    } else {
        match classify(st, first, n, direction) {
            Class::Capture { held } => held,
            Class::Skip => {
                // The syscall that revealed a TLS handshake counts like any later one on it.
                // SAFETY: map value pointer from this invocation.
                if unsafe { (*st).proto } == PROTO_TLS {
                    on_tls_syscall(args.sock, direction);
                }
                return None;
            }
        }
    };
    // SAFETY: map value pointer from this invocation.
    let st = unsafe { &mut *st };
    let origin = Origin {
        sock: args.sock,
        conn: st,
        fd: args.fd,
        direction: Some(direction),
        flags: 0,
    };
    let buf = start(&origin)?;
    if args.shape == SHAPE_SENDFILE {
        // Already queued: the send queue's position is past these bytes.
        let end = egress_position(st, args.sock);
        send_gap(buf, n, end.saturating_sub(n));
        return Some(());
    }
    if held > 0 {
        let at = advance(st, direction, held as u64);
        send_held_at(buf, st, direction, held, at);
    }
    let offset = advance(st, direction, n);
    let source = match args.shape {
        SHAPE_FLAT => Source::Flat(args.buf),
        _ => Source::Vector(iov, iovcnt),
    };
    send_call_later(
        Copier::Syscall(ctx),
        buf,
        args.sock,
        direction,
        source,
        n,
        offset,
    );
    Some(())
}

/// Sends the first bytes of the stream, kept while they were too few to classify, at
/// stream `offset`; the message they start has a head that may go on.
#[inline(always)]
pub(crate) fn send_held_at(
    buf: *mut EventBuffer,
    st: &mut ConnState,
    direction: Direction,
    held: usize,
    offset: u64,
) {
    send_copied(buf, st.held.as_ptr(), held, held as u64, offset);
    *st.carry(direction) = Carry {
        head_left: HEAD_MAX as u32,
        ..Carry::NONE
    };
}

/// Shared exit handler of every data syscall; attached to each `sys_exit_*` of the family.
#[tracepoint]
pub(crate) fn sys_exit_data(ctx: TracePointContext) -> u32 {
    let _ = try_exit_data(&ctx);
    0
}

/// Stashes a data syscall's `(fd, buffer, count)`; `peek_flags` names the flags argument
/// of receive calls, whose `MSG_PEEK` leaves the bytes to be read (and captured) again.
#[inline(always)]
fn stash_data(ctx: &TracePointContext, shape: u8, direction: Direction, peek_flags: Option<usize>) {
    if let Some(i) = peek_flags {
        if arg(ctx, i) & MSG_PEEK != 0 {
            return;
        }
    }
    let (buf, len) = match shape {
        SHAPE_SENDFILE => (0, 0),
        SHAPE_MSGHDR => (arg(ctx, 1), 0),
        _ => (arg(ctx, 1), arg(ctx, 2)),
    };
    stash(ctx, arg(ctx, 0) as i32, buf, len, shape, direction);
}

/// One thin entry program per data syscall.
macro_rules! data_entry {
    ($name:ident, $shape:expr, $direction:expr, $peek_flags:expr) => {
        #[tracepoint]
        pub(crate) fn $name(ctx: TracePointContext) -> u32 {
            stash_data(&ctx, $shape, $direction, $peek_flags);
            0
        }
    };
}

data_entry!(sys_enter_read, SHAPE_FLAT, Direction::Ingress, None);
data_entry!(sys_enter_recvfrom, SHAPE_FLAT, Direction::Ingress, Some(3));
data_entry!(sys_enter_readv, SHAPE_IOVEC, Direction::Ingress, None);
data_entry!(sys_enter_recvmsg, SHAPE_MSGHDR, Direction::Ingress, Some(2));
data_entry!(
    sys_enter_sendfile64,
    SHAPE_SENDFILE,
    Direction::Egress,
    None
);
