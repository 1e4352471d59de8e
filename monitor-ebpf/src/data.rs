//! read/write family: arguments are stashed at syscall entry and the bytes are captured at
//! exit, when the kernel has said how many actually moved (partial writes, EAGAIN).

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_probe_read_user},
    macros::tracepoint,
    programs::TracePointContext,
};
use monitor_common::{
    counter, SyscallArgs, DIR_EGRESS, DIR_INGRESS, MAX_IOV, SHAPE_CONNECT, SHAPE_FLAT, SHAPE_IOVEC,
    SHAPE_MSGHDR, SHAPE_SENDFILE,
};

use crate::{
    conn::{classify, state_of},
    emit::{send_data, send_gap, start, Origin},
    maps::{count, is_agent, ARGS, CONNS, PROTO_OTHER},
    sock::tcp_sock,
};

const MSG_PEEK: u64 = 2;
/// Offsets of `msg_iov` and `msg_iovlen` in the userspace `struct msghdr` (a stable ABI).
const MSGHDR_IOV: u64 = 16;
const MSGHDR_IOVLEN: u64 = 24;

#[inline(always)]
fn arg(ctx: &TracePointContext, n: usize) -> u64 {
    // Syscall tracepoint arguments are 8-byte slots starting at offset 16.
    unsafe { ctx.read_at::<u64>(16 + 8 * n).unwrap_or(0) }
}

/// Remembers the arguments of a syscall on a TCP socket that may carry HTTP.
#[inline(always)]
pub fn stash(fd: i32, buf: u64, count_or_len: u64, shape: u8, direction: u8) {
    let id = bpf_get_current_pid_tgid();
    if is_agent(id) {
        return;
    }
    let Some(sock) = tcp_sock(fd) else { return };
    // SAFETY: read-only peek at the classification.
    if let Some(st) = unsafe { CONNS.get(&sock) } {
        if st.proto == PROTO_OTHER && shape != SHAPE_CONNECT {
            return;
        }
    }
    let args = SyscallArgs {
        sock,
        buf,
        count: count_or_len,
        fd,
        syscall_nr: 0,
        shape,
        direction,
        _pad: [0; 6],
    };
    if ARGS.insert(&id, &args, 0).is_err() {
        count(counter::ARGS_LOST, 1);
    }
}

/// Takes back the arguments stashed by this thread's syscall entry.
#[inline(always)]
pub fn take_args() -> Option<SyscallArgs> {
    let id = bpf_get_current_pid_tgid();
    // SAFETY: copied out before removal.
    let args = unsafe { *ARGS.get(&id)? };
    let _ = ARGS.remove(&id);
    Some(args)
}

#[inline(always)]
fn user_u64(addr: u64) -> u64 {
    unsafe { bpf_probe_read_user(addr as *const u64).unwrap_or(0) }
}

fn try_exit_data(ctx: &TracePointContext) -> Option<()> {
    let mut args = take_args()?;
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
    let n = ret as u64;
    // Resolve the iovec array for vectored calls; flat buffers are one segment.
    let (iov, iovcnt) = match args.shape {
        SHAPE_IOVEC => (args.buf, args.count),
        SHAPE_MSGHDR => (
            user_u64(args.buf + MSGHDR_IOV),
            user_u64(args.buf + MSGHDR_IOVLEN),
        ),
        _ => (0, 0),
    };
    let first = if iov != 0 { user_u64(iov) } else { args.buf };
    let st = state_of(args.sock)?;
    if args.shape == SHAPE_SENDFILE {
        // File bytes sent straight from the page cache: nothing to sniff, only to account.
        // SAFETY: map value pointer from this invocation.
        if unsafe { (*st).proto } != crate::maps::PROTO_HTTP {
            return None;
        }
    } else if !classify(st, first, n) {
        return None;
    }
    // SAFETY: map value pointer from this invocation.
    let st = unsafe { &mut *st };
    let offset = if args.direction == DIR_EGRESS {
        let o = st.egress_offset;
        st.egress_offset += n;
        o
    } else {
        let o = st.ingress_offset;
        st.ingress_offset += n;
        o
    };
    let origin = Origin {
        sock: args.sock,
        conn: st,
        fd: args.fd,
        direction: args.direction,
    };
    let buf = start(&origin)?;
    match args.shape {
        SHAPE_FLAT => send_data(buf, args.buf, n, offset),
        SHAPE_SENDFILE => send_gap(buf, n, offset),
        _ => {
            let mut remaining = n;
            let mut pos = offset;
            for i in 0..MAX_IOV as u64 {
                if remaining == 0 || i >= iovcnt {
                    break;
                }
                let base = user_u64(iov + 16 * i);
                let len = user_u64(iov + 16 * i + 8);
                let seg = if len < remaining { len } else { remaining };
                if seg > 0 {
                    send_data(buf, base, seg, pos);
                }
                pos += seg;
                remaining -= seg;
            }
            if remaining > 0 {
                count(counter::TRUNCATIONS, 1);
                count(counter::TRUNCATED_BYTES, remaining);
                send_gap(buf, remaining, pos);
            }
        }
    }
    Some(())
}

