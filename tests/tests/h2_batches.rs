//! End-to-end: many HTTP/2 streams in one write. A client that batches its requests (each
//! a HEADERS frame and a body) into one `write`, also right after the preface in the
//! connection's first write, and a server that answers them in batches, must give one
//! server-side call per request, with its path and status: the kernel copies every header
//! block of a write, not only the first.

use std::{
    collections::HashSet,
    io::{Read, Write},
    net::TcpStream,
    time::{Duration, Instant},
};

use monitor_agent::record::Role;
use monitor_tests::{
    agent::{served_on, RECORD_WAIT},
    free_port,
    peers::h2_server,
    Agent,
};

const H2PEER: &str = env!("CARGO_BIN_EXE_h2peer");

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const DATA: u8 = 0;
const HEADERS: u8 = 1;
const SETTINGS: u8 = 4;
const END_STREAM: u8 = 1;
const END_HEADERS: u8 = 4;
const ACK: u8 = 1;

/// Requests in the batch: with their bodies, more than six times what the kernel copies
/// of an ordinary segment's head and tail, and within the walk's frame budget.
const REQUESTS: u32 = 24;
const BODY: usize = 1000;

fn frame(out: &mut Vec<u8>, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
    let n = u32::try_from(payload.len()).expect("frame length");
    out.extend(&n.to_be_bytes()[1..]);
    out.extend([kind, flags]);
    out.extend(stream.to_be_bytes());
    out.extend(payload);
}

/// A header block in HPACK's plainest form: indexed `:method POST` and `:scheme http`,
/// then `:path` and `:authority` as literals with indexed names, never Huffman-coded.
fn header_block(path: &str, authority: &str) -> Vec<u8> {
    let mut b = vec![0x83, 0x86];
    for (index, value) in [(4u8, path), (1, authority)] {
        let len = u8::try_from(value.len()).expect("short literal");
        assert!(len < 127);
        b.extend([index, len]);
        b.extend(value.as_bytes());
    }
    b
}

/// Request `i` of connection `conn`: distinct response sizes, so that the server's
/// batches carry bodies too.
fn path_of(conn: u32, i: u32) -> String {
    format!("/bytes/{}", 1500 + 100 * conn + i)
}

/// The whole batch: one HEADERS and one DATA frame (ending the stream) per request.
fn batch(port: u16, conn: u32) -> Vec<u8> {
    let authority = format!("127.0.0.1:{port}");
    let mut w = Vec::new();
    for i in 0..REQUESTS {
        let stream = 1 + 2 * i;
        let block = header_block(&path_of(conn, i), &authority);
        frame(&mut w, HEADERS, END_HEADERS, stream, &block);
        frame(&mut w, DATA, END_STREAM, stream, &vec![b'x'; BODY]);
    }
    w
}

/// Reads the server's frames until every stream has ended (or ten seconds passed),
/// acknowledging its SETTINGS; returns the streams that ended.
fn read_answers(s: &mut TcpStream) -> HashSet<u32> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let (mut buf, mut ended) = (Vec::new(), HashSet::new());
    let mut chunk = [0u8; 16 * 1024];
    while ended.len() < REQUESTS as usize && Instant::now() < deadline {
        let Ok(n) = s.read(&mut chunk) else { break };
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        while buf.len() >= 9 {
            let len = usize::from(buf[0]) << 16 | usize::from(buf[1]) << 8 | usize::from(buf[2]);
            if buf.len() < 9 + len {
                break;
            }
            let (kind, flags) = (buf[3], buf[4]);
            let stream = u32::from_be_bytes([buf[5], buf[6], buf[7], buf[8]]) & 0x7fff_ffff;
            if kind == SETTINGS && flags & ACK == 0 {
                let mut ack = Vec::new();
                frame(&mut ack, SETTINGS, ACK, 0, &[]);
                s.write_all(&ack).expect("settings ack");
            }
            if (kind == HEADERS || kind == DATA) && flags & END_STREAM != 0 && stream != 0 {
                ended.insert(stream);
            }
            buf.drain(..9 + len);
        }
    }
    ended
}

/// Sends the batch on a fresh connection, after the preface in a write of its own or in
/// the same write, and returns once the server has answered every request.
fn send_batch(port: u16, conn: u32, with_preface: bool) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_nodelay(true).expect("nodelay");
    s.set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    let mut hello = PREFACE.to_vec();
    frame(&mut hello, SETTINGS, 0, 0, &[]);
    let mut batch = batch(port, conn);
    assert!(batch.len() > 6 * 4096, "{}", batch.len());
    if with_preface {
        hello.append(&mut batch);
        batch = hello;
    } else {
        s.write_all(&hello).expect("preface");
    }
    // One syscall: a loopback socket takes this much at once.
    let n = s.write(&batch).expect("batch");
    assert_eq!(n, batch.len(), "the batch went in more than one write");
    let ended = read_answers(&mut s);
    assert_eq!(ended.len(), REQUESTS as usize, "server answered {ended:?}");
}

#[test]
fn every_request_of_a_batched_write_is_one_call() {
    let port = free_port();
    let _server = h2_server(H2PEER, port);
    let agent = Agent::start();
    send_batch(port, 0, false);
    send_batch(port, 1, true);
    let records = agent.wait_records(2 * REQUESTS as usize, RECORD_WAIT, |r| {
        served_on(r, port) && r.role == Role::Server && r.path.starts_with("/bytes/")
    });
    let mut missing = Vec::new();
    for path in (0..2).flat_map(|c| (0..REQUESTS).map(move |i| path_of(c, i))) {
        let got: Vec<_> = records.iter().filter(|r| r.path == path).collect();
        match got.as_slice() {
            [r] => {
                assert_eq!(
                    (r.method.as_str(), r.status),
                    ("POST", 200),
                    "{path}: {r:?}"
                );
            }
            [] => missing.push(path),
            more => panic!("{path}: {} calls for one request", more.len()),
        }
    }
    assert!(
        missing.is_empty(),
        "no call for {missing:?}\n{}",
        agent.stderr()
    );
}
