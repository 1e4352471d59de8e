//! Connection tracking from synthetic kernel events: roles, offsets, gaps, close, capacity.

use monitor_common::{ConnRole, Direction, EventHeader, EventKind, AF_INET, FLAG_TLS};

use prometheus_client::metrics::counter::Counter;

use super::{ConnMetrics, ConnTracker, TrackerConfig};
use crate::{
    capture::event::Event,
    clock::Clock,
    metrics::Metrics,
    record::{CallRecord, Role},
    redact::Redactor,
};

fn tracker(max_connections: usize) -> (ConnTracker, Metrics) {
    tracker_with(TrackerConfig {
        max_connections,
        idle_timeout_ns: 60_000_000_000,
        max_parser_bytes: 1 << 30,
    })
}

fn tracker_with(cfg: TrackerConfig) -> (ConnTracker, Metrics) {
    let mut m = Metrics::new(0);
    let handles = ConnMetrics::register(m.registry(), Counter::default());
    (
        ConnTracker::new(
            cfg,
            Clock::new(),
            Redactor::default(),
            std::sync::Arc::new(crate::identity::Identity::new(vec![])),
            &handles,
        ),
        m,
    )
}

struct Conn {
    sock: u64,
    role: ConnRole,
    offsets: [u64; 2],
    ts: u64,
    /// The kernel's id of the connection and its lost-syscall counts, as the header says.
    id: u64,
    lost: [u16; 2],
}

impl Conn {
    fn new(sock: u64, role: ConnRole) -> Conn {
        Conn {
            sock,
            role,
            offsets: [0, 0],
            ts: 1_000,
            id: 7,
            lost: [0, 0],
        }
    }

    /// The kernel starts tracking the socket over, as after an eviction from its table:
    /// a new id, offsets from zero, nobody known to have opened it.
    fn forgotten_by_kernel(&mut self) {
        self.id += 2;
        self.offsets = [0, 0];
        self.role = ConnRole::Unknown;
    }

