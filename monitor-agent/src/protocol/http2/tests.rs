//! Session tests: hand-built frames and HPACK blocks fed through [`Session`], checking the
//! exact calls and counters that come out; property tests for arbitrary segmentation,
//! capture gaps, mid-connection attach and hostile input.

use std::collections::HashSet;

use proptest::prelude::*;

use super::frame::{
    CONTINUATION, DATA, FLAG_ACK, FLAG_END_HEADERS, FLAG_END_STREAM, FLAG_PADDED, FLAG_PRIORITY,
    GOAWAY, HEADERS, PING, PREFACE, PRIORITY, PUSH_PROMISE, RST_STREAM, SETTINGS,
    SETTINGS_HEADER_TABLE_SIZE, SETTINGS_MAX_FRAME_SIZE, WINDOW_UPDATE,
};
use super::hpack::tests::{enc_int, enc_str, Encoder, Mode};
use monitor_common::Direction::{self, Egress as EGRESS, Ingress as INGRESS};

use super::{grpc_names, Session, Start};
use crate::protocol::exchange::{
    EndingFrame, ErrorCode, Exchange, Field, Grpc, Protocol, Sender, StreamError, Unknown,
};
use crate::protocol::session::{ProtocolSession as _, SessionStats};

const ES: u8 = FLAG_END_STREAM;
const EH: u8 = FLAG_END_HEADERS;
const FRESH: Start = Start::Fresh { client: EGRESS };

// ---------------------------------------------------------------------------
// Frames
// ---------------------------------------------------------------------------

fn frame_head(kind: u8, flags: u8, stream: u32, len: u32) -> Vec<u8> {
    let l = len.to_be_bytes();
    let mut v = vec![l[1], l[2], l[3], kind, flags];
    v.extend_from_slice(&stream.to_be_bytes());
    v
}

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut v = frame_head(kind, flags, stream, payload.len() as u32);
    v.extend_from_slice(payload);
    v
}

/// A HEADERS frame carrying a whole block (END_HEADERS set, plus `flags`).
fn headers(stream: u32, flags: u8, block: &[u8]) -> Vec<u8> {
    frame(HEADERS, flags | EH, stream, block)
}

fn data(stream: u32, flags: u8, body: &[u8]) -> Vec<u8> {
    frame(DATA, flags, stream, body)
}

/// A PADDED DATA frame: pad length octet, body, `pad` zero octets.
fn padded_data(stream: u32, flags: u8, body: &[u8], pad: u8) -> Vec<u8> {
    let mut p = vec![pad];
    p.extend_from_slice(body);
    p.resize(p.len() + pad as usize, 0);
    frame(DATA, flags | FLAG_PADDED, stream, &p)
}

fn settings(entries: &[(u16, u32)]) -> Vec<u8> {
    let mut p = Vec::new();
    for (id, v) in entries {
        p.extend_from_slice(&id.to_be_bytes());
        p.extend_from_slice(&v.to_be_bytes());
    }
    frame(SETTINGS, 0, 0, &p)
}

fn settings_ack() -> Vec<u8> {
    frame(SETTINGS, FLAG_ACK, 0, &[])
}

fn rst(stream: u32, code: u32) -> Vec<u8> {
    frame(RST_STREAM, 0, stream, &code.to_be_bytes())
}

fn goaway(last: u32, code: u32) -> Vec<u8> {
    let mut p = last.to_be_bytes().to_vec();
    p.extend_from_slice(&code.to_be_bytes());
    p.extend_from_slice(b"debug data");
    frame(GOAWAY, 0, 0, &p)
}

fn ping(ack: bool) -> Vec<u8> {
    frame(PING, if ack { FLAG_ACK } else { 0 }, 0, b"pingpong")
}

fn window_update(stream: u32, n: u32) -> Vec<u8> {
    frame(WINDOW_UPDATE, 0, stream, &n.to_be_bytes())
}

fn priority(stream: u32, dependency: u32, weight: u8) -> Vec<u8> {
    let mut p = dependency.to_be_bytes().to_vec();
    p.push(weight);
    frame(PRIORITY, 0, stream, &p)
}

/// A PUSH_PROMISE carrying a whole block.
fn push_promise(stream: u32, promised: u32, block: &[u8]) -> Vec<u8> {
    let mut p = promised.to_be_bytes().to_vec();
    p.extend_from_slice(block);
    frame(PUSH_PROMISE, EH, stream, &p)
}

/// An extension frame type (RFC 9113 section 5.5): skipped by length.
fn extension(stream: u32) -> Vec<u8> {
    frame(0xfa, 0x3c, stream, b"whatever the extension says")
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

fn len(b: &[u8]) -> u64 {
    b.len() as u64
}

// ---------------------------------------------------------------------------
// HPACK, encoded by hand (RFC 7541)
// ---------------------------------------------------------------------------

/// A header block built field by field.
#[derive(Clone, Debug, Default)]
struct Hp(Vec<u8>);

impl Hp {
    fn new() -> Hp {
        Hp::default()
    }

    /// Indexed field (6.1): static 1..=61, dynamic from 62.
    fn idx(mut self, i: usize) -> Hp {
        enc_int(&mut self.0, 7, 0x80, i);
        self
    }

    /// Literal with incremental indexing and a literal name (6.2.1).
    fn inc(mut self, name: &str, value: &str) -> Hp {
        self.0.push(0x40);
        enc_str(&mut self.0, name.as_bytes(), false);
        enc_str(&mut self.0, value.as_bytes(), false);
        self
    }

    /// Literal with incremental indexing and an indexed name (6.2.1).
    fn inc_idx(mut self, name: usize, value: &str) -> Hp {
        enc_int(&mut self.0, 6, 0x40, name);
        enc_str(&mut self.0, value.as_bytes(), false);
        self
    }

    /// Literal without indexing and a literal name (6.2.2).
    fn lit(mut self, name: &str, value: &str) -> Hp {
        self.0.push(0);
        enc_str(&mut self.0, name.as_bytes(), false);
        enc_str(&mut self.0, value.as_bytes(), false);
        self
    }

    /// Literal without indexing and an indexed name (6.2.2).
    fn lit_idx(mut self, name: usize, value: &str) -> Hp {
        enc_int(&mut self.0, 4, 0, name);
        enc_str(&mut self.0, value.as_bytes(), false);
        self
    }

    /// Literal never indexed and an indexed name (6.2.3).
    fn never_idx(mut self, name: usize, value: &str) -> Hp {
        enc_int(&mut self.0, 4, 0x10, name);
        enc_str(&mut self.0, value.as_bytes(), false);
        self
    }

    /// Dynamic table size update (6.3).
    fn size(mut self, n: usize) -> Hp {
        enc_int(&mut self.0, 5, 0x20, n);
        self
    }

    fn raw(mut self, b: &[u8]) -> Hp {
        self.0.extend_from_slice(b);
        self
    }
}

/// `GET path` to example.com from static entries and literals only, so a decoder that
/// lost track of its dynamic table still decodes it exactly.
fn get(path: &str) -> Vec<u8> {
    Hp::new()
        .idx(2)
        .idx(6)
        .lit_idx(4, path)
        .lit_idx(1, "example.com")
        .0
}

fn post(path: &str, content_type: &str) -> Vec<u8> {
    Hp::new()
        .idx(3)
        .idx(6)
        .lit_idx(4, path)
        .lit_idx(1, "example.com")
        .lit_idx(31, content_type)
        .0
}

/// `:status` from the static table when it is there, else a literal.
fn status(code: u16) -> Hp {
    let index = match code {
        200 => 8,
        204 => 9,
        206 => 10,
        304 => 11,
        400 => 12,
        404 => 13,
        500 => 14,
        _ => return Hp::new().lit_idx(8, &code.to_string()),
    };
    Hp::new().idx(index)
}

// ---------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------

/// The expected call for `method target` to example.com; tests fill in the rest.
fn x(method: &str, target: &str, status: u16) -> Exchange {
    Exchange {
        protocol: Protocol::Http2,
        method: method.into(),
        target: target.into(),
        host: Some("example.com".into()),
        status,
        ..Exchange::default()
    }
}

/// One connection under test.
struct Conn {
    sess: Session,
    out: Vec<Exchange>,
    client: Direction,
}

impl Conn {
    /// `client` is the direction requests travel in (for `Attached`, the one the test
    /// writes requests to).
    fn new(start: Start, client: Direction) -> Conn {
        Conn {
            sess: Session::new(start),
            out: Vec::new(),
            client,
        }
    }

    /// A fresh connection (client writes EGRESS) whose prefaces and SETTINGS went by.
    fn open() -> Conn {
        let mut c = Conn::new(FRESH, EGRESS);
        c.cl(&cat(&[PREFACE, &settings(&[])]), 1);
        c.sv(&cat(&[&settings(&[]), &settings_ack()]), 2);
        c.cl(&settings_ack(), 3);
        c
    }

    /// Bytes the client wrote.
    fn cl(&mut self, b: &[u8], ts: u64) -> &mut Conn {
        self.sess.data(self.client, b, ts, &mut self.out);
        self
    }

    /// Bytes the server wrote.
    fn sv(&mut self, b: &[u8], ts: u64) -> &mut Conn {
        self.sess.data(self.client.reverse(), b, ts, &mut self.out);
        self
    }

    fn cl_gap(&mut self, n: u64, ts: u64) -> &mut Conn {
        self.sess.gap(self.client, n, ts, &mut self.out);
        self
    }

    fn sv_gap(&mut self, n: u64, ts: u64) -> &mut Conn {
        self.sess.gap(self.client.reverse(), n, ts, &mut self.out);
        self
    }

    fn take(&mut self) -> Vec<Exchange> {
        std::mem::take(&mut self.out)
    }

    fn stats(&self) -> SessionStats {
        self.sess.stats().clone()
    }
}

/// One captured event of a transcript.
#[derive(Clone, Debug)]
enum Ev {
    Data(Direction, Vec<u8>, u64),
    Gap(Direction, u64, u64),
}

/// Feeds a transcript, cutting every segment of direction `d` into pieces of the sizes
/// in `cuts[d]` (cycled; empty means whole).
fn run_session(start: Start, evs: &[Ev], cuts: [&[usize]; 2]) -> (Vec<Exchange>, Session) {
    let mut s = Session::new(start);
    let mut out = Vec::new();
    let mut cut = [cuts[0].iter().cycle(), cuts[1].iter().cycle()];
    for ev in evs {
        match ev {
            Ev::Data(dir, b, ts) => {
                let mut rest = &b[..];
                while !rest.is_empty() {
                    let n = cut[dir.index()]
                        .next()
                        .copied()
                        .unwrap_or(usize::MAX)
                        .clamp(1, rest.len());
                    let (piece, tail) = rest.split_at(n);
                    s.data(*dir, piece, *ts, &mut out);
                    rest = tail;
                }
            }
            Ev::Gap(dir, n, ts) => s.gap(*dir, *n, *ts, &mut out),
        }
    }
    (out, s)
}

fn run(start: Start, evs: &[Ev], cuts: [&[usize]; 2]) -> (Vec<Exchange>, SessionStats) {
    let (out, s) = run_session(start, evs, cuts);
    (out, s.stats().clone())
}

// ---------------------------------------------------------------------------
// 1. A fresh connection, one call
// ---------------------------------------------------------------------------

/// Client preface and SETTINGS, server SETTINGS, `GET /hello` answered 200 with a body;
/// `client` is the direction the client writes.
fn hello_transcript(client: Direction) -> (Vec<Ev>, Exchange) {
    let server = client.reverse();
    let req = headers(1, ES, &get("/hello"));
    let head = headers(
        1,
        0,
        &status(200).lit_idx(31, "text/plain; charset=utf-8").0,
    );
    let body = data(1, ES, b"hello world");
    let evs = vec![
        Ev::Data(
            client,
            cat(&[
                PREFACE,
                &settings(&[(SETTINGS_MAX_FRAME_SIZE, 16_384)]),
                &window_update(0, 1 << 20),
                &req,
            ]),
            10,
        ),
        Ev::Data(
            server,
            cat(&[&settings(&[(4, 1 << 20)]), &settings_ack()]),
            20,
        ),
        Ev::Data(client, settings_ack(), 25),
        Ev::Data(server, head.clone(), 30),
        Ev::Data(server, body.clone(), 40),
    ];
    let want = Exchange {
        request_start_ns: 10,
        request_end_ns: 10,
        response_start_ns: 30,
        response_end_ns: 40,
        request_bytes: len(&req),
        response_bytes: len(&head) + len(&body),
        response_body_bytes: 11,
        response_content_type: Some("text/plain".into()),
        ..x("GET", "/hello", 200)
    };
    (evs, want)
}

#[test]
fn fresh_get_200_with_body() {
    let (evs, want) = hello_transcript(EGRESS);
    let (out, s) = run_session(FRESH, &evs, [&[], &[]]);
    assert_eq!(out, vec![want]);
    assert_eq!(out[0].response_end_ns - out[0].request_start_ns, 30);
    assert_eq!(*s.stats(), SessionStats::default());
    assert_eq!(s.requests_direction(), Some(EGRESS));
    assert!(s.exact());
    assert_eq!(s.buffered_bytes(), 0, "nothing kept between frames");
}

#[test]
fn fresh_get_fed_one_octet_at_a_time_is_identical() {
    let (evs, want) = hello_transcript(EGRESS);
    let whole = run(FRESH, &evs, [&[], &[]]);
    assert_eq!(whole.0, vec![want]);
    assert_eq!(run(FRESH, &evs, [&[1], &[1]]), whole);
    assert_eq!(run(FRESH, &evs, [&[1], &[]]), whole);
    assert_eq!(run(FRESH, &evs, [&[2, 7, 1], &[9, 1, 3]]), whole);
}

/// Giving back spare room (asked of quiet connections) between any two segments, even
/// inside a frame, changes nothing the session reports.
#[test]
fn release_spare_between_segments_changes_nothing() {
    let (evs, want) = hello_transcript(EGRESS);
    let mut s = Session::new(FRESH);
    let mut out = Vec::new();
    for ev in &evs {
        if let Ev::Data(dir, b, ts) = ev {
            for piece in b.chunks(3) {
                s.data(*dir, piece, *ts, &mut out);
                s.release_spare();
            }
        }
    }
    assert_eq!(out, vec![want]);
    assert_eq!(s.buffered_bytes(), 0, "no room kept once released");
}

#[test]
fn fresh_capture_on_the_server_side() {
    // The observed process is the server: requests arrive INGRESS.
    let (evs, want) = hello_transcript(INGRESS);
    let start = Start::Fresh { client: INGRESS };
    let (out, s) = run_session(start, &evs, [&[], &[]]);
    assert_eq!(out, vec![want]);
    assert_eq!(s.requests_direction(), Some(INGRESS));
    assert_eq!(*s.stats(), SessionStats::default());
}

#[test]
fn missing_preface_is_a_parse_error_and_unaligns() {
    let mut c = Conn::new(FRESH, EGRESS);
    c.cl(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 1);
    assert_eq!(
        c.stats(),
        SessionStats {
            parse_errors: 1,
            ..SessionStats::default()
        }
    );
    // Whole frames later realign the client side.
    c.cl(&headers(1, ES, &get("/late")), 2);
    c.sv(&headers(1, ES, &status(200).0), 3);
    let out = c.take();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].target, "/late");
    assert_eq!(c.stats().resyncs, 1);
}

