//! What every protocol parser hands the connection tracker: one request paired with its
//! response, whatever the wire format was.

use serde::{Deserialize, Serialize};

use crate::text::Text;

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

/// A field of a call that may be impossible to decode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    Method,
    Path,
    /// `:authority` or `Host`, written `host` in records.
    Host,
    Status,
    GrpcStatus,
}

impl Field {
    /// Record order.
    const ALL: [Field; 5] = [
        Field::Method,
        Field::Path,
        Field::Host,
        Field::Status,
        Field::GrpcStatus,
    ];

    /// The name call records use.
    pub fn name(self) -> &'static str {
        match self {
            Field::Method => "method",
            Field::Path => "path",
            Field::Host => "host",
            Field::Status => "status",
            Field::GrpcStatus => "grpc_status",
        }
    }

    fn bit(self) -> u8 {
        1 << self as u8
    }
}

/// Request or response fields that could not be decoded: an HTTP/2 connection joined after
/// it started refers to header table entries the agent never saw. Such a field is reported
/// as unknown rather than guessed. A set of [`Field`]s, written as the list of their names.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub struct Unknown(u8);

impl Unknown {
    pub fn of(fields: &[Field]) -> Unknown {
        fields.iter().fold(Unknown(0), |u, &f| u.with(f, true))
    }

    /// This set, with `field` added when `unknown`.
    #[must_use]
    pub fn with(self, field: Field, unknown: bool) -> Unknown {
        if unknown {
            Unknown(self.0 | field.bit())
        } else {
            self
        }
    }

    pub fn contains(self, field: Field) -> bool {
        self.0 & field.bit() != 0
    }

    pub fn is_empty(&self) -> bool {
        self.0 == 0
    }

    /// The fields, in record order.
    pub fn iter(self) -> impl Iterator<Item = Field> {
        Field::ALL.into_iter().filter(move |f| self.contains(*f))
    }
}

impl std::fmt::Debug for Unknown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.iter().map(Field::name)).finish()
    }
}

impl Serialize for Unknown {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter().map(Field::name))
    }
}

impl<'de> Deserialize<'de> for Unknown {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let names = Vec::<String>::deserialize(d)?;
        names.iter().try_fold(Unknown::default(), |u, n| {
            let f = Field::ALL
                .into_iter()
                .find(|f| f.name() == n)
                .ok_or_else(|| {
                    serde::de::Error::custom(format!("unknown field name {n:?} in `unknown`"))
                })?;
            Ok(u.with(f, true))
        })
    }
}

/// The gRPC outcome of a call, from the response trailers (or a trailers-only response).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamError {
    pub frame: EndingFrame,
    pub code: ErrorCode,
    pub by: Sender,
}

/// The frame that ended a stream early.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EndingFrame {
    #[serde(rename = "RST_STREAM")]
    RstStream,
    #[serde(rename = "GOAWAY")]
    Goaway,
}

impl EndingFrame {
    pub fn name(self) -> &'static str {
        match self {
            EndingFrame::RstStream => "RST_STREAM",
            EndingFrame::Goaway => "GOAWAY",
        }
    }
}

/// Which side of the call sent a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Sender {
    Client,
    Server,
    /// On a connection joined mid-life, before any frame said which side is which.
    Unknown,
}

impl Sender {
    pub fn name(self) -> &'static str {
        match self {
            Sender::Client => "client",
            Sender::Server => "server",
            Sender::Unknown => "unknown",
        }
    }
}

/// An HTTP/2 error code (RFC 9113 section 7), written by its name in call records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ErrorCode(pub u32);

impl ErrorCode {
    pub fn name(self) -> &'static str {
        match self.0 {
            0x0 => "NO_ERROR",
            0x1 => "PROTOCOL_ERROR",
            0x2 => "INTERNAL_ERROR",
            0x3 => "FLOW_CONTROL_ERROR",
            0x4 => "SETTINGS_TIMEOUT",
            0x5 => "STREAM_CLOSED",
            0x6 => "FRAME_SIZE_ERROR",
            0x7 => "REFUSED_STREAM",
            0x8 => "CANCEL",
            0x9 => "COMPRESSION_ERROR",
            0xa => "CONNECT_ERROR",
            0xb => "ENHANCE_YOUR_CALM",
            0xc => "INADEQUATE_SECURITY",
            0xd => "HTTP_1_1_REQUIRED",
            _ => "UNKNOWN_ERROR",
        }
    }
}

impl Serialize for ErrorCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

/// Read back from a record: a code outside RFC 9113's list was written `UNKNOWN_ERROR`, its
/// number lost, and reads as `u32::MAX`.
impl<'de> Deserialize<'de> for ErrorCode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        (0..=0xd)
            .map(ErrorCode)
            .find(|c| c.name() == name)
            .or((name == "UNKNOWN_ERROR").then_some(ErrorCode(u32::MAX)))
            .ok_or_else(|| serde::de::Error::custom(format!("unknown HTTP/2 error code {name:?}")))
    }
}

/// One request paired with its response.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Exchange {
    pub protocol: Protocol,
    pub method: Text,
    /// Exactly as sent (path + query), so callers can decide how to normalise.
    pub target: String,
    pub host: Option<Text>,
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
    pub request_content_type: Option<Text>,
    pub response_content_type: Option<Text>,
    pub unknown: Unknown,
    pub grpc: Option<Grpc>,
    pub stream_error: Option<StreamError>,
    /// An HTTP/1.1 request that asked to switch to cleartext HTTP/2 (`Upgrade: h2c`).
    pub upgrade_h2c: bool,
}