    fn header(
        &mut self,
        kind: EventKind,
        direction: Option<Direction>,
        len: u32,
        orig_len: u32,
    ) -> EventHeader {
        self.ts += 1_000;
        let d = usize::from(direction != Some(Direction::Egress));
        let offset = self.offsets[d];
        self.offsets[d] += u64::from(orig_len);
        let mut comm = [0u8; 16];
        comm[..4].copy_from_slice(b"test");
        EventHeader {
            ts_ns: self.ts,
            sock: self.sock,
            conn_id: self.id,
            stream_offset: offset,
            pid: 42,
            tid: 42,
            fd: 3,
            len,
            orig_len,
            kind: kind as u8,
            direction: direction.map_or(0, |d| d as u8),
            role: self.role as u8,
            flags: 0,
            family: AF_INET,
            local_port: 40000,
            remote_port: 8080,
            lost: direction.map_or(0, |d| self.lost[d.index()]),
            local_addr: [127, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            remote_addr: [127, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            comm,
        }
    }

    fn data(&mut self, direction: Direction, bytes: &[u8]) -> Event {
        let n = bytes.len() as u32;
        let header = self.header(EventKind::Data, Some(direction), n, n);
        Event::new(header, bytes.to_vec()).unwrap()
    }

    /// Plaintext from the TLS library probes.
    fn tls_data(&mut self, direction: Direction, bytes: &[u8]) -> Event {
        let mut e = self.data(direction, bytes);
        e.header.flags = FLAG_TLS;
        e
    }

    /// Bytes the kernel moved but userspace never received (ring buffer full).
    fn lost(&mut self, direction: Direction, n: u32) {
        self.header(EventKind::Data, Some(direction), n, n);
    }

    fn close(&mut self) -> Event {
        let header = self.header(EventKind::Close, None, 0, 0);
        Event::new(header, vec![]).unwrap()
    }
}

fn feed(t: &mut ConnTracker, events: &[Event]) -> Vec<CallRecord> {
    let mut out = Vec::new();
    for e in events {
        t.handle(e, &mut out);
    }
    out.into_iter()
        .map(std::sync::Arc::unwrap_or_clone)
        .collect()
}

const REQ: &[u8] = b"GET /users/1?token=s3cr3t HTTP/1.1\r\nHost: api\r\n\r\n";
const RESP: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";

#[test]
fn client_role_call_names_both_ends() {
    let (mut t, _m) = tracker(16);
    let mut c = Conn::new(1, ConnRole::Client);
    let recs = feed(
        &mut t,
        &[
            c.data(Direction::Egress, REQ),
            c.data(Direction::Ingress, RESP),
        ],
    );
    assert_eq!(recs.len(), 1);
    let r = &recs[0];
    assert_eq!(r.role, Role::Client);
    assert_eq!((r.method.as_str(), r.status), ("GET", 200));
    assert!(
        r.path.starts_with("/users/1?token=h:"),
        "secret redacted: {}",
        r.path
    );
    assert_eq!(r.route, "", "the route is the pipeline's to decide");
    assert_eq!(r.client.pid, Some(42));
    assert_eq!(r.client.comm.as_deref(), Some("test"));
    assert_eq!(r.server.ip.to_string(), "127.0.0.2");
    assert_eq!(r.server.port, 8080);
    assert_eq!(r.server.pid, None);
    assert_eq!(r.host.as_deref(), Some("api"));
    assert_eq!(
        (r.request_bytes, r.response_bytes),
        (REQ.len() as u64, RESP.len() as u64)
    );
    assert_eq!(r.duration_us, 1, "first request byte to last response byte");
}

#[test]
fn role_of_a_connection_older_than_the_agent_is_inferred() {
    let (mut t, _m) = tracker(16);
    let mut c = Conn::new(2, ConnRole::Unknown);
    let recs = feed(
        &mut t,
        &[
            c.data(Direction::Ingress, REQ),
            c.data(Direction::Egress, RESP),
        ],
    );
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].role, Role::Server);
    assert_eq!(recs[0].server.pid, Some(42));
    assert_eq!(recs[0].server.port, 40000);
}

#[test]
fn bytes_lost_inside_a_body_still_make_the_call() {
    let (mut t, _m) = tracker(16);
    let mut c = Conn::new(3, ConnRole::Server);
    let head = b"HTTP/1.1 200 OK\r\nContent-Length: 10000\r\n\r\n";
    let mut ev = vec![
        c.data(Direction::Ingress, REQ),
        c.data(Direction::Egress, head),
    ];
    c.lost(Direction::Egress, 9000);
    ev.push(c.data(Direction::Egress, &[b'x'; 1000]));
    let recs = feed(&mut t, &ev);
    assert_eq!(recs.len(), 1);
    assert!(recs[0].truncated);
    assert_eq!(recs[0].response_bytes, head.len() as u64 + 10_000);
}

#[test]
fn a_lost_request_never_becomes_a_call() {
    let (mut t, m) = tracker(16);
    let mut c = Conn::new(4, ConnRole::Server);
    c.lost(Direction::Ingress, REQ.len() as u32);
    let mut ev = vec![c.data(Direction::Egress, RESP)];
    // The next exchange on the connection is intact and must be reported.
    ev.push(c.data(Direction::Ingress, b"GET /next HTTP/1.1\r\n\r\n"));
    ev.push(c.data(Direction::Egress, RESP));
    let recs = feed(&mut t, &ev);
    let paths: Vec<&str> = recs.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(paths, ["/next"]);
    assert!(m
        .encode()
        .contains("monitor_unmatched_responses_total{protocol=\"http/1.1\"} 1"));
}