// ---------------------------------------------------------------------------
// 2. Many concurrent streams
// ---------------------------------------------------------------------------

#[test]
fn one_hundred_fifty_interleaved_streams() {
    const N: usize = 150;
    const STATUSES: [u16; 7] = [200, 201, 204, 302, 404, 500, 503];
    let mut c = Conn::open();
    let mut req_bytes = Vec::new();
    for i in 0..N {
        let id = 2 * i as u32 + 1;
        // The first request adds the authority to the client's table, the rest index it.
        let authority = if i == 0 {
            Hp::new().inc_idx(1, "api.example")
        } else {
            Hp::new().idx(62)
        };
        let block = Hp::new()
            .idx(2)
            .idx(7)
            .lit_idx(4, &format!("/item/{i}"))
            .raw(&authority.0)
            .0;
        let f = headers(id, ES, &block);
        req_bytes.push(len(&f));
        c.cl(&f, 100 + i as u64);
    }
    assert!(c.out.is_empty());
    // Responses in a scrambled order (7 is coprime with 150).
    let mut want = Vec::new();
    for k in 0..N {
        let i = k * 7 % N;
        let id = 2 * i as u32 + 1;
        let code = STATUSES[i % STATUSES.len()];
        let server = if k == 0 {
            Hp::new().inc_idx(54, "h2test")
        } else {
            Hp::new().idx(62)
        };
        let head = headers(id, 0, &status(code).raw(&server.0).0);
        let body = data(id, ES, &vec![b'x'; i + 1]);
        let ts = 1_000 + 2 * k as u64;
        c.sv(&head, ts).sv(&body, ts + 1);
        want.push(Exchange {
            host: Some("api.example".into()),
            request_start_ns: 100 + i as u64,
            request_end_ns: 100 + i as u64,
            response_start_ns: ts,
            response_end_ns: ts + 1,
            request_bytes: req_bytes[i],
            response_bytes: len(&head) + len(&body),
            response_body_bytes: i as u64 + 1,
            ..x("GET", &format!("/item/{i}"), code)
        });
    }
    let out = c.take();
    assert_eq!(out.len(), N);
    assert_eq!(out, want);
    assert_eq!(c.stats(), SessionStats::default());
    assert!(c.sess.exact());
    c.sess.close(0, &mut Vec::new());
    assert_eq!(c.stats(), SessionStats::default(), "nothing left open");
}

// ---------------------------------------------------------------------------
// 3. Padding, priority, CONTINUATION
// ---------------------------------------------------------------------------

#[test]
fn padded_and_prioritised_headers_and_padded_data() {
    let mut c = Conn::open();
    // HEADERS with PADDED and PRIORITY: pad length, E + dependency, weight, block, padding.
    let mut p = vec![6u8, 0x80, 0, 0, 0, 15];
    p.extend_from_slice(&get("/pp"));
    p.extend_from_slice(&[0; 6]);
    let req = frame(HEADERS, EH | ES | FLAG_PADDED | FLAG_PRIORITY, 1, &p);
    // PRIORITY alone, no padding.
    let mut p = vec![0u8, 0, 0, 1, 200];
    p.extend_from_slice(&get("/prio"));
    let req2 = frame(HEADERS, EH | ES | FLAG_PRIORITY, 3, &p);
    c.cl(&req, 10).cl(&priority(1, 0, 200), 11).cl(&req2, 12);

    let mut p = vec![3u8];
    p.extend_from_slice(&status(200).0);
    p.extend_from_slice(&[0; 3]);
    let head = frame(HEADERS, EH | FLAG_PADDED, 1, &p);
    let d1 = padded_data(1, 0, &[b'a'; 10], 4);
    let d2 = padded_data(1, ES, b"bcdef", 0);
    // Padding that fills the whole frame: no body at all.
    let d3 = padded_data(3, ES, b"", 20);
    let head3 = headers(3, 0, &status(204).0);
    c.sv(&head, 20)
        .sv(&d1, 21)
        .sv(&extension(1), 22)
        .sv(&d2, 23);
    c.sv(&head3, 24).sv(&d3, 25);
    assert_eq!(
        c.take(),
        vec![
            Exchange {
                request_start_ns: 10,
                request_end_ns: 10,
                response_start_ns: 20,
                response_end_ns: 23,
                request_bytes: len(&req),
                response_bytes: len(&head) + len(&d1) + len(&d2),
                response_body_bytes: 15,
                ..x("GET", "/pp", 200)
            },
            Exchange {
                request_start_ns: 12,
                request_end_ns: 12,
                response_start_ns: 24,
                response_end_ns: 25,
                request_bytes: len(&req2),
                response_bytes: len(&head3) + len(&d3),
                response_body_bytes: 0,
                ..x("GET", "/prio", 204)
            },
        ]
    );
    assert_eq!(c.stats(), SessionStats::default());
}

#[test]
fn continuation_frames_complete_header_blocks() {
    let mut c = Conn::open();
    let block = Hp::new()
        .idx(2)
        .idx(7)
        .lit_idx(4, "/continued/path")
        .inc_idx(1, "split.example")
        .lit("x-filler", &"u".repeat(40))
        .0;
    // Cuts inside the path string and inside the literal name.
    let f1 = frame(HEADERS, ES, 1, &block[..5]);
    let f2 = frame(CONTINUATION, 0, 1, &block[5..22]);
    let f3 = frame(CONTINUATION, EH, 1, &block[22..]);
    c.cl(&f1, 10).cl(&f2, 11).cl(&f3, 12);
    // A response whose END_STREAM HEADERS is completed by a later CONTINUATION.
    let rblock = status(404).inc("x-long", &"v".repeat(30)).0;
    let g1 = frame(HEADERS, ES, 1, &rblock[..3]);
    let g2 = frame(CONTINUATION, EH, 1, &rblock[3..]);
    c.sv(&g1, 20);
    assert!(c.out.is_empty(), "the stream ends with its header block");
    c.sv(&g2, 25);
    assert_eq!(
        c.take(),
        vec![Exchange {
            host: Some("split.example".into()),
            request_start_ns: 10,
            request_end_ns: 12,
            response_start_ns: 20,
            response_end_ns: 25,
            request_bytes: len(&f1) + len(&f2) + len(&f3),
            response_bytes: len(&g1) + len(&g2),
            ..x("GET", "/continued/path", 404)
        }]
    );
    // Both tables were kept in step through the split blocks; an empty CONTINUATION
    // is allowed too.
    let block = Hp::new().idx(2).idx(7).lit_idx(4, "/again").idx(62).0;
    let h = frame(HEADERS, ES, 3, &block);
    let e = frame(CONTINUATION, 0, 3, &[]);
    let f = frame(CONTINUATION, EH, 3, &[]);
    c.cl(&cat(&[&h, &e, &f]), 30);
    c.sv(&headers(3, ES, &status(200).idx(62).0), 31);
    let out = c.take();
    assert_eq!(out.len(), 1);
    assert_eq!(
        (
            out[0].target.as_str(),
            out[0].host.as_deref(),
            out[0].status
        ),
        ("/again", Some("split.example"), 200)
    );
    assert_eq!(out[0].unknown, Unknown::default());
    assert_eq!(c.stats(), SessionStats::default());
    assert!(c.sess.exact());
}

#[test]
fn frame_inside_a_continuation_sequence_is_a_parse_error() {
    let mut c = Conn::open();
    let block = get("/five");
    // Stream 5's block is interrupted by a whole HEADERS for stream 7.
    c.cl(&frame(HEADERS, ES, 5, &block[..4]), 10);
    c.cl(&headers(7, ES, &get("/seven")), 11);
    c.cl(&frame(CONTINUATION, EH, 5, &block[4..]), 12);
    let st = c.stats();
    // One for the interruption, one for the CONTINUATION with nothing to continue.
    assert_eq!(st.parse_errors, 2);
    assert!(
        !c.sess.exact(),
        "the interrupted block's table changes are unknown"
    );
    c.sv(&headers(7, ES, &status(200).0), 20);
    c.sv(&headers(5, ES, &status(200).0), 21);
    let out = c.take();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].target, "/seven");
    assert_eq!(out[0].unknown, Unknown::default());
    assert_eq!(
        c.stats(),
        SessionStats {
            parse_errors: 2,
            unmatched_responses: 1,
            ..SessionStats::default()
        }
    );

    // On the server side, a response block interrupted by RST_STREAM for another stream:
    // the interrupted stream's response is lost, the reset is still reported.
    let mut c = Conn::open();
    c.cl(&headers(1, ES, &get("/a")), 10)
        .cl(&headers(3, ES, &get("/b")), 11);
    let rb = status(200).lit("x-a", "1").0;
    c.sv(&frame(HEADERS, ES, 1, &rb[..2]), 20);
    c.sv(&rst(3, 7), 21);
    c.sv(&frame(CONTINUATION, EH, 1, &rb[2..]), 22);
    let out = c.take();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].target, "/b");
    assert_eq!(
        out[0].stream_error,
        Some(StreamError {
            frame: EndingFrame::RstStream,
            code: ErrorCode(0x7),
            by: Sender::Server
        })
    );
    assert_eq!(
        c.stats(),
        SessionStats {
            parse_errors: 2,
            dropped_requests: 1,
            ..SessionStats::default()
        }
    );
}

// ---------------------------------------------------------------------------
// 4. Trailers
// ---------------------------------------------------------------------------

