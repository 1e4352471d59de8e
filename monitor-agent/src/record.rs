//! The call record: the stable JSON contract every sink and query shares.

use std::{
    fmt::Write as _,
    net::{IpAddr, SocketAddr},
    sync::Arc,
    time::SystemTime,
};

use monitor_common::{ConnRole, Direction};
use serde::{Deserialize, Serialize};

use crate::{
    protocol::{
        credentials::Auth,
        exchange::{Field, Grpc, Protocol, StreamError, Unknown},
    },
    text::Text,
};

/// One side of a call. `pid`/`comm` are known only for the side whose process was observed.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Peer {
    pub ip: IpAddr,
    pub port: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// Shared with the connection: one allocation per connection, not per call.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comm: Option<Arc<str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    /// Shared with the connection, like `comm`.
    pub service: Option<Arc<str>>,
    /// Namespace, pod, workload and service account, when the peer is a known pod.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kubernetes: Option<Arc<crate::identity::Workload>>,
}

impl Peer {
    pub fn remote(addr: SocketAddr) -> Peer {
        Peer {
            ip: addr.ip(),
            port: addr.port(),
            pid: None,
            comm: None,
            service: None,
            kubernetes: None,
        }
    }

    pub fn local(addr: SocketAddr, pid: u32, comm: Arc<str>) -> Peer {
        Peer {
            ip: addr.ip(),
            port: addr.port(),
            pid: Some(pid),
            comm: Some(comm),
            service: None,
            kubernetes: None,
        }
    }
}

/// Which side of the call the observed process was.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Client,
    Server,
}

impl Role {
    /// The observed process's role as the kernel saw the connection set up, if it did.
    pub fn from_kernel(role: ConnRole) -> Option<Role> {
        match role {
            ConnRole::Client => Some(Role::Client),
            ConnRole::Server => Some(Role::Server),
            ConnRole::Unknown => None,
        }
    }

    /// The direction requests travel in, seen from a process with this role.
    pub fn requests_direction(self) -> Direction {
        match self {
            Role::Client => Direction::Egress,
            Role::Server => Direction::Ingress,
        }
    }

    /// The observed process's role when requests travel in `dir`.
    pub fn of_requests_direction(dir: Direction) -> Role {
        match dir {
            Direction::Egress => Role::Client,
            Direction::Ingress => Role::Server,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Client => "client",
            Role::Server => "server",
        }
    }
}

/// The JSON every sink writes and the query API answers with; read back by the CLI and the
/// end-to-end tests, so fields left out when empty are read as empty.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct CallRecord {
    /// When the request's first byte was seen; written as RFC 3339 with microseconds.
    #[serde(serialize_with = "rfc3339", deserialize_with = "from_rfc3339")]
    pub ts: SystemTime,
    pub protocol: Protocol,
    pub tls: bool,
    pub role: Role,
    pub method: Text,
    /// Request target as sent, secret-looking query values redacted.
    pub path: String,
    /// The path without its query, templated (`/users/{id}`): decided once per call by
    /// the pipeline's [`crate::route::Router`]; empty until then.
    pub route: Text,
    pub status: u16,
    /// First request byte to last response byte at the observed socket.
    pub duration_us: u64,
    /// Whole messages on the wire: start line, headers and body.
    pub request_bytes: u64,
    pub response_bytes: u64,
    /// Bodies alone, without start line and headers.
    pub request_body_bytes: u64,
    pub response_body_bytes: u64,
    pub client: Peer,
    pub server: Peer,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<Text>,
    /// Part of a body was not captured (kernel truncation or ring-buffer drops).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
    /// Both the client and the server process were observed on this node; the record is
    /// the server's view with the client's identity added.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub seen_by_both: bool,
    /// With `seen_by_both`: the duration the client measured (`duration_us` is the
    /// server's), for the client-side latency metric.
    #[serde(skip)]
    pub client_duration_us: Option<u64>,
    /// The kind of credential the request carried, never the credential.
    pub auth: Auth,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_content_type: Option<Text>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_content_type: Option<Text>,
    /// gRPC service, method and status, for `protocol: "grpc"`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grpc: Option<Grpc>,
    /// An HTTP/2 stream that ended by RST_STREAM or GOAWAY instead of a full response.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream_error: Option<StreamError>,
    /// Fields that could not be decoded (`method`, `path`, `host`, `status`,
    /// `grpc_status`): an HTTP/2 connection joined mid-life. Their values above are empty
    /// rather than guessed.
    #[serde(default, skip_serializing_if = "Unknown::is_empty")]
    pub unknown: Unknown,
}

