//! Fixture-driven tests of the public `Session` behaviour.

use super::{Exchange, Limits, Session, Side};
use crate::protocol::session::{ProtocolSession as _, SessionStats};

const REQ_GET: &[u8] = b"GET /a?x=1 HTTP/1.1\r\nHost:  example.com \r\n\r\n";
const RESP_OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
const REQ_POST: &[u8] = b"POST /up HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\n0123456789";
const RESP_204: &[u8] = b"HTTP/1.1 204 No Content\r\n\r\n";

struct T {
    s: Session,
    out: Vec<Exchange>,
}

impl T {
    fn new() -> Self {
        Self::with(Limits::default())
    }
    fn with(limits: Limits) -> Self {
        T {
            s: Session::new(limits),
            out: Vec::new(),
        }
    }
    fn req(&mut self, data: &[u8], ts: u64) -> &mut Self {
        self.s.on_data(Side::Request, data, ts, &mut self.out);
        self
    }
    fn resp(&mut self, data: &[u8], ts: u64) -> &mut Self {
        self.s.on_data(Side::Response, data, ts, &mut self.out);
        self
    }
    fn gap(&mut self, side: Side, len: u64, ts: u64) -> &mut Self {
        self.s.on_gap(side, len, ts, &mut self.out);
        self
    }
    fn close(&mut self, ts: u64) -> &mut Self {
        self.s.on_close(ts, &mut self.out);
        self
    }
    fn statuses(&self) -> Vec<(String, String, u16)> {
        self.out
            .iter()
            .map(|e| (e.method.to_string(), e.target.clone(), e.status))
            .collect()
    }
    fn stats(&self) -> SessionStats {
        self.s.stats().clone()
    }
}

fn pairs(v: &[(&str, &str, u16)]) -> Vec<(String, String, u16)> {
    v.iter()
        .map(|(m, t, s)| (m.to_string(), t.to_string(), *s))
        .collect()
}

fn len(b: &[u8]) -> u64 {
    b.len() as u64
}

#[test]
fn simple_exchange_fields() {
    let mut t = T::new();
    t.req(REQ_GET, 10).resp(RESP_OK, 20);
    assert_eq!(
        t.out,
        vec![Exchange {
            method: "GET".into(),
            target: "/a?x=1".into(),
            host: Some("example.com".into()),
            status: 200,
            request_start_ns: 10,
            request_end_ns: 10,
            response_start_ns: 20,
            response_end_ns: 20,
            request_bytes: len(REQ_GET),
            response_bytes: len(RESP_OK),
            request_body_bytes: 0,
            response_body_bytes: 5,
            request_truncated: false,
            response_truncated: false,
            auth: Default::default(),
            request_content_type: None,
            response_content_type: None,
            ..Default::default()
        }]
    );
    assert_eq!(t.stats(), SessionStats::default());
    assert_eq!(t.s.buffered_bytes(), 0);
}

#[test]
fn split_byte_by_byte_matches_whole_with_timestamps() {
    let mut t = T::new();
    for (i, b) in REQ_POST.iter().enumerate() {
        t.req(std::slice::from_ref(b), 100 + i as u64);
    }
    for (i, b) in RESP_OK.iter().enumerate() {
        t.resp(std::slice::from_ref(b), 1000 + i as u64);
    }
    assert_eq!(t.out.len(), 1);
    let e = &t.out[0];
    assert_eq!(
        (e.method.as_str(), e.target.as_str(), e.status),
        ("POST", "/up", 200)
    );
    assert_eq!(e.request_start_ns, 100);
    assert_eq!(e.request_end_ns, 100 + REQ_POST.len() as u64 - 1);
    assert_eq!(e.response_start_ns, 1000);
    assert_eq!(e.response_end_ns, 1000 + RESP_OK.len() as u64 - 1);
    assert_eq!(
        (e.request_bytes, e.response_bytes),
        (len(REQ_POST), len(RESP_OK))
    );
    assert_eq!(t.stats(), SessionStats::default());
}

