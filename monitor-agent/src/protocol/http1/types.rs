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
            max_header_bytes: 16 * 1024,
            max_pending_requests: 64,
        }
    }
}

/// One request paired with its response.
#[derive(Clone, Debug, PartialEq)]
pub struct Exchange {
    pub method: String,
    /// Exactly as sent (path + query), so callers can decide how to normalise.
    pub target: String,
    pub version_minor: u8,
    pub host: Option<String>,
    /// Final status; 1xx interim responses are folded into this exchange.
    pub status: u16,
    pub request_start_ns: u64,
    pub request_end_ns: u64,
    /// First byte of the first response, which may be a 1xx interim one.
    pub response_start_ns: u64,
    pub response_end_ns: u64,
    /// Wire size including bytes lost in gaps, so throughput stays accurate.
    pub request_bytes: u64,
    /// Includes 1xx interim responses.
    pub response_bytes: u64,
    /// Bodies alone (the OpenTelemetry body-size metrics measure these).
    pub request_body_bytes: u64,
    pub response_body_bytes: u64,
    pub request_truncated: bool,
    pub response_truncated: bool,
    /// Which credential the request carried (never the credential).
    pub auth: crate::protocol::credentials::Auth,
    /// Media types without parameters.
    pub request_content_type: Option<String>,
    pub response_content_type: Option<String>,
}

/// Counters describing how much of the connection could not be understood.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SessionStats {
    pub parse_errors: u64,
    pub resyncs: u64,
    pub unmatched_responses: u64,
    pub dropped_requests: u64,
    pub gaps: u64,
}
