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
    /// Fewer than `SNIFF_LEN` bytes that are the start of a request or status line, but too
    /// few to tell (`GE`, `GET `, `HTTP/`): a client writing byte by byte must not be
    /// taken for another protocol, or it could hide its requests that way.
    Partial,
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
    let len = if len < SNIFF_LEN { len } else { SNIFF_LEN };
    if len == 0 {
        return Sniff::Unknown;
    }
    let line = if len < 5 {
        request_line(b, len)
    } else {
        match &[b[0], b[1], b[2], b[3]] {
            // An authority, not a path, follows CONNECT.
            b"CONN" => prefix_of(b, len, b"CONNECT "),
            b"PRI " => {
                return if b[4] == b'*' {
                    Sniff::Http2Preface
                } else {
                    Sniff::Unknown
                }
            }
            b"HTTP" => {
                return match prefix_of(b, len, b"HTTP/1.") {
                    Line::Request => Sniff::Http1Response,
                    Line::Prefix => Sniff::Partial,
                    Line::No => Sniff::Unknown,
                }
            }
            _ => request_line(b, len),
        }
    };
    match line {
        Line::Request => Sniff::Http1Request,
        Line::Prefix => Sniff::Partial,
        Line::No if len >= 9 && http2_frame(b) => Sniff::Http2Frame,
        Line::No => Sniff::Unknown,
    }
}

/// How the first bytes of a segment compare with a request line.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Line {
    /// They start one.
    Request,
    /// They are all there is and could still become one.
    Prefix,
    No,
}

/// Whether the first `len` bytes are `word` (`Request`), or a shorter start of it.
#[inline(always)]
fn prefix_of(b: &[u8; SNIFF_LEN], len: usize, word: &[u8]) -> Line {
    let mut i = 0;
    while i < word.len() && i < SNIFF_LEN {
        if i >= len {
            return Line::Prefix;
        }
        if b[i] != word[i] {
            return Line::No;
        }
        i += 1;
    }
    Line::Request
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
fn request_line(b: &[u8; SNIFF_LEN], len: usize) -> Line {
    // Running out of bytes before deciding is a prefix only while more could follow.
    let short = if len < SNIFF_LEN {
        Line::Prefix
    } else {
        Line::No
    };
    let mut i = 0;
    while i < SNIFF_LEN {
        if i >= len {
            return short;
        }
        let c = b[i];
        if c == b' ' {
            break;
        }
        if !tchar(c) {
            return Line::No;
        }
        i += 1;
    }
    // The method is at least one byte, and its space and the target's start are seen.
    if i == 0 {
        return Line::No;
    }
    if i + 1 >= len || i + 1 >= SNIFF_LEN {
        return short;
    }
    match b[i + 1] {
        b'/' | b'*' => Line::Request,
        b'h' => {
            let mut k = 2;
            while k < 5 {
                let at = i + k;
                if at >= len || at >= SNIFF_LEN {
                    return short;
                }
                if b[at] != b"http"[k - 1] {
                    return Line::No;
                }
                k += 1;
            }
            Line::Request
        }
        _ => Line::No,
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
        // Other text protocols, and request lines too long or too short to tell.
        for other in [
            &b"HELO host.example"[..],
            b"USER anonymous",
            b"+OK ready",
            b"SET key value",
            b"GET key",
            b"GET hxyz",
            b"HTTP/2 200",
            b"CONNX /",
            b" /x",
            b"\r\n",
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
        assert_eq!(s(b"SSH-2.0-OpenSSH_9.2p1\r\n"), Sniff::Unknown);
    }

    #[test]
    fn starts_too_short_to_tell_are_partial() {
        for start in [
            &b"G"[..],
            b"GE",
            b"GET",
            b"GET ",
            b"GET h",
            b"GET htt",
            b"POSTX",
            b"HTTP/",
            b"HTTP/1",
            b"CONNEC",
            b"PRI",
            b"M-SEARCH",
        ] {
            assert_eq!(
                s(start),
                Sniff::Partial,
                "{:?}",
                core::str::from_utf8(start)
            );
        }
        // Sixteen bytes decide: no method is that long.
        assert_eq!(s(b"ABCDEFGHIJKLMNOP"), Sniff::Unknown);
        assert_eq!(s(b"ABCDEFGHIJKLMNO "), Sniff::Unknown);
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
