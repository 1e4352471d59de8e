//! What the connection tracker asks of every protocol parser: bytes and losses of either
//! direction in order, the close, and how much could not be understood. The tracker feeds
//! every protocol alike through this trait; directions are the kernel's (written or read
//! by the observed process), and each session knows which of them carries requests.

pub use monitor_common::Direction;

use super::exchange::{Exchange, Protocol};

/// Counters describing how much of the connection could not be understood.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SessionStats {
    pub parse_errors: u64,
    pub resyncs: u64,
    pub unmatched_responses: u64,
    pub dropped_requests: u64,
    pub gaps: u64,
}

/// A request the connection switched protocols on, and what followed it.
pub struct Upgrade {
    /// The HTTP/1.1 request carrying `Upgrade: h2c`, answered by a 101.
    pub request: Exchange,
    /// Bytes after the 101 in the same segment: the new protocol's first.
    pub after: Vec<u8>,
    /// The direction requests travel in, which the new protocol keeps.
    pub requests: Direction,
}

/// What a session says after a segment: go on, or the connection left this protocol.
pub enum Switch {
    Stay,
    /// `Upgrade: h2c` answered by a 101: the connection goes on as HTTP/2.
    H2c(Box<Upgrade>),
    /// A protocol we do not follow (WebSocket, a CONNECT tunnel...).
    Unfollowed,
}

pub trait ProtocolSession: Send {
    /// Which parser this is, for its counters.
    fn protocol(&self) -> Protocol;
    /// One captured segment moved in `dir`; completed calls are appended to `out`.
    fn data(&mut self, dir: Direction, bytes: &[u8], ts_ns: u64, out: &mut Vec<Exchange>);
    /// `len` bytes moved in `dir` were not captured at this point.
    fn gap(&mut self, dir: Direction, len: u64, ts_ns: u64, out: &mut Vec<Exchange>);
    /// The connection closed: calls that can complete do, the rest are counted as dropped.
    fn close(&mut self, ts_ns: u64, out: &mut Vec<Exchange>);
    fn stats(&self) -> &SessionStats;
    /// Bytes held for reassembly and for requests awaiting their responses, for the
    /// node's parser memory budget.
    fn buffered_bytes(&self) -> usize;
    /// The direction requests travel in, once the session knows it.
    fn requests_direction(&self) -> Option<Direction>;
    /// Frees the room kept between messages (empty buffers and queues keep their
    /// capacity for the next one). Asked of connections that have gone quiet, so that a
    /// node full of idle keep-alive connections costs little; never changes what a
    /// session will report.
    fn release_spare(&mut self) {}
    /// Asked after each segment, with the calls it completed (a switch takes the request
    /// that asked for it out of them).
    fn switch(&mut self, _out: &mut Vec<Exchange>) -> Switch {
        Switch::Stay
    }
}
