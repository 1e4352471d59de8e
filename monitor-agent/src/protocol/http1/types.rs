/// Which stream of the connection some bytes belong to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Request,
    Response,
}

/// Bounds that keep a hostile or broken peer from making us buffer or queue
/// without limit.
#[derive(Clone, Debug)]
pub struct Limits {
    /// A header block larger than this is treated as garbage (parse error +
    /// resync), since it is also the most we are willing to buffer per side.
    pub max_header_bytes: usize,
    /// Pipelined requests awaiting responses; beyond this the oldest is
    /// dropped (and counted) so a server that never answers cannot grow us.
    pub max_pending_requests: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            // As much as the kernel copies of a head (`monitor_common::head::HEAD_MAX`).
            max_header_bytes: monitor_common::head::HEAD_MAX as usize,
            max_pending_requests: 64,
        }
    }
}

pub use crate::protocol::exchange::Exchange;
