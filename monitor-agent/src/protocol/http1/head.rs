//! Turns a buffered header block into the few facts the reassembler needs.
//! Everything is copied out immediately so no borrow of the buffer survives.

use std::mem::MaybeUninit;

use super::types::Side;
use crate::protocol::credentials::{Auth, AuthSniffer};
use crate::protocol::media::media_type;
use crate::text::Text;

/// More headers than this is treated as garbage rather than grown into (RFC 9110 sets no
/// limit; servers commonly allow about 100).
const MAX_HEADERS: usize = 256;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum BodyLen {
    None,
    Length(u64),
    Chunked,
    /// Only valid for responses: the body ends when the connection does.
    UntilClose,
}

#[derive(Debug)]
pub(super) struct RequestHead {
    pub method: Text,
    pub target: String,
    pub host: Option<Text>,
    pub body: BodyLen,
    /// Boxed, and `None` for no credential: most requests carry none, and the parser's
    /// enums stay small.
    pub auth: Option<Box<Auth>>,
    pub content_type: Option<Text>,
    /// `Upgrade: h2c`: the client asks to continue in cleartext HTTP/2.
    pub upgrade_h2c: bool,
}

#[derive(Debug)]
pub(super) struct ResponseHead {
    pub status: u16,
    /// Framing implied by the response alone; the session overrides it when
    /// the request (HEAD, CONNECT) says there is no body.
    pub body: BodyLen,
    pub content_type: Option<Text>,
}

#[derive(Debug)]
pub(super) enum Head {
    Request(RequestHead),
    Response(ResponseHead),
}

#[derive(Debug)]
pub(super) enum Parsed {
    Partial,
    /// Header block length and its content.
    Complete(usize, Head),
    Invalid,
}

/// Room for the most headers a head may have, left uninitialised: filling 8 KiB of
/// empty headers on every head was a tenth of the agent's time at saturation.
fn uninit_headers<'b>() -> [MaybeUninit<httparse::Header<'b>>; MAX_HEADERS] {
    [const { MaybeUninit::uninit() }; MAX_HEADERS]
}

pub(super) fn parse(side: Side, buf: &[u8]) -> Parsed {
    match side {
        Side::Request => parse_request(buf),
        Side::Response => parse_response(buf),
    }
}

fn parse_request(buf: &[u8]) -> Parsed {
    let mut headers = uninit_headers();
    let mut req = httparse::Request::new(&mut []);
    let res = req.parse_with_uninit_headers(buf, &mut headers);
    // Reject garbage as soon as the method is known instead of buffering a
    // whole header block of it.
    if let Some(m) = req.method {
        if !plausible_method(m) {
            return Parsed::Invalid;
        }
    }
    let n = match res {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(_) => return Parsed::Invalid,
    };
    let (Some(method), Some(target), Some(_)) = (req.method, req.path, req.version) else {
        return Parsed::Invalid;
    };
    let Some(framing) = Framing::from_headers(req.headers, true) else {
        return Parsed::Invalid;
    };
    let body = if let Some(chunked) = framing.chunked {
        // RFC 9112 6.3: a request whose last coding is not chunked cannot be
        // delimited, so it is not something we can follow.
        if !chunked {
            return Parsed::Invalid;
        }
        BodyLen::Chunked
    } else {
        match framing.length {
            Some(0) | None => BodyLen::None,
            Some(n) => BodyLen::Length(n),
        }
    };
    Parsed::Complete(
        n,
        Head::Request(RequestHead {
            method: Text::interned(method),
            target: target.to_owned(),
            host: framing.host,
            body,
            auth: (framing.auth != Auth::default()).then(|| Box::new(framing.auth)),
            content_type: framing.content_type,
            upgrade_h2c: framing.upgrade_h2c,
        }),
    )
}

fn parse_response(buf: &[u8]) -> Parsed {
    let mut headers = uninit_headers();
    let mut res = httparse::Response::new(&mut []);
    let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut res,
        buf,
        &mut headers,
    );
    let n = match parsed {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(_) => return Parsed::Invalid,
    };
    let Some(status) = res.code else {
        return Parsed::Invalid;
    };
    let Some(framing) = Framing::from_headers(res.headers, false) else {
        return Parsed::Invalid;
    };
    let body = if (100..200).contains(&status) || status == 204 || status == 304 {
        BodyLen::None
    } else {
        match (framing.chunked, framing.length) {
            (Some(true), _) => BodyLen::Chunked,
            (Some(false), _) => BodyLen::UntilClose,
            (None, Some(0)) => BodyLen::None,
            (None, Some(n)) => BodyLen::Length(n),
            (None, None) => BodyLen::UntilClose,
        }
    };
    Parsed::Complete(
        n,
        Head::Response(ResponseHead {
            status,
            body,
            content_type: framing.content_type,
        }),
    )
}

/// Any RFC 9110 token is a method a server may accept (httparse has checked it is one):
/// WebDAV's, a cache's `PURGE`, a made-up `M1X`. A server sees them, so the agent must;
/// they are filed under `_OTHER` beyond the registered set. Only the length is bounded,
/// so a long run of token bytes is not buffered as a head.
fn plausible_method(m: &str) -> bool {
    !m.is_empty() && m.len() <= 64
}

struct Framing {
    /// `Some(last coding is chunked)` when Transfer-Encoding is present.
    chunked: Option<bool>,
    length: Option<u64>,
    host: Option<Text>,
    auth: Auth,
    content_type: Option<Text>,
    upgrade_h2c: bool,
}

impl Framing {
    /// `None` when the framing headers are contradictory or malformed, which
    /// would make any body length we pick a guess.
    fn from_headers(headers: &[httparse::Header<'_>], request: bool) -> Option<Framing> {
        let mut f = Framing {
            chunked: None,
            length: None,
            host: None,
            auth: Auth::default(),
            content_type: None,
            upgrade_h2c: false,
        };
        let mut auth = AuthSniffer::default();
        for h in headers {
            if request {
                auth.observe(h.name.as_bytes(), h.value);
            }
            if h.name.eq_ignore_ascii_case("content-length") {
                let n = parse_length(h.value)?;
                if f.length.is_some_and(|old| old != n) {
                    return None;
                }
                f.length = Some(n);
            } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                let last = h.value.rsplit(|&b| b == b',').next().unwrap_or(&[]);
                f.chunked = Some(<[u8]>::trim_ascii(last).eq_ignore_ascii_case(b"chunked"));
            } else if h.name.eq_ignore_ascii_case("host") && f.host.is_none() {
                f.host = Some(Text::interned_lossy(<[u8]>::trim_ascii(h.value)));
            } else if h.name.eq_ignore_ascii_case("upgrade") {
                f.upgrade_h2c |= h
                    .value
                    .split(|&b| b == b',')
                    .any(|p| <[u8]>::trim_ascii(p).eq_ignore_ascii_case(b"h2c"));
            } else if h.name.eq_ignore_ascii_case("content-type") && f.content_type.is_none() {
                f.content_type = media_type(h.value);
            }
        }
        f.auth = auth.finish();
        Some(f)
    }
}

/// The media type without parameters (`application/json; charset=utf-8` →
/// `application/json`), lower-cased and bounded, so it can be counted per endpoint.
fn parse_length(v: &[u8]) -> Option<u64> {
    let v = <[u8]>::trim_ascii(v);
    if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    v.iter().try_fold(0u64, |acc, &d| {
        acc.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}
