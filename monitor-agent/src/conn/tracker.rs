//! One shard's table of live connections.
//!
//! Each connection keeps a parser for the protocol its first bytes showed (HTTP/1 or
//! HTTP/2; an HTTP/1 connection may switch to HTTP/2 by `Upgrade: h2c`), the next expected
//! stream offset of each direction (a jump means the kernel dropped bytes) and who the
//! observed process is.

use std::{collections::HashMap, net::SocketAddr, sync::Arc};

use monitor_common::{
    sniff, sniff::SNIFF_LEN, Sniff, DIR_EGRESS, FLAG_TLS, KIND_CLOSE, KIND_DATA, KIND_GAP,
    ROLE_CLIENT, ROLE_SERVER,
};
use prometheus_client::metrics::counter::Counter;

use crate::{
    capture::event::Event,
    clock::Clock,
    identity::{same_node, Identity, LocalProcess, Workload},
    metrics::{CallLabels, Metrics, ProtocolLabels, ReasonLabels},
    protocol::{
        exchange::{Exchange, Protocol},
        http1::{Limits, Session, SessionStats, Side},
        http2,
    },
    record::{CallRecord, Peer, Role},
    redact::Redactor,
};

#[derive(Clone, Debug)]
pub struct TrackerConfig {
    /// Most connections this shard tracks; beyond it the longest idle are forgotten.
    pub max_connections: usize,
    /// Connections with no event for this long are forgotten.
    pub idle_timeout_ns: u64,
}

/// How the two ends of a connection are named: (observed process, peer), services and pods.
type Names = (
    Arc<str>,
    Arc<str>,
    Option<Arc<Workload>>,
    Option<Arc<Workload>>,
);

/// Which parser a connection's bytes go to.
enum Parser {
    /// No bytes yet that say which protocol this is.
    Undecided {
        segments: u8,
    },
    Http1(Box<Session>),
    Http2(Box<http2::Session>),
    /// Not HTTP, or switched to a protocol we do not follow (WebSocket...).
    Other,
}

/// Plaintext segments from a TLS library that may pass before giving up on a connection
/// that does not look like HTTP.
const UNDECIDED_SEGMENTS: u8 = 4;

struct Conn {
    role: Option<Role>,
    parser: Parser,
    /// Next expected stream offset per direction (egress, ingress).
    expected: [Option<u64>; 2],
    last_seen_ns: u64,
    local: SocketAddr,
    remote: SocketAddr,
    pid: u32,
    comm: Arc<str>,
    reported: SessionStats,
    /// Plaintext from the TLS library probes.
    tls: bool,
    /// (observed process's service, peer's service), named once the role is known.
    services: Option<Names>,
}

/// Counters resolved once so the hot path does not hash label sets.
struct Handles {
    /// Indexed by [protocol][role is server][tls].
    calls: [[[Counter; 2]; 2]; 3],
    /// Indexed by [parser is HTTP/2].
    parsers: [ParserHandles; 2],
    evicted_idle: Counter,
    evicted_capacity: Counter,
}

struct ParserHandles {
    parse_errors: Counter,
    resyncs: Counter,
    unmatched: Counter,
    dropped_requests: Counter,
    gaps: Counter,
}

pub struct ConnTracker {
    conns: HashMap<(u64, u64), Conn>,
    cfg: TrackerConfig,
    out: Recorder,
}

/// Everything needed to turn exchanges into records, apart from the connection table.
struct Recorder {
    clock: Clock,
    redactor: Redactor,
    identity: Arc<Identity>,
    h: Handles,
}

const PROTOCOLS: [Protocol; 3] = [Protocol::Http1, Protocol::Http2, Protocol::Grpc];

fn protocol_index(p: Protocol) -> usize {
    match p {
        Protocol::Http1 => 0,
        Protocol::Http2 => 1,
        Protocol::Grpc => 2,
    }
}

fn side_of(role: Role, direction: u8) -> Side {
    match (role, direction == DIR_EGRESS) {
        (Role::Client, true) | (Role::Server, false) => Side::Request,
        _ => Side::Response,
    }
}

fn sniff_segment(data: &[u8]) -> Sniff {
    let mut b = [0u8; SNIFF_LEN];
    let n = data.len().min(SNIFF_LEN);
    b[..n].copy_from_slice(&data[..n]);
    sniff(&b, n)
}

/// The role of the observed process when it `wrote` bytes that sniff as `what`.
fn role_from(what: Sniff, wrote: bool) -> Option<Role> {
    match what {
        Sniff::Http1Request | Sniff::Http2Preface => {
            Some(if wrote { Role::Client } else { Role::Server })
        }
        Sniff::Http1Response => Some(if wrote { Role::Server } else { Role::Client }),
        _ => None,
    }
}