#[test]
fn pipelining_three_requests_then_three_responses() {
    let mut t = T::new();
    let reqs = b"GET /1 HTTP/1.1\r\nHost: h\r\n\r\nGET /2 HTTP/1.1\r\nHost: h\r\n\r\nPOST /3 HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc";
    t.req(reqs, 1);
    assert!(t.out.is_empty());
    t.resp(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na", 2)
        .resp(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", 3)
        .resp(b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok", 4);
    assert_eq!(
        t.statuses(),
        pairs(&[("GET", "/1", 200), ("GET", "/2", 404), ("POST", "/3", 201)])
    );
    assert_eq!(t.out[2].request_bytes, 42);
    assert_eq!(t.stats(), SessionStats::default());
}

#[test]
fn keep_alive_sequence() {
    let mut t = T::new();
    t.req(REQ_GET, 1).resp(RESP_OK, 2);
    t.req(REQ_POST, 3).resp(RESP_204, 4);
    t.req(REQ_GET, 5).resp(RESP_OK, 6);
    assert_eq!(
        t.statuses(),
        pairs(&[
            ("GET", "/a?x=1", 200),
            ("POST", "/up", 204),
            ("GET", "/a?x=1", 200)
        ])
    );
    assert_eq!(t.out[1].request_bytes, len(REQ_POST));
    assert_eq!(
        (t.out[2].request_start_ns, t.out[2].response_end_ns),
        (5, 6)
    );
}

#[test]
fn chunked_request_and_response_with_extensions_and_trailers() {
    let req: &[u8] = b"POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 999\r\n\r\n5;name=val\r\nhello\r\nA\r\n0123456789\r\n0\r\nX-Sum: 1\r\n\r\n";
    let resp: &[u8] = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\nf;a=b\r\n0123456789abcde\r\n0;last\r\nTrailer-A: x\r\nTrailer-B: y\r\n\r\n";
    let mut t = T::new();
    t.req(req, 1).resp(resp, 2);
    t.req(REQ_GET, 3).resp(RESP_OK, 4);
    assert_eq!(
        t.statuses(),
        pairs(&[("POST", "/c", 200), ("GET", "/a?x=1", 200)])
    );
    assert_eq!(
        (t.out[0].request_bytes, t.out[0].response_bytes),
        (len(req), len(resp))
    );
    assert_eq!(t.stats(), SessionStats::default());
}

#[test]
fn head_response_has_no_body_despite_content_length() {
    let mut t = T::new();
    let head_resp: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n";
    t.req(b"HEAD /h HTTP/1.1\r\n\r\nGET /g HTTP/1.1\r\n\r\n", 1);
    let mut both = head_resp.to_vec();
    both.extend_from_slice(RESP_OK);
    t.resp(&both, 2);
    assert_eq!(
        t.statuses(),
        pairs(&[("HEAD", "/h", 200), ("GET", "/g", 200)])
    );
    assert_eq!(t.out[0].response_bytes, len(head_resp));
}

#[test]
fn status_204_and_304_have_no_body() {
    let mut t = T::new();
    let r304: &[u8] = b"HTTP/1.1 304 Not Modified\r\nContent-Length: 50\r\n\r\n";
    t.req(
        b"GET /1 HTTP/1.1\r\n\r\nGET /2 HTTP/1.1\r\n\r\nGET /3 HTTP/1.1\r\n\r\n",
        1,
    );
    let mut all = RESP_204.to_vec();
    all.extend_from_slice(r304);
    all.extend_from_slice(RESP_OK);
    t.resp(&all, 2);
    assert_eq!(
        t.statuses(),
        pairs(&[("GET", "/1", 204), ("GET", "/2", 304), ("GET", "/3", 200)])
    );
    assert_eq!(t.out[1].response_bytes, len(r304));
}

#[test]
fn expect_100_continue_flow() {
    let head: &[u8] = b"PUT /f HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n";
    let cont: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";
    let fin: &[u8] = b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n";
    let mut t = T::new();
    t.req(head, 1).resp(cont, 2).req(b"data", 3).resp(fin, 4);
    assert_eq!(t.statuses(), pairs(&[("PUT", "/f", 201)]));
    let e = &t.out[0];
    assert_eq!((e.request_start_ns, e.request_end_ns), (1, 3));
    assert_eq!((e.response_start_ns, e.response_end_ns), (2, 4));
    assert_eq!(e.request_bytes, len(head) + 4);
    assert_eq!(e.response_bytes, len(cont) + len(fin));
}

#[test]
fn early_hints_then_final_response() {
    let hints: &[u8] = b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\n";
    let mut t = T::new();
    t.req(REQ_GET, 1).resp(hints, 2).resp(RESP_OK, 3);
    assert_eq!(t.out.len(), 1);
    assert_eq!(t.out[0].status, 200);
    assert_eq!(t.out[0].response_bytes, len(hints) + len(RESP_OK));
    assert_eq!(t.out[0].response_start_ns, 2);
}

#[test]
fn switching_protocols_upgrades_and_ignores_rest() {
    let mut t = T::new();
    t.req(
        b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
        1,
    );
    t.resp(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x05hello",
        2,
    );
    assert!(t.s.upgraded());
    t.req(b"\x81\x85garbage frames", 3).resp(b"\x81\x02hi", 4);
    t.gap(Side::Request, 10, 5);
    assert_eq!(t.statuses(), pairs(&[("GET", "/ws", 101)]));
    assert_eq!(t.stats().parse_errors, 0);
    assert_eq!(t.s.buffered_bytes(), 0);
}

#[test]
fn connect_2xx_upgrades_without_body() {
    let mut t = T::new();
    t.req(
        b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
        1,
    );
    t.resp(
        b"HTTP/1.1 200 Connection Established\r\n\r\n\x16\x03\x01tls",
        2,
    );
    assert!(t.s.upgraded());
    assert_eq!(t.statuses(), pairs(&[("CONNECT", "example.com:443", 200)]));
}

#[test]
fn garbage_before_request_and_after_response() {
    let mut t = T::new();
    let mut req = b"\x16\x03\x01\x00junk here\r\n".to_vec();
    req.extend_from_slice(REQ_GET);
    t.req(&req, 1);
    let mut resp = RESP_OK.to_vec();
    resp.extend_from_slice(b"\x00\x01trailing garbage");
    t.resp(&resp, 2);
    assert_eq!(t.statuses(), pairs(&[("GET", "/a?x=1", 200)]));
    assert_eq!(t.out[0].request_bytes, len(REQ_GET));
    // The next exchange must still work after the response-side garbage.
    t.req(REQ_POST, 3).resp(RESP_204, 4);
    assert_eq!(t.out.len(), 2);
    assert_eq!(t.out[1].status, 204);
    let st = t.stats();
    assert_eq!((st.parse_errors, st.resyncs), (2, 2));
    assert_eq!((st.unmatched_responses, st.dropped_requests), (0, 0));
}

#[test]
fn garbage_between_requests_resyncs_and_pairs_correctly() {
    let mut t = T::new();
    let mut stream = REQ_GET.to_vec();
    stream.extend_from_slice(b"@@ not http at all @@\r\n\r\n");
    stream.extend_from_slice(REQ_POST);
    t.req(&stream, 1);
    t.resp(RESP_OK, 2).resp(RESP_204, 3);
    assert_eq!(
        t.statuses(),
        pairs(&[("GET", "/a?x=1", 200), ("POST", "/up", 204)])
    );
    let st = t.stats();
    assert_eq!((st.parse_errors, st.resyncs), (1, 1));
}

#[test]
fn garbage_split_across_calls_is_found_without_call_boundaries() {
    let mut t = T::new();
    t.resp(b"\x00garbage", 1);
    t.req(b"zzzz G", 2)
        .req(b"ET /x HT", 3)
        .req(b"TP/1.1\r\n\r\n", 4);
    t.resp(b"xxHTTP/1.", 5)
        .resp(b"1 200 OK\r\nContent-Length: 0\r\n\r\n", 6);
    assert_eq!(t.statuses(), pairs(&[("GET", "/x", 200)]));
    // First bytes were in earlier calls than the ones completing the heads.
    assert_eq!(
        (t.out[0].request_start_ns, t.out[0].response_start_ns),
        (2, 5)
    );
    let st = t.stats();
    assert_eq!(
        (st.parse_errors, st.resyncs, st.dropped_requests),
        (2, 2, 0)
    );
}

#[test]
fn response_side_garbage_drops_requests_it_may_have_answered() {
    let mut t = T::new();
    t.req(REQ_GET, 1).req(REQ_POST, 2);
    t.resp(b"<html>not a status line</html>\r\n", 3)
        .resp(RESP_OK, 4);
    assert!(t.out.is_empty());
    let st = t.stats();
    assert_eq!((st.dropped_requests, st.unmatched_responses), (2, 1));
}

#[test]
fn bare_crlf_between_messages_is_tolerated() {
    let mut t = T::new();
    let mut stream = REQ_POST.to_vec();
    stream.extend_from_slice(b"\r\n");
    t.req(&stream, 1).resp(RESP_OK, 2);
    t.req(b"\r\n", 3)
        .req(REQ_GET, 4)
        .resp(b"\r\n", 5)
        .resp(RESP_OK, 6);
    assert_eq!(t.out.len(), 2);
    assert_eq!(t.out[0].request_bytes, len(REQ_POST));
    assert_eq!(t.out[1].request_start_ns, 4);
    assert_eq!(t.stats(), SessionStats::default());
}

#[test]
fn gap_inside_content_length_body_truncates_but_completes() {
    let mut t = T::new();
    let head: &[u8] = b"POST /big HTTP/1.1\r\nContent-Length: 100\r\n\r\n";
    t.req(head, 1).req(&[b'x'; 30], 2).gap(Side::Request, 60, 3);
    t.req(&[b'x'; 10], 4);
    let rhead: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n";
    t.resp(rhead, 5).gap(Side::Response, 1000, 6);
    assert_eq!(t.out.len(), 1);
    let e = &t.out[0];
    assert!(e.request_truncated && e.response_truncated);
    assert_eq!(e.request_bytes, len(head) + 100);
    assert_eq!(e.response_bytes, len(rhead) + 1000);
    assert_eq!((e.request_end_ns, e.response_end_ns), (4, 6));
    assert_eq!(t.stats().gaps, 2);
    // Still in sync afterwards.
    t.req(REQ_GET, 7).resp(RESP_OK, 8);
    assert_eq!(t.out.len(), 2);
    assert!(!t.out[1].request_truncated);
}

#[test]
fn gap_inside_headers_drops_message_and_next_parses() {
    let mut t = T::new();
    t.req(b"GET /lost HTTP/1.1\r\nHo", 1)
        .gap(Side::Request, 50, 2);
    t.req(b"st: x\r\n\r\n", 3);
    // The server answered the lost request before the client sent the next.
    t.resp(RESP_204, 4);
    t.req(REQ_GET, 5).resp(RESP_OK, 6);
    assert_eq!(t.statuses(), pairs(&[("GET", "/a?x=1", 200)]));
    let st = t.stats();
    assert_eq!(st.dropped_requests, 1);
    assert_eq!(st.unmatched_responses, 1);
    assert_eq!(st.resyncs, 1);
}

/// The kernel forgot the connection and picked it up again: a hole of unknown size
/// between two responses that in fact held nothing. The waiting request is answered.
#[test]
fn a_loss_between_responses_that_held_nothing_costs_no_call() {
    let mut t = T::new();
    t.req(REQ_POST, 1).resp(RESP_204, 2);
    t.req(REQ_GET, 3)
        .gap(Side::Response, 1 << 40, 4)
        .resp(RESP_OK, 5);
    assert_eq!(
        t.statuses(),
        pairs(&[("POST", "/up", 204), ("GET", "/a?x=1", 200)])
    );
    assert_eq!(t.stats().dropped_requests, 0);
}

/// A response lost between two responses, noticed before the client's next request: the
/// next response answers that request, and the one whose response was lost is dropped.
#[test]
fn a_response_lost_between_responses_drops_only_its_request() {
    let mut t = T::new();
    t.req(REQ_POST, 1).resp(RESP_204, 2);
    t.req(
        b"GET /lost HTTP/1.1

",
        3,
    )
    .gap(Side::Response, 40, 4);
    t.req(REQ_GET, 5).resp(RESP_OK, 6);
    assert_eq!(
        t.statuses(),
        pairs(&[("POST", "/up", 204), ("GET", "/a?x=1", 200)])
    );
    let st = t.stats();
    assert_eq!((st.dropped_requests, st.unmatched_responses), (1, 0));
    // Pairing goes on in step.
    t.req(REQ_POST, 7).resp(RESP_204, 8);
    assert_eq!(t.out.len(), 3);
    assert_eq!(t.out[2].status, 204);
}

/// Requests that each lose sync, never answered: the queue's markers stay bounded
/// (a workload cannot grow a connection's parser state this way).
#[test]
fn a_request_stream_that_keeps_losing_sync_stays_bounded() {
    use crate::protocol::session::ProtocolSession;
    let mut t = T::new();
    let mut most = 0;
    for i in 0..5_000u64 {
        t.req(b"GET /x HTTP/1.1\r\n\r\n", 2 * i)
            .req(b"\x00\x01 not http\r\n", 2 * i + 1);
        most = most.max(t.s.buffered_bytes());
    }
    assert!(most < 64 * 1024, "{most} bytes held");
    assert!(t.stats().dropped_requests >= 4_000);
    // Still pairing afterwards.
    t.req(REQ_GET, 20_000).resp(RESP_OK, 20_001);
    t.req(REQ_GET, 20_002).resp(RESP_204, 20_003);
    assert_eq!(t.out.last().map(|e| e.status), Some(204));
}

#[test]
fn gap_inside_response_headers_drops_pending() {
    let mut t = T::new();
    t.req(b"GET /1 HTTP/1.1\r\n\r\nGET /2 HTTP/1.1\r\n\r\n", 1);
    t.resp(b"HTTP/1.1 200 OK\r\nContent-Le", 2)
        .gap(Side::Response, 100, 3);
    t.resp(
        b"ngth: 0\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
        4,
    );
    // Which request that second response answers is unknowable: no exchange.
    assert!(t.out.is_empty());
    let st = t.stats();
    assert_eq!(
        (st.dropped_requests, st.unmatched_responses, st.resyncs),
        (2, 1, 1)
    );
    t.req(REQ_GET, 5).resp(RESP_OK, 6);
    assert_eq!(t.statuses(), pairs(&[("GET", "/a?x=1", 200)]));
}

#[test]
fn gap_in_chunked_body_resyncs() {
    let mut t = T::new();
    t.req(REQ_GET, 1);
    t.resp(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
        2,
    );
    t.gap(Side::Response, 400, 3);
    t.resp(b"xyz\r\n0\r\n\r\n", 4);
    t.req(REQ_POST, 5).resp(RESP_204, 6);
    assert_eq!(t.statuses(), pairs(&[("POST", "/up", 204)]));
    let st = t.stats();
    assert_eq!((st.dropped_requests, st.resyncs), (1, 1));
}

#[test]
fn gap_inside_single_chunk_is_absorbed() {
    let mut t = T::new();
    t.req(REQ_GET, 1);
    t.resp(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nab",
        2,
    );
    t.gap(Side::Response, 10, 3);
    t.resp(b"cdef\r\n0\r\n\r\n", 4);
    assert_eq!(t.out.len(), 1);
    assert!(t.out[0].response_truncated);
    assert_eq!(t.stats().resyncs, 0);
}

#[test]
fn gap_larger_than_remaining_body_loses_sync() {
    let mut t = T::new();
    t.req(b"POST /p HTTP/1.1\r\nContent-Length: 10\r\n\r\n01234", 1);
    t.gap(Side::Request, 20, 2);
    t.req(REQ_GET, 3);
    t.resp(RESP_OK, 4);
    assert_eq!(t.statuses(), pairs(&[("GET", "/a?x=1", 200)]));
    assert_eq!(t.stats().dropped_requests, 1);
}

#[test]
fn response_delimited_by_close() {
    let mut t = T::new();
    t.req(b"GET /old HTTP/1.0\r\n\r\n", 1);
    t.resp(b"HTTP/1.0 200 OK\r\nServer: x\r\n\r\nbody part 1,", 2);
    t.resp(b" part 2", 3);
    assert!(t.out.is_empty());
    t.close(9);
    assert_eq!(t.out.len(), 1);
    let e = &t.out[0];
    assert_eq!((e.status, e.response_end_ns), (200, 3));
    assert_eq!(e.response_bytes, 42 + 7);
    assert_eq!(t.stats().dropped_requests, 0);
}

#[test]
fn close_drops_unanswered_requests() {
    let mut t = T::new();
    t.req(REQ_GET, 1).req(REQ_GET, 2).resp(RESP_OK, 3).close(4);
    assert_eq!(t.out.len(), 1);
    assert_eq!(t.stats().dropped_requests, 1);
}

#[test]
fn unmatched_response_produces_no_exchange() {
    let mut t = T::new();
    t.resp(RESP_OK, 1);
    assert!(t.out.is_empty());
    assert_eq!(t.stats().unmatched_responses, 1);
    t.req(REQ_GET, 2).resp(RESP_OK, 3);
    assert_eq!(t.out.len(), 1);
}

#[test]
fn oversize_headers_are_a_parse_error() {
    let limits = Limits {
        max_header_bytes: 256,
        ..Limits::default()
    };
    let mut t = T::with(limits);
    let mut big = b"GET /big HTTP/1.1\r\n".to_vec();
    for _ in 0..50 {
        big.extend_from_slice(b"X-Filler: aaaaaaaaaaaaaaaa\r\n");
        t.req(&big[big.len() - 28..], 1);
        assert!(t.s.buffered_bytes() <= 256 + 16);
    }
    t.req(b"\r\n", 1);
    t.req(REQ_GET, 2).resp(RESP_OK, 3);
    assert_eq!(t.statuses(), pairs(&[("GET", "/a?x=1", 200)]));
    let st = t.stats();
    assert_eq!((st.parse_errors, st.resyncs), (1, 1));
}

#[test]
fn up_to_256_headers_are_a_request_and_more_a_parse_error() {
    let with_headers = |n: usize| {
        let mut req = b"GET /h HTTP/1.1\r\n".to_vec();
        for i in 0..n {
            req.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
        }
        req.extend_from_slice(b"\r\n");
        req
    };
    let mut t = T::new();
    t.req(&with_headers(256), 1).resp(RESP_OK, 2);
    assert_eq!(
        t.statuses(),
        pairs(&[("GET", "/h", 200)]),
        "{:?}",
        t.stats()
    );
    assert_eq!(t.stats().parse_errors, 0);
    let mut t = T::new();
    t.req(&with_headers(257), 1);
    assert_eq!(t.stats().parse_errors, 1);
}

#[test]
fn http_1_0_and_connection_close() {
    let mut t = T::new();
    t.req(
        b"GET /ten HTTP/1.0\r\nHost: old\r\nConnection: close\r\n\r\n",
        1,
    );
    t.resp(
        b"HTTP/1.0 404 Not Found\r\nContent-Length: 3\r\nConnection: close\r\n\r\nno!",
        2,
    );
    t.close(3);
    assert_eq!(t.out.len(), 1);
    let e = &t.out[0];
    assert_eq!((e.status, e.host.as_deref()), (404, Some("old")));
    assert_eq!(t.stats(), SessionStats::default());
}

#[test]
fn early_final_response_waits_for_request_body() {
    let mut t = T::new();
    t.req(b"POST /x HTTP/1.1\r\nContent-Length: 6\r\n\r\nabc", 1);
    t.resp(b"HTTP/1.1 413 Too Large\r\nContent-Length: 0\r\n\r\n", 2);
    assert!(t.out.is_empty());
    t.req(b"def", 3);
    assert_eq!(t.out.len(), 1);
    assert_eq!((t.out[0].status, t.out[0].request_end_ns), (413, 3));
}

#[test]
fn pending_overflow_evicts_oldest_without_mispairing() {
    let limits = Limits {
        max_pending_requests: 2,
        ..Limits::default()
    };
    let mut t = T::with(limits);
    t.req(
        b"GET /1 HTTP/1.1\r\n\r\nGET /2 HTTP/1.1\r\n\r\nGET /3 HTTP/1.1\r\n\r\n",
        1,
    );
    assert_eq!(t.stats().dropped_requests, 1);
    for ts in 2..5 {
        t.resp(RESP_OK, ts);
    }
    assert_eq!(
        t.statuses(),
        pairs(&[("GET", "/2", 200), ("GET", "/3", 200)])
    );
    assert_eq!(t.stats().unmatched_responses, 0);
}

#[test]
fn any_token_is_a_method_but_an_endless_one_is_garbage() {
    let mut t = T::new();
    t.req(b"PROPFIND /dav HTTP/1.1\r\n\r\n", 1).resp(RESP_OK, 2);
    t.req(b"get / HTTP/1.1\r\n\r\n", 3).resp(RESP_OK, 4);
    t.req(b"M9E3779B1 /m HTTP/1.1\r\n\r\n", 5).resp(RESP_OK, 6);
    assert_eq!(
        t.statuses(),
        pairs(&[
            ("PROPFIND", "/dav", 200),
            ("get", "/", 200),
            ("M9E3779B1", "/m", 200)
        ])
    );
    assert_eq!(t.stats().parse_errors, 0);
    let long = format!("{} / HTTP/1.1\r\n\r\n", "M".repeat(65));
    t.req(long.as_bytes(), 7);
    assert_eq!(t.stats().parse_errors, 1);
}

#[test]
fn bad_chunk_size_is_a_parse_error_and_resyncs() {
    let mut t = T::new();
    t.req(
        b"POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        1,
    );
    t.req(REQ_GET, 2);
    t.resp(RESP_OK, 3);
    assert_eq!(t.statuses(), pairs(&[("GET", "/a?x=1", 200)]));
    let st = t.stats();
    assert_eq!(
        (st.parse_errors, st.resyncs, st.dropped_requests),
        (1, 1, 1)
    );
}

#[test]
fn credentials_and_media_types_are_summarised() {
    let mut t = T::new();
    t.req(
        b"POST /login HTTP/1.1\r\nHost: a\r\nAuthorization: Basic YWxpY2U6czNjcjN0\r\nContent-Type: application/JSON; charset=utf-8\r\nContent-Length: 2\r\n\r\n{}",
        1,
    )
    .resp(
        b"HTTP/1.1 201 Created\r\nContent-Type: text/plain\r\nContent-Length: 0\r\n\r\n",
        2,
    );
    let x = &t.out[0];
    assert_eq!(x.auth.label(), "basic");
    assert_eq!(x.auth.detail.as_deref(), Some("alice"));
    assert_eq!(x.request_content_type.as_deref(), Some("application/json"));
    assert_eq!(x.response_content_type.as_deref(), Some("text/plain"));
    assert_eq!(x.request_body_bytes, 2);
    assert_eq!(x.response_body_bytes, 0);
    assert!(!format!("{x:?}").contains("s3cr3t"));
}

/// Giving back spare room (asked of quiet connections) never loses staged bytes or a
/// waiting request, and the next calls parse as before.
#[test]
fn release_spare_keeps_what_is_in_flight() {
    let mut t = T::new();
    t.req(&REQ_GET[..10], 1);
    t.s.release_spare();
    t.req(&REQ_GET[10..], 2);
    t.s.release_spare();
    t.resp(&RESP_OK[..20], 3);
    t.s.release_spare();
    t.resp(&RESP_OK[20..], 4);
    t.s.release_spare();
    assert_eq!(t.s.buffered_bytes(), 0);
    t.req(REQ_POST, 5).resp(RESP_204, 6);
    assert_eq!(
        t.statuses(),
        pairs(&[("GET", "/a?x=1", 200), ("POST", "/up", 204)])
    );
    assert_eq!(
        (t.out[0].request_start_ns, t.out[0].response_end_ns),
        (1, 4)
    );
}