#[test]
fn trailers_end_the_stream_and_count_as_response_bytes() {
    let mut c = Conn::open();
    // A request with a body and request trailers.
    let req = headers(1, 0, &post("/upload", "application/octet-stream"));
    let body = data(1, 0, &[7; 100]);
    let req_trailers = headers(1, ES, &Hp::new().lit("x-sum", "abc").0);
    c.cl(&req, 10).cl(&body, 11).cl(&req_trailers, 12);
    let head = headers(1, 0, &status(200).0);
    let rbody = data(1, 0, &[1; 10]);
    let trailers = headers(1, ES, &Hp::new().lit("x-checksum", "abc").0);
    c.sv(&head, 20).sv(&rbody, 30);
    assert!(c.out.is_empty());
    c.sv(&trailers, 50);
    assert_eq!(
        c.take(),
        vec![Exchange {
            request_start_ns: 10,
            request_end_ns: 12,
            response_start_ns: 20,
            response_end_ns: 50,
            request_bytes: len(&req) + len(&body) + len(&req_trailers),
            response_bytes: len(&head) + len(&rbody) + len(&trailers),
            request_body_bytes: 100,
            response_body_bytes: 10,
            request_content_type: Some("application/octet-stream".into()),
            ..x("POST", "/upload", 200)
        }]
    );
    assert_eq!(c.stats(), SessionStats::default());
}

#[test]
fn interim_responses_fold_into_the_final_one() {
    let mut c = Conn::open();
    let req = headers(1, 0, &post("/put", "text/plain"));
    c.cl(&req, 10);
    let cont = headers(1, 0, &status(100).0);
    c.sv(&cont, 15);
    let body = data(1, ES, b"abc");
    c.cl(&body, 16);
    let head = headers(1, ES, &status(201).0);
    c.sv(&head, 20);
    assert_eq!(
        c.take(),
        vec![Exchange {
            request_start_ns: 10,
            request_end_ns: 16,
            response_start_ns: 15,
            response_end_ns: 20,
            request_bytes: len(&req) + len(&body),
            response_bytes: len(&cont) + len(&head),
            request_body_bytes: 3,
            request_content_type: Some("text/plain".into()),
            ..x("POST", "/put", 201)
        }]
    );
}

// ---------------------------------------------------------------------------
// 5. gRPC
// ---------------------------------------------------------------------------

fn grpc_request(path: &str) -> Vec<u8> {
    Hp::new()
        .idx(3)
        .idx(6)
        .lit_idx(4, path)
        .lit_idx(1, "example.com")
        .lit_idx(31, "application/grpc")
        .lit("te", "trailers")
        .0
}

#[test]
fn grpc_call_with_status_in_trailers() {
    let mut c = Conn::open();
    let req = headers(1, 0, &grpc_request("/demo.Greeter/SayHello"));
    let msg = data(1, ES, &[0, 0, 0, 0, 2, 0x0a, 0x00]);
    c.cl(&req, 10).cl(&msg, 11);
    let head = headers(1, 0, &status(200).lit_idx(31, "application/grpc+proto").0);
    let rmsg = data(1, 0, &[0, 0, 0, 0, 0]);
    let trailers = headers(
        1,
        ES,
        &Hp::new()
            .lit("grpc-status", "5")
            .lit("grpc-message", "no%20such")
            .0,
    );
    c.sv(&head, 20).sv(&rmsg, 21).sv(&trailers, 22);
    assert_eq!(
        c.take(),
        vec![Exchange {
            protocol: Protocol::Grpc,
            request_start_ns: 10,
            request_end_ns: 11,
            response_start_ns: 20,
            response_end_ns: 22,
            request_bytes: len(&req) + len(&msg),
            response_bytes: len(&head) + len(&rmsg) + len(&trailers),
            request_body_bytes: 7,
            response_body_bytes: 5,
            request_content_type: Some("application/grpc".into()),
            response_content_type: Some("application/grpc+proto".into()),
            grpc: Some(Grpc {
                service: "demo.Greeter".into(),
                method: "SayHello".into(),
                status: Some(5),
                message: Some("no such".into()),
            }),
            ..x("POST", "/demo.Greeter/SayHello", 200)
        }]
    );
    assert_eq!(c.stats(), SessionStats::default());
}

#[test]
fn grpc_trailers_only_response() {
    let mut c = Conn::open();
    let req = headers(1, ES, &grpc_request("/demo.Greeter/SayHello"));
    c.cl(&req, 10);
    let only = headers(
        1,
        ES,
        &status(200)
            .lit_idx(31, "application/grpc")
            .lit("grpc-status", "9")
            .0,
    );
    c.sv(&only, 20);
    let out = c.take();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].protocol, Protocol::Grpc);
    assert_eq!(
        out[0].grpc,
        Some(Grpc {
            service: "demo.Greeter".into(),
            method: "SayHello".into(),
            status: Some(9),
            message: None,
        })
    );
    assert_eq!((out[0].status, out[0].response_end_ns), (200, 20));
    assert_eq!(out[0].unknown, Unknown::default());

    // Reset before any trailers: no gRPC status, and that is not "unknown".
    c.cl(&headers(3, ES, &grpc_request("/demo.Greeter/Slow")), 30);
    c.cl(&rst(3, 8), 31);
    let out = c.take();
    assert_eq!(out.len(), 1);
    let g = out[0].grpc.as_ref().unwrap();
    assert_eq!(
        (g.service.as_str(), g.method.as_str()),
        ("demo.Greeter", "Slow")
    );
    assert_eq!(g.status, None);
    assert_eq!(out[0].unknown, Unknown::default());
    assert_eq!(out[0].stream_error.unwrap().by, Sender::Client);

    // A grpc-status that is not a number is reported as absent, not made up.
    c.cl(&headers(5, ES, &grpc_request("/x.Y/Z")), 40);
    c.sv(
        &headers(
            5,
            ES,
            &status(200)
                .lit_idx(31, "application/grpc")
                .lit("grpc-status", "OK")
                .0,
        ),
        41,
    );
    let out = c.take();
    assert_eq!(out[0].grpc.as_ref().unwrap().status, None);
}

#[test]
fn grpc_path_names() {
    assert_eq!(
        grpc_names("/demo.Greeter/SayHello"),
        Some(("demo.Greeter", "SayHello"))
    );
    assert_eq!(grpc_names("/a.B/C?x=1"), Some(("a.B", "C")));
    assert_eq!(grpc_names("/a/b/c"), None);
    assert_eq!(grpc_names("/a/"), None);
    assert_eq!(grpc_names("//m"), None);
    assert_eq!(grpc_names("a/b"), None);
    assert_eq!(grpc_names(""), None);
}

// ---------------------------------------------------------------------------
// 6. RST_STREAM and GOAWAY
// ---------------------------------------------------------------------------

#[test]
fn rst_stream_from_either_side() {
    let mut c = Conn::open();
    let req1 = headers(1, ES, &get("/one"));
    let req3 = headers(3, ES, &get("/three"));
    c.cl(&req1, 10).cl(&req3, 11);
    c.sv(&rst(1, 2), 30);
    c.cl(&rst(3, 8), 31);
    // A reset for a stream nobody knows is not a call.
    c.sv(&rst(99, 2), 32);
    assert_eq!(
        c.take(),
        vec![
            Exchange {
                request_start_ns: 10,
                request_end_ns: 10,
                response_start_ns: 30,
                response_end_ns: 30,
                request_bytes: len(&req1),
                stream_error: Some(StreamError {
                    frame: EndingFrame::RstStream,
                    code: ErrorCode(0x2),
                    by: Sender::Server,
                }),
                ..x("GET", "/one", 0)
            },
            Exchange {
                request_start_ns: 11,
                request_end_ns: 11,
                response_start_ns: 31,
                response_end_ns: 31,
                request_bytes: len(&req3),
                stream_error: Some(StreamError {
                    frame: EndingFrame::RstStream,
                    code: ErrorCode(0x8),
                    by: Sender::Client,
                }),
                ..x("GET", "/three", 0)
            },
        ]
    );
    // After a response head: the status stays, the reset is the outcome.
    let req5 = headers(5, ES, &get("/five"));
    let head = headers(5, 0, &status(200).0);
    let body = data(5, 0, b"part");
    c.cl(&req5, 40)
        .sv(&head, 41)
        .sv(&body, 42)
        .sv(&rst(5, 0x42), 43);
    assert_eq!(
        c.take(),
        vec![Exchange {
            request_start_ns: 40,
            request_end_ns: 40,
            response_start_ns: 41,
            response_end_ns: 43,
            request_bytes: len(&req5),
            response_bytes: len(&head) + len(&body),
            response_body_bytes: 4,
            stream_error: Some(StreamError {
                frame: EndingFrame::RstStream,
                code: ErrorCode(0x42),
                by: Sender::Server,
            }),
            ..x("GET", "/five", 200)
        }]
    );
    assert_eq!(c.stats(), SessionStats::default());
}

#[test]
fn goaway_refuses_streams_above_last_stream_id() {
    let mut c = Conn::open();
    for (i, id) in [1u32, 3, 5, 7].into_iter().enumerate() {
        c.cl(&headers(id, ES, &get(&format!("/s{id}"))), 10 + i as u64);
    }
    // The client's GOAWAY is about server-initiated streams: nothing ends.
    c.cl(&goaway(0, 0), 15);
    assert!(c.out.is_empty());
    c.sv(&goaway(3, 0), 20);
    let goaway_err = Some(StreamError {
        frame: EndingFrame::Goaway,
        code: ErrorCode(0x0),
        by: Sender::Server,
    });
    let out = c.take();
    assert_eq!(
        out.iter()
            .map(|e| (e.target.as_str(), e.status, e.stream_error))
            .collect::<Vec<_>>(),
        vec![("/s5", 0, goaway_err), ("/s7", 0, goaway_err)]
    );
    assert_eq!((out[0].response_end_ns, out[1].response_end_ns), (20, 20));
    assert_eq!(out[0].unknown, Unknown::default());
    // Streams 1 and 3 were accepted and finish normally.
    c.sv(&headers(3, ES, &status(404).0), 30);
    c.sv(&headers(1, 0, &status(200).0), 31)
        .sv(&data(1, ES, b"ok"), 32);
    let out = c.take();
    assert_eq!(
        out.iter()
            .map(|e| (e.target.as_str(), e.status, e.stream_error))
            .collect::<Vec<_>>(),
        vec![("/s3", 404, None), ("/s1", 200, None)]
    );
    assert_eq!(c.stats(), SessionStats::default());
}

// ---------------------------------------------------------------------------
// 7. Server push
// ---------------------------------------------------------------------------

/// A promise for `/style.css` whose block inserts `content-type: text/html` into the
/// server's table (dynamic index 62 afterwards).
fn promise_block() -> Vec<u8> {
    Hp::new()
        .idx(2)
        .idx(6)
        .lit_idx(4, "/style.css")
        .lit_idx(1, "example.com")
        .inc_idx(31, "text/html")
        .0
}

#[test]
fn server_push_is_decoded_but_not_a_call() {
    let mut c = Conn::open();
    let req = headers(1, ES, &get("/page"));
    c.cl(&req, 10);
    // PADDED PUSH_PROMISE split over a CONTINUATION.
    let pblock = promise_block();
    let mut p = vec![2u8];
    p.extend_from_slice(&2u32.to_be_bytes());
    p.extend_from_slice(&pblock[..4]);
    p.extend_from_slice(&[0, 0]);
    let pp = frame(PUSH_PROMISE, FLAG_PADDED, 1, &p);
    let pc = frame(CONTINUATION, EH, 1, &pblock[4..]);
    c.sv(&cat(&[&pp, &pc]), 20);
    // The pushed response inserts text/css (62), moving text/html to 63.
    c.sv(&headers(2, 0, &status(200).inc_idx(31, "text/css").0), 21);
    c.sv(&data(2, ES, b"body{}"), 22);
    // A client refusing a later push is not a call either.
    c.cl(&rst(4, 8), 23);
    let head = headers(1, 0, &status(200).idx(63).0);
    let body = data(1, ES, b"<html>");
    c.sv(&head, 24).sv(&body, 25);
    assert_eq!(
        c.take(),
        vec![Exchange {
            request_start_ns: 10,
            request_end_ns: 10,
            response_start_ns: 24,
            response_end_ns: 25,
            request_bytes: len(&req),
            response_bytes: len(&head) + len(&body),
            response_body_bytes: 6,
            response_content_type: Some("text/html".into()),
            ..x("GET", "/page", 200)
        }]
    );
    assert_eq!(c.stats(), SessionStats::default());
    assert!(c.sess.exact());
}

