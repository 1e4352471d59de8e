//! One shard's table of live connections.
//!
//! Each connection keeps an HTTP/1 session, the next expected stream offset of each
//! direction (a jump means the kernel dropped bytes) and who the observed process is.

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
    inventory::template::template,
    metrics::{CallLabels, Metrics, ProtocolLabels, ReasonLabels},
    protocol::http1::{Exchange, Limits, Session, SessionStats, Side},
    record::{CallRecord, Peer, Role},
    redact::{route_of, Redactor},
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

struct Conn {
    role: Option<Role>,
    session: Session,
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
    /// Indexed by [role is server][tls].
    calls: [[Counter; 2]; 2],
    parse_errors: Counter,
    resyncs: Counter,
    unmatched: Counter,
    dropped_requests: Counter,
    gaps: Counter,
    evicted_idle: Counter,
    evicted_capacity: Counter,
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

const HTTP1: &str = "http/1.1";

fn side_of(role: Role, direction: u8) -> Side {
    match (role, direction == DIR_EGRESS) {
        (Role::Client, true) | (Role::Server, false) => Side::Request,
        _ => Side::Response,
    }
}

/// Infers the role of a connection first seen mid-life from which way a message went.
fn infer_role(direction: u8, data: &[u8]) -> Option<Role> {
    let mut b = [0u8; SNIFF_LEN];
    let n = data.len().min(SNIFF_LEN);
    b[..n].copy_from_slice(&data[..n]);
    let egress = direction == DIR_EGRESS;
    match sniff(&b, n) {
        Sniff::Http1Request => Some(if egress { Role::Client } else { Role::Server }),
        Sniff::Http1Response => Some(if egress { Role::Server } else { Role::Client }),
        _ => None,
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
        let proto = || ProtocolLabels {
            protocol: HTTP1.into(),
        };
        let calls = |role: &str, tls: bool| {
            m.calls
                .get_or_create(&CallLabels {
                    protocol: HTTP1.into(),
                    role: role.into(),
                    tls: tls.to_string(),
                })
                .clone()
        };
        let reason = |r: &str| {
            m.connections_evicted
                .get_or_create(&ReasonLabels { reason: r.into() })
                .clone()
        };
        let h = Handles {
            calls: [
                [calls("client", false), calls("client", true)],
                [calls("server", false), calls("server", true)],
            ],
            parse_errors: m.parse_errors.get_or_create(&proto()).clone(),
            resyncs: m.resyncs.get_or_create(&proto()).clone(),
            unmatched: m.unmatched_responses.get_or_create(&proto()).clone(),
            dropped_requests: m.dropped_requests.get_or_create(&proto()).clone(),
            gaps: m.stream_gaps.get_or_create(&proto()).clone(),
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
                conn.session.on_close(h.ts_ns, &mut exchanges);
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
            session: Session::new(Limits::default()),
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
        if conn.role.is_none() && h.kind == KIND_DATA {
            conn.role = infer_role(h.direction, &ev.data);
        }
        let dir = if h.direction == DIR_EGRESS { 0 } else { 1 };
        if conn.session.upgraded() {
            // After `101 Switching Protocols` the bytes are another protocol (WebSocket...).
            return;
        }
        let Some(role) = conn.role else {
            // Cannot tell requests from responses yet; remember where the stream is.
            conn.expected[dir] = Some(h.stream_offset + h.orig_len as u64);
            return;
        };
        let side = side_of(role, h.direction);
        let mut exchanges = Vec::new();
        if let Some(expected) = conn.expected[dir] {
            if h.stream_offset > expected {
                conn.session
                    .on_gap(side, h.stream_offset - expected, h.ts_ns, &mut exchanges);
            }
        }
        if h.kind == KIND_DATA {
            conn.session
                .on_data(side, &ev.data, h.ts_ns, &mut exchanges);
            if h.orig_len > h.len {
                conn.session
                    .on_gap(side, (h.orig_len - h.len) as u64, h.ts_ns, &mut exchanges);
            }
        } else {
            conn.session
                .on_gap(side, h.orig_len as u64, h.ts_ns, &mut exchanges);
        }
        conn.expected[dir] = Some(h.stream_offset + h.orig_len as u64);
        self.out.finish(conn, exchanges, out);
        self.out.report(conn);
    }
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
            observed.kubernetes = my_pod.clone();
            let mut other = Peer::remote(conn.remote);
            other.service = Some(theirs.clone());
            other.kubernetes = their_pod.clone();
            let (client, server) = match role {
                Role::Client => (observed, other),
                Role::Server => (other, observed),
            };
            self.h.calls[usize::from(role == Role::Server)][usize::from(conn.tls)].inc();
            let path = self.redactor.target(&x.target);
            out.push(CallRecord {
                ts: self.clock.wall(x.request_start_ns),
                protocol: HTTP1,
                tls: conn.tls,
                role,
                method: x.method,
                route: template(route_of(&path)),
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
            });
        }
    }

    /// Adds what a session counted since last time to the exported counters.
    fn report(&self, conn: &mut Conn) {
        let now = conn.session.stats().clone();
        let was = &conn.reported;
        self.h
            .parse_errors
            .inc_by(now.parse_errors - was.parse_errors);
        self.h.resyncs.inc_by(now.resyncs - was.resyncs);
        self.h
            .unmatched
            .inc_by(now.unmatched_responses - was.unmatched_responses);
        self.h
            .dropped_requests
            .inc_by(now.dropped_requests - was.dropped_requests);
        self.h.gaps.inc_by(now.gaps - was.gaps);
        conn.reported = now;
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
            .map(|c| c.session.buffered_bytes())
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
