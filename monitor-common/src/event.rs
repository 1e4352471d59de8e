//! The records the kernel side sends through the ring buffer.

/// Largest payload copied from one syscall segment. Bytes beyond it are reported as a gap
/// (`orig_len > len`), which is enough for userspace to skip a body it does not need to see.
pub const MAX_DATA: usize = 4096;

/// Most iovec entries walked per vectored syscall; the remainder is reported as a gap.
pub const MAX_IOV: usize = 8;

/// For a segment longer than `MAX_DATA`, its last `TAIL_DATA` bytes are sent as well: the end
/// of a message (a chunked body's last chunk) is usually at the end of a write.
pub const TAIL_DATA: usize = 512;

/// What a ring-buffer record says happened. Written into [`EventHeader::kind`] as its
/// `u8`; read back once, by [`EventKind::from_u8`].
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// The record carries `len` captured bytes of one direction of a connection.
    Data = 1,
    /// `orig_len` bytes of one direction moved without being captured (`sendfile`, say).
    Gap = 2,
    /// The observed process closed the socket.
    Close = 3,
    /// A process called exec (`pid` is set): its libraries may need TLS probes.
    Exec = 4,
}

impl EventKind {
    pub const fn from_u8(v: u8) -> Option<EventKind> {
        match v {
            1 => Some(EventKind::Data),
            2 => Some(EventKind::Gap),
            3 => Some(EventKind::Close),
            4 => Some(EventKind::Exec),
            _ => None,
        }
    }
}

/// The payload is TLS plaintext, captured at the library boundary.
pub const FLAG_TLS: u8 = 1;

/// Which way the observed process moved the bytes.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Written by the observed process.
    Egress = 1,
    /// Read by the observed process.
    Ingress = 2,
}

impl Direction {
    pub const fn from_u8(v: u8) -> Option<Direction> {
        match v {
            1 => Some(Direction::Egress),
            2 => Some(Direction::Ingress),
            _ => None,
        }
    }

    /// 0 for egress, 1 for ingress: the index of per-direction state.
    pub const fn index(self) -> usize {
        match self {
            Direction::Egress => 0,
            Direction::Ingress => 1,
        }
    }

    /// The inverse of [`Direction::index`]; any other index is ingress.
    pub const fn from_index(i: usize) -> Direction {
        if i == 0 {
            Direction::Egress
        } else {
            Direction::Ingress
        }
    }

    #[must_use]
    pub const fn reverse(self) -> Direction {
        match self {
            Direction::Egress => Direction::Ingress,
            Direction::Ingress => Direction::Egress,
        }
    }
}

/// Which end of the connection the observed process is, when the kernel saw it being set
/// up (`Unknown` for connections older than the agent).
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnRole {
    Unknown = 0,
    /// The process called `connect`.
    Client = 1,
    /// The process obtained the socket from `accept`/`accept4`.
    Server = 2,
}

impl ConnRole {
    /// Any value the kernel did not write is `Unknown`.
    pub const fn from_u8(v: u8) -> ConnRole {
        match v {
            1 => ConnRole::Client,
            2 => ConnRole::Server,
            _ => ConnRole::Unknown,
        }
    }
}

pub const AF_INET: u16 = 2;
pub const AF_INET6: u16 = 10;

/// Fixed-size header in front of every ring-buffer record; `len` payload bytes follow it.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct EventHeader {
    /// `bpf_ktime_get_ns` (CLOCK_MONOTONIC) when the syscall returned.
    pub ts_ns: u64,
    /// Address of the kernel `struct sock`; unique among live sockets.
    pub sock: u64,
    /// Assigned when the kernel first tracked this socket; together with `sock` it tells a
    /// reused `struct sock` address apart from the connection that used it before.
    pub conn_id: u64,
    /// Position of the first byte of this event within its direction's stream. A jump
    /// against the previous event means bytes were lost (ring buffer full).
    pub stream_offset: u64,
    pub pid: u32,
    pub tid: u32,
    pub fd: i32,
    /// Captured payload bytes following the header.
    pub len: u32,
    /// Bytes the syscall moved for this segment; `orig_len - len` were not captured.
    pub orig_len: u32,
    /// An [`EventKind`].
    pub kind: u8,
    /// A [`Direction`].
    pub direction: u8,
    /// A [`ConnRole`].
    pub role: u8,
    /// `FLAG_*` bits.
    pub flags: u8,
    pub family: u16,
    /// Local port, host byte order.
    pub local_port: u16,
    /// Remote port, host byte order.
    pub remote_port: u16,
    /// Syscalls of this direction whose bytes the kernel could not follow (its table of
    /// syscalls in flight was full), counted since tracking began and wrapping: a change
    /// between two records of a direction means bytes between them are missing, of an
    /// unknown count.
    pub lost: u16,
    /// Local address: IPv4 in the first 4 bytes, or IPv6.
    pub local_addr: [u8; 16],
    pub remote_addr: [u8; 16],
    pub comm: [u8; 16],
}

