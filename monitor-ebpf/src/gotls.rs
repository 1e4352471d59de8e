//! Go crypto/tls probes: plaintext at `crypto/tls.(*Conn).Write` and `.Read`.
//!
//! Go programs do not use OpenSSL, and uretprobes crash them (the runtime moves goroutine
//! stacks, breaking the hijacked return address), so the agent attaches one probe at the
//! function's entry and one at every RET instruction. Go 1.17+ passes arguments and results
//! in registers (ABIInternal): receiver in RAX, the byte slice's pointer and length in RBX
//! and RCX, the returned count in RAX; R14 holds the current goroutine, which keys the
//! per-call state because a goroutine may move between threads inside the call.

use aya_ebpf::{
    bindings::pt_regs,
    helpers::{bpf_get_current_pid_tgid, bpf_probe_read_user},
    macros::{map, uprobe},
    maps::LruHashMap,
    programs::ProbeContext,
};
use monitor_common::{counter, Direction};

use crate::{
    copy::Copier,
    fds::tcp_sock,
    maps::{count, is_agent},
    tls::emit_plaintext,
};

/// Offsets through `*tls.Conn` to the socket's fd: `tls.Conn.conn` is a `net.Conn`
/// interface whose data word (+8) points at a `net.TCPConn`, whose first word is the
/// `*netFD`, whose `poll.FD.Sysfd` follows the 16-byte `fdMutex`. Stable since Go 1.12.
const CONN_IFACE_DATA: u64 = 8;
const NETFD_SYSFD: u64 = 16;

#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct GoroutineKey {
    pub tgid: u32,
    pub _pad: u32,
    pub g: u64,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct GoCall {
    pub conn: u64,
    pub buf: u64,
    pub direction: Direction,
    pub _pad: [u8; 7],
}

#[map]
static GO_CALLS: LruHashMap<GoroutineKey, GoCall> = LruHashMap::with_max_entries(16384, 0);

#[inline(always)]
fn regs(ctx: &ProbeContext) -> &pt_regs {
    // SAFETY: the context of a uprobe is the task's saved registers.
    unsafe { &*ctx.regs }
}

#[inline(always)]
fn key(ctx: &ProbeContext) -> GoroutineKey {
    GoroutineKey {
        tgid: (bpf_get_current_pid_tgid() >> 32) as u32,
        _pad: 0,
        g: regs(ctx).r14,
    }
}

#[inline(always)]
fn enter(ctx: &ProbeContext, direction: Direction) {
    if is_agent(bpf_get_current_pid_tgid()) {
        return;
    }
    let r = regs(ctx);
    if direction == Direction::Egress {
        // `(*Conn).Write` writes all of `b` or fails. Reporting at entry keeps the request
        // ahead of its response: another goroutine may read the answer before this one
        // reaches its RET.
        let _ = emit_at(ctx, r.rax, Direction::Egress, r.rbx, r.rcx);
        return;
    }
    let call = GoCall {
        conn: r.rax,
        buf: r.rbx,
        direction,
        _pad: [0; 7],
    };
    let _ = GO_CALLS.insert(key(ctx), call, 0);
}

#[inline(always)]
fn user_u64(addr: u64) -> Option<u64> {
    // SAFETY: bpf_probe_read_user tolerates bad addresses.
    unsafe { bpf_probe_read_user(addr as *const u64).ok() }
}

fn try_ret(ctx: &ProbeContext) -> Option<()> {
    let k = key(ctx);
    let n = regs(ctx).rax as i64;
    // SAFETY: copied out before removal.
    let Some(call) = GO_CALLS.get_ptr(k) else {
        // The entry probe saw the call: it was evicted from the LRU table in flight.
        if n > 0 {
            count(counter::TLS_LOST, 1);
        }
        return None;
    };
    let call = unsafe { *call };
    let _ = GO_CALLS.remove(k);
    if n <= 0 {
        return None;
    }
    emit_at(ctx, call.conn, call.direction, call.buf, n as u64)
}

/// Reports `n` plaintext bytes at `buf` on the socket under the `*tls.Conn` `conn`.
#[inline(always)]
fn emit_at(ctx: &ProbeContext, conn: u64, direction: Direction, buf: u64, n: u64) -> Option<()> {
    if n == 0 || n > i64::MAX as u64 {
        return None;
    }
    let tcp_conn = user_u64(conn + CONN_IFACE_DATA)?;
    let netfd = user_u64(tcp_conn)?;
    let fd = user_u64(netfd + NETFD_SYSFD)? as i32;
    let Some(sock) = tcp_sock(fd) else {
        count(counter::TLS_UNMAPPED, 1);
        return None;
    };
    emit_plaintext(Copier::Probe(ctx), sock, direction, buf, n)
}

#[uprobe]
pub(crate) fn go_tls_write(ctx: ProbeContext) -> u32 {
    enter(&ctx, Direction::Egress);
    0
}

#[uprobe]
pub(crate) fn go_tls_read(ctx: ProbeContext) -> u32 {
    enter(&ctx, Direction::Ingress);
    0
}

/// At every RET of `Read` (and of `Write`, where it finds no state: writes are reported at
/// entry).
#[uprobe]
pub(crate) fn go_tls_ret(ctx: ProbeContext) -> u32 {
    let _ = try_ret(&ctx);
    0
}
