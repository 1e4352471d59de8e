//! End-to-end: floods of what a workload controls (partial heads held open, random methods,
//! random path segments, HTTP/2 streams never answered, random `grpc-status` values) against
//! the real agent with a small parser memory budget. Each flood must leave the agent alive,
//! its memory bounded, the cap it hits counted, and a control request afterwards captured
//! exactly once. The agent's RSS after each flood is printed for BENCHMARKS.md.

use std::{
    collections::BTreeSet,
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    process::Command,
    time::{Duration, Instant},
};

use monitor_agent::record::Role;
use monitor_tests::{
    agent::{served_on, RECORD_WAIT},
    free_port,
    peers::{any_method_server, h2_server, run_ok},
    Agent,
};

const H2PEER: &str = env!("CARGO_BIN_EXE_h2peer");
/// The agent's parser memory budget in this test, in MiB.
const BUDGET_MB: u64 = 8;
/// RSS the agent must stay under through every flood.
const RSS_LIMIT: f64 = 512.0 * 1024.0 * 1024.0;

/// One request on a fresh connection; returns the status line.
fn get(port: u16, method: &str, path: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let req = format!("{method} {path} HTTP/1.1\r\nHost: flood.test\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).expect("write");
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    answer.lines().next().unwrap_or_default().to_string()
}

fn limit(agent: &Agent, name: &str) -> f64 {
    agent
        .metric(&format!("monitor_limit_reached_total{{limit=\"{name}\"}}"))
        .unwrap_or_else(|| panic!("no counter for limit {name}"))
}

/// Checks the agent is up and bounded after `flood`, and that an ordinary call is still
/// captured exactly once.
fn still_watching(agent: &Agent, port: u16, flood: &str) {
    let rss = agent
        .metric("monitor_resident_memory_bytes")
        .expect("rss metric");
    eprintln!(
        "flood {flood}: agent RSS {:.1} MiB (budget for parsers {BUDGET_MB} MiB)",
        rss / 1_048_576.0
    );
    assert!(rss < RSS_LIMIT, "{flood}: RSS {rss}");
    let path = format!("/control-after-{flood}");
    assert!(get(port, "GET", &path).starts_with("HTTP/1.1 200"));
    let got = agent.wait_records(1, RECORD_WAIT, |r| {
        served_on(r, port) && r.role == Role::Server && r.path == path
    });
    assert_eq!(got.len(), 1, "{flood}: {got:#?}\n{}", agent.stderr());
    assert_eq!(got[0].status, 200);
    let (status, _) = monitor_tests::agent::http_get(agent.api, "/healthz").expect("healthz");
    assert_eq!(status, 200, "{flood}: {}", agent.stderr());
}

#[test]
fn floods_leave_the_agent_alive_bounded_and_counting() {
    let port = free_port();
    let _server = any_method_server(port);
    let budget = BUDGET_MB.to_string();
    let service = format!("flood=port:{port}");
    let agent = Agent::start_with(&["--parser-memory-mb", &budget, "--service", &service]);
    held_heads(&agent, port);
    random_methods(&agent, port);
    random_segments(&agent, port);
    unanswered_streams(&agent, port);
    random_grpc_status(&agent, port);
}

/// 300 connections each holding a 30 KiB head that never ends: about 18 MiB of parser state
/// (client and server sides), over the 8 MiB budget.
fn held_heads(agent: &Agent, port: u16) {
    let pad = "p".repeat(30 * 1024);
    let head = format!("GET /held HTTP/1.1\r\nHost: flood.test\r\nX-Pad: {pad}");
    let conns: Vec<TcpStream> = (0..300)
        .map(|_| {
            let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
            s.write_all(head.as_bytes()).expect("write");
            s
        })
        .collect();
    // The budget is enforced at the once-a-second sweep.
    let deadline = Instant::now() + Duration::from_secs(10);
    while limit(agent, "parser_memory") == 0.0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(limit(agent, "parser_memory") > 0.0, "{}", agent.metrics());
    std::thread::sleep(Duration::from_millis(1500));
    let buffered = agent
        .metric("monitor_parser_buffered_bytes")
        .expect("buffered metric");
    assert!(
        buffered <= (BUDGET_MB << 20) as f64,
        "parsers hold {buffered}"
    );
    assert!(agent
        .metric("monitor_connections_evicted_total{reason=\"memory\"}")
        .is_some_and(|n| n > 0.0));
    drop(conns);
    still_watching(agent, port, "held-heads");
}

/// 300 made-up methods: the inventory files them all under `_OTHER`.
fn random_methods(agent: &Agent, port: u16) {
    for i in 0..300u32 {
        let method = format!("M{:08X}", i.wrapping_mul(2_654_435_761));
        assert!(get(port, &method, "/m").starts_with("HTTP/1.1 200"));
    }
    let eps = agent.wait_inventory("service=flood", |e| {
        e.iter()
            .any(|e| e.route == "/m" && e.method == "_OTHER" && e.calls >= 300)
    });
    let methods: BTreeSet<&str> = eps
        .iter()
        .filter(|e| e.route == "/m")
        .map(|e| e.method.as_str())
        .collect();
    assert_eq!(methods, BTreeSet::from(["_OTHER"]), "{eps:#?}");
    still_watching(agent, port, "random-methods");
}

/// 2,000 paths with random segments: they merge into a few templated endpoints.
fn random_segments(agent: &Agent, port: u16) {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for _ in 0..2000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let path = format!("/r/{:x}/{}", x & 0xffff_ffff, x >> 40);
        assert!(get(port, "GET", &path).starts_with("HTTP/1.1 200"));
    }
    let eps = agent.wait_inventory("service=flood", |e| {
        e.iter()
            .filter(|e| e.route.starts_with("/r/"))
            .map(|e| e.calls)
            .sum::<u64>()
            >= 2000
    });
    let routes: Vec<&str> = eps
        .iter()
        .filter(|e| e.route.starts_with("/r/"))
        .map(|e| e.route.as_str())
        .collect();
    assert!(routes.len() <= 60, "{} endpoints: {routes:?}", routes.len());
    still_watching(agent, port, "random-segments");
}