#[test]
fn lost_push_promise_does_not_lose_the_associated_call() {
    let mut c = Conn::open();
    c.cl(&headers(1, ES, &get("/page")), 10);
    let pp = push_promise(1, 2, &promise_block());
    c.sv(&pp[..12], 20).sv_gap(len(&pp) - 12, 21);
    assert!(
        !c.sess.exact(),
        "the promise's table insertions are unknown"
    );
    c.sv(&headers(1, 0, &status(200).0), 22);
    c.sv(&data(1, ES, b"x"), 23);
    let out = c.take();
    assert_eq!(out.len(), 1);
    assert_eq!((out[0].target.as_str(), out[0].status), ("/page", 200));
    assert_eq!(
        c.stats(),
        SessionStats {
            gaps: 1,
            ..SessionStats::default()
        }
    );
}

// ---------------------------------------------------------------------------
// 8. h2c upgrade
// ---------------------------------------------------------------------------

#[test]
fn h2c_upgrade_reports_the_upgraded_request_as_stream_1() {
    let mut s = Session::new(Start::Upgraded { client: EGRESS });
    s.upgraded_request(Exchange {
        method: "GET".into(),
        target: "/up".into(),
        host: Some("example.com".into()),
        request_start_ns: 1,
        request_end_ns: 2,
        response_start_ns: 5,
        request_bytes: 80,
        response_bytes: 71,
        upgrade_h2c: true,
        ..Exchange::default()
    });
    let mut out = Vec::new();
    s.data(EGRESS, &cat(&[PREFACE, &settings(&[])]), 6, &mut out);
    let head = headers(1, 0, &status(200).0);
    let body = data(1, ES, b"upgraded");
    s.data(
        INGRESS,
        &cat(&[&settings(&[]), &settings_ack(), &head]),
        7,
        &mut out,
    );
    s.data(INGRESS, &body, 8, &mut out);
    assert_eq!(
        out,
        vec![Exchange {
            request_start_ns: 1,
            request_end_ns: 2,
            response_start_ns: 5,
            response_end_ns: 8,
            request_bytes: 80,
            response_bytes: 71 + len(&head) + len(&body),
            response_body_bytes: 8,
            ..x("GET", "/up", 200)
        }]
    );
    // Later streams are ordinary.
    out.clear();
    s.data(EGRESS, &headers(3, ES, &get("/next")), 9, &mut out);
    s.data(INGRESS, &headers(3, ES, &status(204).0), 10, &mut out);
    assert_eq!(out.len(), 1);
    assert_eq!((out[0].target.as_str(), out[0].status), ("/next", 204));
    assert_eq!(*s.stats(), SessionStats::default());
    assert!(s.exact());
}

// ---------------------------------------------------------------------------
// 9. Capture gaps
// ---------------------------------------------------------------------------

#[test]
fn gap_inside_data_payload_keeps_sync_and_marks_truncation() {
    let mut c = Conn::open();
    let req = headers(1, ES, &get("/big"));
    c.cl(&req, 10);
    // The response head adds `server: s1` to the server's table.
    let head = headers(1, 0, &status(200).inc_idx(54, "s1").0);
    let body = data(1, ES, &[b'z'; 1000]);
    c.sv(&head, 20).sv(&body[..109], 30).sv_gap(800, 31);
    assert!(c.out.is_empty());
    c.sv(&body[909..], 32);
    assert_eq!(
        c.take(),
        vec![Exchange {
            request_start_ns: 10,
            request_end_ns: 10,
            response_start_ns: 20,
            response_end_ns: 32,
            request_bytes: len(&req),
            response_bytes: len(&head) + len(&body),
            response_body_bytes: 1000,
            response_truncated: true,
            ..x("GET", "/big", 200)
        }]
    );
    assert_eq!(
        c.stats(),
        SessionStats {
            gaps: 1,
            ..SessionStats::default()
        }
    );
    // No header block was lost: the tables are still exact.
    assert!(c.sess.exact());
    c.cl(&headers(3, ES, &get("/next")), 40);
    c.sv(&headers(3, ES, &status(204).idx(62).0), 41);
    let out = c.take();
    assert_eq!(out.len(), 1);
    assert_eq!((out[0].target.as_str(), out[0].status), ("/next", 204));
    assert!(!out[0].response_truncated && !out[0].request_truncated);
    assert_eq!(out[0].unknown, Unknown::default());

    // The same in a request body.
    let req = headers(5, 0, &post("/up", "application/json"));
    let body = data(5, ES, &[b'{'; 500]);
    c.cl(&req, 50)
        .cl(&body[..59], 51)
        .cl_gap(400, 52)
        .cl(&body[459..], 53);
    c.sv(&headers(5, ES, &status(201).0), 54);
    let out = c.take();
    assert_eq!(out.len(), 1);
    assert_eq!(
        (
            out[0].request_bytes,
            out[0].request_body_bytes,
            out[0].request_end_ns
        ),
        (len(&req) + len(&body), 500, 53)
    );
    assert!(out[0].request_truncated && !out[0].response_truncated);
    assert_eq!(c.stats().resyncs, 0);
}

#[test]
fn gaps_give_the_same_calls_however_the_rest_is_split() {
    let (c, s) = (EGRESS, INGRESS);
    let body = data(1, ES, &[b'z'; 1000]);
    let lost_head = headers(3, 0, &status(200).inc_idx(54, "gone").0);
    let evs = vec![
        Ev::Data(
            c,
            cat(&[
                PREFACE,
                &settings(&[]),
                &headers(1, ES, &get("/one")),
                &headers(3, ES, &get("/three")),
                &headers(5, ES, &get("/five")),
            ]),
            10,
        ),
        Ev::Data(
            s,
            cat(&[&settings(&[]), &headers(1, 0, &status(200).0), &body[..300]]),
            20,
        ),
        // Inside a DATA payload: still aligned.
        Ev::Gap(s, 500, 21),
        Ev::Data(s, cat(&[&body[800..], &lost_head[..9]]), 22),
        // A response head's payload: stream 3 is dropped.
        Ev::Gap(s, len(&lost_head) - 9, 23),
        Ev::Data(s, headers(5, ES, &status(404).0), 24),
        // Across a frame boundary: unaligned until a segment starts with frames (stream
        // 7 was open meanwhile, so its response may have lost something).
        Ev::Data(c, headers(7, ES, &get("/seven")), 30),
        Ev::Data(s, data(5, 0, &[0; 40])[..20].to_vec(), 31),
        Ev::Gap(s, 100, 32),
        Ev::Data(s, b"tail of something".to_vec(), 33),
        Ev::Data(s, headers(7, ES, &status(204).0), 34),
    ];
    let whole = run(FRESH, &evs, [&[], &[]]);
    let got: Vec<_> = whole
        .0
        .iter()
        .map(|e| {
            (
                e.target.as_str(),
                e.status,
                e.response_truncated,
                e.response_end_ns,
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("/one", 200, true, 22),
            ("/five", 404, false, 24),
            ("/seven", 204, true, 34)
        ]
    );
    assert_eq!(
        whole.1,
        SessionStats {
            resyncs: 1,
            dropped_requests: 1,
            gaps: 3,
            ..SessionStats::default()
        }
    );
    // While aligned, segmentation does not matter. Realigning needs a segment that starts
    // with whole frame headers, so splitting the unaligned part would change the result.
    let aligned = &evs[..6];
    let whole = run(FRESH, aligned, [&[], &[]]);
    assert_eq!(whole.0.len(), 2);
    assert_eq!(run(FRESH, aligned, [&[1], &[1]]), whole);
    assert_eq!(run(FRESH, aligned, [&[5, 1, 11], &[3, 17, 2]]), whole);
    // One-octet segments never realign.
    let (out, _) = run(FRESH, &evs[..10], [&[], &[]]);
    let mut tail = run_session(FRESH, &evs[..10], [&[], &[]]).1;
    let mut more = Vec::new();
    for b in headers(7, ES, &status(204).0) {
        tail.data(s, &[b], 34, &mut more);
    }
    assert_eq!(out.len(), 2);
    assert!(more.is_empty());
    assert_eq!(tail.stats().resyncs, 0);
}

#[test]
fn gap_over_the_pad_length_counts_padding_as_body() {
    let mut c = Conn::open();
    c.cl(&headers(1, ES, &get("/p")), 10);
    c.sv(&headers(1, 0, &status(200).0), 20);
    let d = padded_data(1, ES, &[1; 20], 10);
    c.sv(&d[..9], 21).sv_gap(len(&d) - 9, 22);
    let out = c.take();
    assert_eq!(out.len(), 1);
    // 31 payload octets, the pad length octet itself excluded.
    assert_eq!(out[0].response_body_bytes, 30);
    assert_eq!(out[0].response_end_ns, 22);
}

#[test]
fn gap_over_a_response_header_block_drops_that_call() {
    let mut c = Conn::open();
    c.cl(&headers(1, ES, &get("/one")), 10);
    c.cl(&headers(3, ES, &get("/three")), 11);
    c.cl(&headers(5, ES, &get("/five")), 12);
    // Stream 1's response head is lost after its frame header: it also added an entry
    // to the server's table.
    let lost = headers(1, 0, &status(200).inc_idx(54, "srv").0);
    c.sv(&lost[..9], 20).sv_gap(len(&lost) - 9, 21);
    assert_eq!(
        c.stats(),
        SessionStats {
            dropped_requests: 1,
            gaps: 1,
            ..SessionStats::default()
        }
    );
    assert!(!c.sess.exact());
    // Its body has nobody to go to.
    c.sv(&data(1, ES, b"lost"), 22);
    // Static and literal fields still decode exactly.
    let head3 = headers(3, ES, &status(404).lit_idx(31, "text/html").0);
    c.sv(&head3, 30);
    // A reference to the lost entry cannot be named but does not hide known fields.
    c.sv(&headers(5, ES, &status(200).idx(62).0), 31);
    assert_eq!(
        c.take(),
        vec![
            Exchange {
                request_start_ns: 11,
                request_end_ns: 11,
                response_start_ns: 30,
                response_end_ns: 30,
                request_bytes: len(&headers(3, ES, &get("/three"))),
                response_bytes: len(&head3),
                response_content_type: Some("text/html".into()),
                ..x("GET", "/three", 404)
            },
            Exchange {
                request_start_ns: 12,
                request_end_ns: 12,
                response_start_ns: 31,
                response_end_ns: 31,
                request_bytes: len(&headers(5, ES, &get("/five"))),
                response_bytes: len(&headers(5, ES, &status(200).idx(62).0)),
                ..x("GET", "/five", 200)
            },
        ]
    );
    assert_eq!(
        c.stats(),
        SessionStats {
            dropped_requests: 1,
            gaps: 1,
            ..SessionStats::default()
        }
    );
}

#[test]
fn gap_of_exactly_one_frame_loses_alignment() {
    let mut c = Conn::open();
    c.cl(&headers(1, ES, &get("/one")), 10);
    c.cl(&headers(3, ES, &get("/three")), 11);
    // At a frame boundary nothing says the gap was one whole frame.
    c.sv_gap(len(&headers(1, ES, &status(200).0)), 20);
    c.sv(&headers(3, ES, &status(200).0), 30);
    let out = c.take();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].target, "/three");
    assert!(out[0].response_truncated);
    c.sess.close(0, &mut Vec::new());
    assert_eq!(
        c.stats(),
        SessionStats {
            resyncs: 1,
            dropped_requests: 1,
            gaps: 1,
            ..SessionStats::default()
        }
    );
}

