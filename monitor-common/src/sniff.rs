//! Protocol sniffing on the first bytes of a connection's stream.
//!
//! Runs in the kernel on every unclassified socket segment, so it only compares fixed
//! prefixes: no loops over method tables, no allocation.
#![allow(
    clippy::inline_always,
    reason = "the eBPF side must inline these: a BPF-to-BPF call costs verifier budget"
)]

/// What the first bytes of a segment look like.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sniff {
    /// Starts like an HTTP/1 request line: a method (any RFC 9110 token: `GET`, `PROPFIND`,
    /// `PURGE`...), a space and the start of a target (`/`, `*`, `http`), or `CONNECT `.
    Http1Request,
    /// Starts like an HTTP/1 status line (`HTTP/1.1 `).
    Http1Response,
    /// The HTTP/2 connection preface (`PRI * HTTP/2.0`).
    Http2Preface,
    /// A well-formed HTTP/2 frame header: a connection that was already open when capture
    /// started. Userspace checks further before it believes it.
    Http2Frame,
    /// A TLS record header (handshake or application data): ciphertext, never HTTP here.
    Tls,
    /// Anything else.
    Unknown,
}

/// Number of leading bytes `sniff` looks at (an HTTP/2 frame header needs nine).
pub const SNIFF_LEN: usize = 16;

/// Classifies a segment from its first `SNIFF_LEN` bytes; `len` is how many of them are real.
#[inline(always)]
pub fn sniff(b: &[u8; SNIFF_LEN], len: usize) -> Sniff {
    // Record types: change_cipher_spec, alert, handshake, application_data; version 3.x.
    if len >= 3 && (0x14..=0x17).contains(&b[0]) && b[1] == 0x03 && b[2] <= 0x04 {
        return Sniff::Tls;
    }
    if len < 5 {
        return Sniff::Unknown;
    }
    let head = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    let b4 = b[4];
    let req = match &head.to_le_bytes() {
        // An authority, not a path, follows CONNECT.
        b"CONN" => len >= 8 && b4 == b'E' && b[5] == b'C' && b[6] == b'T' && b[7] == b' ',
        b"PRI " => {
            return if b4 == b'*' {
                Sniff::Http2Preface
            } else {
                Sniff::Unknown
            }
        }
        b"HTTP" => {
            return if len >= 7 && b4 == b'/' && b[5] == b'1' && b[6] == b'.' {
                Sniff::Http1Response
            } else {
                Sniff::Unknown
            }
        }
        _ => request_line(b, len),
    };
    if req {
        Sniff::Http1Request
    } else if len >= 9 && http2_frame(b) {
        Sniff::Http2Frame
    } else {
        Sniff::Unknown
    }
}

/// RFC 9110 `tchar`: what a method is made of.
#[inline(always)]
fn tchar(c: u8) -> bool {
    c.is_ascii_alphanumeric()
        || matches!(
            c,
            b'!' | b'#'
                | b'$'
                | b'%'
                | b'&'
                | b'\''
                | b'*'
                | b'+'
                | b'-'
                | b'.'
                | b'^'
                | b'_'
                | b'`'
                | b'|'
                | b'~'
        )
}

/// A method of any length that fits, a space, then `/`, `*` or `http` (the absolute form):
/// what every request line but CONNECT's starts with, whatever its method. The target's
/// first bytes keep other text protocols out (`HELO host`, `USER anon`, `+OK ready`).
#[inline(always)]
fn request_line(b: &[u8; SNIFF_LEN], len: usize) -> bool {
    let len = if len < SNIFF_LEN { len } else { SNIFF_LEN };
    let mut i = 0;
    while i < SNIFF_LEN {
        if i >= len {
            return false;
        }
        let c = b[i];
        if c == b' ' {
            break;
        }
        if !tchar(c) {
            return false;
        }
        i += 1;
    }
    // The method is at least one byte, and its space and the target's start are seen.
    if i == 0 || i + 1 >= len {
        return false;
    }
    match b[i + 1] {
        b'/' | b'*' => true,
        b'h' => i + 4 < len && b[i + 2] == b't' && b[i + 3] == b't' && b[i + 4] == b'p',
        _ => false,
    }
}

/// HTTP/2 frame types and the flags each may carry (RFC 9113 section 6).
const H2_DATA: u8 = 0;
const H2_HEADERS: u8 = 1;
const H2_PRIORITY: u8 = 2;
const H2_RST_STREAM: u8 = 3;
const H2_SETTINGS: u8 = 4;
const H2_PING: u8 = 6;
const H2_GOAWAY: u8 = 7;
const H2_WINDOW_UPDATE: u8 = 8;