impl CallRecord {
    /// Whether the call can be filed under an endpoint and judged by policy: its method,
    /// path and status are all known.
    pub fn complete(&self) -> bool {
        ![Field::Method, Field::Path, Field::Status]
            .into_iter()
            .any(|f| self.unknown.contains(f))
    }
}

/// Where values beyond a cap go (methods, label values), as OpenTelemetry does for unknown
/// methods.
pub const OTHER: &str = "_OTHER";

/// The method a call is filed and labelled under: a registered method (RFC 9110's, and
/// PATCH), in its upper-case spelling whatever case was sent, and any other token `_OTHER`,
/// as OpenTelemetry does. Any token is a method on the wire, so without this a workload
/// could mint endpoints and label values at will; the record keeps the method as sent.
pub fn method_or_other(m: &str) -> &'static str {
    const REGISTERED: [&str; 9] = [
        "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
    ];
    REGISTERED
        .into_iter()
        .find(|r| r.eq_ignore_ascii_case(m))
        .unwrap_or(OTHER)
}

/// Formatting happens in the output thread, not on the parsing path.
pub(crate) fn rfc3339<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&humantime::format_rfc3339_micros(*t))
}

pub(crate) fn from_rfc3339<'de, D: serde::Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
    let text = String::deserialize(d)?;
    humantime::parse_rfc3339(&text).map_err(serde::de::Error::custom)
}

impl CallRecord {
    /// One human-readable line.
    pub fn to_text(&self) -> String {
        let mut s = String::with_capacity(160);
        let _ = write!(
            s,
            "{} {:<6} {} {} {} {} {}us {}:{} -> {}:{} req={}B resp={}B",
            humantime::format_rfc3339_micros(self.ts),
            self.role.as_str(),
            self.protocol.as_str(),
            self.method,
            self.path,
            self.status,
            self.duration_us,
            self.client.ip,
            self.client.port,
            self.server.ip,
            self.server.port,
            self.request_bytes,
            self.response_bytes,
        );
        let observed = match self.role {
            Role::Client => &self.client,
            Role::Server => &self.server,
        };
        if let (Some(comm), Some(pid)) = (&observed.comm, observed.pid) {
            let _ = write!(s, " {comm}[{pid}]");
        }
        if let Some(g) = &self.grpc {
            match g.status {
                Some(code) => {
                    let _ = write!(s, " grpc-status={code}");
                }
                None => s.push_str(" grpc-status=?"),
            }
        }
        if let Some(e) = &self.stream_error {
            let _ = write!(
                s,
                " {}:{} by {}",
                e.frame.name(),
                e.code.name(),
                e.by.name()
            );
        }
        if !self.unknown.is_empty() {
            s.push_str(" unknown=");
            for (i, f) in self.unknown.iter().enumerate() {
                if i > 0 {
                    s.push(',');
                }
                s.push_str(f.name());
            }
        }
        if self.tls {
            s.push_str(" tls");
        }
        if self.truncated {
            s.push_str(" truncated");
        }
        match crate::printable::printable(&s) {
            std::borrow::Cow::Borrowed(_) => s,
            std::borrow::Cow::Owned(escaped) => escaped,
        }
    }
}

