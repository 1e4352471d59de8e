//! Property tests: split-invariance of a realistic transcript, and memory
//! bounds / panic freedom on hostile input.

use super::{Exchange, Limits, Session, Side};
use crate::protocol::session::{ProtocolSession as _, SessionStats};
use proptest::prelude::*;

enum Ev {
    Data(Side, Vec<u8>, u64),
    Close(u64),
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

fn transcript() -> Vec<Ev> {
    use Side::{Request as Q, Response as R};
    vec![
        Ev::Data(
            Q,
            cat(&[
                b"GET /a?x=1 HTTP/1.1\r\nHost: h\r\n\r\n",
                b"POST /p HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello\r\n",
            ]),
            10,
        ),
        Ev::Data(
            R,
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc".to_vec(),
            20,
        ),
        Ev::Data(R, b"HTTP/1.1 204 No Content\r\n\r\n".to_vec(), 30),
        Ev::Data(
            Q,
            cat(&[
                b"HEAD /h HTTP/1.1\r\n\r\n",
                b"POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
                b"5;n=v\r\nhello\r\nA\r\n0123456789\r\n0\r\nT: 1\r\n\r\n",
            ]),
            40,
        ),
        Ev::Data(
            R,
            cat(&[
                b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n",
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                b"3;x\r\nabc\r\n0\r\nX: y\r\n\r\n",
            ]),
            50,
        ),
        Ev::Data(
            Q,
            b"PUT /f HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n".to_vec(),
            60,
        ),
        Ev::Data(R, b"HTTP/1.1 100 Continue\r\n\r\n".to_vec(), 70),
        Ev::Data(
            Q,
            cat(&[
                b"data",
                b"junk!!\r\n",
                b"GET /last?q=1 HTTP/1.1\r\nHost: z\r\n\r\n",
            ]),
            80,
        ),
        Ev::Data(
            R,
            cat(&[
                b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n",
                b"HTTP/1.0 200 OK\r\n\r\nuntil close body",
            ]),
            90,
        ),
        Ev::Close(100),
    ]
}

fn run(cuts: &[usize]) -> (Vec<Exchange>, SessionStats) {
    let mut s = Session::new(Limits::default());
    let mut out = Vec::new();
    let mut cut = cuts.iter().cycle();
    for ev in transcript() {
        match ev {
            Ev::Data(side, data, ts) => {
                let mut rest = &data[..];
                while !rest.is_empty() {
                    let n = cut
                        .next()
                        .copied()
                        .unwrap_or(usize::MAX)
                        .clamp(1, rest.len());
                    let (piece, tail) = rest.split_at(n);
                    s.on_data(side, piece, ts, &mut out);
                    rest = tail;
                }
            }
            Ev::Close(ts) => s.on_close(ts, &mut out),
        }
    }
    (out, s.stats().clone())
}

#[test]
fn transcript_whole_yields_expected_exchanges() {
    let (out, stats) = run(&[]);
    let got: Vec<_> = out.iter().map(|e| (e.method.as_str(), e.status)).collect();
    assert_eq!(
        got,
        [
            ("GET", 200),
            ("POST", 204),
            ("HEAD", 200),
            ("POST", 200),
            ("PUT", 201),
            ("GET", 200)
        ]
    );
    assert_eq!(out[5].target, "/last?q=1");
    assert_eq!((stats.parse_errors, stats.resyncs), (1, 1));
    assert_eq!((stats.dropped_requests, stats.unmatched_responses), (0, 0));
    assert_eq!(run(&[1]), (out, stats), "byte-by-byte must match whole");
}

#[derive(Debug, Clone)]
enum Op {
    Data(bool, Vec<u8>),
    Gap(bool, u64),
}

const FRAGMENTS: &[&[u8]] = &[
    b"GET / HTTP/1.1\r\n\r\n",
    b"POST /x HTTP/1.1\r\nContent-Length: 20\r\n\r\n",
    b"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"HTTP/1.1 100 Continue\r\n\r\n",
    b"HTTP/1.0 200 OK\r\n\r\n",
    b"HTTP/1.1 101 Switching Protocols\r\n\r\n",
    b"5;a=b\r\nhello\r\n",
    b"0\r\n\r\n",
    b"X-Long: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n",
    b"\r\n",
    b"HEAD /h HTTP/1.1\r\n\r\n",
];

fn bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..80),
        proptest::sample::select(FRAGMENTS).prop_map(<[u8]>::to_vec),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (any::<bool>(), bytes()).prop_map(|(r, b)| Op::Data(r, b)),
        1 => (any::<bool>(), 0u64..5000).prop_map(|(r, n)| Op::Gap(r, n)),
    ]
}

proptest! {
    #[test]
    fn arbitrary_splits_give_same_result(cuts in proptest::collection::vec(1usize..24, 1..64)) {
        prop_assert_eq!(run(&cuts), run(&[]));
    }

    #[test]
    fn hostile_input_never_panics_and_stays_bounded(
        ops in proptest::collection::vec(op(), 0..120),
        limit in 0usize..400,
    ) {
        let limits = Limits { max_header_bytes: limit, max_pending_requests: 4 };
        // Two head buffers, and the queued requests (at most 4, with the markers between
        // them) with their text.
        let bound = 2 * (limit.max(64) + 16) + 12 * (512 + 2 * limit.max(64));
        let mut s = Session::new(limits);
        let mut out = Vec::new();
        for (ts, op) in ops.into_iter().enumerate() {
            let ts = ts as u64;
            match op {
                Op::Data(req, b) => {
                    let side = if req { Side::Request } else { Side::Response };
                    s.on_data(side, &b, ts, &mut out);
                }
                Op::Gap(req, n) => {
                    let side = if req { Side::Request } else { Side::Response };
                    s.on_gap(side, n, ts, &mut out);
                }
            }
            prop_assert!(s.buffered_bytes() <= bound, "{} > {}", s.buffered_bytes(), bound);
        }
        s.on_close(u64::MAX, &mut out);
        for e in &out {
            prop_assert!(e.status >= 200 || e.status == 101);
            prop_assert!(e.request_start_ns <= e.request_end_ns);
            prop_assert!(e.response_start_ns <= e.response_end_ns);
        }
    }
}