#[test]
fn gap_across_a_frame_boundary_realigns_on_a_later_segment() {
    let mut c = Conn::open();
    c.cl(&headers(1, ES, &get("/one")), 10);
    c.cl(&headers(3, ES, &get("/three")), 11);
    let body = data(1, 0, &[b'y'; 100]);
    let trailers = headers(1, ES, &Hp::new().lit("x-t", "1").0);
    c.sv(&headers(1, 0, &status(200).0), 20).sv(&body[..49], 30);
    // The rest of the DATA frame and the first five octets of the trailers.
    c.sv_gap(60 + 5, 31);
    // Segments that start mid-frame are ignored while unaligned.
    c.sv(&trailers[5..], 32);
    c.sv(b"zzzzzzzzzzzzzzzzzzzzzzzzz", 33);
    assert_eq!(
        c.stats(),
        SessionStats {
            gaps: 1,
            ..SessionStats::default()
        }
    );
    assert!(c.out.is_empty());
    // A segment starting with a believable chain of frames realigns.
    let head3 = headers(3, 0, &status(200).0);
    let body3 = data(3, ES, b"ok");
    c.sv(&cat(&[&ping(true), &head3, &body3]), 40);
    assert_eq!(
        c.take(),
        vec![Exchange {
            request_start_ns: 11,
            request_end_ns: 11,
            response_start_ns: 40,
            response_end_ns: 40,
            request_bytes: len(&headers(3, ES, &get("/three"))),
            response_bytes: len(&head3) + len(&body3),
            response_body_bytes: 2,
            response_truncated: true,
            ..x("GET", "/three", 200)
        }]
    );
    // Later calls are whole again.
    c.cl(&headers(5, ES, &get("/five")), 50);
    c.sv(&headers(5, ES, &status(204).0), 51);
    let out = c.take();
    assert_eq!(out.len(), 1);
    assert_eq!((out[0].target.as_str(), out[0].status), ("/five", 204));
    assert!(!out[0].response_truncated);
    assert_eq!(
        c.stats(),
        SessionStats {
            resyncs: 1,
            gaps: 1,
            ..SessionStats::default()
        }
    );
    // Stream 1 never ended.
    c.sess.close(0, &mut Vec::new());
    assert_eq!(c.stats().dropped_requests, 1);
}

#[test]
fn lost_request_header_block_makes_its_response_unmatched() {
    let mut c = Conn::open();
    let req = headers(1, ES, &Hp::new().idx(2).idx(6).inc_idx(4, "/x").0);
    c.cl(&req[..12], 10).cl_gap(len(&req) - 12, 11);
    c.sv(&headers(1, ES, &status(200).0), 12);
    assert_eq!(
        c.stats(),
        SessionStats {
            unmatched_responses: 1,
            gaps: 1,
            ..SessionStats::default()
        }
    );
    // The entry it added is unknown from now on, never guessed.
    c.cl(&headers(3, ES, &Hp::new().idx(2).idx(6).idx(62).0), 20);
    c.sv(&headers(3, ES, &status(200).0), 21);
    let out = c.take();
    assert_eq!(out.len(), 1);
    assert_eq!(
        (out[0].method.as_str(), out[0].target.as_str()),
        ("GET", "")
    );
    assert!(out[0].unknown.contains(Field::Path));
}

// ---------------------------------------------------------------------------
// 10. Joining a connection mid-life
// ---------------------------------------------------------------------------

#[test]
fn attached_session_reports_unknown_instead_of_guessing() {
    let mut c = Conn::new(Start::Attached { client: None }, EGRESS);
    assert_eq!(c.sess.requests_direction(), None);
    // The capture starts inside frames: ignored.
    c.cl(&[b'a'; 20], 1);
    c.cl(&headers(99, ES, &get("/mid"))[4..], 2);
    c.sv(&data(99, ES, &[b'q'; 50])[7..], 3);
    assert_eq!(c.stats(), SessionStats::default());
    assert_eq!(c.sess.requests_direction(), None);

    // :path and :authority refer to entries added before the capture started.
    let req1 = headers(101, ES, &Hp::new().idx(2).idx(7).idx(62).idx(63).0);
    c.cl(&req1, 10);
    assert_eq!(c.sess.requests_direction(), Some(EGRESS));
    let resp1 = headers(101, ES, &status(200).0);
    c.sv(&resp1, 11);
    // A new literal path, added to the table, is exact...
    let req2 = headers(
        103,
        ES,
        &Hp::new()
            .idx(2)
            .idx(7)
            .inc_idx(4, "/fresh")
            .lit_idx(1, "api.example")
            .0,
    );
    c.cl(&req2, 20);
    c.sv(&headers(103, ES, &status(200).0), 21);
    // ...and so is a later reference to it, while the older entries stay unknown.
    let req3 = headers(105, ES, &Hp::new().idx(2).idx(7).idx(62).idx(64).0);
    c.cl(&req3, 30);
    // A response whose :status is an unseen entry of the server's table.
    let resp3 = headers(105, 0, &Hp::new().idx(62).0);
    c.sv(&resp3, 31).sv(&data(105, ES, b"ok"), 32);
    assert_eq!(
        c.take(),
        vec![
            Exchange {
                host: None,
                request_start_ns: 10,
                request_end_ns: 10,
                response_start_ns: 11,
                response_end_ns: 11,
                request_bytes: len(&req1),
                response_bytes: len(&resp1),
                unknown: Unknown::of(&[Field::Path, Field::Host]),
                ..x("GET", "", 200)
            },
            Exchange {
                host: Some("api.example".into()),
                request_start_ns: 20,
                request_end_ns: 20,
                response_start_ns: 21,
                response_end_ns: 21,
                request_bytes: len(&req2),
                response_bytes: len(&headers(103, ES, &status(200).0)),
                ..x("GET", "/fresh", 200)
            },
            Exchange {
                host: None,
                request_start_ns: 30,
                request_end_ns: 30,
                response_start_ns: 31,
                response_end_ns: 32,
                request_bytes: len(&req3),
                response_bytes: len(&resp3) + len(&data(105, ES, b"ok")),
                response_body_bytes: 2,
                unknown: Unknown::of(&[Field::Host, Field::Status]),
                ..x("GET", "/fresh", 0)
            },
        ]
    );
    assert_eq!(
        c.stats(),
        SessionStats {
            resyncs: 2,
            ..SessionStats::default()
        }
    );
    assert!(!c.sess.exact());
}

#[test]
fn attached_session_learns_the_client_from_a_status() {
    // The observed process is the server: its responses go EGRESS.
    let mut c = Conn::new(Start::Attached { client: None }, INGRESS);
    c.sv(&headers(7, ES, &status(200).0), 1);
    assert_eq!(c.sess.requests_direction(), Some(INGRESS));
    assert_eq!(c.stats().unmatched_responses, 1);
    // Blocks that name nothing decide nothing: a fresh attached session ignores them.
    let mut other = Conn::new(Start::Attached { client: None }, EGRESS);
    other.cl(&headers(1, ES, &Hp::new().idx(62).idx(63).0), 1);
    assert_eq!(other.sess.requests_direction(), None);
    // Requests and responses now pair up.
    c.cl(&headers(9, ES, &get("/after")), 2);
    c.sv(&headers(9, ES, &status(304).0), 3);
    let out = c.take();
    assert_eq!(out.len(), 1);
    assert_eq!((out[0].target.as_str(), out[0].status), ("/after", 304));
    assert_eq!(out[0].unknown, Unknown::default());
}

#[test]
fn attached_session_with_a_known_requests_direction() {
    // The kernel saw the connection set up: the observed process is the server.
    let mut c = Conn::new(
        Start::Attached {
            client: Some(INGRESS),
        },
        INGRESS,
    );
    assert_eq!(c.sess.requests_direction(), Some(INGRESS));
    // Data and resets before any request was seen go nowhere.
    c.sv(&cat(&[&data(1, ES, b"late"), &rst(1, 8)]), 1);
    // A request whose fields are all unseen table entries is still a call, with its
    // fields unknown; the response's :status is static.
    let req = headers(3, ES, &Hp::new().idx(62).idx(63).idx(64).0);
    let resp = headers(3, ES, &status(500).0);
    c.cl(&req, 10).sv(&resp, 11);
    assert_eq!(
        c.take(),
        vec![Exchange {
            host: None,
            request_start_ns: 10,
            request_end_ns: 10,
            response_start_ns: 11,
            response_end_ns: 11,
            request_bytes: len(&req),
            response_bytes: len(&resp),
            unknown: Unknown::of(&[Field::Method, Field::Path, Field::Host]),
            ..x("", "", 500)
        }]
    );
    assert_eq!(
        c.stats(),
        SessionStats {
            resyncs: 2,
            ..SessionStats::default()
        }
    );
}

#[test]
fn attached_session_with_larger_frames_than_it_knows_never_misreports() {
    // The peers raised SETTINGS_MAX_FRAME_SIZE before the capture started.
    let mut c = Conn::new(Start::Attached { client: None }, EGRESS);
    let b1 = Hp::new().idx(2).idx(7).inc_idx(4, "/a").lit_idx(1, "h").0;
    c.cl(&headers(1, ES, &b1), 10)
        .sv(&headers(1, ES, &status(200).0), 11);
    // A 20000-octet header block that adds :path /b, which the framer must skip.
    let b3 = Hp::new()
        .idx(2)
        .idx(7)
        .inc_idx(4, "/b")
        .lit_idx(1, "h")
        .lit("x-big", &"y".repeat(19_950))
        .0;
    let big = headers(3, ES, &b3);
    assert!(big.len() > 16_384 + 9);
    c.cl(&big, 20).sv(&headers(3, ES, &status(200).0), 21);
    // Index 62 is /b now, not /a.
    let b5 = Hp::new().idx(2).idx(7).idx(62).lit_idx(1, "h").0;
    c.cl(&headers(5, ES, &b5), 30)
        .sv(&headers(5, ES, &status(200).0), 31);
    let out = c.take();
    let paths: Vec<_> = out
        .iter()
        .map(|e| (e.target.as_str(), e.unknown.contains(Field::Path)))
        .collect();
    assert_eq!(paths, vec![("/a", false), ("", true)]);
    let st = c.stats();
    assert_eq!((st.parse_errors, st.unmatched_responses), (1, 1));
}

// ---------------------------------------------------------------------------
// 11. Malformed input
// ---------------------------------------------------------------------------

#[test]
fn oversized_frame_is_a_parse_error_and_skipped() {
    let mut c = Conn::open();
    c.cl(&headers(1, ES, &get("/big")), 10);
    c.sv(&headers(1, 0, &status(200).0), 20);
    // 20000 octets: nobody allowed more than 16384.
    let big = data(1, ES, &vec![0; 20_000]);
    c.sv(&big[..1000], 21).sv(&big[1000..], 22);
    assert_eq!(c.stats().parse_errors, 1);
    assert!(c.out.is_empty(), "a malformed frame ends nothing");
    c.sv(&data(1, ES, b"end"), 23);
    let out = c.take();
    assert_eq!(out.len(), 1);
    assert_eq!(
        (
            out[0].target.as_str(),
            out[0].status,
            out[0].response_body_bytes
        ),
        ("/big", 200, 3)
    );
    // The next call on the connection is reported too.
    c.cl(&headers(3, ES, &get("/next")), 30);
    c.sv(&headers(3, ES, &status(200).0), 31);
    let out = c.take();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].target, "/next");
    assert_eq!(
        c.stats(),
        SessionStats {
            parse_errors: 1,
            ..SessionStats::default()
        }
    );
}

#[test]
fn settings_max_frame_size_allows_larger_frames_one_way() {
    let mut c = Conn::new(FRESH, EGRESS);
    // The client accepts 65536-octet frames; the server keeps the default.
    c.cl(
        &cat(&[PREFACE, &settings(&[(SETTINGS_MAX_FRAME_SIZE, 65_536)])]),
        1,
    );
    c.sv(&settings(&[]), 2);
    c.cl(&headers(1, ES, &get("/down")), 10);
    c.sv(&headers(1, 0, &status(200).0), 11);
    c.sv(&data(1, ES, &vec![0; 40_000]), 12);
    let out = c.take();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].response_body_bytes, 40_000);
    assert_eq!(c.stats(), SessionStats::default());
    c.cl(&headers(3, 0, &post("/up", "a/b")), 20);
    c.cl(&data(3, ES, &vec![0; 20_000]), 21);
    assert_eq!(c.stats().parse_errors, 1);
}

#[test]
fn settings_header_table_size_bounds_the_other_sides_size_updates() {
    let mut c = Conn::new(FRESH, EGRESS);
    // The client lets the server's encoder use 8192 octets.
    c.cl(
        &cat(&[PREFACE, &settings(&[(SETTINGS_HEADER_TABLE_SIZE, 8192)])]),
        1,
    );
    c.sv(&settings(&[]), 2);
    c.cl(&headers(1, ES, &get("/a")), 10);
    c.sv(&headers(1, ES, &Hp::new().size(8192).idx(8).0), 11);
    assert_eq!(c.stats(), SessionStats::default());
    assert!(c.sess.exact());
    // The server allowed the client nothing beyond 4096: an error, and since the
    // block could not be decoded its fields are unknown.
    let bad = Hp::new().size(8192).raw(&get("/b")).0;
    c.cl(&headers(3, ES, &bad), 20);
    c.sv(&headers(3, ES, &status(200).0), 21);
    let out = c.take();
    assert_eq!(out.len(), 2);
    assert_eq!((out[0].target.as_str(), out[0].status), ("/a", 200));
    assert_eq!(
        (
            out[1].method.as_str(),
            out[1].target.as_str(),
            out[1].host.as_deref(),
            out[1].status
        ),
        ("", "", None, 200)
    );
    assert_eq!(
        out[1].unknown,
        Unknown::of(&[Field::Method, Field::Path, Field::Host])
    );
    assert_eq!(c.stats().parse_errors, 1);
}

