//! One shard's table of live connections.
//!
//! Each connection keeps a parser for the protocol its first bytes showed (HTTP/1 or
//! HTTP/2; an HTTP/1 connection may switch to HTTP/2 by `Upgrade: h2c`), the next expected
//! stream offset of each direction (a jump means the kernel dropped bytes) and who the
//! observed process is.

use std::{borrow::Cow, collections::HashMap, net::SocketAddr, sync::Arc};

use monitor_common::{ConnRole, Direction, EventKind, FLAG_TLS};

use super::{
    metrics::{ConnMetrics, Handles},
    switch_off::SwitchOff,
};
use crate::{
    capture::event::Event,
    clock::Clock,
    identity::{same_node, Identity, LocalProcess, Workload},
    limits::Limit,
    protocol::{
        detect::{after_switch, detect, Detected, Next, Seen},
        exchange::Exchange,
        session::{ProtocolSession, SessionStats},
    },
    record::{CallRecord, Peer, Role},
    redact::Redactor,
    text::Text,
};

#[derive(Clone, Debug)]
pub(crate) struct TrackerConfig {
    /// Most connections this shard tracks; beyond it the longest idle are forgotten.
    pub max_connections: usize,
    /// Connections with no event for this long are forgotten.
    pub idle_timeout_ns: u64,
    /// This shard's part of the node's parser memory budget: beyond it, the connections
    /// holding bytes that were idle longest are forgotten.
    pub max_parser_bytes: usize,
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
    Active(Box<dyn ProtocolSession>),
    /// Not HTTP, or switched to a protocol we do not follow (WebSocket...).
    Other,
}

struct Conn {
    /// The kernel's id of the connection the socket carries (the time it began tracking
    /// it, so a later connection on a reused socket has a larger one).
    kernel_id: u64,
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
    /// Per direction: the kernel's count of syscalls it lost (`EventHeader::lost`) as of
    /// the last record, and whether a hole of unknown size precedes the next record.
    lost: [u16; 2],
    hole: [bool; 2],
    /// (observed process's service, peer's service), named once the role is known.
    services: Option<Names>,
    /// The kernel was asked to stop capturing it.
    switched_off: bool,
    /// The parser gave back its spare room since the last event (see `sweep`).
    spare_released: bool,
}

/// A gap of unknown size: larger than any message the parsers would wait out, so that
/// each resynchronises instead of counting it off a body.
const HOLE: u64 = 1 << 40;

/// A connection quiet for this long gives back the room its parser keeps between
/// messages: keep-alive pools hold many connections that are mostly idle.
const RELEASE_SPARE_AFTER_NS: u64 = 1_000_000_000;

pub(crate) struct ConnTracker {
    /// Keyed by the kernel's socket address; one connection per socket at a time. Boxed:
    /// the table keeps up to twice as many slots as entries, and a node may hold tens of
    /// thousands of mostly idle connections.
    conns: HashMap<u64, Box<Conn>>,
    /// The calls one event completed, on their way to records: kept, so that no event
    /// allocates a list.
    exchanges: Vec<Exchange>,
    cfg: TrackerConfig,
    out: Recorder,
}

/// Everything needed to turn exchanges into records, apart from the connection table.
struct Recorder {
    clock: Clock,
    redactor: Redactor,
    identity: Arc<Identity>,
    h: Handles,
    switch: SwitchOff,
}

impl ConnTracker {
    pub(crate) fn new(
        cfg: TrackerConfig,
        clock: Clock,
        redactor: Redactor,
        identity: Arc<Identity>,
        m: &ConnMetrics,
    ) -> Self {
        let h = m.handles();
        let switch = m.switch_off(None);
        ConnTracker {
            conns: HashMap::new(),
            exchanges: Vec::new(),
            cfg,
            out: Recorder {
                clock,
                redactor,
                identity,
                h,
                switch,
            },
        }
    }

    /// Connections currently tracked.
    pub(crate) fn tracked(&self) -> usize {
        self.conns.len()
    }

