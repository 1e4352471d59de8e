//! OpenSSL probes: plaintext at `SSL_read`/`SSL_write` (and their `_ex` forms).
//!
//! Entry keeps the call's arguments per thread; return reads exactly the bytes the call
//! reported. The `SSL*` is tied to its socket by the read/write syscall the library makes
//! inside the call on the same thread (`bind_ssl`, called from the syscall hooks), so TLS
//! calls carry the socket's 4-tuple, role and stream offsets. The socket's ciphertext is
//! skipped by the syscall hooks once it is classified as TLS.

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_probe_read_user},
    macros::{map, uprobe, uretprobe},
    maps::LruHashMap,
    programs::{ProbeContext, RetProbeContext},
};
use monitor_common::{counter, DIR_EGRESS, DIR_INGRESS, FLAG_TLS};

use crate::{
    conn::{advance, state_of},
    emit::{send_data, start, Origin},
    maps::{count, is_agent, PROTO_TLS},
};

/// An SSL read or write in progress on one thread.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct TlsCall {
    pub ssl: u64,
    pub buf: u64,
    /// `size_t *` receiving the byte count (the `_ex` functions), or 0.
    pub out_len: u64,
    pub direction: u8,
    pub _pad: [u8; 7],
}

/// `SSL*` values are addresses in one process.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct SslKey {
    pub tgid: u32,
    pub _pad: u32,
    pub ssl: u64,
}

#[map]
static TLS_CALLS: LruHashMap<u64, TlsCall> = LruHashMap::with_max_entries(16384, 0);

/// `SSL*` → `struct sock` address.
#[map]
static SSL_SOCKS: LruHashMap<SslKey, u64> = LruHashMap::with_max_entries(65536, 0);

/// Called by the syscall hooks for a TLS socket: if this thread is inside an SSL call,
/// that call's `SSL*` uses `sock`.
#[inline(always)]
pub fn bind_ssl(sock: u64) {
    let id = bpf_get_current_pid_tgid();
    // SAFETY: read-only lookup, value copied.
    let Some(call) = (unsafe { TLS_CALLS.get(&id) }).copied() else {
        return;
    };
    let key = SslKey {
        tgid: (id >> 32) as u32,
        _pad: 0,
        ssl: call.ssl,
    };
    let _ = SSL_SOCKS.insert(&key, &sock, 0);
}

#[inline(always)]
fn enter(ctx: &ProbeContext, direction: u8, ex: bool) {
    let id = bpf_get_current_pid_tgid();
    if is_agent(id) {
        return;
    }
    let call = TlsCall {
        ssl: ctx.arg::<u64>(0).unwrap_or(0),
        buf: ctx.arg::<u64>(1).unwrap_or(0),
        out_len: if ex {
            ctx.arg::<u64>(3).unwrap_or(0)
        } else {
            0
        },
        direction,
        _pad: [0; 7],
    };
    let _ = TLS_CALLS.insert(&id, &call, 0);
}

#[inline(always)]
fn leave(ctx: &RetProbeContext) -> Option<()> {
    let id = bpf_get_current_pid_tgid();
    // SAFETY: copied out before removal.
    let call = unsafe { *TLS_CALLS.get(&id)? };
    let _ = TLS_CALLS.remove(&id);
    let ret: i32 = ctx.ret();
    let n = if call.out_len != 0 {
        // SSL_read_ex / SSL_write_ex: 1 on success, the count through the pointer.
        if ret != 1 {
            return None;
        }
        // SAFETY: bpf_probe_read_user tolerates bad pointers.
        unsafe { bpf_probe_read_user(call.out_len as *const u64).ok()? }
    } else if ret > 0 {
        ret as u64
    } else {
        return None;
    };
    if n == 0 {
        return None;
    }
    let key = SslKey {
        tgid: (id >> 32) as u32,
        _pad: 0,
        ssl: call.ssl,
    };
    // SAFETY: read-only lookup, value copied.
    let Some(sock) = (unsafe { SSL_SOCKS.get(&key) }).copied() else {
        count(counter::TLS_UNMAPPED, 1);
        return None;
    };
    let st = state_of(sock)?;
    // SAFETY: map value pointer from this invocation.
    let st = unsafe { &mut *st };
    st.proto = PROTO_TLS;
    let offset = advance(st, call.direction, n);
    let origin = Origin {
        sock,
        conn: st,
        fd: -1,
        direction: call.direction,
        flags: FLAG_TLS,
    };
    let buf = start(&origin)?;
    send_data(buf, call.buf, n, offset);
    Some(())
}

#[uprobe]
pub fn ssl_write(ctx: ProbeContext) -> u32 {
    enter(&ctx, DIR_EGRESS, false);
    0
}

#[uprobe]
pub fn ssl_write_ex(ctx: ProbeContext) -> u32 {
    enter(&ctx, DIR_EGRESS, true);
    0
}

#[uprobe]
pub fn ssl_read(ctx: ProbeContext) -> u32 {
    enter(&ctx, DIR_INGRESS, false);
    0
}

#[uprobe]
pub fn ssl_read_ex(ctx: ProbeContext) -> u32 {
    enter(&ctx, DIR_INGRESS, true);
    0
}

/// Return of all four functions: the entry recorded which one it was.
#[uretprobe]
pub fn ssl_return(ctx: RetProbeContext) -> u32 {
    let _ = leave(&ctx);
    0
}

/// `SSL_free`: the `SSL*` may be reused for another connection.
#[uprobe]
pub fn ssl_free(ctx: ProbeContext) -> u32 {
    let id = bpf_get_current_pid_tgid();
    let key = SslKey {
        tgid: (id >> 32) as u32,
        _pad: 0,
        ssl: ctx.arg::<u64>(0).unwrap_or(0),
    };
    let _ = SSL_SOCKS.remove(&key);
    0
}