pub const HEADER_SIZE: usize = size_of::<EventHeader>();

/// Indexes of the per-CPU counters array (`COUNTERS`).
pub mod counter {
    /// Records written to the ring buffer.
    pub const EVENTS: u32 = 0;
    /// Payload bytes written to the ring buffer.
    pub const BYTES: u32 = 1;
    /// Records lost because the ring buffer was full.
    pub const DROPS: u32 = 2;
    /// Payload bytes those lost records would have carried.
    pub const DROPPED_BYTES: u32 = 3;
    /// Segments longer than `MAX_DATA`, or iovecs beyond `MAX_IOV`.
    pub const TRUNCATIONS: u32 = 4;
    /// Bytes not copied because of truncation.
    pub const TRUNCATED_BYTES: u32 = 5;
    /// Connections classified as not HTTP by the in-kernel sniffer.
    pub const NOT_HTTP_CONNS: u32 = 6;
    /// Connections classified as HTTP.
    pub const HTTP_CONNS: u32 = 7;
    /// Syscall arguments that could not be stashed between enter and exit (map full).
    pub const ARGS_LOST: u32 = 8;
    /// Failed reads of user or kernel memory.
    pub const READ_ERRORS: u32 = 9;
    /// TLS reads/writes whose `SSL*` could not be tied to a socket yet.
    pub const TLS_UNMAPPED: u32 = 10;
    /// Connections classified as TLS (their ciphertext is skipped).
    pub const TLS_CONNS: u32 = 11;
    /// TLS calls whose plaintext was lost because the kernel's table of calls in flight
    /// was full (or its entry was evicted before the call returned).
    pub const TLS_LOST: u32 = 12;
    /// Descriptors the fd → socket cache did not know, so the programs walked the
    /// process's descriptor table (first use, after a close, or evicted).
    pub const FD_WALKS: u32 = 13;
    pub const COUNT: u32 = 14;
}

/// Slots of the table through which userspace switches off the capture of connections it
/// does not parse (`map::SWITCHED_OFF`): a connection's slot is its kernel id modulo this,
/// and holds that id while it is switched off.
pub const SWITCH_OFF_SLOTS: u32 = 4096;

/// How the buffer argument of a stashed syscall is shaped.
pub const SHAPE_FLAT: u8 = 1;
pub const SHAPE_IOVEC: u8 = 2;
pub const SHAPE_MSGHDR: u8 = 3;
pub const SHAPE_SENDFILE: u8 = 4;
pub const SHAPE_CONNECT: u8 = 5;

/// Arguments saved at syscall entry for use at exit, when the byte count is known. The agent
/// also writes these for threads that were already blocked in a read when it attached.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct SyscallArgs {
    /// `struct sock` address, or 0 to resolve `fd` at exit.
    pub sock: u64,
    /// Buffer, iovec array or msghdr pointer in the caller's memory.
    pub buf: u64,
    /// Buffer length or iovec count.
    pub count: u64,
    pub fd: i32,
    /// Syscall number the arguments belong to, checked at exit; 0 when stashed at entry
    /// (the entry and exit of one thread's syscall always pair).
    pub syscall_nr: u32,
    pub shape: u8,
    /// A [`Direction`].
    pub direction: u8,
    #[allow(
        clippy::pub_underscore_fields,
        reason = "explicit padding of a kernel ABI struct"
    )]
    pub _pad: [u8; 6],
}

/// `SSL*` values are addresses in one process.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SslKey {
    pub tgid: u32,
    #[allow(
        clippy::pub_underscore_fields,
        reason = "explicit padding of a kernel ABI struct"
    )]
    pub _pad: u32,
    pub ssl: u64,
}

/// An `SSL_write` whose socket was not known when it returned (memory BIOs), with a copy of
/// its first bytes, waiting (keyed by thread) for the write syscall that sends its
/// ciphertext. In a plain map, not an LRU one, so that no waiting write is evicted unseen:
/// the agent clears the entries of threads that died meanwhile.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct PendingWrite {
    pub key: SslKey,
    /// Bytes the call wrote.
    pub len: u64,
    pub ts_ns: u64,
    /// How many of them are in `data`.
    pub copied: u32,
    #[allow(
        clippy::pub_underscore_fields,
        reason = "explicit padding of a kernel ABI struct"
    )]
    pub _pad: u32,
    pub data: [u8; MAX_DATA],
}

#[cfg(feature = "user")]
mod pod {
    unsafe impl aya::Pod for super::SyscallArgs {}
    unsafe impl aya::Pod for super::PendingWrite {}
    // SAFETY: plain old data, `#[repr(C)]`, every bit pattern valid.
    unsafe impl aya::Pod for super::EventHeader {}
    unsafe impl aya::Pod for super::super::KernelOffsets {}
}