    /// Feeds one event; completed calls are appended to `out`.
    pub(crate) fn handle(&mut self, ev: &Event, out: &mut Vec<Arc<CallRecord>>) {
        let (sock, id) = ev.conn_key();
        if !self.same_connection(sock, id, ev, out) {
            return;
        }
        let dir = match (ev.kind, ev.direction) {
            (EventKind::Close, _) => {
                self.close(sock, ev.header.ts_ns, out);
                return;
            }
            (EventKind::Data | EventKind::Gap, Some(dir)) => dir,
            _ => return,
        };
        if !self.conns.contains_key(&sock) && self.conns.len() >= self.cfg.max_connections {
            self.evict_for_capacity();
        }
        let conn = self
            .conns
            .entry(sock)
            .or_insert_with(|| Box::new(Conn::new(ev)));
        let h = &ev.header;
        conn.tls |= h.flags & FLAG_TLS != 0;
        conn.last_seen_ns = h.ts_ns;
        conn.spare_released = false;
        // Syscalls the kernel lost since the last record: bytes missing, count unknown.
        let d = dir.index();
        if conn.lost[d] != h.lost {
            conn.lost[d] = h.lost;
            conn.hole[d] = true;
            self.out.h.hole_syscall.inc();
        }
        // What of this event is new: a write is captured when it starts, so a write that
        // moved fewer bytes than it asked is followed by one that sends the rest again,
        // from where the stream really is (see `Overlap`).
        let Some(fresh) = Overlap::trim(conn.expected[d], h.stream_offset, h.orig_len, h.len)
        else {
            self.out.h.overlap_bytes.inc_by(u64::from(h.orig_len));
            return;
        };
        self.out.h.overlap_bytes.inc_by(fresh.skipped);
        // The captured bytes, and the bytes of this event that were not captured: all of a
        // gap record, or the part of a data record the kernel cut.
        let (data, missing): (&[u8], u64) = if ev.kind == EventKind::Data {
            let data = ev.data.get(fresh.data_from..).unwrap_or(&[]);
            conn.decide(data, dir, fresh.offset, conn.hole[d]);
            (data, fresh.len - data.len() as u64)
        } else {
            (&[], fresh.len)
        };
        // Bytes lost before this event: an offset jump, or a hole.
        let expected = &mut conn.expected[d];
        let mut before = expected.map_or(0, |e| fresh.offset.saturating_sub(e));
        *expected = Some(fresh.offset + fresh.len);
        if std::mem::take(&mut conn.hole[d]) {
            before = before.max(HOLE);
        }
        let exchanges = &mut self.exchanges;
        if conn.feed(dir, h.ts_ns, before, data, missing, exchanges) {
            self.out.finish(conn, exchanges, out);
            self.out.report(conn);
        }
        exchanges.clear();
        // Left for a protocol no parser follows: the kernel need not copy its bytes. TLS
        // plaintext comes from the library probes, which this switch does not reach.
        if matches!(conn.parser, Parser::Other) && !conn.tls && !conn.switched_off {
            conn.switched_off = true;
            self.out.switch.switch_off(conn.kernel_id);
        }
    }

    /// Lets the trackers switch off the kernel's capture of connections they leave.
    pub(crate) fn switching_off(mut self, switch: SwitchOff) -> Self {
        self.out.switch = switch;
        self
    }

    /// Whether `ev` belongs to the connection tracked for its socket (or none is), after
    /// settling a change of connection. The kernel's ids grow, so a smaller one is a late
    /// record of a connection the socket no longer carries (dropped). A larger one is
    /// either a new connection, which ends the old (its close went unseen), or, when the
    /// kernel does not know who opened it, the same connection whose kernel state was
    /// evicted and started over: it continues after a hole of unknown size.
    fn same_connection(
        &mut self,
        sock: u64,
        id: u64,
        ev: &Event,
        out: &mut Vec<Arc<CallRecord>>,
    ) -> bool {
        let Some(conn) = self.conns.get_mut(&sock) else {
            return true;
        };
        if id <= conn.kernel_id {
            return id == conn.kernel_id;
        }
        if ev.role == ConnRole::Unknown && ev.kind != EventKind::Close {
            conn.kernel_id = id;
            conn.expected = [None, None];
            conn.lost = [0, 0];
            conn.hole = [true, true];
            self.out.h.hole_forgotten.inc();
        } else {
            self.close(sock, ev.header.ts_ns, out);
        }
        true
    }

