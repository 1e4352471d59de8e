//! Per-socket state: classification, role and stream offsets.

use aya_ebpf::helpers::{bpf_ktime_get_ns, generated::bpf_probe_read_user};
use monitor_common::sniff::SNIFF_LEN;
use monitor_common::{counter, sniff, ConnRole, Direction, Sniff};

use crate::{
    maps::{
        count, still_wanted, Carry, ConnState, CONNS, PROTO_HTTP, PROTO_OFF, PROTO_OTHER,
        PROTO_TLS, PROTO_UNKNOWN, SNIFF_ATTEMPTS,
    },
    sock::{fill_addresses, write_seq},
    tls::on_tls_syscall,
};

/// Starts tracking `sock` afresh, replacing whatever a previous user of that address left.
#[inline(always)]
pub(crate) fn track(sock: u64, role: ConnRole) {
    let mut state = ConnState {
        conn_id: unsafe { bpf_ktime_get_ns() },
        egress_offset: 0,
        ingress_offset: 0,
        egress_seq: write_seq(sock),
        _pad3: 0,
        proto: PROTO_UNKNOWN,
        role,
        sniff_misses: 0,
        held_len: 0,
        family: 0,
        local_port: 0,
        remote_port: 0,
        held_direction: 0,
        _pad2: 0,
        lost: [0; 2],
        local_addr: [0; 16],
        remote_addr: [0; 16],
        held: [0; SNIFF_LEN],
        carry: [Carry::NONE; 2],
    };
    fill_addresses(sock, &mut state);
    let _ = CONNS.insert(sock, state, 0);
}

/// State of `sock`, created on first sight (connections that predate the agent).
#[inline(always)]
pub(crate) fn state_of(sock: u64) -> Option<*mut ConnState> {
    if let Some(p) = CONNS.get_ptr_mut(sock) {
        return Some(p);
    }
    track(sock, ConnRole::Unknown);
    CONNS.get_ptr_mut(sock)
}

/// Whether a data syscall on `sock` passes by uncaptured because of what its connection is
/// already known to be: not HTTP, switched off by userspace, or TLS (whose syscalls only
/// tie the library's `SSL*` to the socket, done here).
#[inline(always)]
pub(crate) fn passes_by(sock: u64, direction: Direction) -> bool {
    matches!(wanted(sock, direction), Wanted::No)
}

/// Whether a data syscall is to be captured, and the connection's state when it has one.
pub(crate) enum Wanted {
    No,
    New,
    Known(*mut ConnState),
}

/// What `passes_by` asks, and the connection's state with it: one lookup for both.
#[inline(always)]
pub(crate) fn wanted(sock: u64, direction: Direction) -> Wanted {
    let Some(st) = CONNS.get_ptr_mut(sock) else {
        return Wanted::New;
    };
    // SAFETY: map value pointer from this invocation.
    match unsafe { (*st).proto } {
        PROTO_OTHER | PROTO_OFF => Wanted::No,
        PROTO_TLS => {
            on_tls_syscall(sock, direction);
            Wanted::No
        }
        _ if still_wanted(st) => Wanted::Known(st),
        _ => Wanted::No,
    }
}

/// What to do with a syscall's bytes after classification.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    /// Not captured.
    Skip,
    /// Captured, after the `held` bytes kept from earlier segments (see `ConnState::held`).
    Capture { held: usize },
}

/// Whether the connection is (or just became) one whose bytes are captured. `first` is the
/// user address of the first bytes of this syscall's data, `n` how many there are. Bytes
/// too few to tell are kept (up to `SNIFF_LEN`) and classified with the next segment.
// Not inlined: the many paths through the sniffer would otherwise each reach the copy
// loops with a different stack, and the verifier would walk those loops once per path.
#[inline(never)]
pub(crate) fn classify(st: *mut ConnState, first: u64, n: u64, direction: Direction) -> Class {
    // SAFETY: map value pointer from a lookup in this invocation.
    let st = unsafe { &mut *st };
    match st.proto {
        PROTO_HTTP => return Class::Capture { held: 0 },
        PROTO_OTHER | PROTO_TLS | PROTO_OFF => return Class::Skip,
        _ => {}
    }
    let held = if st.held_direction == direction as u8 {
        usize::from(st.held_len) & (SNIFF_LEN - 1)
    } else {
        0
    };
    let mut b = [0u8; SNIFF_LEN];
    let Some(len) = gather(st, held, &mut b, first, n) else {
        return Class::Skip;
    };
    st.held_len = 0;
    match sniff(&b, len) {
        Sniff::Http1Request | Sniff::Http1Response | Sniff::Http2Preface | Sniff::Http2Frame => {
            st.proto = PROTO_HTTP;
            count(counter::HTTP_CONNS, 1);
            Class::Capture { held }
        }
        Sniff::Tls => {
            st.proto = PROTO_TLS;
            count(counter::TLS_CONNS, 1);
            Class::Skip
        }
        Sniff::Partial => {
            st.held = b;
            st.held_len = len as u8;
            st.held_direction = direction as u8;
            Class::Skip
        }
        Sniff::Unknown => {
            st.sniff_misses += 1;
            if st.sniff_misses >= SNIFF_ATTEMPTS {
                st.proto = PROTO_OTHER;
                count(counter::NOT_HTTP_CONNS, 1);
            }
            Class::Skip
        }
    }
}

/// Fills `b` with the `held` bytes, then as many of this segment's as fit; returns how many
/// bytes `b` now holds.
#[inline(always)]
fn gather(
    st: &ConnState,
    held: usize,
    b: &mut [u8; SNIFF_LEN],
    first: u64,
    n: u64,
) -> Option<usize> {
    let room = (SNIFF_LEN - held) as u64;
    let want = if n < room { n as usize } else { room as usize };
    if want == 0 || want > SNIFF_LEN || held >= SNIFF_LEN {
        return None;
    }
    // Twice the sniffed length, so that `held + want` stays inside it for the verifier,
    // which cannot relate the two.
    let mut both = [0u8; 2 * SNIFF_LEN];
    both[..SNIFF_LEN].copy_from_slice(&st.held);
    // SAFETY: at most SNIFF_LEN bytes at an offset below SNIFF_LEN of a 2 * SNIFF_LEN array.
    let rc = unsafe {
        bpf_probe_read_user(
            both.as_mut_ptr().add(held).cast(),
            want as u32,
            first as *const _,
        )
    };
    if rc != 0 {
        count(counter::READ_ERRORS, 1);
        return None;
    }
    b.copy_from_slice(&both[..SNIFF_LEN]);
    Some(held + want)
}

/// Where the next byte written on `sock` goes in its stream: the send queue's position,
/// which counts what earlier writes really queued (partial writes included).
#[inline(always)]
pub(crate) fn egress_position(st: *mut ConnState, sock: u64) -> u64 {
    // SAFETY: map value pointer from a lookup in this invocation.
    let st = unsafe { &mut *st };
    let seq = write_seq(sock);
    st.egress_offset += u64::from(seq.wrapping_sub(st.egress_seq));
    st.egress_seq = seq;
    st.egress_offset
}

/// Reserves `n` bytes of one direction's stream and returns the offset of the first.
#[inline(always)]
pub(crate) fn advance(st: &mut ConnState, direction: Direction, n: u64) -> u64 {
    if direction == Direction::Egress {
        let o = st.egress_offset;
        st.egress_offset += n;
        o
    } else {
        let o = st.ingress_offset;
        st.ingress_offset += n;
        o
    }
}
