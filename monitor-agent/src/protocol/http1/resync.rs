//! Finding a plausible message start in a stream that lost sync. Patterns
//! are deliberately strict (known methods only) because a false match costs
//! another parse error while a missed one only costs one message.

use super::types::Side;

const METHODS: [&[u8]; 9] = [
    b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"CONNECT", b"OPTIONS", b"TRACE", b"PATCH",
];

/// Longest pattern is `HTTP/1.1 200` (12 bytes); a candidate starting in the
/// last `TAIL_KEEP` bytes may still complete with the next data.
pub(super) const TAIL_KEEP: usize = 11;

/// Position of the first fully visible plausible message start.
pub(super) fn find_start(side: Side, hay: &[u8]) -> Option<usize> {
    (0..hay.len()).find(|&p| {
        let rest = hay.get(p..).unwrap_or(&[]);
        match side {
            Side::Request => request_start(rest),
            Side::Response => response_start(rest),
        }
    })
}

fn request_start(s: &[u8]) -> bool {
    METHODS.iter().any(|m| {
        s.starts_with(m)
            && s.get(m.len()) == Some(&b' ')
            && s.get(m.len() + 1)
                .is_some_and(|&b| b == b'/' || b == b'*' || b == b'[' || b.is_ascii_alphanumeric())
    })
}

fn response_start(s: &[u8]) -> bool {
    s.len() >= 12
        && s.starts_with(b"HTTP/1.")
        && matches!(s[7], b'0' | b'1')
        && s[8] == b' '
        && s[9..12].iter().all(u8::is_ascii_digit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_request_start_inside_garbage() {
        assert_eq!(
            find_start(Side::Request, b"\x16\x03xxGET /a HTTP/1.1"),
            Some(4)
        );
        assert_eq!(find_start(Side::Request, b"OPTIONS * HTTP/1.1"), Some(0));
        assert_eq!(
            find_start(Side::Request, b"CONNECT example.com:443"),
            Some(0)
        );
        assert_eq!(find_start(Side::Request, b"GET "), None);
        assert_eq!(find_start(Side::Request, b"get /"), None);
        assert_eq!(find_start(Side::Request, b"FOO /"), None);
    }

    #[test]
    fn finds_response_start_inside_garbage() {
        assert_eq!(find_start(Side::Response, b"zzHTTP/1.1 200 OK"), Some(2));
        assert_eq!(find_start(Side::Response, b"HTTP/1.0 404"), Some(0));
        assert_eq!(find_start(Side::Response, b"HTTP/1.1 20"), None);
        assert_eq!(find_start(Side::Response, b"HTTP/2.0 200"), None);
    }
}