    fn close(&mut self, sock: u64, ts_ns: u64, out: &mut Vec<Arc<CallRecord>>) {
        if let Some(mut conn) = self.conns.remove(&sock) {
            let exchanges = &mut self.exchanges;
            if let Parser::Active(s) = &mut conn.parser {
                s.close(ts_ns, exchanges);
            }
            self.out.finish(&mut conn, exchanges, out);
            self.out.report(&mut conn);
        }
    }
}

/// The part of a record that follows what the stream already had.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Overlap {
    /// Stream offset and length of the new bytes (captured or not).
    pub(super) offset: u64,
    pub(super) len: u64,
    /// Index of the first new byte in the record's captured data.
    pub(super) data_from: usize,
    /// Bytes of the record the stream already had.
    pub(super) skipped: u64,
}

impl Overlap {
    /// Cuts from a record (`len` of its `orig_len` bytes captured, at stream `offset`) the
    /// bytes before `expected`, where the stream had got to; `None` when nothing is new.
    pub(super) fn trim(
        expected: Option<u64>,
        offset: u64,
        orig_len: u32,
        len: u32,
    ) -> Option<Overlap> {
        let orig_len = u64::from(orig_len);
        let skipped = expected.map_or(0, |e| e.saturating_sub(offset));
        if skipped > 0 && skipped >= orig_len {
            return None;
        }
        Some(Overlap {
            offset: offset + skipped,
            len: orig_len - skipped,
            data_from: usize::try_from(skipped.min(u64::from(len))).unwrap_or(usize::MAX),
            skipped,
        })
    }
}

impl Conn {
    fn new(ev: &Event) -> Conn {
        Conn {
            kernel_id: ev.header.conn_id,
            role: Role::from_kernel(ev.role),
            parser: Parser::Undecided { segments: 0 },
            expected: [None, None],
            last_seen_ns: ev.header.ts_ns,
            local: ev.local(),
            remote: ev.remote(),
            pid: ev.header.pid,
            comm: ev.comm().into(),
            reported: SessionStats::default(),
            tls: false,
            lost: [0, 0],
            hole: [false, false],
            services: None,
            switched_off: false,
            spare_released: false,
        }
    }

    /// Picks the parser from the first captured bytes of a connection.
    fn decide(&mut self, data: &[u8], dir: Direction, offset: u64, after_hole: bool) {
        let Parser::Undecided { segments } = &mut self.parser else {
            return;
        };
        *segments += 1;
        let (detected, role) = detect(&Seen {
            data,
            dir,
            role: self.role,
            from_start: offset == 0 && !after_hole,
            tls: self.tls,
            segments: *segments,
        });
        self.role = role;
        match detected {
            Detected::Session(s) => self.parser = Parser::Active(s),
            Detected::Other => self.parser = Parser::Other,
            Detected::Undecided => {}
        }
    }

    /// Once per quiet spell: the parser frees the room it keeps between messages.
    fn release_spare(&mut self) {
        if !self.spare_released {
            if let Parser::Active(s) = &mut self.parser {
                s.release_spare();
            }
            self.spare_released = true;
        }
    }