/// Whether the first nine bytes are a frame header a real peer could send first on a
/// connection we join late. Deliberately strict: a false positive makes the kernel send a
/// non-HTTP connection's bytes to userspace for the rest of its life. PUSH_PROMISE and
/// CONTINUATION never start a write on their own, so they are not accepted here.
#[inline(always)]
pub fn http2_frame(b: &[u8; SNIFF_LEN]) -> bool {
    let len = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
    let kind = b[3];
    let flags = b[4];
    // The reserved bit must be zero.
    if b[5] & 0x80 != 0 || len > 16_384 {
        return false;
    }
    let stream = u32::from_be_bytes([b[5], b[6], b[7], b[8]]);
    match kind {
        H2_DATA => stream != 0 && flags & !0x09 == 0,
        H2_HEADERS => stream != 0 && len > 0 && flags & !0x2d == 0,
        H2_PRIORITY => stream != 0 && len == 5 && flags == 0,
        H2_RST_STREAM => stream != 0 && len == 4 && flags == 0,
        H2_SETTINGS => stream == 0 && len.is_multiple_of(6) && flags & !0x01 == 0,
        H2_PING => stream == 0 && len == 8 && flags & !0x01 == 0,
        H2_GOAWAY => stream == 0 && len >= 8 && flags == 0,
        H2_WINDOW_UPDATE => len == 4 && flags == 0,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(input: &[u8]) -> Sniff {
        let mut b = [0u8; SNIFF_LEN];
        let n = input.len().min(SNIFF_LEN);
        b[..n].copy_from_slice(&input[..n]);
        sniff(&b, n)
    }

    #[test]
    fn requests() {
        for m in [
            &b"GET / HTTP/1.1"[..],
            b"GET /a?b",
            b"POST /x",
            b"PUT /x",
            b"HEAD / ",
            b"DELETE /",
            b"PATCH /",
            b"OPTIONS *",
            b"CONNECT a:443",
            b"TRACE /",
            b"GET http://x/",
            b"PROPFIND /dav",
            b"PURGE /cache",
            b"MKCALENDAR /c",
            b"GETX /",
            b"M-SEARCH * HTTP",
            b"get /lower",
            b"X /path",
        ] {
            assert_eq!(s(m), Sniff::Http1Request, "{:?}", core::str::from_utf8(m));
        }
    }

    #[test]
    fn responses_and_others() {
        assert_eq!(s(b"HTTP/1.1 200 OK"), Sniff::Http1Response);
        assert_eq!(s(b"HTTP/1.0 404"), Sniff::Http1Response);
        assert_eq!(s(b"HTTP/2 200"), Sniff::Unknown);
        assert_eq!(s(b"PRI * HTTP/2.0\r\n"), Sniff::Http2Preface);
        assert_eq!(s(&[0x16, 0x03, 0x01, 0x02, 0x00]), Sniff::Tls);
        assert_eq!(s(&[0x17, 0x03, 0x03, 0x00, 0x20]), Sniff::Tls);
        assert_eq!(s(&[0x18, 0x03, 0x03, 0x00, 0x20]), Sniff::Unknown);
        assert_eq!(s(b"hello world"), Sniff::Unknown);
        assert_eq!(s(b"GET"), Sniff::Unknown);
        assert_eq!(s(b"POSTX"), Sniff::Unknown);
        // Other text protocols, and request lines too long or too short to tell.
        for other in [
            &b"HELO host.example"[..],
            b"USER anonymous",
            b"+OK ready",
            b"SET key value",
            b"GET key",
            b"GET h",
            b"GET ",
            b" /x",
            b"GE\x00 /x",
            b"AVERYLONGMETHOD /x",
        ] {
            assert_eq!(
                s(other),
                Sniff::Unknown,
                "{:?}",
                core::str::from_utf8(other)
            );
        }
        assert_eq!(s(b""), Sniff::Unknown);
        assert_eq!(s(b"SSH-2.0-OpenSSH"), Sniff::Unknown);
    }

    #[test]
    fn http2_frames_of_a_connection_joined_late() {
        // HEADERS, END_STREAM|END_HEADERS, stream 1, 13 octets.
        assert_eq!(s(&[0, 0, 13, 1, 5, 0, 0, 0, 1, 0x82]), Sniff::Http2Frame);
        // SETTINGS ACK; PING; WINDOW_UPDATE on the connection.
        assert_eq!(s(&[0, 0, 0, 4, 1, 0, 0, 0, 0]), Sniff::Http2Frame);
        assert_eq!(s(&[0, 0, 8, 6, 0, 0, 0, 0, 0]), Sniff::Http2Frame);
        assert_eq!(s(&[0, 0, 4, 8, 0, 0, 0, 0, 0]), Sniff::Http2Frame);
        // DATA with END_STREAM on stream 3.
        assert_eq!(s(&[0, 0x10, 0, 0, 1, 0, 0, 0, 3]), Sniff::Http2Frame);
        // Too short to tell, bad flags, stream 0 for HEADERS, reserved bit, oversize, unknown type.
        assert_eq!(s(&[0, 0, 13, 1, 5, 0, 0, 0]), Sniff::Unknown);
        assert_eq!(s(&[0, 0, 13, 1, 0x40, 0, 0, 0, 1]), Sniff::Unknown);
        assert_eq!(s(&[0, 0, 13, 1, 5, 0, 0, 0, 0]), Sniff::Unknown);
        assert_eq!(s(&[0, 0, 13, 1, 5, 0x80, 0, 0, 1]), Sniff::Unknown);
        assert_eq!(s(&[0, 0x40, 1, 0, 0, 0, 0, 0, 1]), Sniff::Unknown);
        assert_eq!(s(&[0, 0, 8, 10, 0, 0, 0, 0, 0]), Sniff::Unknown);
        // SETTINGS whose length is not a multiple of six; PING of the wrong length.
        assert_eq!(s(&[0, 0, 7, 4, 0, 0, 0, 0, 0]), Sniff::Unknown);
        assert_eq!(s(&[0, 0, 4, 6, 0, 0, 0, 0, 0]), Sniff::Unknown);
    }
}
