//! Which protocol a connection speaks, from its first captured bytes, and what it becomes
//! after a protocol switch. The tracker asks; only this module builds sessions.

use monitor_common::{sniff, sniff::SNIFF_LEN, Direction, Sniff};

use super::{
    exchange::Exchange,
    http1::{self, Limits},
    http2::{self, Start},
    session::{ProtocolSession, Switch},
};
use crate::record::Role;

/// Plaintext segments from a TLS library that may pass before giving up on a connection
/// that does not look like HTTP.
const UNDECIDED_SEGMENTS: u8 = 4;

/// What a connection's first captured bytes say.
pub enum Detected {
    Session(Box<dyn ProtocolSession>),
    /// Not enough seen yet.
    Undecided,
    /// Not HTTP, or a protocol we do not follow.
    Other,
}

/// What the tracker knows of the connection when a segment arrives.
pub struct Seen<'a> {
    pub data: &'a [u8],
    pub dir: Direction,
    /// The observed process's role, if known (from the kernel or earlier bytes).
    pub role: Option<Role>,
    /// The kernel saw the connection set up and these are its first bytes.
    pub from_start: bool,
    /// The bytes are plaintext from the TLS probes (never sniffed in the kernel).
    pub tls: bool,
    /// Data segments seen so far, this one included.
    pub segments: u8,
}

/// The observed process's role when it sent (egress) or received bytes that sniff as `what`.
fn role_from(what: Sniff, dir: Direction) -> Option<Role> {
    let wrote = dir == Direction::Egress;
    match what {
        Sniff::Http1Request | Sniff::Http2Preface => {
            Some(if wrote { Role::Client } else { Role::Server })
        }
        Sniff::Http1Response => Some(if wrote { Role::Server } else { Role::Client }),
        _ => None,
    }
}

fn sniff_segment(data: &[u8]) -> Sniff {
    let mut b = [0u8; SNIFF_LEN];
    let n = data.len().min(SNIFF_LEN);
    b[..n].copy_from_slice(&data[..n]);
    sniff(&b, n)
}

/// Picks the session for a connection, and the role its bytes reveal.
pub fn detect(seen: &Seen<'_>) -> (Detected, Option<Role>) {
    let what = sniff_segment(seen.data);
    let role = seen.role.or_else(|| role_from(what, seen.dir));
    // Seen from its start, whichever side speaks first (an HTTP/2 server may send its
    // SETTINGS before it reads the client's preface).
    let from_start = seen.role.filter(|_| seen.from_start);
    let http1 = |role: Role| -> Detected {
        let s = http1::Session::new(Limits::default()).with_requests(role.requests_direction());
        Detected::Session(Box::new(s))
    };
    let http2 = |start: Start| Detected::Session(Box::new(http2::Session::new(start)));
    let detected = match (what, from_start, role) {
        (Sniff::Http2Preface, _, _) => http2(Start::Fresh { client: seen.dir }),
        (Sniff::Http2Frame, Some(r), _) => http2(Start::Fresh {
            client: r.requests_direction(),
        }),
        (Sniff::Http1Request | Sniff::Http1Response, _, Some(r)) => http1(r),
        // Frames in mid-stream: a connection that was open before us.
        (Sniff::Http2Frame, None, _) => http2(Start::Attached {
            client: role.map(Role::requests_direction),
        }),
        // The kernel only sends a socket's bytes once they looked like HTTP, so an
        // unrecognised segment here is HTTP/1 joined mid-message (its parser resyncs).
        // TLS plaintext is not sniffed in the kernel: give it a few segments.
        (_, _, Some(r)) if !seen.tls => http1(r),
        _ if seen.segments >= UNDECIDED_SEGMENTS => Detected::Other,
        _ => Detected::Undecided,
    };
    (detected, role)
}

/// What a connection goes on with after a segment.
pub enum Next {
    /// The same session.
    Same,
    /// It switched to a protocol we follow, with this session.
    Session(Box<dyn ProtocolSession>),
    /// It switched to a protocol we do not follow.
    Other,
}

/// After a segment: whether the connection left its protocol, and for what.
pub fn after_switch(
    session: &mut dyn ProtocolSession,
    dir: Direction,
    ts_ns: u64,
    out: &mut Vec<Exchange>,
) -> Next {
    match session.switch(out) {
        Switch::Stay => Next::Same,
        Switch::Unfollowed => Next::Other,
        // The HTTP/1.1 request becomes stream 1 of an HTTP/2 connection (RFC 7540 3.2).
        Switch::H2c(up) => {
            let mut h2 = http2::Session::new(Start::Upgraded {
                client: up.requests,
            });
            h2.upgraded_request(up.request);
            if !up.after.is_empty() {
                h2.data(dir, &up.after, ts_ns, out);
            }
            Next::Session(Box::new(h2))
        }
    }
}
