//! Maps and load-time globals shared by all hook families.

use aya_ebpf::{
    macros::map,
    maps::{Array, LruHashMap, PerCpuArray, RingBuf},
    Global,
};
use monitor_common::{
    counter, sniff::SNIFF_LEN, ConnRole, Direction, EventHeader, KernelOffsets, MAX_DATA,
    SWITCH_OFF_SLOTS,
};

use crate::copy::Job;

/// Offsets of kernel members, filled from BTF by the agent.
#[no_mangle]
pub(crate) static OFFSETS: Global<KernelOffsets> = Global::new(KernelOffsets::UNSET);

/// The agent's own process id: its API and metrics traffic is never captured.
#[no_mangle]
pub(crate) static AGENT_TGID: Global<u32> = Global::new(0);

/// Where `child_pid` is in a `sched_process_fork` record (its layout changed across
/// kernel versions), from the tracepoint's format file; 0 when unknown.
#[no_mangle]
pub(crate) static FORK_CHILD_PID_AT: Global<u32> = Global::new(0);

/// Captured events for userspace. Resized by the agent (`--ring-buffer-mb`).
#[map]
pub(crate) static EVENTS: RingBuf = RingBuf::with_byte_size(8 * 1024 * 1024, 0);

/// The per-CPU scratch record: a header followed by the largest payload, and the copy in
/// progress. Kept in a per-CPU array because the eBPF stack (512 bytes) cannot hold it.
#[repr(C)]
pub(crate) struct EventBuffer {
    pub header: EventHeader,
    pub data: [u8; MAX_DATA],
    /// Never written: room the verifier needs to see that a copy of at most `MAX_DATA`
    /// bytes at an offset below `MAX_DATA` stays in the value (`emit::gather`).
    pub room: [u8; MAX_DATA],
    /// Never sent: records are the header and `header.len` bytes of `data`.
    pub job: Job,
}

/// One event under construction per CPU (too large for the stack).
#[map]
pub(crate) static SCRATCH: PerCpuArray<EventBuffer> = PerCpuArray::with_max_entries(1, 0);

/// Per-CPU health counters; indexes in `monitor_common::counter`.
#[map]
pub(crate) static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(counter::COUNT, 0);

/// Protocol classification of the connection: not decided yet.
pub(crate) const PROTO_UNKNOWN: u8 = 0;
/// Looked like HTTP: its bytes are captured.
pub(crate) const PROTO_HTTP: u8 = 1;
/// Not HTTP: skipped at syscall entry from now on.
pub(crate) const PROTO_OTHER: u8 = 2;
/// TLS: the ciphertext is skipped; the plaintext comes from the library probes (`tls.rs`),
/// and syscalls made inside a TLS call tie the `SSL*` to this socket.
pub(crate) const PROTO_TLS: u8 = 3;

/// Was HTTP, until userspace switched its capture off (a WebSocket, a tunnel, bytes its
/// parsers gave up on): skipped like `PROTO_OTHER`, its close still reported.
pub(crate) const PROTO_OFF: u8 = 4;

/// Userspace's switch: slot `conn_id % SWITCH_OFF_SLOTS` holds the `conn_id` of a
/// connection not to capture any more. An array, so a look costs no helper call.
#[map]
pub(crate) static SWITCHED_OFF: Array<u64> = Array::with_max_entries(SWITCH_OFF_SLOTS, 0);

/// Whether capture goes on for an HTTP connection: false, and the connection is marked
/// `PROTO_OFF`, once userspace has switched it off.
#[inline(always)]
pub(crate) fn still_wanted(st: *mut ConnState) -> bool {
    // SAFETY: map value pointer from a lookup in this invocation.
    let st = unsafe { &mut *st };
    if st.proto != PROTO_HTTP {
        return true;
    }
    let slot = (st.conn_id as u32) & (SWITCH_OFF_SLOTS - 1);
    if SWITCHED_OFF.get(slot).is_some_and(|id| *id == st.conn_id) {
        st.proto = PROTO_OFF;
        return false;
    }
    true
}

/// After this many segments that start with nothing recognisable, a connection is given up.
/// More than one because a connection that predates the agent may be seen mid-message.
pub(crate) const SNIFF_ATTEMPTS: u8 = 4;

/// What the kernel remembers about a TCP socket it has looked at.
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct ConnState {
    pub conn_id: u64,
    /// Stream offset of the send queue's end when `egress_seq` was read: where the next
    /// byte written by the observed process goes.
    pub egress_offset: u64,
    /// Next stream offset of bytes read by the observed process.
    pub ingress_offset: u64,
    pub proto: u8,
    pub role: ConnRole,
    pub sniff_misses: u8,
    /// How many bytes `held` holds.
    pub held_len: u8,
    /// The 4-tuple, read from the socket once when tracking starts instead of per event.
    pub family: u16,
    pub local_port: u16,
    pub remote_port: u16,
    /// The [`Direction`] of the bytes in `held`.
    pub held_direction: u8,
    pub _pad2: u8,
    /// `tcp_sock.write_seq` when `egress_offset` was last brought up to date (32 bits, so
    /// offsets advance by its wrapping difference).
    pub egress_seq: u32,
    pub _pad3: u32,
    /// Per direction (egress, ingress): syscalls whose bytes were lost because their state
    /// could not be kept (`inflight`), sent with every record so userspace sees where a
    /// stream has a hole.
    pub lost: [u16; 2],
    pub local_addr: [u8; 16],
    pub remote_addr: [u8; 16],
    /// The first bytes of a connection, too few to classify (a client writing byte by
    /// byte): kept, and sent ahead of the segment that decides.
    pub held: [u8; SNIFF_LEN],
    /// Per direction (egress, ingress): what the copy of one segment tells the next.
    pub carry: [Carry; 2],
}

/// What the copy of a segment tells the copy of the next one in the same direction.
#[derive(Clone, Copy)]
#[repr(C)]
pub(crate) struct Carry {
    /// Bytes that may still belong to the message head being written, and are copied in
    /// full (`monitor_common::head`).
    pub(crate) head_left: u32,
    pub(crate) _pad: u32,
    /// Stream offset of the next HTTP/2 frame header, when a walk over the frames ended
    /// inside a frame (`monitor_common::frames`); 0 when not known.
    pub(crate) frame_at: u64,
}

impl Carry {
    pub(crate) const NONE: Carry = Carry {
        head_left: 0,
        _pad: 0,
        frame_at: 0,
    };
}

impl ConnState {
    /// What the last segment of one direction left for the next.
    #[inline(always)]
    pub(crate) fn carry(&mut self, direction: Direction) -> &mut Carry {
        match direction {
            Direction::Egress => &mut self.carry[0],
            Direction::Ingress => &mut self.carry[1],
        }
    }
}

/// Keyed by the `struct sock` address. LRU so that sockets whose close we never saw (process
/// killed) age out instead of filling the map.
#[map]
pub(crate) static CONNS: LruHashMap<u64, ConnState> = LruHashMap::with_max_entries(65536, 0);

#[inline(always)]
pub(crate) fn count(index: u32, n: u64) {
    if let Some(p) = COUNTERS.get_ptr_mut(index) {
        // SAFETY: per-CPU slot, no concurrent writer on this CPU while the program runs.
        unsafe { *p += n };
    }
}

#[inline(always)]
pub(crate) fn is_agent(pid_tgid: u64) -> bool {
    (pid_tgid >> 32) as u32 == AGENT_TGID.load()
}