#[test]
fn close_ends_a_response_delimited_by_close() {
    let (mut t, _m) = tracker(16);
    let mut c = Conn::new(5, ConnRole::Client);
    let ev = [
        c.data(Direction::Egress, b"GET /stream HTTP/1.0\r\n\r\n"),
        c.data(
            Direction::Ingress,
            b"HTTP/1.0 200 OK\r\n\r\nbody until close",
        ),
    ];
    assert!(feed(&mut t, &ev).is_empty(), "not complete before close");
    let recs = feed(&mut t, &[c.close()]);
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].path, "/stream");
    assert_eq!(t.tracked(), 0, "closed connection forgotten");
}

#[test]
fn tracked_connections_stay_under_the_cap() {
    let (mut t, m) = tracker(8);
    for sock in 0..100 {
        let mut c = Conn::new(100 + sock, ConnRole::Client);
        feed(&mut t, &[c.data(Direction::Egress, REQ)]);
        assert!(t.tracked() <= 8);
    }
    assert!(m
        .encode()
        .contains("monitor_connections_evicted_total{reason=\"capacity\"}"));
}

#[test]
fn garbage_on_an_http_connection_is_counted_not_reported() {
    let (mut t, m) = tracker(16);
    let mut c = Conn::new(6, ConnRole::Server);
    let ev = [
        c.data(Direction::Ingress, REQ),
        c.data(Direction::Egress, RESP),
        c.data(
            Direction::Ingress,
            b"\x00\x01\x02 definitely not http\r\n\r\n",
        ),
    ];
    let recs = feed(&mut t, &ev);
    assert_eq!(recs.len(), 1);
    assert!(
        m.encode()
            .contains("monitor_parse_errors_total{protocol=\"http/1.1\"} 1"),
        "{}",
        m.encode()
    );
}

#[test]
fn tls_plaintext_is_marked_in_record_and_metrics() {
    let (mut t, m) = tracker(16);
    let mut c = Conn::new(9, ConnRole::Server);
    let recs = feed(
        &mut t,
        &[
            c.tls_data(Direction::Ingress, REQ),
            c.tls_data(Direction::Egress, RESP),
        ],
    );
    assert_eq!(recs.len(), 1);
    assert!(recs[0].tls);
    let text = m.encode();
    assert!(
        text.contains("monitor_calls_total{protocol=\"http/1.1\",role=\"server\",tls=\"true\"} 1"),
        "{text}"
    );
    let mut plain = Conn::new(10, ConnRole::Server);
    let recs = feed(
        &mut t,
        &[
            plain.data(Direction::Ingress, REQ),
            plain.data(Direction::Egress, RESP),
        ],
    );
    assert!(!recs[0].tls);
}

#[test]
fn parsers_over_the_memory_budget_shed_the_longest_idle_holders() {
    let (mut t, m) = tracker_with(TrackerConfig {
        max_connections: 1024,
        idle_timeout_ns: 60_000_000_000,
        max_parser_bytes: 100 * 1024,
    });
    let before = crate::limits::Limit::ParserMemory.count();
    // Ten connections each holding a 20 KiB head that never ends: 200 KiB in parsers.
    let head = format!(
        "GET /a HTTP/1.1\r\nHost: api\r\nX-Pad: {}",
        "p".repeat(20 * 1024)
    );
    let mut conns: Vec<Conn> = (1..=10).map(|i| Conn::new(i, ConnRole::Server)).collect();
    let mut out = Vec::new();
    for (i, c) in conns.iter_mut().enumerate() {
        c.ts = 1_000_000 * i as u64;
        t.handle(&c.data(Direction::Ingress, head.as_bytes()), &mut out);
    }
    let kept = t.sweep(20_000_000);
    assert!(kept <= 100 * 1024, "{kept}");
    assert!(
        kept >= 60 * 1024,
        "only what was over the budget is shed: {kept}"
    );
    assert_eq!(t.tracked(), 10 - 6, "the six longest idle go");
    assert_eq!(crate::limits::Limit::ParserMemory.count() - before, 6);
    assert!(m
        .encode()
        .contains("monitor_connections_evicted_total{reason=\"memory\"} 6"));
    // The most recently active connection is still followed to the end of its call.
    let last = conns.last_mut().unwrap();
    t.handle(&last.data(Direction::Ingress, b"\r\n\r\n"), &mut out);
    t.handle(&last.data(Direction::Egress, RESP), &mut out);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].path, "/a");
}