/// The HTTP/2 session's index for a kernel direction (also the index of `Conn::expected`).
fn h2_dir(direction: u8) -> usize {
    if direction == DIR_EGRESS {
        http2::EGRESS
    } else {
        http2::INGRESS
    }
}

/// The direction requests travel in, seen from a process with `role`.
fn client_dir(role: Role) -> usize {
    match role {
        Role::Client => http2::EGRESS,
        Role::Server => http2::INGRESS,
    }
}

/// The observed process's role when requests travel in direction `client`.
fn role_of(client: usize) -> Role {
    if client == http2::EGRESS {
        Role::Client
    } else {
        Role::Server
    }
}

impl ConnTracker {
    pub fn new(
        cfg: TrackerConfig,
        clock: Clock,
        redactor: Redactor,
        identity: Arc<Identity>,
        m: &Metrics,
    ) -> Self {
        let calls = |p: Protocol, role: &str, tls: bool| {
            m.calls
                .get_or_create(&CallLabels {
                    protocol: p.as_str().into(),
                    role: role.into(),
                    tls: tls.to_string(),
                })
                .clone()
        };
        let parser = |p: Protocol| {
            let l = ProtocolLabels {
                protocol: p.as_str().into(),
            };
            ParserHandles {
                parse_errors: m.parse_errors.get_or_create(&l).clone(),
                resyncs: m.resyncs.get_or_create(&l).clone(),
                unmatched: m.unmatched_responses.get_or_create(&l).clone(),
                dropped_requests: m.dropped_requests.get_or_create(&l).clone(),
                gaps: m.stream_gaps.get_or_create(&l).clone(),
            }
        };
        let reason = |r: &str| {
            m.connections_evicted
                .get_or_create(&ReasonLabels { reason: r.into() })
                .clone()
        };
        let h = Handles {
            calls: PROTOCOLS.map(|p| {
                [
                    [calls(p, "client", false), calls(p, "client", true)],
                    [calls(p, "server", false), calls(p, "server", true)],
                ]
            }),
            parsers: [parser(Protocol::Http1), parser(Protocol::Http2)],
            evicted_idle: reason("idle"),
            evicted_capacity: reason("capacity"),
        };
        ConnTracker {
            conns: HashMap::new(),
            cfg,
            out: Recorder {
                clock,
                redactor,
                identity,
                h,
            },
        }
    }

    /// Connections currently tracked.
    pub fn tracked(&self) -> usize {
        self.conns.len()
    }

    /// Feeds one event; completed calls are appended to `out`.
    pub fn handle(&mut self, ev: &Event, out: &mut Vec<CallRecord>) {
        let key = ev.conn_key();
        let h = &ev.header;
        if h.kind == KIND_CLOSE {
            if let Some(mut conn) = self.conns.remove(&key) {
                let mut exchanges = Vec::new();
                match &mut conn.parser {
                    Parser::Http1(s) => s.on_close(h.ts_ns, &mut exchanges),
                    Parser::Http2(s) => s.on_close(),
                    _ => {}
                }
                self.out.finish(&mut conn, exchanges, out);
                self.out.report(&mut conn);
            }
            return;
        }
        if h.kind != KIND_DATA && h.kind != KIND_GAP {
            return;
        }
        if !self.conns.contains_key(&key) && self.conns.len() >= self.cfg.max_connections {
            self.evict_for_capacity();
        }
        let conn = self.conns.entry(key).or_insert_with(|| Conn {
            role: match h.role {
                ROLE_CLIENT => Some(Role::Client),
                ROLE_SERVER => Some(Role::Server),
                _ => None,
            },
            parser: Parser::Undecided { segments: 0 },
            expected: [None, None],
            last_seen_ns: h.ts_ns,
            local: ev.local(),
            remote: ev.remote(),
            pid: h.pid,
            comm: ev.comm().into(),
            reported: SessionStats::default(),
            tls: false,
            services: None,
        });
        conn.tls |= h.flags & FLAG_TLS != 0;
        conn.last_seen_ns = h.ts_ns;
        let dir = h2_dir(h.direction);
        if h.kind == KIND_DATA {
            if let Parser::Undecided { segments } = &mut conn.parser {
                *segments += 1;
                let segments = *segments;
                decide(conn, h.direction, h.stream_offset, &ev.data, segments);
            }
        }
        let mut exchanges = Vec::new();
        let gap = match conn.expected[dir] {
            Some(expected) if h.stream_offset > expected => h.stream_offset - expected,
            _ => 0,
        };
        conn.expected[dir] = Some(h.stream_offset + u64::from(h.orig_len));
        // Bytes of this event that were not captured: all of a gap record, or the part of
        // a data record the kernel cut.
        let missing = if h.kind == KIND_DATA {
            u64::from(h.orig_len - h.len.min(h.orig_len))
        } else {
            u64::from(h.orig_len)
        };
        let data: &[u8] = if h.kind == KIND_DATA { &ev.data } else { &[] };
        match &mut conn.parser {
            Parser::Undecided { .. } | Parser::Other => return,
            Parser::Http2(s) => {
                if gap > 0 {
                    s.on_gap(dir, gap, h.ts_ns, &mut exchanges);
                }
                if !data.is_empty() {
                    s.on_data(dir, data, h.ts_ns, &mut exchanges);
                }
                if missing > 0 {
                    s.on_gap(dir, missing, h.ts_ns, &mut exchanges);
                }
                if conn.role.is_none() {
                    conn.role = s.client_direction().map(role_of);
                }
            }
            Parser::Http1(s) => {
                let Some(role) = conn.role else {
                    return;
                };
                let side = side_of(role, h.direction);
                if gap > 0 {
                    s.on_gap(side, gap, h.ts_ns, &mut exchanges);
                }
                if !data.is_empty() {
                    s.on_data(side, data, h.ts_ns, &mut exchanges);
                }
                if missing > 0 && !s.upgraded() {
                    s.on_gap(side, missing, h.ts_ns, &mut exchanges);
                }
                if s.upgraded() {
                    switch_protocol(conn, role, h.direction, h.ts_ns, &mut exchanges);
                }
            }
        }
        self.out.finish(conn, exchanges, out);
        self.out.report(conn);
    }
}

