//! What a decoded header block says, with room for "could not be decoded".

use crate::protocol::{
    credentials::{Auth, AuthSniffer},
    media::media_type,
};
use crate::text::Text;

/// A header value that may be missing, or present but undecodable because it refers to a
/// header table entry this agent never saw.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) enum Value<T> {
    #[default]
    Absent,
    Known(T),
    Unknown,
}

impl<T> Value<T> {
    pub(super) fn known(&self) -> Option<&T> {
        match self {
            Value::Known(v) => Some(v),
            _ => None,
        }
    }

    pub(super) fn into_known(self) -> Option<T> {
        match self {
            Value::Known(v) => Some(v),
            _ => None,
        }
    }

    fn set(&mut self, v: Option<T>) {
        if matches!(self, Value::Absent) {
            *self = match v {
                Some(v) => Value::Known(v),
                None => Value::Unknown,
            };
        }
    }

    /// A field we cannot name may have been this one: absent becomes unknown.
    fn maybe_hidden(&mut self) {
        if matches!(self, Value::Absent) {
            *self = Value::Unknown;
        }
    }
}

/// The fields of one header block the agent reports on.
#[derive(Debug, Default)]
pub(super) struct Fields {
    pub method: Value<Text>,
    pub path: Value<String>,
    pub authority: Value<Text>,
    pub status: Value<u16>,
    pub content_type: Option<Text>,
    pub grpc_status: Value<u32>,
    pub grpc_message: Option<String>,
    /// Any field whose name could not be decoded: it may have been any header.
    pub hidden: bool,
    /// A request pseudo-header (`:method`, `:path`, `:scheme`, `:authority`) was seen.
    pub request_pseudo: bool,
    auth: AuthSniffer,
}

/// Longest value kept from a header (paths, authorities, gRPC messages): a request
/// target of 16 KiB is reported whole.
const MAX_VALUE: usize = 16 * 1024;

fn text(v: &[u8]) -> String {
    String::from_utf8_lossy(&v[..v.len().min(MAX_VALUE)]).into_owned()
}

/// A value that repeats from request to request (method, authority).
fn shared(v: &[u8]) -> Text {
    Text::interned_lossy(&v[..v.len().min(MAX_VALUE)])
}

impl Fields {
    /// Whether a header's value matters to a call record: pseudo-headers, media types,
    /// gRPC status, the host and credentials. Others need not even be decoded.
    pub(super) fn wants(name: &[u8]) -> bool {
        name.first() == Some(&b':')
            || matches!(
                name,
                b"content-type" | b"grpc-status" | b"grpc-message" | b"host" | b"authorization"
            )
            || crate::protocol::credentials::is_api_key_header(name)
    }

    /// One decoded field; `None` parts refer to header table entries never seen.
    pub(super) fn add(&mut self, name: Option<&[u8]>, value: Option<&[u8]>) {
        let Some(name) = name else {
            self.hidden = true;
            return;
        };
        match name {
            b":method" => {
                self.request_pseudo = true;
                self.method.set(value.map(shared));
            }
            b":path" => {
                self.request_pseudo = true;
                self.path.set(value.map(text));
            }
            b":authority" => {
                self.request_pseudo = true;
                self.authority.set(value.map(shared));
            }
            b":scheme" | b":protocol" => self.request_pseudo = true,
            b":status" => self.status.set(value.map(|v| parse_status(v).unwrap_or(0))),
            b"host" => {
                // HTTP/2 requests may carry Host instead of :authority.
                if let Some(v) = value {
                    if matches!(self.authority, Value::Absent) {
                        self.authority = Value::Known(shared(v));
                    }
                }
            }
            b"content-type" => {
                if self.content_type.is_none() {
                    self.content_type = value.and_then(media_type);
                }
            }
            b"grpc-status" => self
                .grpc_status
                .set(value.map(|v| parse_u32(v).unwrap_or(u32::MAX))),
            b"grpc-message" => {
                if let Some(v) = value {
                    self.grpc_message = Some(percent_decode(v));
                }
            }
            _ => {
                if let Some(v) = value {
                    self.auth.observe(name, v);
                }
            }
        }
    }

    /// Marks as unknown whatever a hidden field could have been.
    pub(super) fn settle(&mut self) {
        if self.hidden {
            self.method.maybe_hidden();
            self.path.maybe_hidden();
            self.authority.maybe_hidden();
            self.status.maybe_hidden();
            self.grpc_status.maybe_hidden();
        }
    }

    pub(super) fn take_auth(&mut self) -> Auth {
        std::mem::take(&mut self.auth).finish()
    }
}

/// `:status` is exactly three digits (RFC 9113 8.3.2).
fn parse_status(v: &[u8]) -> Option<u16> {
    (v.len() == 3)
        .then(|| parse_u32(v))
        .flatten()
        .map(|n| n as u16)
}

fn parse_u32(v: &[u8]) -> Option<u32> {
    if v.is_empty() || v.len() > 9 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(v).ok()?.parse().ok()
}

/// `grpc-message` is percent-encoded (gRPC over HTTP/2 spec).
fn percent_decode(v: &[u8]) -> String {
    let v = &v[..v.len().min(MAX_VALUE)];
    let mut out = Vec::with_capacity(v.len());
    let mut i = 0;
    while i < v.len() {
        if v[i] == b'%' && i + 2 < v.len() {
            let hex = |b: u8| (b as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(v[i + 1]), hex(v[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(v[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hidden_fields_make_missing_ones_unknown() {
        let mut f = Fields::default();
        f.add(Some(b":method"), Some(b"GET"));
        f.add(None, None);
        f.settle();
        assert_eq!(f.method, Value::Known("GET".into()));
        assert_eq!(f.path, Value::Unknown);
        // A known name with an unknown value is unknown, never a guess.
        let mut f = Fields::default();
        f.add(Some(b":path"), None);
        f.add(Some(b":path"), Some(b"/late"));
        assert_eq!(f.path, Value::Unknown);
    }

    #[test]
    fn grpc_message_is_percent_decoded() {
        let mut f = Fields::default();
        f.add(Some(b"grpc-status"), Some(b"5"));
        f.add(Some(b"grpc-message"), Some(b"no%20such%20person%"));
        assert_eq!(f.grpc_status, Value::Known(5));
        assert_eq!(f.grpc_message.as_deref(), Some("no such person%"));
        assert_eq!(percent_decode(b"%41%4"), "A%4");
    }

    #[test]
    fn status_and_media_type() {
        let mut f = Fields::default();
        f.add(Some(b":status"), Some(b"204"));
        f.add(Some(b"content-type"), Some(b"application/grpc+proto"));
        assert_eq!(f.status, Value::Known(204));
        assert_eq!(f.content_type.as_deref(), Some("application/grpc+proto"));
    }
}
