//! OpenSSL probes: plaintext at `SSL_read`/`SSL_write` (and their `_ex` forms).
//!
//! Entry keeps the call's arguments per thread; return reads exactly the bytes the call
//! reported. The agent may attach the `_ex` pair of programs to OpenSSL's internal
//! function instead of the public ones (`monitor-agent/src/capture/ssl_sites.rs`): same
//! arguments, and its count through the fourth. The `SSL*` is tied to its socket by the
//! read/write syscall the library makes inside the call on the same thread (`bind_ssl`,
//! called from the syscall hooks), so TLS calls carry the socket's 4-tuple, role and stream
//! offsets. The socket's ciphertext is skipped by the syscall hooks once it is classified
//! as TLS.

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns, bpf_probe_read_user, generated},
    macros::{map, uprobe, uretprobe},
    maps::{HashMap, LruHashMap, PerCpuArray},
    programs::{ProbeContext, RetProbeContext},
};
use monitor_common::{counter, Direction, PendingWrite, SslKey, FLAG_TLS, MAX_DATA};

use crate::{
    conn::{advance, state_of},
    copy::{send_call_later, Copier, Source},
    emit::{send_copied, start, Origin},
    maps::{count, is_agent, ConnState, EventBuffer, PROTO_TLS},
};

/// An SSL read or write in progress on one thread.
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct TlsCall {
    pub ssl: u64,
    pub buf: u64,
    /// `size_t *` receiving the byte count (the `_ex` functions), or 0.
    pub out_len: u64,
    pub direction: Direction,
    pub _pad: [u8; 7],
}

#[map]
static TLS_CALLS: LruHashMap<u64, TlsCall> = LruHashMap::with_max_entries(16384, 0);

/// `SSL*` → `struct sock` address.
#[map]
static SSL_SOCKS: LruHashMap<SslKey, u64> = LruHashMap::with_max_entries(65536, 0);

/// The TLS socket a thread last read from, and when (ns).
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct RecentRead {
    pub sock: u64,
    pub ts_ns: u64,
}

#[map]
static RECENT_TLS_READS: LruHashMap<u64, RecentRead> = LruHashMap::with_max_entries(16384, 0);

/// A read this old no longer explains an SSL_read's input.
const RECENT_READ_NS: u64 = 20_000_000;

/// Called by the syscall hooks when a thread reads from a TLS socket.
#[inline(always)]
fn note_tls_read(sock: u64) {
    let id = bpf_get_current_pid_tgid();
    let r = RecentRead {
        sock,
        ts_ns: unsafe { bpf_ktime_get_ns() },
    };
    let _ = RECENT_TLS_READS.insert(id, r, 0);
}

#[inline(always)]
fn bind_recent_read(key: &SslKey) -> Option<u64> {
    let id = bpf_get_current_pid_tgid();
    // SAFETY: read-only lookup, value copied.
    let r = unsafe { *RECENT_TLS_READS.get(id)? };
    if unsafe { bpf_ktime_get_ns() }.saturating_sub(r.ts_ns) > RECENT_READ_NS {
        return None;
    }
    let _ = SSL_SOCKS.insert(key, r.sock, 0);
    Some(r.sock)
}

/// Called by the syscall hooks for every syscall on a TLS socket (whose ciphertext is
/// never captured): what it tells about which `SSL*` uses `sock`.
#[inline(always)]
pub(crate) fn on_tls_syscall(sock: u64, direction: Direction) {
    let inside_call = bind_ssl(sock);
    if direction == Direction::Ingress {
        // Only memory BIOs (no SSL call around the syscall) need the read remembered.
        if !inside_call {
            note_tls_read(sock);
        }
    } else {
        take_pending_write(sock);
    }
}