/// Shared exit handler of every data syscall; attached to each `sys_exit_*` of the family.
#[tracepoint]
pub fn sys_exit_data(ctx: TracePointContext) -> u32 {
    let _ = try_exit_data(&ctx);
    0
}

#[tracepoint]
pub fn sys_enter_read(ctx: TracePointContext) -> u32 {
    stash(
        arg(&ctx, 0) as i32,
        arg(&ctx, 1),
        arg(&ctx, 2),
        SHAPE_FLAT,
        DIR_INGRESS,
    );
    0
}

#[tracepoint]
pub fn sys_enter_recvfrom(ctx: TracePointContext) -> u32 {
    // A peek leaves the bytes in the socket: they will be read (and captured) again.
    if arg(&ctx, 3) & MSG_PEEK == 0 {
        stash(
            arg(&ctx, 0) as i32,
            arg(&ctx, 1),
            arg(&ctx, 2),
            SHAPE_FLAT,
            DIR_INGRESS,
        );
    }
    0
}

#[tracepoint]
pub fn sys_enter_readv(ctx: TracePointContext) -> u32 {
    stash(
        arg(&ctx, 0) as i32,
        arg(&ctx, 1),
        arg(&ctx, 2),
        SHAPE_IOVEC,
        DIR_INGRESS,
    );
    0
}

#[tracepoint]
pub fn sys_enter_recvmsg(ctx: TracePointContext) -> u32 {
    if arg(&ctx, 2) & MSG_PEEK == 0 {
        stash(
            arg(&ctx, 0) as i32,
            arg(&ctx, 1),
            0,
            SHAPE_MSGHDR,
            DIR_INGRESS,
        );
    }
    0
}

#[tracepoint]
pub fn sys_enter_write(ctx: TracePointContext) -> u32 {
    stash(
        arg(&ctx, 0) as i32,
        arg(&ctx, 1),
        arg(&ctx, 2),
        SHAPE_FLAT,
        DIR_EGRESS,
    );
    0
}

#[tracepoint]
pub fn sys_enter_sendto(ctx: TracePointContext) -> u32 {
    stash(
        arg(&ctx, 0) as i32,
        arg(&ctx, 1),
        arg(&ctx, 2),
        SHAPE_FLAT,
        DIR_EGRESS,
    );
    0
}

#[tracepoint]
pub fn sys_enter_writev(ctx: TracePointContext) -> u32 {
    stash(
        arg(&ctx, 0) as i32,
        arg(&ctx, 1),
        arg(&ctx, 2),
        SHAPE_IOVEC,
        DIR_EGRESS,
    );
    0
}

#[tracepoint]
pub fn sys_enter_sendmsg(ctx: TracePointContext) -> u32 {
    stash(
        arg(&ctx, 0) as i32,
        arg(&ctx, 1),
        0,
        SHAPE_MSGHDR,
        DIR_EGRESS,
    );
    0
}

#[tracepoint]
pub fn sys_enter_sendfile64(ctx: TracePointContext) -> u32 {
    stash(arg(&ctx, 0) as i32, 0, 0, SHAPE_SENDFILE, DIR_EGRESS);
    0
}
