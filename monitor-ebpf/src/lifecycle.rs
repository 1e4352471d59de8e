//! connect / accept / close: where a connection's role is learnt and its state dropped.

use aya_ebpf::{
    helpers::bpf_get_current_pid_tgid, macros::tracepoint, programs::TracePointContext, EbpfContext,
};
use monitor_common::{ConnRole, Direction, FLAG_TLS, SHAPE_CONNECT};

use crate::{
    conn::track,
    data::stash,
    emit::{send_close, send_exec, start, Origin},
    fds::{forget, forget_all, tcp_sock, tcp_sock_fresh},
    inflight,
    maps::{is_agent, CONNS, FORK_CHILD_PID_AT, PROTO_HTTP, PROTO_OFF, PROTO_TLS},
};

const EINPROGRESS: i64 = 115;

#[inline(always)]
fn arg(ctx: &TracePointContext, n: usize) -> u64 {
    unsafe { ctx.read_at::<u64>(16 + 8 * n).unwrap_or(0) }
}

#[tracepoint]
pub(crate) fn sys_enter_connect(ctx: TracePointContext) -> u32 {
    stash(
        &ctx,
        arg(&ctx, 0) as i32,
        0,
        0,
        SHAPE_CONNECT,
        Direction::Egress,
    );
    0
}

#[tracepoint]
pub(crate) fn sys_exit_connect(ctx: TracePointContext) -> u32 {
    let Some(args) = inflight::take() else {
        return 0;
    };
    let ret = arg(&ctx, 0) as i64;
    if args.shape == SHAPE_CONNECT && (ret == 0 || ret == -EINPROGRESS) {
        track(args.sock, ConnRole::Client);
    }
    0
}

/// Attached to both `sys_exit_accept` and `sys_exit_accept4`.
#[tracepoint]
pub(crate) fn sys_exit_accept(ctx: TracePointContext) -> u32 {
    if is_agent(bpf_get_current_pid_tgid()) {
        return 0;
    }
    let fd = arg(&ctx, 0) as i64;
    if fd >= 0 {
        if let Some(sock) = tcp_sock_fresh(fd as i32) {
            track(sock, ConnRole::Server);
        }
    }
    0
}

#[tracepoint]
pub(crate) fn sys_enter_close(ctx: TracePointContext) -> u32 {
    if is_agent(bpf_get_current_pid_tgid()) {
        return 0;
    }
    let fd = arg(&ctx, 0) as i32;
    let sock = tcp_sock(fd);
    forget(fd);
    let Some(sock) = sock else { return 0 };
    // SAFETY: copied out before removal.
    let Some(st) = (unsafe { CONNS.get(sock) }).copied() else {
        return 0;
    };
    let _ = CONNS.remove(sock);
    if st.proto == PROTO_HTTP || st.proto == PROTO_TLS || st.proto == PROTO_OFF {
        let origin = Origin {
            sock,
            conn: &st,
            fd,
            direction: None,
            flags: if st.proto == PROTO_TLS { FLAG_TLS } else { 0 },
        };
        if let Some(buf) = start(&origin) {
            send_close(buf);
        }
    }
    0
}

/// `dup2`/`dup3` close whatever their new descriptor held.
#[tracepoint]
pub(crate) fn sys_enter_dup2(ctx: TracePointContext) -> u32 {
    forget(arg(&ctx, 1) as i32);
    0
}

/// `close_range` closes (or marks close-on-exec) any number of descriptors.
#[tracepoint]
pub(crate) fn sys_enter_close_range(_ctx: TracePointContext) -> u32 {
    forget_all((bpf_get_current_pid_tgid() >> 32) as u32);
    0
}

/// A new process (or thread): whatever was cached under its id belonged to an earlier
/// process that had it.
#[tracepoint]
pub(crate) fn sched_process_fork(ctx: TracePointContext) -> u32 {
    let at = FORK_CHILD_PID_AT.load();
    if at != 0 {
        // SAFETY: reading the tracepoint record at the offset its format file gives.
        if let Ok(child) = unsafe { ctx.read_at::<u32>(at as usize) } {
            forget_all(child);
        }
    }
    0
}

/// A process replaced its image: the agent checks its libraries for OpenSSL, and its
/// close-on-exec descriptors are gone.
#[tracepoint]
pub(crate) fn sched_process_exec(ctx: TracePointContext) -> u32 {
    let id = bpf_get_current_pid_tgid();
    forget_all((id >> 32) as u32);
    if !is_agent(id) {
        // `filename` is a __data_loc field at offset 8 (stable since the tracepoint was
        // added): the low 16 bits are the string's offset in the record.
        // SAFETY: reading the tracepoint record at a fixed offset.
        let loc = unsafe { ctx.read_at::<u32>(8) }.unwrap_or(0);
        #[allow(
            clippy::verbose_bit_mask,
            reason = "BPF has no count-trailing-zeros instruction; a mask is one AND"
        )]
        let name = if loc & 0xffff == 0 {
            core::ptr::null()
        } else {
            // SAFETY: stays inside the record; the helper reading it checks the access.
            unsafe { (ctx.as_ptr() as *const u8).add((loc & 0xffff) as usize) }
        };
        send_exec(name);
    }
    0
}