#[doc(hidden)]
impl CallRecord {
    /// A plain `200` call for tests and fuzz targets to adjust with struct update syntax.
    pub fn sample(role: Role, client: Peer, server: Peer, method: &str, path: &str) -> CallRecord {
        CallRecord {
            ts: SystemTime::UNIX_EPOCH,
            protocol: Protocol::Http1,
            tls: false,
            role,
            method: method.into(),
            route: crate::route::path_of(path).into(),
            path: path.into(),
            status: 200,
            duration_us: 100,
            request_bytes: 1,
            response_bytes: 2,
            request_body_bytes: 0,
            response_body_bytes: 0,
            client,
            server,
            host: None,
            truncated: false,
            seen_by_both: false,
            client_duration_us: None,
            auth: Auth::default(),
            request_content_type: None,
            response_content_type: None,
            grpc: None,
            stream_error: None,
            unknown: Unknown::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{net::SocketAddr, time::Duration};

    use super::*;
    use crate::{
        identity::Workload,
        protocol::exchange::{EndingFrame, ErrorCode, Sender},
    };

    /// What the CLI and the tests read back is what the agent wrote, field for field, and
    /// writing it again gives the same bytes.
    #[test]
    fn a_record_reads_back_as_written() {
        let addr = |s: &str| s.parse::<SocketAddr>().unwrap();
        let mut client = Peer::local(addr("10.0.0.1:40000"), 7, Arc::from("curl"));
        client.service = Some(Arc::from("ns/web"));
        client.kubernetes = Some(Arc::new(Workload {
            namespace: "ns".into(),
            pod: "web-1".into(),
            workload: "web".into(),
            kind: "Deployment".into(),
            service_account: "default".into(),
        }));
        let full = CallRecord {
            ts: SystemTime::UNIX_EPOCH + Duration::from_micros(1_764_633_600_123_456),
            protocol: Protocol::Grpc,
            tls: true,
            host: Some("api".into()),
            truncated: true,
            seen_by_both: true,
            request_content_type: Some("application/grpc".into()),
            grpc: Some(Grpc {
                service: "demo.Greeter".into(),
                method: "SayHello".into(),
                status: Some(13),
                message: Some("boom".into()),
            }),
            stream_error: Some(StreamError {
                frame: EndingFrame::RstStream,
                code: ErrorCode(8),
                by: Sender::Server,
            }),
            unknown: Unknown::of(&[Field::Host, Field::GrpcStatus]),
            ..CallRecord::sample(
                Role::Server,
                client,
                Peer::remote(addr("[::1]:8080")),
                "POST",
                "/demo.Greeter/SayHello",
            )
        };
        let plain = CallRecord::sample(
            Role::Client,
            Peer::remote(addr("127.0.0.1:1")),
            Peer::remote(addr("127.0.0.1:2")),
            "GET",
            "/x?y=1",
        );
        for rec in [full, plain] {
            let text = serde_json::to_string(&rec).unwrap();
            let back: CallRecord = serde_json::from_str(&text).unwrap();
            assert_eq!(back, rec, "{text}");
            assert_eq!(serde_json::to_string(&back).unwrap(), text);
        }
    }

    #[test]
    fn unreadable_fields_are_refused_by_name() {
        let good = serde_json::to_value(CallRecord::sample(
            Role::Client,
            Peer::remote("127.0.0.1:1".parse().unwrap()),
            Peer::remote("127.0.0.1:2".parse().unwrap()),
            "GET",
            "/",
        ))
        .unwrap();
        for (key, bad, says) in [
            ("ts", serde_json::json!("yesterday"), "timestamp"),
            ("unknown", serde_json::json!(["colour"]), "colour"),
            (
                "stream_error",
                serde_json::json!({"frame": "GOAWAY", "code": "NOPE", "by": "client"}),
                "NOPE",
            ),
        ] {
            let mut v = good.clone();
            v[key] = bad;
            let e = serde_json::from_value::<CallRecord>(v)
                .unwrap_err()
                .to_string();
            assert!(
                e.to_lowercase().contains(&says.to_lowercase()),
                "{key}: {e}"
            );
        }
    }
}
