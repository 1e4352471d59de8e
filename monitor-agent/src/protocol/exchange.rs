//! What every protocol parser hands the connection tracker: one request paired with its
//! response, whatever the wire format was.

use serde::{Deserialize, Serialize};

/// The application protocol a call was carried in, as written in call records and labels.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Protocol {
    #[default]
    #[serde(rename = "http/1.1")]
    Http1,
    #[serde(rename = "http/2")]
    Http2,
    #[serde(rename = "grpc")]
    Grpc,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Http1 => "http/1.1",
            Protocol::Http2 => "http/2",
            Protocol::Grpc => "grpc",
        }
    }
}

/// Request or response fields that could not be decoded: an HTTP/2 connection joined after
/// it started refers to header table entries the agent never saw. Such a field is reported
/// as unknown rather than guessed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[allow(
    clippy::struct_excessive_bools,
    reason = "one flag per field; a bit set is issue 12's next step"
)]
pub struct Unknown {
    pub method: bool,
    pub path: bool,
    pub authority: bool,
    pub status: bool,
    pub grpc_status: bool,
}

impl Unknown {
    pub fn any(&self) -> bool {
        self.method || self.path || self.authority || self.status || self.grpc_status
    }

    /// Names of the unknown fields, in record order.
    pub fn names(&self) -> Vec<&'static str> {
        [
            (self.method, "method"),
            (self.path, "path"),
            (self.authority, "host"),
            (self.status, "status"),
            (self.grpc_status, "grpc_status"),
        ]
        .into_iter()
        .filter_map(|(u, n)| u.then_some(n))
        .collect()
    }
}

/// The gRPC outcome of a call, from the response trailers (or a trailers-only response).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Grpc {
    /// From `/package.Service/Method`.
    pub service: String,
    pub method: String,
    /// `grpc-status`; absent when the stream ended without one (reset, or lost trailers).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// A stream that ended without a complete response: reset by one side, or refused by a
/// GOAWAY. The call is still reported, with this as its explicit outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct StreamError {
    /// `RST_STREAM` or `GOAWAY`.
    pub frame: &'static str,
    /// The HTTP/2 error code's name (`CANCEL`, `REFUSED_STREAM`...).
    pub code: &'static str,
    /// Which side sent it: `client` or `server`.
    pub by: &'static str,
}

/// One request paired with its response.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Exchange {
    pub protocol: Protocol,
    pub method: String,
    /// Exactly as sent (path + query), so callers can decide how to normalise.
    pub target: String,
    pub version_minor: u8,
    pub host: Option<String>,
    /// Final status; 1xx interim responses are folded into this exchange. Zero when the
    /// stream ended before a response head.
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
    pub unknown: Unknown,
    pub grpc: Option<Grpc>,
    pub stream_error: Option<StreamError>,
    /// An HTTP/1.1 request that asked to switch to cleartext HTTP/2 (`Upgrade: h2c`).
    pub upgrade_h2c: bool,
}
