//! write family: captured at syscall entry, where the bytes are already in the caller's
//! memory, so these syscalls need no exit program and no per-thread state.
//!
//! A record's stream offset is where the kernel's TCP send queue stands at entry
//! (`tcp_sock.write_seq`), not a count of what was captured. A write that moves fewer bytes
//! than asked (or none: EAGAIN) is followed by one that starts where the send queue really
//! ended, so its record overlaps the previous one; userspace keeps the first copy of each
//! stream offset and drops the overlap. The bytes of a write that never went out and was
//! never retried (the connection failed) are kept: a non-blocking writer resends the same
//! bytes, so the only cost is a message that looks sent when it was cut short.

use aya_ebpf::{
    helpers::bpf_get_current_pid_tgid, macros::tracepoint, programs::TracePointContext,
};
use monitor_common::{Direction, SHAPE_FLAT, SHAPE_IOVEC, SHAPE_MSGHDR};

use crate::{
    conn::{classify, egress_position, state_of, wanted, Class, Wanted},
    copy::{asked_past_walked, load_iovecs, send_call_later, Copier, Source},
    data::{arg, msghdr_iovecs, send_held_at},
    emit::{start, Origin},
    fds::tcp_sock,
    maps::{is_agent, PROTO_TLS, SCRATCH},
    tls::on_tls_syscall,
};

#[inline(always)]
fn try_enter_egress(ctx: &TracePointContext, shape: u8) -> Option<()> {
    if is_agent(bpf_get_current_pid_tgid()) {
        return None;
    }
    let fd = arg(ctx, 0) as i32;
    let sock = tcp_sock(fd)?;
    let known = wanted(sock, Direction::Egress);
    if matches!(known, Wanted::No) {
        return None;
    }
    let buf = arg(ctx, 1);
    let scratch = SCRATCH.get_ptr_mut(0)?;
    // The bytes a vectored call asks to send are its iovecs' added up; the copy walks the
    // first `MAX_IOV`, and what the others hold shows as a gap.
    let (source, first, n) = if shape == SHAPE_FLAT {
        (Source::Flat(buf), buf, arg(ctx, 2))
    } else {
        let (iov, iovcnt) = if shape == SHAPE_IOVEC {
            (buf, arg(ctx, 2))
        } else {
            msghdr_iovecs(buf)
        };
        let (first, walked) = load_iovecs(scratch, iov, iovcnt)?;
        // Wrapping, not saturating: a branch here would double the verifier's paths through
        // everything after. A sum that wraps only makes a wrong-sized gap for a caller that
        // asked for more than the address space.
        let n = walked.wrapping_add(asked_past_walked(iov, iovcnt));
        (Source::Vector(iov, iovcnt), first, n)
    };
    if n == 0 {
        return None;
    }
    let st = match known {
        Wanted::Known(st) => st,
        _ => state_of(sock)?,
    };
    let offset = egress_position(st, sock);
    let held = match classify(st, first, n, Direction::Egress) {
        Class::Capture { held } => held,
        Class::Skip => {
            // SAFETY: map value pointer from this invocation.
            if unsafe { (*st).proto } == PROTO_TLS {
                on_tls_syscall(sock, Direction::Egress);
            }
            return None;
        }
    };
    // SAFETY: map value pointer from this invocation.
    let st = unsafe { &mut *st };
    let origin = Origin {
        sock,
        conn: st,
        fd,
        direction: Some(Direction::Egress),
        flags: 0,
    };
    let record = start(&origin)?;
    if held > 0 {
        // Sent by earlier writes, so already behind the send queue's position.
        send_held_at(
            record,
            st,
            Direction::Egress,
            held,
            offset.saturating_sub(held as u64),
        );
    }
    send_call_later(
        Copier::Syscall(ctx),
        record,
        sock,
        Direction::Egress,
        source,
        n,
        offset,
    );
    Some(())
}

/// One thin entry program per write-family syscall.
macro_rules! egress_entry {
    ($name:ident, $shape:expr) => {
        #[tracepoint]
        pub(crate) fn $name(ctx: TracePointContext) -> u32 {
            let _ = try_enter_egress(&ctx, $shape);
            0
        }
    };
}

egress_entry!(sys_enter_write, SHAPE_FLAT);
egress_entry!(sys_enter_sendto, SHAPE_FLAT);
egress_entry!(sys_enter_writev, SHAPE_IOVEC);
egress_entry!(sys_enter_sendmsg, SHAPE_MSGHDR);