/// Picks the parser from the first captured bytes of a connection.
fn decide(conn: &mut Conn, direction: u8, offset: u64, data: &[u8], segments: u8) {
    let what = sniff_segment(data);
    let wrote = direction == DIR_EGRESS;
    // The kernel saw the connect or accept, and these are the first bytes of the stream:
    // the connection is seen from its start, whichever side speaks first (an HTTP/2
    // server may send its SETTINGS before it reads the client's preface).
    let from_start = conn.role.filter(|_| offset == 0);
    if conn.role.is_none() {
        conn.role = role_from(what, wrote);
    }
    conn.parser = match (what, from_start) {
        (Sniff::Http2Preface, _) => {
            Parser::Http2(Box::new(http2::Session::new(http2::Start::Fresh {
                client: h2_dir(direction),
            })))
        }
        (Sniff::Http2Frame, Some(role)) => {
            Parser::Http2(Box::new(http2::Session::new(http2::Start::Fresh {
                client: client_dir(role),
            })))
        }
        (Sniff::Http1Request | Sniff::Http1Response, _) => {
            Parser::Http1(Box::new(Session::new(Limits::default())))
        }
        // Frames in mid-stream: a connection that was open before us.
        (Sniff::Http2Frame, None) => {
            Parser::Http2(Box::new(http2::Session::new(http2::Start::Attached {
                client: conn.role.map(client_dir),
            })))
        }
        // The kernel only sends a socket's bytes once they looked like HTTP, so an
        // unrecognised segment here is HTTP/1 joined mid-message (its parser resyncs).
        // TLS plaintext is not sniffed in the kernel: give it a few segments.
        _ if !conn.tls && conn.role.is_some() => {
            Parser::Http1(Box::new(Session::new(Limits::default())))
        }
        _ if segments >= UNDECIDED_SEGMENTS => Parser::Other,
        _ => Parser::Undecided { segments },
    };
}

/// After a `101 Switching Protocols`: an `Upgrade: h2c` request continues as stream 1 of
/// an HTTP/2 connection; anything else is a protocol we do not follow.
fn switch_protocol(
    conn: &mut Conn,
    role: Role,
    direction: u8,
    ts_ns: u64,
    exchanges: &mut Vec<Exchange>,
) {
    let Parser::Http1(s) = &mut conn.parser else {
        return;
    };
    let rest = s.take_after_upgrade();
    let Some(i) = exchanges.iter().position(|x| x.upgrade_h2c) else {
        conn.parser = Parser::Other;
        return;
    };
    let x = exchanges.remove(i);
    let mut h2 = http2::Session::new(http2::Start::Upgraded {
        client: client_dir(role),
    });
    h2.upgraded_request(x);
    if !rest.is_empty() {
        h2.on_data(h2_dir(direction), &rest, ts_ns, exchanges);
    }
    conn.parser = Parser::Http2(Box::new(h2));
    conn.reported = SessionStats::default();
}