#[test]
fn malformed_control_frames_are_parse_errors_and_skipped() {
    let mut c = Conn::open();
    c.cl(&headers(1, ES, &get("/x")), 10);
    let bad = [
        frame(SETTINGS, 0, 0, &[0; 7]),
        frame(SETTINGS, FLAG_ACK, 0, &[0; 6]),
        frame(SETTINGS, 0, 1, &[]),
        frame(PING, 0, 0, &[0; 7]),
        frame(WINDOW_UPDATE, 0, 0, &[0; 3]),
        frame(RST_STREAM, 0, 0, &[0; 4]),
        frame(RST_STREAM, 0, 1, &[0; 5]),
        frame(PRIORITY, 0, 1, &[0; 4]),
        frame(GOAWAY, 0, 0, &[0; 7]),
        frame(GOAWAY, 0, 3, &[0; 8]),
        frame(DATA, ES, 0, b"zero"),
        frame(PUSH_PROMISE, EH, 1, &[0; 3]),
    ];
    for (i, f) in bad.iter().enumerate() {
        c.sv(f, 20 + i as u64);
    }
    assert!(c.out.is_empty(), "no malformed frame ended stream 1");
    c.sv(&headers(1, ES, &status(200).0), 40);
    let out = c.take();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].status, 200);
    assert_eq!(
        c.stats(),
        SessionStats {
            parse_errors: bad.len() as u64,
            ..SessionStats::default()
        }
    );
}

#[test]
fn header_padding_longer_than_the_frame_is_a_parse_error() {
    let mut c = Conn::open();
    let mut p = vec![200u8];
    p.extend_from_slice(&get("/x"));
    c.cl(&frame(HEADERS, EH | ES | FLAG_PADDED, 1, &p), 10);
    // PRIORITY fields cut short.
    c.cl(&frame(HEADERS, EH | ES | FLAG_PRIORITY, 3, &[0, 0]), 11);
    // A PUSH_PROMISE whose padding eats its promised stream id.
    c.sv(
        &frame(PUSH_PROMISE, EH | FLAG_PADDED, 1, &[9, 0, 0, 0, 2]),
        12,
    );
    assert_eq!(c.stats().parse_errors, 3);
    c.sv(&headers(1, ES, &status(200).0), 13);
    assert_eq!(c.stats().unmatched_responses, 1);
    // Literal-only calls are still exact.
    c.cl(&headers(5, ES, &get("/five")), 20);
    c.sv(&headers(5, ES, &status(200).0), 21);
    let out = c.take();
    assert_eq!(out.len(), 1);
    assert_eq!(
        (out[0].target.as_str(), out[0].host.as_deref()),
        ("/five", Some("example.com"))
    );
    assert_eq!(out[0].unknown, Unknown::default());
    assert_eq!(
        c.stats(),
        SessionStats {
            parse_errors: 3,
            unmatched_responses: 1,
            ..SessionStats::default()
        }
    );
}

#[test]
fn hpack_garbage_is_a_parse_error_and_literal_calls_still_work() {
    let mut c = Conn::open();
    // :method GET, then an index that overflows.
    c.cl(
        &headers(1, ES, &[0x82, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]),
        10,
    );
    c.sv(&headers(1, ES, &status(200).0), 11);
    let out = c.take();
    assert_eq!(out.len(), 1);
    assert_eq!(
        (
            out[0].method.as_str(),
            out[0].target.as_str(),
            out[0].host.as_deref(),
            out[0].status
        ),
        ("GET", "", None, 200)
    );
    assert_eq!(out[0].unknown, Unknown::of(&[Field::Path, Field::Host]));
    // A dynamic index beyond an exact (empty) table, and a truncated literal.
    c.cl(&headers(3, ES, &get("/three")), 20);
    c.sv(&headers(3, ES, &status(404).idx(70).0), 21);
    c.cl(&headers(5, ES, &get("/five")), 22);
    c.sv(&headers(5, ES, &status(200).raw(&[0x40, 0x05, b'a']).0), 23);
    let out = c.take();
    assert_eq!(
        out.iter()
            .map(|e| (e.target.as_str(), e.status, e.unknown))
            .collect::<Vec<_>>(),
        vec![
            ("/three", 404, Unknown::default()),
            ("/five", 200, Unknown::default())
        ]
    );
    assert_eq!(c.stats().parse_errors, 3);
    assert!(!c.sess.exact());
    // Both tables are unknown now, yet literal-only calls stay exact.
    let req = headers(7, ES, &get("/seven"));
    let head = headers(7, 0, &status(500).lit_idx(31, "text/plain").0);
    let body = data(7, ES, b"oops");
    c.cl(&req, 30).sv(&head, 31).sv(&body, 32);
    assert_eq!(
        c.take(),
        vec![Exchange {
            request_start_ns: 30,
            request_end_ns: 30,
            response_start_ns: 31,
            response_end_ns: 32,
            request_bytes: len(&req),
            response_bytes: len(&head) + len(&body),
            response_body_bytes: 4,
            response_content_type: Some("text/plain".into()),
            ..x("GET", "/seven", 500)
        }]
    );
    assert_eq!(
        c.stats(),
        SessionStats {
            parse_errors: 3,
            ..SessionStats::default()
        }
    );
}

#[test]
fn absurd_frame_length_loses_alignment() {
    let mut c = Conn::open();
    c.cl(&headers(1, ES, &get("/x")), 10);
    c.sv(&frame_head(DATA, 0, 1, 0xff_ffff), 20);
    assert_eq!(c.stats().parse_errors, 1);
    // Zeros are not frames (stream 0 DATA): still unaligned.
    c.sv(&[0; 100], 21);
    assert_eq!(c.stats().resyncs, 0);
    c.sv(&headers(1, ES, &status(200).0), 22);
    let out = c.take();
    assert_eq!(out.len(), 1);
    assert!(out[0].response_truncated);
    // A length beyond four times the negotiated maximum is not believed either.
    c.cl(&frame_head(HEADERS, EH, 3, 70_000), 30);
    c.cl(&headers(5, ES, &get("/five")), 31);
    c.sv(&headers(5, ES, &status(200).0), 32);
    let out = c.take();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].target, "/five");
    assert_eq!(
        c.stats(),
        SessionStats {
            parse_errors: 2,
            resyncs: 2,
            ..SessionStats::default()
        }
    );
}

#[test]
fn huffman_coded_request_and_response() {
    // RFC 7541 C.4.1 and C.6.1.
    let req = [
        0x82, 0x86, 0x84, 0x41, 0x8c, 0xf1, 0xe3, 0xc2, 0xe5, 0xf2, 0x3a, 0x6b, 0xa0, 0xab, 0x90,
        0xf4, 0xff,
    ];
    let resp = [
        0x48, 0x82, 0x64, 0x02, 0x58, 0x85, 0xae, 0xc3, 0x77, 0x1a, 0x4b, 0x61, 0x96, 0xd0, 0x7a,
        0xbe, 0x94, 0x10, 0x54, 0xd4, 0x44, 0xa8, 0x20, 0x05, 0x95, 0x04, 0x0b, 0x81, 0x66, 0xe0,
        0x82, 0xa6, 0x2d, 0x1b, 0xff, 0x6e, 0x91, 0x9d, 0x29, 0xad, 0x17, 0x18, 0x63, 0xc7, 0x8f,
        0x0b, 0x97, 0xc8, 0xe9, 0xae, 0x82, 0xae, 0x43, 0xd3,
    ];
    let mut c = Conn::open();
    c.cl(&headers(1, ES, &req), 10);
    c.sv(&headers(1, ES, &resp), 11);
    // C.4.2: the authority is now dynamic entry 62 of the client's table.
    c.cl(
        &headers(
            3,
            ES,
            &[
                0x82, 0x86, 0x84, 0xbe, 0x58, 0x86, 0xa8, 0xeb, 0x10, 0x64, 0x9c, 0xbf,
            ],
        ),
        12,
    );
    // C.6.2: 307 and the rest from the server's table.
    c.sv(
        &headers(3, ES, &[0x48, 0x83, 0x64, 0x0e, 0xff, 0xc1, 0xc0, 0xbf]),
        13,
    );
    let out = c.take();
    assert_eq!(
        out.iter()
            .map(|e| (e.target.as_str(), e.host.as_deref(), e.status))
            .collect::<Vec<_>>(),
        vec![
            ("/", Some("www.example.com"), 302),
            ("/", Some("www.example.com"), 307)
        ]
    );
    assert_eq!(c.stats(), SessionStats::default());
    assert!(c.sess.exact());
}

#[test]
fn stream_table_is_capped_and_close_drops_the_rest() {
    let mut c = Conn::open();
    for i in 0..4097u32 {
        c.cl(&headers(2 * i + 1, ES, &get("/many")), 10);
    }
    assert_eq!(c.stats().dropped_requests, 1);
    // The oldest (stream 1) went; stream 3 is still there.
    c.sv(&headers(1, ES, &status(200).0), 11);
    c.sv(&headers(3, ES, &status(200).0), 12);
    assert_eq!(c.take().len(), 1);
    assert_eq!(c.stats().unmatched_responses, 1);
    c.sess.close(0, &mut Vec::new());
    assert_eq!(c.stats().dropped_requests, 1 + 4095);
}

#[test]
fn never_indexed_literals_and_size_updates_keep_tables_in_step() {
    let mut c = Conn::open();
    // never-indexed authorization, a size update to 0 (emptying), then an insert.
    let b1 = Hp::new()
        .size(0)
        .size(4096)
        .idx(2)
        .idx(7)
        .inc_idx(4, "/t")
        .never_idx(23, "Bearer abc")
        .lit_idx(1, "example.com")
        .0;
    c.cl(&headers(1, ES, &b1), 10);
    c.sv(&headers(1, ES, &status(200).0), 11);
    let b3 = Hp::new().idx(2).idx(7).idx(62).lit_idx(1, "example.com").0;
    c.cl(&headers(3, ES, &b3), 12);
    c.sv(&headers(3, ES, &status(200).0), 13);
    let out = c.take();
    assert_eq!(out.len(), 2);
    assert_eq!(out[0].target, "/t");
    assert_eq!(
        out[0].auth.kind,
        crate::protocol::credentials::AuthKind::Bearer
    );
    assert_eq!(out[1].target, "/t");
    assert_eq!(c.stats(), SessionStats::default());
    assert!(c.sess.exact());
}

// ---------------------------------------------------------------------------
// 12. Split invariance of a rich transcript
// ---------------------------------------------------------------------------

/// Several streams using everything above: padding, priority, CONTINUATION, a large DATA
/// frame the client allowed, push, gRPC, resets, GOAWAY, PING, extension frames.
fn rich_transcript() -> Vec<Ev> {
    let (c, s) = (EGRESS, INGRESS);
    let rb = Hp::new()
        .idx(2)
        .idx(7)
        .lit_idx(4, "/continued")
        .lit_idx(1, "example.com")
        .lit("x-f", &"u".repeat(30))
        .0;
    let mut pp = vec![6u8, 0x80, 0, 0, 0, 15];
    pp.extend_from_slice(&get("/pp"));
    pp.extend_from_slice(&[0; 6]);
    let grpc_trailers = Hp::new().lit("grpc-status", "0").0;
    vec![
        Ev::Data(
            c,
            cat(&[
                PREFACE,
                &settings(&[(SETTINGS_MAX_FRAME_SIZE, 20_000)]),
                &headers(1, ES, &get("/hello")),
            ]),
            10,
        ),
        Ev::Data(
            s,
            cat(&[
                &settings(&[]),
                &settings_ack(),
                &headers(1, 0, &status(200).0),
            ]),
            11,
        ),
        Ev::Data(
            c,
            cat(&[
                &settings_ack(),
                &frame(HEADERS, ES | EH | FLAG_PADDED | FLAG_PRIORITY, 3, &pp),
                &frame(HEADERS, ES, 5, &rb[..7]),
                &frame(CONTINUATION, 0, 5, &rb[7..20]),
                &frame(CONTINUATION, EH, 5, &rb[20..]),
                &headers(7, 0, &grpc_request("/demo.Greeter/SayHello")),
                &data(7, ES, &[0; 7]),
                &window_update(0, 1000),
                &priority(9, 0, 1),
                &extension(0),
            ]),
            12,
        ),
        Ev::Data(
            s,
            cat(&[
                &data(1, 0, &[1; 18_000]),
                &ping(false),
                &padded_data(1, ES, b"tail", 9),
                &push_promise(3, 2, &promise_block()),
                &headers(2, ES, &status(200).0),
                &extension(3),
                &headers(3, ES, &status(204).0),
            ]),
            13,
        ),
        Ev::Data(c, cat(&[&ping(true), &headers(9, ES, &get("/reset"))]), 14),
        Ev::Data(
            s,
            cat(&[
                &headers(5, 0, &status(404).idx(62).0),
                &data(5, ES, b"nf"),
                &headers(7, 0, &status(200).lit_idx(31, "application/grpc").0),
                &data(7, 0, &[0; 5]),
                &headers(7, ES, &grpc_trailers),
            ]),
            15,
        ),
        Ev::Data(
            c,
            cat(&[&rst(9, 8), &headers(11, ES, &get("/refused"))]),
            16,
        ),
        Ev::Data(s, goaway(9, 0), 17),
    ]
}