/// A connection gone quiet mid-request gives back its parser's spare room at the sweep and
/// still makes its call; a table emptied by a wave of closes gives back its slots.
#[test]
fn quiet_connections_and_an_emptied_table_give_back_room() {
    let (mut t, _m) = tracker(65536);
    let mut out = Vec::new();
    let mut quiet = Conn::new(1, ConnRole::Server);
    t.handle(&quiet.data(Direction::Ingress, &REQ[..20]), &mut out);
    let mut wave: Vec<Conn> = (2..3002).map(|i| Conn::new(i, ConnRole::Server)).collect();
    for c in &mut wave {
        t.handle(&c.data(Direction::Ingress, REQ), &mut out);
        t.handle(&c.data(Direction::Egress, RESP), &mut out);
    }
    let full = t.table_capacity();
    for c in &mut wave {
        t.handle(&c.close(), &mut out);
    }
    assert_eq!(out.len(), 3000);
    t.sweep(5_000_000_000);
    assert!(
        t.table_capacity() < full / 4,
        "{full} -> {}",
        t.table_capacity()
    );
    quiet.ts = 6_000_000_000;
    t.handle(&quiet.data(Direction::Ingress, &REQ[20..]), &mut out);
    t.handle(&quiet.data(Direction::Egress, RESP), &mut out);
    assert_eq!(out.len(), 3001);
    assert!(out[3000].path.starts_with("/users/1?token="));
}

const POST_HEAD: &[u8] = b"POST /a HTTP/1.1\r\nContent-Length: 10\r\n\r\n";
const GET_B: &[u8] = b"GET /b HTTP/1.1\r\nHost: a\r\n\r\n";
const OK_EMPTY: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
const NO_CONTENT: &[u8] = b"HTTP/1.1 204 No Content\r\n\r\n";

/// A body whose syscall the kernel could not follow (its in-flight table was full) leaves
/// no offset jump; the header's lost count tells, and the next request is parsed as one
/// instead of as the rest of the body.
#[test]
fn a_syscall_lost_in_the_kernel_is_a_hole_not_body_bytes() {
    let (mut t, m) = tracker(16);
    let mut c = Conn::new(1, ConnRole::Server);
    let mut events = vec![c.data(Direction::Ingress, POST_HEAD)];
    c.lost[Direction::Ingress.index()] += 1;
    events.push(c.data(Direction::Egress, OK_EMPTY));
    events.push(c.data(Direction::Ingress, GET_B));
    events.push(c.data(Direction::Egress, NO_CONTENT));
    let recs = feed(&mut t, &events);
    let calls: Vec<_> = recs
        .iter()
        .map(|r| (r.method.as_str(), r.path.as_str(), r.status))
        .collect();
    assert!(calls.contains(&("GET", "/b", 204)), "{calls:?}");
    assert!(m
        .encode()
        .contains("monitor_stream_holes_total{reason=\"syscall_state_lost\"} 1"));
}

/// The kernel evicted the connection's state and started over with a new id: the same
/// connection continues (its role and calls kept) after a hole.
#[test]
fn a_connection_the_kernel_forgot_continues_after_a_hole() {
    let (mut t, m) = tracker(16);
    let mut c = Conn::new(1, ConnRole::Server);
    let mut events = vec![c.data(Direction::Ingress, POST_HEAD)];
    c.forgotten_by_kernel();
    events.push(c.data(Direction::Egress, OK_EMPTY));
    events.push(c.data(Direction::Ingress, GET_B));
    events.push(c.data(Direction::Egress, NO_CONTENT));
    let recs = feed(&mut t, &events);
    let calls: Vec<_> = recs
        .iter()
        .map(|r| (r.role, r.path.as_str(), r.status))
        .collect();
    assert!(calls.contains(&(Role::Server, "/b", 204)), "{calls:?}");
    assert_eq!(t.tracked(), 1);
    assert!(m
        .encode()
        .contains("monitor_stream_holes_total{reason=\"connection_forgotten\"} 1"));
}