/// If this thread is inside an SSL call (socket BIOs: OpenSSL's own syscall), that call's
/// `SSL*` uses `sock`; true when it is. The table is written only when the tie is new.
#[inline(always)]
fn bind_ssl(sock: u64) -> bool {
    let id = bpf_get_current_pid_tgid();
    // SAFETY: read-only lookup, value copied.
    let Some(call) = (unsafe { TLS_CALLS.get(id) }).copied() else {
        return false;
    };
    let key = SslKey {
        tgid: (id >> 32) as u32,
        _pad: 0,
        ssl: call.ssl,
    };
    // SAFETY: read-only lookup, value copied.
    if (unsafe { SSL_SOCKS.get(key) }).copied() != Some(sock) {
        let _ = SSL_SOCKS.insert(key, sock, 0);
    }
    true
}

#[inline(always)]
fn enter(ctx: &ProbeContext, direction: Direction, ex: bool) {
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
    let _ = TLS_CALLS.insert(id, call, 0);
}

#[inline(always)]
fn leave(ctx: &RetProbeContext) -> Option<()> {
    // Read before any helper call: the context must not be needed after one clobbers it.
    let ret: i32 = ctx.ret();
    let id = bpf_get_current_pid_tgid();
    // SAFETY: copied out before removal.
    let Some(call) = TLS_CALLS.get_ptr(id) else {
        // Every call entered the probe first: a return without its entry had it evicted
        // from the LRU table while in flight (or began before the probes were attached).
        if ret > 0 {
            count(counter::TLS_LOST, 1);
        }
        return None;
    };
    let call = unsafe { *call };
    let _ = TLS_CALLS.remove(id);
    let key = SslKey {
        tgid: (id >> 32) as u32,
        _pad: 0,
        ssl: call.ssl,
    };
    // SAFETY: read-only lookup, value copied.
    let mut sock = (unsafe { SSL_SOCKS.get(key) }).copied();
    if sock.is_none() && call.direction == Direction::Ingress {
        // Memory BIOs (Node.js): OpenSSL made no syscall. The ciphertext this SSL_read
        // consumed was read from a socket by this thread just before; bind to it even when
        // the read produced no plaintext yet (handshake), so later writes are tied too.
        sock = bind_recent_read(&key);
    }
    let n = if call.out_len != 0 {
        // SSL_read_ex / SSL_write_ex (1 on success) or the internal function they wrap
        // (positive on success, `ssl_sites`): the count through the pointer.
        if ret <= 0 {
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
    let Some(sock) = sock else {
        if call.direction == Direction::Egress {
            // Memory BIOs: the ciphertext goes out in a write syscall right after, on this
            // thread; that syscall ties the `SSL*` and reports these bytes (`take_pending_write`).
            // The buffer may be reused as soon as SSL_write returns: copy the bytes now.
            stash_pending_write(id, key, call.buf, n);
        } else {
            count(counter::TLS_UNMAPPED, 1);
        }
        return None;
    };
    emit_plaintext(Copier::Return(ctx), sock, call.direction, call.buf, n)
}

/// Reports `n` plaintext bytes at user address `buf` on `sock`'s stream.
#[inline(always)]
pub(crate) fn emit_plaintext(
    copier: Copier<'_>,
    sock: u64,
    direction: Direction,
    buf: u64,
    n: u64,
) -> Option<()> {
    let (scratch, offset, _) = plaintext_record(sock, direction, n)?;
    send_call_later(
        copier,
        scratch,
        sock,
        direction,
        Source::Flat(buf),
        n,
        offset,
    );
    Some(())
}

/// Reserves `n` bytes of `sock`'s plaintext stream (marking the socket TLS) and starts a
/// TLS-flagged record for them; returns the scratch record, the stream offset and the
/// socket's state.
#[inline(always)]
fn plaintext_record(
    sock: u64,
    direction: Direction,
    n: u64,
) -> Option<(*mut EventBuffer, u64, &'static mut ConnState)> {
    let st = state_of(sock)?;
    // SAFETY: map value pointer from this invocation, valid until the program returns.
    let st = unsafe { &mut *st };
    st.proto = PROTO_TLS;
    let offset = advance(st, direction, n);
    let origin = Origin {
        sock,
        conn: st,
        fd: -1,
        direction: Some(direction),
        flags: FLAG_TLS,
    };
    Some((start(&origin)?, offset, st))
}

/// Full: the write is refused and counted (`TLS_LOST`), never an older one evicted unseen.
#[map]
static PENDING_WRITES: HashMap<u64, PendingWrite> = HashMap::with_max_entries(1024, 0);

/// Where a `PendingWrite` is built (too large for the stack).
#[map]
static PENDING_SCRATCH: PerCpuArray<PendingWrite> = PerCpuArray::with_max_entries(1, 0);

#[inline(always)]
fn stash_pending_write(id: u64, key: SslKey, buf: u64, n: u64) {
    let Some(p) = PENDING_SCRATCH.get_ptr_mut(0) else {
        return;
    };
    let copy = if n > MAX_DATA as u64 {
        MAX_DATA
    } else {
        n as usize
    };
    // SAFETY: per-CPU slot owned by this invocation; `copy <= MAX_DATA`.
    unsafe {
        (*p).key = key;
        (*p).len = n;
        (*p).ts_ns = bpf_ktime_get_ns();
        let rc = generated::bpf_probe_read_user(
            (*p).data.as_mut_ptr().cast(),
            copy as u32,
            buf as *const _,
        );
        (*p).copied = if rc == 0 { copy as u32 } else { 0 };
        // A write still pending on this thread is replaced, its plaintext never reported.
        let replaced = PENDING_WRITES.get_ptr(id).is_some();
        // By reference: 4 KiB would not fit the program's stack.
        let write: &PendingWrite = &*p;
        if PENDING_WRITES.insert(id, write, 0).is_err() || replaced {
            count(counter::TLS_LOST, 1);
        }
    }
}

/// Called by the syscall hooks when a thread writes to a TLS socket: a recent unmapped
/// SSL_write on this thread produced this ciphertext, so its `SSL*` uses `sock`, and its
/// plaintext (still in the caller's buffer, the call chain is synchronous) is reported now.
#[inline(always)]
fn take_pending_write(sock: u64) {
    let id = bpf_get_current_pid_tgid();
    let Some(p) = PENDING_WRITES.get_ptr(id) else {
        return;
    };
    // SAFETY: map value pointer from this invocation; removed only after its last use.
    let p = unsafe { &*p };
    if unsafe { bpf_ktime_get_ns() }.saturating_sub(p.ts_ns) <= RECENT_READ_NS {
        let _ = SSL_SOCKS.insert(p.key, sock, 0);
        let _ = emit_copied(sock, p);
    } else {
        count(counter::TLS_UNMAPPED, 1);
    }
    let _ = PENDING_WRITES.remove(id);
}

#[inline(always)]
fn emit_copied(sock: u64, p: &PendingWrite) -> Option<()> {
    let (scratch, offset, _) = plaintext_record(sock, Direction::Egress, p.len)?;
    send_copied(scratch, p.data.as_ptr(), p.copied as usize, p.len, offset);
    Some(())
}

#[uprobe]
pub(crate) fn ssl_write(ctx: ProbeContext) -> u32 {
    enter(&ctx, Direction::Egress, false);
    0
}

#[uprobe]
pub(crate) fn ssl_write_ex(ctx: ProbeContext) -> u32 {
    enter(&ctx, Direction::Egress, true);
    0
}

#[uprobe]
pub(crate) fn ssl_read(ctx: ProbeContext) -> u32 {
    enter(&ctx, Direction::Ingress, false);
    0
}

#[uprobe]
pub(crate) fn ssl_read_ex(ctx: ProbeContext) -> u32 {
    enter(&ctx, Direction::Ingress, true);
    0
}

/// Return of all four functions: the entry recorded which one it was.
#[uretprobe]
pub(crate) fn ssl_return(ctx: RetProbeContext) -> u32 {
    let _ = leave(&ctx);
    0
}

/// `SSL_free`: the `SSL*` may be reused for another connection.
#[uprobe]
pub(crate) fn ssl_free(ctx: ProbeContext) -> u32 {
    let id = bpf_get_current_pid_tgid();
    let key = SslKey {
        tgid: (id >> 32) as u32,
        _pad: 0,
        ssl: ctx.arg::<u64>(0).unwrap_or(0),
    };
    let _ = SSL_SOCKS.remove(key);
    0
}