#[test]
fn rich_transcript_whole() {
    let (out, st) = run(FRESH, &rich_transcript(), [&[], &[]]);
    let got: Vec<_> = out
        .iter()
        .map(|e| {
            (
                e.target.as_str(),
                e.status,
                e.protocol,
                e.stream_error.map(|s| s.frame.name()),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("/hello", 200, Protocol::Http2, None),
            ("/pp", 204, Protocol::Http2, None),
            ("/continued", 404, Protocol::Http2, None),
            ("/demo.Greeter/SayHello", 200, Protocol::Grpc, None),
            ("/reset", 0, Protocol::Http2, Some("RST_STREAM")),
            ("/refused", 0, Protocol::Http2, Some("GOAWAY")),
        ]
    );
    assert_eq!(out[0].response_body_bytes, 18_004);
    assert_eq!(out[2].response_content_type.as_deref(), Some("text/html"));
    assert_eq!(out[3].grpc.as_ref().unwrap().status, Some(0));
    assert!(out.iter().all(|e| e.unknown == Unknown::default()));
    assert_eq!(st, SessionStats::default());
    assert_eq!(run(FRESH, &rich_transcript(), [&[1], &[1]]), (out, st));
}

proptest! {
    #[test]
    fn rich_transcript_split_anywhere_is_identical(
        c0 in proptest::collection::vec(1usize..40, 1..24),
        c1 in proptest::collection::vec(1usize..40, 1..24),
    ) {
        let evs = rich_transcript();
        prop_assert_eq!(run(FRESH, &evs, [&c0, &c1]), run(FRESH, &evs, [&[], &[]]));
    }
}

// ---------------------------------------------------------------------------
// Generated conversations with a real HPACK encoder
// ---------------------------------------------------------------------------

const MODES: [Mode; 4] = [
    Mode::Best,
    Mode::WithIndexing,
    Mode::WithoutIndexing,
    Mode::NeverIndexed,
];

/// Table size updates at the start of a block, by `choice`.
fn maybe_update(enc: &mut Encoder, out: &mut Vec<u8>, choice: u8) {
    match choice {
        1 => enc.size_update(out, 256),
        2 => {
            enc.size_update(out, 0);
            enc.size_update(out, 4096);
        }
        3 => enc.size_update(out, 4096),
        4 => enc.size_update(out, 100),
        _ => {}
    }
}

const PATHS: [&str; 6] = [
    "/",
    "/index.html",
    "/a",
    "/b/c",
    "/search?q=1",
    "/demo.Greeter/SayHello",
];
const AUTHORITIES: [&str; 3] = ["example.com", "api.example", "b.example"];
const STATUSES: [u16; 6] = [200, 204, 404, 500, 302, 201];

/// One generated stream.
#[derive(Clone, Debug)]
#[allow(
    clippy::struct_excessive_bools,
    reason = "one generated test case's switches"
)]
struct Spec {
    post: bool,
    path: usize,
    authority: usize,
    status: usize,
    /// Small, so values repeat and get indexed.
    tag: u8,
    /// How each of the ten fields is represented (index into `MODES`).
    reps: Vec<u8>,
    /// Table size update choice (`maybe_update`).
    update: u8,
    req_frames: usize,
    resp_frames: usize,
    req_body: usize,
    trailers: bool,
    /// The response comes after the next stream's request.
    delay: bool,
    /// Control frames around the response.
    extra: bool,
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        (
            any::<bool>(),
            0..PATHS.len(),
            0..AUTHORITIES.len(),
            0..STATUSES.len(),
            0u8..4,
            proptest::collection::vec(0u8..4, 10),
        ),
        (
            0u8..10,
            1usize..4,
            1usize..4,
            0usize..24,
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
        ),
    )
        .prop_map(
            |(
                (post, path, authority, status, tag, reps),
                (update, req_frames, resp_frames, req_body, trailers, delay, extra),
            )| Spec {
                post,
                path,
                authority,
                status,
                tag,
                reps,
                update,
                req_frames,
                resp_frames,
                req_body,
                trailers,
                delay,
                extra,
            },
        )
}

/// What a stream really carried.
#[derive(Clone, Debug)]
struct Truth {
    method: &'static str,
    path: &'static str,
    authority: &'static str,
    status: u16,
    /// The run holding its request's HEADERS frame (its `request_start_ns` is this + 1).
    run: usize,
}

/// Frames grouped in runs written by one side (0 client, 1 server) with nothing from
/// the other side in between. Stream `i`'s response body is `i + 1` octets, in one DATA
/// frame: that is how a call is matched to its truth (and by `request_start_ns` when the
/// DATA frame went by unseen).
struct Conv {
    runs: Vec<(usize, Vec<u8>)>,
    truths: Vec<Truth>,
}

/// A header block over `parts` frames (HEADERS then CONTINUATION).
fn block_frames(stream: u32, flags: u8, block: &[u8], parts: usize) -> Vec<Vec<u8>> {
    let n = block.len();
    (0..parts)
        .map(|k| {
            let piece = &block[n * k / parts..n * (k + 1) / parts];
            let eh = if k + 1 == parts { EH } else { 0 };
            if k == 0 {
                frame(HEADERS, flags | eh, stream, piece)
            } else {
                frame(CONTINUATION, eh, stream, piece)
            }
        })
        .collect()
}

#[allow(clippy::too_many_lines, reason = "one scenario, read top to bottom")]
fn conversation(specs: &[Spec]) -> Conv {
    let (mut client, mut server) = (Encoder::new(), Encoder::new());
    let mut frames: Vec<(usize, Vec<u8>)> = vec![
        (0, cat(&[PREFACE, &settings(&[])])),
        (1, cat(&[&settings(&[]), &settings_ack()])),
        (0, settings_ack()),
    ];
    let mut truths = Vec::new();
    let mut first_frames = Vec::new();
    let mut pending = Vec::new();
    for (i, s) in specs.iter().enumerate() {
        let id = 2 * i as u32 + 1;
        let t = Truth {
            method: if s.post { "POST" } else { "GET" },
            path: PATHS[s.path],
            authority: AUTHORITIES[s.authority],
            status: STATUSES[s.status],
            run: 0,
        };
        let tag = format!("t{}", s.tag);
        let mut block = Vec::new();
        maybe_update(&mut client, &mut block, s.update);
        let fields = [
            (":method", t.method),
            (":scheme", "https"),
            (":path", t.path),
            (":authority", t.authority),
            ("user-agent", "prop/1"),
            ("x-tag", tag.as_str()),
        ];
        for (k, (n, v)) in fields.into_iter().enumerate() {
            client.field(
                &mut block,
                n.as_bytes(),
                v.as_bytes(),
                MODES[s.reps[k] as usize],
                false,
            );
        }
        let end = if s.req_body == 0 { ES } else { 0 };
        first_frames.push(frames.len());
        for f in block_frames(id, end, &block, s.req_frames) {
            frames.push((0, f));
        }
        if s.req_body > 0 {
            frames.push((0, data(id, ES, &vec![0; s.req_body])));
        }
        frames.append(&mut pending);

        let mut resp = Vec::new();
        let mut block = Vec::new();
        maybe_update(&mut server, &mut block, (s.update + s.tag) % 10);
        let code = t.status.to_string();
        let ct = if s.tag % 2 == 0 {
            "text/plain"
        } else {
            "application/json"
        };
        let fields = [
            (":status", code.as_str()),
            ("content-type", ct),
            ("server", "prop"),
            ("x-tag", tag.as_str()),
        ];
        for (k, (n, v)) in fields.into_iter().enumerate() {
            server.field(
                &mut block,
                n.as_bytes(),
                v.as_bytes(),
                MODES[s.reps[6 + k] as usize],
                false,
            );
        }
        for f in block_frames(id, 0, &block, s.resp_frames) {
            resp.push((1, f));
        }
        if s.extra {
            resp.push((0, window_update(id, 1000)));
            resp.push((1, ping(false)));
            resp.push((0, ping(true)));
        }
        let body = vec![0; i + 1];
        if s.trailers {
            resp.push((1, data(id, 0, &body)));
            let mut block = Vec::new();
            server.field(
                &mut block,
                b"x-trailer",
                tag.as_bytes(),
                MODES[s.reps[9] as usize],
                false,
            );
            resp.push((1, headers(id, ES, &block)));
        } else {
            resp.push((1, data(id, ES, &body)));
        }
        truths.push(t);
        if s.delay {
            pending = resp;
        } else {
            frames.extend(resp);
        }
    }
    frames.extend(pending);
    let mut runs: Vec<(usize, Vec<u8>)> = Vec::new();
    let mut run_of = Vec::new();
    for (side, f) in frames {
        match runs.last_mut() {
            Some((last, bytes)) if *last == side => bytes.extend_from_slice(&f),
            _ => runs.push((side, f)),
        }
        run_of.push(runs.len() - 1);
    }
    for (t, first) in truths.iter_mut().zip(first_frames) {
        t.run = run_of[first];
    }
    Conv { runs, truths }
}

/// How a conversation is captured: segment sizes per side (cycled; empty is whole
/// runs), octets of each side missed before the capture started, and which segments are
/// lost to gaps (cycled).
#[derive(Clone, Debug, Default)]
struct Capture {
    cuts: [Vec<usize>; 2],
    skip: [usize; 2],
    gaps: Vec<bool>,
}

fn capture(start: Start, conv: &Conv, plan: &Capture) -> (Vec<Exchange>, Session) {
    let mut s = Session::new(start);
    let mut out = Vec::new();
    let mut skip = plan.skip;
    let mut cuts = [plan.cuts[0].iter().cycle(), plan.cuts[1].iter().cycle()];
    let mut gaps = plan.gaps.iter().cycle();
    for (i, (side, bytes)) in conv.runs.iter().enumerate() {
        let dir = if *side == 0 { EGRESS } else { INGRESS };
        let ts = i as u64 + 1;
        let k = skip[*side].min(bytes.len());
        skip[*side] -= k;
        let mut rest = &bytes[k..];
        while !rest.is_empty() {
            let n = cuts[*side]
                .next()
                .copied()
                .unwrap_or(usize::MAX)
                .clamp(1, rest.len());
            let (piece, tail) = rest.split_at(n);
            if gaps.next().copied().unwrap_or(false) {
                s.gap(dir, n as u64, ts, &mut out);
            } else {
                s.data(dir, piece, ts, &mut out);
            }
            rest = tail;
        }
    }
    (out, s)
}

/// Whether a call agrees with a stream's truth in every field it does not mark unknown.
fn agrees(e: &Exchange, t: &Truth) -> bool {
    (e.unknown.contains(Field::Method) || e.method == t.method)
        && (e.unknown.contains(Field::Path) || e.target == t.path)
        && (e.unknown.contains(Field::Host) || e.host.as_deref() == Some(t.authority))
        && (e.unknown.contains(Field::Status) || e.status == t.status)
        && e.request_start_ns == t.run as u64 + 1
}