/// 5,000 HTTP/2 requests on one connection to a peer that never answers: each side's
/// session keeps at most 4,096 open streams and counts the rest. Each request is its own
/// write: a write of many streams' header blocks is copied only to the end of its first
/// block (see the README's limits).
fn unanswered_streams(agent: &Agent, port: u16) {
    let before = limit(agent, "http2_open_streams");
    let sink = TcpListener::bind("127.0.0.1:0").expect("bind sink");
    let addr = sink.local_addr().expect("addr");
    let reader = std::thread::spawn(move || {
        let (mut s, _) = sink.accept().expect("accept");
        let mut buf = vec![0u8; 64 * 1024];
        while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
    });
    let mut c = TcpStream::connect(addr).expect("connect sink");
    c.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .expect("preface");
    let n = 5000u32;
    for i in 0..n {
        let path = format!("/s/{i}");
        // :method GET, :scheme http, :path and :authority as literals never indexed.
        let mut block = vec![0x82, 0x86, 0x04, path.len() as u8];
        block.extend_from_slice(path.as_bytes());
        block.extend_from_slice(&[0x01, 10]);
        block.extend_from_slice(b"flood.test");
        let len = block.len() as u32;
        let mut frame = len.to_be_bytes()[1..].to_vec();
        frame.extend_from_slice(&[0x01, 0x05]);
        frame.extend_from_slice(&(2 * i + 1).to_be_bytes());
        frame.extend_from_slice(&block);
        c.write_all(&frame).expect("headers");
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let want = before + f64::from(n - 4096);
    while limit(agent, "http2_open_streams") < want && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        limit(agent, "http2_open_streams") >= want,
        "{}",
        agent.metrics()
    );
    drop(c);
    reader.join().expect("sink reader");
    still_watching(agent, port, "unanswered-streams");
}

/// gRPC answers with 200 made-up status codes: the metrics carry at most the 17 defined
/// codes and `_OTHER`.
fn random_grpc_status(agent: &Agent, port: u16) {
    let h2_port = free_port();
    let _server = h2_server(H2PEER, h2_port);
    let paths: Vec<String> = (0..200)
        .map(|i| format!("/grpc-status/{}", 17 + i * 7919))
        .chain(["/grpc-status/5".to_string()])
        .collect();
    run_ok(
        Command::new(H2PEER).args([
            "client",
            "--port",
            &h2_port.to_string(),
            "--count",
            &paths.len().to_string(),
            "--concurrency",
            "8",
            "--header",
            "content-type:application/grpc",
            "--paths",
            &paths.join(","),
        ]),
        "h2peer client",
    );
    let got = agent.wait_records(paths.len(), RECORD_WAIT, |r| {
        served_on(r, h2_port) && r.role == Role::Server
    });
    assert_eq!(got.len(), paths.len(), "{}", agent.stderr());
    let metrics = agent.metrics();
    let codes: BTreeSet<&str> = metrics
        .split("rpc_grpc_status_code=\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .collect();
    assert!(codes.contains("_OTHER") && codes.contains("5"), "{codes:?}");
    assert!(
        codes
            .iter()
            // Empty: a call that is not gRPC.
            .all(|c| c.is_empty() || *c == "_OTHER" || c.parse::<u32>().is_ok_and(|n| n <= 16)),
        "{codes:?}"
    );
    still_watching(agent, port, "random-grpc-status");
}