impl Recorder {
    fn finish(&self, conn: &mut Conn, exchanges: Vec<Exchange>, out: &mut Vec<CallRecord>) {
        let Some(role) = conn.role else { return };
        if exchanges.is_empty() {
            return;
        }
        let (mine, theirs, my_pod, their_pod) = conn
            .services
            .get_or_insert_with(|| {
                let serving = role == Role::Server;
                let (mine, my_pod) = self.identity.local(LocalProcess {
                    pid: conn.pid,
                    comm: &conn.comm,
                    addr: conn.local,
                    serving,
                });
                let on_this_node = same_node(conn.local.ip(), conn.remote.ip());
                let theirs = self.identity.remote(conn.remote, !serving, on_this_node);
                (
                    mine,
                    theirs,
                    my_pod,
                    self.identity.remote_workload(conn.remote),
                )
            })
            .clone();
        for x in exchanges {
            let mut observed = Peer::local(conn.local, conn.pid, conn.comm.clone());
            observed.service = Some(mine.clone());
            observed.kubernetes.clone_from(&my_pod);
            let mut other = Peer::remote(conn.remote);
            other.service = Some(theirs.clone());
            other.kubernetes.clone_from(&their_pod);
            let (client, server) = match role {
                Role::Client => (observed, other),
                Role::Server => (other, observed),
            };
            self.h.calls[protocol_index(x.protocol)][usize::from(role == Role::Server)]
                [usize::from(conn.tls)]
            .inc();
            let path = self.redactor.target(&x.target);
            out.push(CallRecord {
                ts: self.clock.wall(x.request_start_ns),
                protocol: x.protocol,
                tls: conn.tls,
                role,
                method: x.method,
                route: String::new(),
                path,
                status: x.status,
                duration_us: x.response_end_ns.saturating_sub(x.request_start_ns) / 1000,
                request_bytes: x.request_bytes,
                response_bytes: x.response_bytes,
                request_body_bytes: x.request_body_bytes,
                response_body_bytes: x.response_body_bytes,
                client,
                server,
                host: x.host,
                truncated: x.request_truncated || x.response_truncated,
                seen_by_both: false,
                client_duration_us: None,
                auth: x.auth,
                request_content_type: x.request_content_type,
                response_content_type: x.response_content_type,
                grpc: x.grpc,
                stream_error: x.stream_error,
                unknown: x.unknown.names(),
            });
        }
    }

    /// Adds what a session counted since last time to the exported counters.
    fn report(&self, conn: &mut Conn) {
        let (now, h) = match &conn.parser {
            Parser::Http1(s) => (s.stats(), &self.h.parsers[0]),
            Parser::Http2(s) => (s.stats(), &self.h.parsers[1]),
            _ => return,
        };
        let was = &conn.reported;
        h.parse_errors
            .inc_by(now.parse_errors.saturating_sub(was.parse_errors));
        h.resyncs.inc_by(now.resyncs.saturating_sub(was.resyncs));
        h.unmatched.inc_by(
            now.unmatched_responses
                .saturating_sub(was.unmatched_responses),
        );
        h.dropped_requests
            .inc_by(now.dropped_requests.saturating_sub(was.dropped_requests));
        h.gaps.inc_by(now.gaps.saturating_sub(was.gaps));
        conn.reported = now.clone();
    }
}

impl ConnTracker {
    /// Forgets connections idle for longer than the timeout; returns the bytes the
    /// remaining connections' parsers hold.
    pub fn sweep(&mut self, now_ns: u64) -> usize {
        let timeout = self.cfg.idle_timeout_ns;
        let before = self.conns.len();
        self.conns
            .retain(|_, c| now_ns.saturating_sub(c.last_seen_ns) < timeout);
        self.out
            .h
            .evicted_idle
            .inc_by((before - self.conns.len()) as u64);
        self.conns
            .values()
            .map(|c| match &c.parser {
                Parser::Http1(s) => s.buffered_bytes(),
                Parser::Http2(s) => s.buffered_bytes(),
                _ => 0,
            })
            .sum()
    }

    /// Makes room by forgetting the longest-idle eighth of the table.
    fn evict_for_capacity(&mut self) {
        let mut seen: Vec<u64> = self.conns.values().map(|c| c.last_seen_ns).collect();
        let k = (seen.len() / 8).max(1).min(seen.len().saturating_sub(1));
        let (_, cutoff, _) = seen.select_nth_unstable(k);
        let cutoff = *cutoff;
        let before = self.conns.len();
        self.conns.retain(|_, c| c.last_seen_ns > cutoff);
        self.out
            .h
            .evicted_capacity
            .inc_by((before - self.conns.len()) as u64);
    }
}