/// Every call matches its stream's truth in each field it does not mark unknown, and
/// no stream is reported twice.
fn check_never_wrong(conv: &Conv, out: &[Exchange]) -> Result<(), TestCaseError> {
    let mut seen = HashSet::new();
    for e in out {
        let i = e.response_body_bytes as usize;
        if i == 0 {
            // Its DATA frame went by unseen (trailers ended the stream): some stream that
            // started then must agree.
            prop_assert!(
                conv.truths.iter().any(|t| agrees(e, t)),
                "no stream agrees with {:?}",
                e
            );
        } else {
            prop_assert!(i <= conv.truths.len(), "unmatched call {:?}", e);
            prop_assert!(seen.insert(i), "stream reported twice: {:?}", e);
            let t = &conv.truths[i - 1];
            prop_assert!(agrees(e, t), "{:?} {:?}", e, t);
        }
        if e.unknown.contains(Field::Method) {
            prop_assert_eq!(e.method.as_str(), "");
        }
        if e.unknown.contains(Field::Path) {
            prop_assert_eq!(e.target.as_str(), "");
        }
        if e.unknown.contains(Field::Host) {
            prop_assert_eq!(e.host.as_deref(), None);
        }
        if e.unknown.contains(Field::Status) {
            prop_assert_eq!(e.status, 0);
        }
        prop_assert!(e.stream_error.is_none());
    }
    Ok(())
}

proptest! {
    /// A whole capture is exact, whatever the segmentation.
    #[test]
    fn generated_conversation_is_exact_however_split(
        specs in proptest::collection::vec(spec(), 1..14),
        c0 in proptest::collection::vec(1usize..64, 1..16),
        c1 in proptest::collection::vec(1usize..64, 1..16),
    ) {
        let conv = conversation(&specs);
        let (whole, s) = capture(FRESH, &conv, &Capture::default());
        prop_assert_eq!(s.stats(), &SessionStats::default());
        prop_assert!(s.exact());
        prop_assert_eq!(whole.len(), specs.len());
        check_never_wrong(&conv, &whole)?;
        for e in &whole {
            prop_assert_eq!(e.unknown, Unknown::default());
            prop_assert!(!e.request_truncated && !e.response_truncated);
        }
        let plan = Capture { cuts: [c0, c1], ..Capture::default() };
        let (split, s2) = capture(FRESH, &conv, &plan);
        prop_assert_eq!(split, whole);
        prop_assert_eq!(s2.stats(), s.stats());
    }

    /// Joining late, or losing segments, loses calls and fields but never misreports.
    #[test]
    fn partial_capture_never_reports_a_wrong_field(
        specs in proptest::collection::vec(spec(), 1..14),
        attached in any::<bool>(),
        skip0 in 0usize..800,
        skip1 in 0usize..800,
        c0 in proptest::collection::vec(prop_oneof![1usize..40, 40usize..4000], 1..16),
        c1 in proptest::collection::vec(prop_oneof![1usize..40, 40usize..4000], 1..16),
        gaps in proptest::collection::vec(proptest::bool::weighted(0.1), 1..40),
    ) {
        let conv = conversation(&specs);
        let (start, skip) = if attached {
            let client = (skip0 % 2 == 0).then_some(EGRESS);
            (Start::Attached { client }, [skip0, skip1])
        } else {
            (FRESH, [0, 0])
        };
        let plan = Capture { cuts: [c0, c1], skip, gaps };
        let (out, mut s) = capture(start, &conv, &plan);
        check_never_wrong(&conv, &out)?;
        s.close(0, &mut Vec::new());
        let st = s.stats();
        prop_assert!(out.len() as u64 + st.dropped_requests <= specs.len() as u64 + st.unmatched_responses);
    }
}

// ---------------------------------------------------------------------------
// 11. Hostile input never panics
// ---------------------------------------------------------------------------

#[derive(Clone, Debug)]
enum Op {
    Data(bool, Vec<u8>),
    Gap(bool, u64),
}

/// Frames and fragments worth mixing into random input.
fn pieces() -> Vec<Vec<u8>> {
    vec![
        PREFACE.to_vec(),
        settings(&[]),
        settings(&[
            (SETTINGS_MAX_FRAME_SIZE, 1 << 20),
            (SETTINGS_HEADER_TABLE_SIZE, 0),
        ]),
        settings(&[(SETTINGS_HEADER_TABLE_SIZE, 1 << 30)]),
        settings_ack(),
        headers(1, ES, &get("/r")),
        headers(3, 0, &Hp::new().idx(2).inc_idx(4, "/dyn").idx(62).0),
        headers(1, ES, &status(200).inc_idx(54, "s").0),
        headers(3, 0, &status(200).idx(62).idx(63).0),
        headers(5, ES, &Hp::new().size(1 << 20).idx(2).0),
        frame(HEADERS, ES, 1, &get("/c")[..3]),
        frame(CONTINUATION, 0, 1, &get("/c")[3..6]),
        frame(CONTINUATION, EH, 1, &get("/c")[6..]),
        frame(CONTINUATION, EH, 7, b"\x82"),
        frame(HEADERS, EH | FLAG_PADDED, 1, &[250, 0x88]),
        frame(HEADERS, EH | FLAG_PRIORITY, 1, &[0, 0, 0]),
        headers(1, 0, &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff]),
        data(1, ES, b"body"),
        data(3, 0, &[0; 300]),
        padded_data(1, ES, b"x", 200),
        frame(DATA, FLAG_PADDED, 1, &[]),
        rst(1, 8),
        rst(3, 2),
        goaway(0, 2),
        goaway(1, 0),
        push_promise(1, 2, &promise_block()),
        headers(2, ES, &status(200).0),
        ping(false),
        window_update(0, 5),
        priority(1, 1, 1),
        extension(1),
        frame_head(DATA, 0, 1, 20_000),
        frame_head(HEADERS, EH, 1, 20_000),
        frame_head(DATA, 0, 1, 0xff_ffff),
    ]
}

fn random_frame() -> impl Strategy<Value = Vec<u8>> {
    (
        0u8..12,
        any::<u8>(),
        0u32..8,
        proptest::collection::vec(any::<u8>(), 0..48),
    )
        .prop_map(|(kind, flags, stream, payload)| frame(kind, flags, stream, &payload))
}

fn chunk() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        2 => proptest::collection::vec(any::<u8>(), 0..64),
        4 => proptest::sample::select(pieces()),
        3 => random_frame(),
        1 => (proptest::sample::select(pieces()), any::<proptest::sample::Index>())
            .prop_map(|(p, i)| p[i.index(p.len())..].to_vec()),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (any::<bool>(), proptest::collection::vec(chunk(), 1..5))
            .prop_map(|(d, cs)| Op::Data(d, cs.concat())),
        1 => (any::<bool>(), 0u64..40_000).prop_map(|(d, n)| Op::Gap(d, n)),
    ]
}

/// Frame payload and header block buffers, per direction, with slack.
const BUFFER_BOUND: usize = 2 * (2 * 256 * 1024 + 64 * 1024);

proptest! {
    #[test]
    fn hostile_input_never_panics(
        start in 0u8..5,
        ops in proptest::collection::vec(op(), 0..80),
    ) {
        let start = match start {
            0 => Start::Fresh { client: EGRESS },
            1 => Start::Fresh { client: INGRESS },
            2 => Start::Attached { client: None },
            3 => Start::Attached { client: Some(INGRESS) },
            _ => Start::Upgraded { client: EGRESS },
        };
        let mut s = Session::new(start);
        if let Start::Upgraded { .. } = start {
            s.upgraded_request(Exchange {
                method: "GET".into(),
                target: "/up".into(),
                request_start_ns: 1,
                request_end_ns: 1,
                ..Exchange::default()
            });
        }
        let mut out = Vec::new();
        for (i, op) in ops.into_iter().enumerate() {
            let ts = i as u64 + 1;
            match op {
                Op::Data(d, b) => s.data(Direction::from_index(usize::from(d)), &b, ts, &mut out),
                Op::Gap(d, n) => s.gap(Direction::from_index(usize::from(d)), n, ts, &mut out),
            }
            prop_assert!(s.buffered_bytes() <= BUFFER_BOUND, "{}", s.buffered_bytes());
        }
        s.close(0, &mut Vec::new());
        let _ = s.exact();
        let _ = s.requests_direction();
        for e in &out {
            prop_assert!(e.request_start_ns <= e.request_end_ns, "{:?}", e);
            prop_assert!(e.response_start_ns <= e.response_end_ns, "{:?}", e);
            prop_assert!(e.request_start_ns <= e.response_end_ns, "{:?}", e);
            prop_assert!(
                e.status != 0 || e.unknown.contains(Field::Status) || e.stream_error.is_some(),
                "status 0 must be explained: {:?}",
                e
            );
            if e.unknown.contains(Field::Path) {
                prop_assert_eq!(e.target.as_str(), "");
            }
            if let Some(g) = &e.grpc {
                prop_assert_eq!(e.protocol, Protocol::Grpc);
                prop_assert!(g.status.is_none() || !e.unknown.contains(Field::GrpcStatus));
            }
        }
    }
}

/// A write larger than the kernel's 4 KiB capture arrives as its first 4096 octets, a gap
/// and its last 512: the frames at the end of the tail are found from the end of the write.
#[test]
fn cut_write_realigns_on_the_frames_that_end_it() {
    let mut c = Conn::open();
    c.cl(&headers(1, ES, &get("/big")), 10);
    // Frame boundaries fall inside the gap, so the framer loses them.
    let write = cat(&[
        &headers(1, 0, &status(200).0),
        &data(1, 0, &[b'a'; 1500]),
        &data(1, 0, &[b'b'; 1500]),
        &data(1, 0, &[b'c'; 1500]),
        &data(1, 0, &[b'd'; 1500]),
        &data(1, ES, &[b'e'; 100]),
    ]);
    let (head, tail) = (&write[..4096], &write[write.len() - 512..]);
    c.sv(head, 20)
        .sv_gap((write.len() - 4096 - 512) as u64, 21)
        .sv(tail, 21);
    let out = c.take();
    assert_eq!(out.len(), 1, "{out:#?}");
    assert_eq!((out[0].target.as_str(), out[0].status), ("/big", 200));
    assert!(out[0].response_truncated);
    assert_eq!(out[0].response_end_ns, 21);
    assert_eq!(c.stats().resyncs, 1);
    // A tail that is all payload (no frame ends where it ends) does not realign.
    let mut c = Conn::open();
    c.cl(&headers(1, ES, &get("/big")), 10);
    c.sv(head, 20).sv_gap(2000, 21).sv(&[b'z'; 512], 21);
    assert!(c.take().is_empty());
    assert_eq!(c.stats().resyncs, 0);
}

/// A header block cut by a gap is loss, not garbage: its CONTINUATION frames are passed
/// over without parse errors, and the stream's call is dropped, not guessed.
#[test]
fn continuations_of_a_lost_block_are_loss_not_errors() {
    let mut c = Conn::open();
    c.cl(&headers(1, ES, &get("/one")), 10);
    // The response block starts in a HEADERS without END_HEADERS, partly lost to a gap.
    let block = Hp::new().idx(8).lit("x-long", &"v".repeat(40)).0;
    let (first, rest) = block.split_at(10);
    let start = frame(HEADERS, 0, 1, first);
    c.sv(&start[..12], 20).sv_gap((start.len() - 12) as u64, 21);
    c.sv(&frame(CONTINUATION, 0, 1, &rest[..5]), 22);
    c.sv(&frame(CONTINUATION, EH, 1, &rest[5..]), 23);
    c.sv(&data(1, ES, b"ok"), 24);
    assert!(c.take().is_empty(), "the call lost its status");
    let stats = c.stats();
    assert_eq!(stats.parse_errors, 0, "{stats:?}");
    assert_eq!(stats.dropped_requests, 1, "{stats:?}");
    // The next call decodes (static and literal fields only).
    c.cl(&headers(3, ES, &get("/three")), 30);
    c.sv(&headers(3, ES, &status(204).0), 31);
    let out = c.take();
    assert_eq!(out.len(), 1);
    assert_eq!((out[0].target.as_str(), out[0].status), ("/three", 204));
}

/// Bytes lost from the client's side while a request body was on its way mark that
/// request truncated.
#[test]
fn client_side_loss_marks_open_requests_truncated() {
    let mut c = Conn::open();
    c.cl(&headers(1, 0, &post("/upload", "application/json")), 10);
    let body = data(1, 0, &[b'x'; 100]);
    c.cl(&body[..20], 11);
    // The rest of this DATA frame and the header of the next are gone.
    c.cl_gap(200, 12);
    c.sv(&headers(1, 0, &status(200).0), 20)
        .sv(&data(1, ES, b"done"), 21);
    let out = c.take();
    assert_eq!(out.len(), 1, "{out:#?}");
    assert!(out[0].request_truncated, "{:#?}", out[0]);
    assert!(!out[0].response_truncated, "{:#?}", out[0]);
}