/// A new connection on a reused socket (its opener known) ends the old one, whose close
/// went unseen; a late record of the old one afterwards is dropped.
#[test]
fn a_new_connection_on_a_reused_socket_ends_the_old() {
    let (mut t, m) = tracker(16);
    let mut old = Conn::new(1, ConnRole::Server);
    let mut new = Conn::new(1, ConnRole::Server);
    new.id = old.id + 5;
    let recs = feed(
        &mut t,
        &[
            old.data(Direction::Ingress, GET_B),
            new.data(Direction::Ingress, REQ),
            old.data(Direction::Egress, NO_CONTENT),
            new.data(Direction::Egress, RESP),
        ],
    );
    let calls: Vec<_> = recs.iter().map(|r| (r.path.as_str(), r.status)).collect();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert!(calls[0].0.starts_with("/users/1"), "{calls:?}");
    assert_eq!(calls[0].1, 200);
    assert!(!m.encode().contains("reason=\"connection_forgotten\"} 1"));
}

/// Writes are captured when they start: a write that moved only part of what it asked is
/// followed by one that sends the rest again from where the stream really is. The
/// overlap is kept once, and the call is exact.
#[test]
fn a_partial_write_sent_again_is_kept_once() {
    let (mut t, m) = tracker(16);
    let mut c = Conn::new(1, ConnRole::Server);
    let req = c.data(Direction::Ingress, REQ);
    // The server asks to write the whole response twice over (EAGAIN after 10 bytes,
    // then the rest), and once more in full where nothing moved at all.
    let whole = c.data(Direction::Egress, RESP);
    c.offsets[0] = 10;
    let rest_again = c.data(Direction::Egress, &RESP[10..]);
    c.offsets[0] = RESP.len() as u64;
    let nothing_new = {
        let mut e = c.data(Direction::Egress, &RESP[20..]);
        e.header.stream_offset = 20;
        e
    };
    let recs = feed(&mut t, &[req, whole, rest_again, nothing_new]);
    assert_eq!(recs.len(), 1, "one call: {recs:?}");
    assert_eq!(recs[0].status, 200);
    assert_eq!(recs[0].response_bytes, RESP.len() as u64);
    let text = m.encode();
    let overlap = (RESP.len() - 10) + (RESP.len() - 20);
    assert!(
        text.contains(&format!("monitor_stream_overlap_bytes_total {overlap}")),
        "{text}"
    );
    // A second request on the connection is parsed from the right place.
    let recs = feed(
        &mut t,
        &[
            c.data(Direction::Ingress, REQ),
            c.data(Direction::Egress, RESP),
        ],
    );
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].status, 200);
}

#[test]
fn overlap_trims_what_the_stream_had() {
    use super::tracker::Overlap;
    let o = Overlap::trim(None, 100, 50, 50).unwrap();
    assert_eq!((o.offset, o.len, o.data_from, o.skipped), (100, 50, 0, 0));
    let o = Overlap::trim(Some(120), 100, 50, 50).unwrap();
    assert_eq!((o.offset, o.len, o.data_from, o.skipped), (120, 30, 20, 20));
    assert!(Overlap::trim(Some(150), 100, 50, 50).is_none());
    // Of a record whose captured part is shorter than the overlap, no data is new.
    let o = Overlap::trim(Some(130), 100, 5000, 10).unwrap();
    assert_eq!((o.offset, o.len, o.data_from), (130, 4970, 10));
    // A record after a jump is new from its start.
    let o = Overlap::trim(Some(100), 200, 10, 10).unwrap();
    assert_eq!((o.offset, o.skipped), (200, 0));
}