    /// Hands one event's bytes and losses to the session; false when no session has them.
    fn feed(
        &mut self,
        dir: Direction,
        ts_ns: u64,
        before: u64,
        data: &[u8],
        missing: u64,
        out: &mut Vec<Exchange>,
    ) -> bool {
        let Parser::Active(s) = &mut self.parser else {
            return false;
        };
        if before > 0 {
            s.gap(dir, before, ts_ns, out);
        }
        if !data.is_empty() {
            s.data(dir, data, ts_ns, out);
        }
        let next = match after_switch(s.as_mut(), dir, ts_ns, out) {
            Next::Same => None,
            Next::Session(s) => Some(Parser::Active(s)),
            Next::Other => Some(Parser::Other),
        };
        if let Some(parser) = next {
            // The new session counts from zero.
            self.reported = SessionStats::default();
            self.parser = parser;
        }
        if let Parser::Active(s) = &mut self.parser {
            if missing > 0 {
                s.gap(dir, missing, ts_ns, out);
            }
            if self.role.is_none() {
                self.role = s.requests_direction().map(Role::of_requests_direction);
            }
        }
        true
    }
}

impl Recorder {
    /// Turns `exchanges` into records in `out`, leaving it empty.
    fn finish(
        &self,
        conn: &mut Conn,
        exchanges: &mut Vec<Exchange>,
        out: &mut Vec<Arc<CallRecord>>,
    ) {
        let Some(role) = conn.role else {
            exchanges.clear();
            return;
        };
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
        for x in exchanges.drain(..) {
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
            self.h.call(x.protocol, role, conn.tls);
            // The target itself, unless something in it had to be replaced.
            let redacted = match self.redactor.target(&x.target) {
                Cow::Borrowed(_) => None,
                Cow::Owned(r) => Some(r),
            };
            let path = redacted.unwrap_or(x.target);
            out.push(Arc::new(CallRecord {
                ts: self.clock.wall(x.request_start_ns),
                protocol: x.protocol,
                tls: conn.tls,
                role,
                method: x.method,
                route: Text::interned(""),
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
                unknown: x.unknown,
            }));
        }
    }

    /// Adds what a session counted since last time to the exported counters.
    fn report(&self, conn: &mut Conn) {
        let Parser::Active(s) = &conn.parser else {
            return;
        };
        let now = s.stats();
        self.h.session(s.protocol(), &conn.reported, now);
        conn.reported = now.clone();
    }
}

impl ConnTracker {
    /// Forgets connections idle for longer than the timeout, then, while the parsers hold
    /// more than the memory budget, those holding bytes that were idle longest; returns
    /// the bytes the remaining connections' parsers hold.
    pub(crate) fn sweep(&mut self, now_ns: u64) -> usize {
        let timeout = self.cfg.idle_timeout_ns;
        let before = self.conns.len();
        // One walk: idle connections go, quiet ones give back their parsers' spare room.
        self.conns.retain(|_, c| {
            let quiet = now_ns.saturating_sub(c.last_seen_ns);
            if quiet >= RELEASE_SPARE_AFTER_NS {
                c.release_spare();
            }
            quiet < timeout
        });
        self.out
            .h
            .evicted_idle
            .inc_by((before - self.conns.len()) as u64);
        self.shrink_table();
        let mut holding: Vec<(u64, usize, u64)> = self
            .conns
            .iter()
            .filter_map(|(k, c)| match &c.parser {
                Parser::Active(s) => Some((c.last_seen_ns, s.buffered_bytes(), *k)),
                _ => None,
            })
            .filter(|(_, n, _)| *n > 0)
            .collect();
        let mut total: usize = holding.iter().map(|(_, n, _)| n).sum();
        if total <= self.cfg.max_parser_bytes {
            return total;
        }
        holding.sort_unstable();
        let mut shed = 0u64;
        for (_, n, key) in holding {
            if total <= self.cfg.max_parser_bytes {
                break;
            }
            // Forgotten as if evicted: what it held was never a whole call.
            self.conns.remove(&key);
            total -= n;
            shed += 1;
        }
        self.out.h.evicted_memory.inc_by(shed);
        Limit::ParserMemory.reached_by(shed);
        total
    }

    /// The table gives back its own room once most of it is empty (after a wave of
    /// connections closed).
    fn shrink_table(&mut self) {
        let len = self.conns.len();
        if self.conns.capacity() > 4 * len + 1024 {
            self.conns.shrink_to(2 * len);
        }
    }

    #[cfg(test)]
    pub(super) fn table_capacity(&self) -> usize {
        self.conns.capacity()
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
