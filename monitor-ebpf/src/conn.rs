//! Per-socket state: classification, role and stream offsets.

use aya_ebpf::helpers::{bpf_ktime_get_ns, generated::bpf_probe_read_user};
use monitor_common::sniff::SNIFF_LEN;
use monitor_common::{counter, sniff, ConnRole, Direction, Sniff};

use crate::{
    maps::{
        count, ConnState, CONNS, PROTO_HTTP, PROTO_OTHER, PROTO_TLS, PROTO_UNKNOWN, SNIFF_ATTEMPTS,
    },
    sock::fill_addresses,
};

/// Starts tracking `sock` afresh, replacing whatever a previous user of that address left.
#[inline(always)]
pub(crate) fn track(sock: u64, role: ConnRole) {
    let mut state = ConnState {
        conn_id: unsafe { bpf_ktime_get_ns() },
        egress_offset: 0,
        ingress_offset: 0,
        proto: PROTO_UNKNOWN,
        role,
        sniff_misses: 0,
        _pad: 0,
        family: 0,
        local_port: 0,
        remote_port: 0,
        _pad2: [0; 6],
        local_addr: [0; 16],
        remote_addr: [0; 16],
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

/// True when the connection is (or just became) one whose bytes are captured. `first` is
/// the user address of the first bytes of this syscall's data, `n` how many there are.
#[inline(always)]
pub(crate) fn classify(st: *mut ConnState, first: u64, n: u64) -> bool {
    // SAFETY: map value pointer from a lookup in this invocation.
    let st = unsafe { &mut *st };
    match st.proto {
        PROTO_HTTP => return true,
        PROTO_OTHER | PROTO_TLS => return false,
        _ => {}
    }
    let mut b = [0u8; SNIFF_LEN];
    let len = if n < SNIFF_LEN as u64 {
        n as usize
    } else {
        SNIFF_LEN
    };
    if len == 0 {
        return false;
    }
    // SAFETY: reads at most SNIFF_LEN bytes into a stack array of that size.
    let rc = unsafe { bpf_probe_read_user(b.as_mut_ptr().cast(), len as u32, first as *const _) };
    if rc != 0 {
        count(counter::READ_ERRORS, 1);
        return false;
    }
    match sniff(&b, len) {
        Sniff::Http1Request | Sniff::Http1Response | Sniff::Http2Preface | Sniff::Http2Frame => {
            st.proto = PROTO_HTTP;
            count(counter::HTTP_CONNS, 1);
            true
        }
        Sniff::Tls => {
            st.proto = PROTO_TLS;
            count(counter::TLS_CONNS, 1);
            false
        }
        Sniff::Unknown => {
            st.sniff_misses += 1;
            if st.sniff_misses >= SNIFF_ATTEMPTS {
                st.proto = PROTO_OTHER;
                count(counter::NOT_HTTP_CONNS, 1);
            }
            false
        }
    }
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
