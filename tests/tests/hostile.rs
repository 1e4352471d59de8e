//! End-to-end: traffic shaped to crash or blind the agent, from a real client (raw sockets,
//! each write one syscall) to a real server that answers every request. Whatever the shape,
//! the server answered, so the agent must report the call, and keep running.

use std::{
    fmt::Write as _,
    io::{Read, Write},
    net::TcpStream,
    process::Command,
    time::Duration,
};

use monitor_agent::record::{CallRecord, Role};
use monitor_tests::{
    agent::{served_on, RECORD_WAIT},
    free_port,
    peers::{any_method_server, h2_server, run_ok},
    Agent,
};

const H2PEER: &str = env!("CARGO_BIN_EXE_h2peer");

/// Sends one request as the given writes on a fresh connection, each write its own
/// syscall, and reads the whole answer; returns its status line.
fn send(port: u16, writes: &[Vec<u8>]) -> String {
    send_paced(port, writes, Duration::ZERO)
}

/// [`send`] with a pause after each write, so that the server reads each one on its own.
fn send_paced(port: u16, writes: &[Vec<u8>], pause: Duration) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_nodelay(true).expect("nodelay");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    for w in writes {
        s.write_all(w).expect("write");
        if !pause.is_zero() {
            std::thread::sleep(pause);
        }
    }
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    // The body is "METHOD LEN\n" after a head ending in a blank line: read until both came.
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&buf[..n]);
        if let Some(i) = answer.windows(4).position(|w| w == b"\r\n\r\n") {
            if answer[i + 4..].ends_with(b"\n") {
                break;
            }
        }
    }
    let text = String::from_utf8_lossy(&answer);
    text.lines().next().unwrap_or_default().to_string()
}

/// `data` cut into writes of `size` bytes.
fn in_writes(data: &[u8], size: usize) -> Vec<Vec<u8>> {
    data.chunks(size).map(<[u8]>::to_vec).collect()
}

fn request(method: &str, target: &str, headers: &[(String, String)]) -> Vec<u8> {
    let mut r = format!("{method} {target} HTTP/1.1\r\nHost: hostile.test\r\n");
    for (k, v) in headers {
        let _ = write!(r, "{k}: {v}\r\n");
    }
    r.push_str("\r\n");
    r.into_bytes()
}

/// The server-side records of calls to `path` on `port`.
fn served(agent: &Agent, port: u16, method: &str, path: &str) -> Vec<CallRecord> {
    agent.wait_records(1, RECORD_WAIT, |r| {
        served_on(r, port) && r.role == Role::Server && r.method == method && r.path == path
    })
}

/// One header `X-Big` of `n` bytes.
fn big_header(n: usize) -> Vec<(String, String)> {
    vec![("X-Big".into(), "b".repeat(n))]
}

/// Each shape that once went unseen: one server-side call, with the method, target and
/// status the server saw, however long the head (up to 64 KiB) and however it was split.
#[test]
fn every_request_shape_the_server_answers_is_one_call() {
    let port = free_port();
    let _server = any_method_server(port);
    let agent = Agent::start();
    let mut missing = Vec::new();
    for (method, path, writes) in &shapes() {
        let status = send(port, writes);
        check(&agent, port, (method, path), &status, &mut missing);
    }
    // A client pausing after every byte: the server reads the request line byte by byte,
    // and the kernel must not give up on the connection before it can tell.
    let slow = in_writes(&request("GET", "/slow-bytes", &[]), 1);
    let status = send_paced(port, &slow, Duration::from_millis(15));
    check(&agent, port, ("GET", "/slow-bytes"), &status, &mut missing);
    assert!(missing.is_empty(), "no call for: {missing:?}");
}

/// A request, its method and target, and the writes that carry it.
type Shape = (&'static str, String, Vec<Vec<u8>>);

/// A request sent in one write.
fn one(method: &'static str, target: &str, headers: &[(String, String)]) -> Shape {
    (
        method,
        target.to_string(),
        vec![request(method, target, headers)],
    )
}

/// The requests of the test above.
fn shapes() -> Vec<Shape> {
    let headers = |n: usize| -> Vec<(String, String)> {
        (0..n).map(|i| (format!("X-H{i}"), "1".into())).collect()
    };
    let mut all = long_heads();
    all.extend([
        one("GET", "/plain", &[]),
        one("GET", "/headers-80", &headers(80)),
        one("GET", "/headers-255", &headers(255)),
        (
            "GET",
            "/short-first-writes".into(),
            in_writes(&request("GET", "/short-first-writes", &[]), 3),
        ),
        (
            "GET",
            "/byte-by-byte".into(),
            in_writes(&request("GET", "/byte-by-byte", &[]), 1),
        ),
        one("PROPFIND", "/dav", &[]),
        one("PURGE", "/cache", &[]),
        one("M-SEARCH", "*", &[]),
    ]);
    all
}

/// Heads longer than one 4 KiB record, in one write or split after the request line.
fn long_heads() -> Vec<Shape> {
    let wide_head: Vec<(String, String)> = (0..6)
        .map(|i| (format!("X-W{i}"), "w".repeat(10_000)))
        .collect();
    let line_then_header = {
        let r = request("GET", "/line-then-header", &big_header(20_000));
        let cut = r.iter().position(|&b| b == b'\n').expect("line") + 1;
        vec![r[..cut].to_vec(), r[cut..].to_vec()]
    };
    let mut head_and_body = one(
        "POST",
        "/head-and-body",
        &[
            ("Content-Length".into(), "100000".into()),
            ("X-Pad".into(), "x".repeat(3000)),
        ],
    );
    head_and_body.2[0].extend(std::iter::repeat_n(b'z', 100_000));
    vec![
        one("GET", "/header-5k", &big_header(5 * 1024)),
        one("GET", "/header-20k", &big_header(20 * 1024)),
        one("GET", "/head-60k", &wide_head),
        ("GET", "/line-then-header".into(), line_then_header),
        one("GET", &format!("/path-6k/{}", "p".repeat(6 * 1024)), &[]),
        one("GET", &format!("/long/{}", "t".repeat(16 * 1024 - 6)), &[]),
        head_and_body,
    ]
}

/// HTTP/2 header blocks of 20 and 60 KiB (HEADERS, then CONTINUATION frames) and a
/// 16 KiB `:path`, from the `h2` crate to the `h2` crate: each is one server-side call.
#[test]
fn long_http2_header_blocks_are_one_call() {
    let port = free_port();
    let _server = h2_server(H2PEER, port);
    let agent = Agent::start();
    let long_path = format!("/h2-long/{}", "q".repeat(16 * 1024 - 9));
    let cases = [
        (
            "/h2-header-20k".to_string(),
            vec![format!("x-big:{}", "b".repeat(20_000))],
        ),
        (
            "/h2-head-60k".to_string(),
            (0..6)
                .map(|i| format!("x-w{i}:{}", "w".repeat(10_000)))
                .collect(),
        ),
        (long_path, vec![]),
    ];
    let mut missing = Vec::new();
    for (path, headers) in &cases {
        let mut cmd = Command::new(H2PEER);
        cmd.args(["client", "--port", &port.to_string(), "--paths", path]);
        for h in headers {
            cmd.args(["--header", h]);
        }
        run_ok(&mut cmd, "h2peer client");
        let got = served(&agent, port, "GET", path);
        let shown: String = path.chars().take(40).collect();
        match got.as_slice() {
            [r] => assert_eq!(r.status, 200, "{shown}: {r:?}"),
            [] => missing.push(shown),
            more => panic!("{shown}: {} calls for one request", more.len()),
        }
    }
    assert!(missing.is_empty(), "no call for: {missing:?}");
}

/// Asserts that the request was answered and reported once, with its status; a request
/// with no record is added to `missing`.
fn check(
    agent: &Agent,
    port: u16,
    (method, path): (&str, &str),
    status: &str,
    missing: &mut Vec<String>,
) {
    let shown: String = path.chars().take(40).collect();
    assert!(status.starts_with("HTTP/1.1 200"), "{shown}: {status}");
    let got = served(agent, port, method, path);
    match got.as_slice() {
        [r] => assert_eq!(r.status, 200, "{shown}: {r:?}"),
        [] => missing.push(format!("{method} {shown}")),
        more => panic!("{method} {shown}: {} calls for one request", more.len()),
    }
}

/// Paths of thousands of segments, sent in 1 KiB writes: the agent stays up and still
/// reports the next ordinary call exactly.
#[test]
fn deep_paths_do_not_crash_the_agent() {
    let port = free_port();
    let _server = any_method_server(port);
    let agent = Agent::start();
    for i in 0..60 {
        let path = format!("/u{i}{}", "/".repeat(15_000));
        let status = send(port, &in_writes(&request("GET", &path, &[]), 1024));
        assert!(status.starts_with("HTTP/1.1 200"), "{i}: {status}");
    }
    std::thread::sleep(Duration::from_secs(1));
    let status = send(port, &[request("GET", "/control", &[])]);
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    let got = served(&agent, port, "GET", "/control");
    assert_eq!(got.len(), 1, "{got:#?}\n{}", agent.stderr());
    let (status, _) = monitor_tests::agent::http_get(agent.api, "/healthz").expect("healthz");
    assert_eq!(status, 200, "{}", agent.stderr());
}

/// A database that is not one: kept under a new name, counted, and the agent runs and
/// files calls in a new one instead of failing at every restart.
#[test]
fn a_corrupt_database_is_moved_aside_and_the_agent_starts() {
    let port = free_port();
    let _server = any_method_server(port);
    let data = monitor_tests::TempDir::new("corrupt-db");
    let junk = b"not a database; not even close".repeat(200);
    std::fs::write(data.0.join("inventory.db"), &junk).expect("junk");
    let dir = data.0.to_str().expect("utf-8").to_string();
    let agent = Agent::start_with(&["--data-dir", &dir, "--service", &format!("svc=port:{port}")]);
    assert_eq!(
        agent.metric("monitor_store_recoveries_total"),
        Some(1.0),
        "{}",
        agent.stderr()
    );
    assert!(agent.stderr().contains("kept as"), "{}", agent.stderr());
    let kept: Vec<_> = std::fs::read_dir(&data.0)
        .expect("data dir")
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("inventory.db.unreadable-")
        })
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(std::fs::read(kept[0].path()).expect("kept"), junk);
    let status = send(port, &[request("GET", "/after-recovery", &[])]);
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    let eps = agent.wait_inventory("service=svc", |e| !e.is_empty());
    assert!(eps.iter().any(|e| e.route == "/after-recovery"), "{eps:#?}");
}

/// A path carrying terminal controls (C1 CSI, a bidi override) reaches the JSON record as it
/// was, and the CLI's tables and lines only escaped.
#[test]
fn terminal_controls_in_a_path_are_escaped_on_the_terminal() {
    let port = free_port();
    let _server = any_method_server(port);
    let agent = Agent::start_with(&["--service", &format!("svc=port:{port}")]);
    let path = "/esc/\u{9b}31mred\u{202e}txt.exe";
    let status = send(port, &[request("GET", path, &[])]);
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    let got = served(&agent, port, "GET", path);
    assert_eq!(got.len(), 1, "the JSON record keeps the path as sent");
    agent.wait_inventory("service=svc", |e| !e.is_empty());
    for args in [
        &["calls", "--service", "svc"][..],
        &["inventory", "--service", "svc"],
    ] {
        let (code, out, err) = agent.cli(args);
        assert_eq!(code, 0, "{args:?}: {err}");
        assert!(
            !out.contains('\u{9b}') && !out.contains('\u{202e}'),
            "{args:?} printed a raw control: {out:?}"
        );
        assert!(
            out.contains("\\u{9b}31mred\\u{202e}txt.exe"),
            "{args:?}: {out}"
        );
    }
}

/// Opens a connection to the API and writes `head`.
fn api_conn(agent: &Agent, head: &str) -> TcpStream {
    let mut s = TcpStream::connect(agent.api).expect("connect to the API");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    s.write_all(head.as_bytes()).expect("write");
    s
}

/// The status code of the answer on `s`.
fn status_of(s: &mut TcpStream) -> u16 {
    let mut buf = [0u8; 256];
    let n = s.read(&mut buf).expect("an answer");
    let line = String::from_utf8_lossy(&buf[..n]);
    line.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// Slow-loris connections past the connection limit, follow streams past theirs, and a
/// DNS-rebinding Host: `/healthz` still answers within a second, each limit is counted,
/// and stalled heads are cut off by the header timeout.
#[test]
fn api_floods_leave_healthz_answering() {
    let agent = Agent::start();
    let stalled: Vec<TcpStream> = (0..300)
        .map(|_| {
            api_conn(
                &agent,
                "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ",
            )
        })
        .collect();
    let mut followers = Vec::new();
    let mut refused = 0;
    for _ in 0..20 {
        let mut s = api_conn(
            &agent,
            "GET /api/v1/calls?follow=true HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        );
        match status_of(&mut s) {
            200 => followers.push(s),
            503 => refused += 1,
            other => panic!("follow answered {other}"),
        }
    }
    assert_eq!((followers.len(), refused), (16, 4));
    let started = std::time::Instant::now();
    let (status, _) = monitor_tests::agent::http_get(agent.api, "/healthz").expect("healthz");
    assert_eq!(status, 200, "{}", agent.stderr());
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    let shed = agent
        .metric("monitor_api_connections_shed_total")
        .unwrap_or(0.0);
    // 300 stalled connections against a limit of 256; later ones shed more, as timing has it.
    assert!(shed >= 44.0, "{shed}");
    let open = agent.metric("monitor_api_connections").unwrap_or(0.0);
    assert!(open <= 256.0, "{open}");
    assert_eq!(agent.metric("monitor_api_followers"), Some(16.0));
    assert_eq!(
        agent.metric("monitor_api_followers_refused_total"),
        Some(4.0)
    );
    let mut rebinding = api_conn(
        &agent,
        "GET /api/v1/calls HTTP/1.1\r\nHost: evil.example:9464\r\n\r\n",
    );
    assert_eq!(status_of(&mut rebinding), 421);
    // The newest stalled connections were not shed: the header timeout closes them.
    std::thread::sleep(Duration::from_secs(6));
    let mut last = stalled.into_iter().last().expect("stalled");
    let mut buf = [0u8; 64];
    match last.read(&mut buf) {
        Ok(0) => {}
        Ok(n) => assert!(
            String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 408"),
            "{:?}",
            &buf[..n]
        ),
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
    }
}

/// `kill -9` and an immediate restart on the same port and data directory: the new agent
/// does not exit on the address still held by the dying one; it captures meanwhile, then
/// serves, with the inventory the old one had written.
#[test]
fn a_killed_agent_restarted_at_once_takes_over() {
    let port = free_port();
    let _server = any_method_server(port);
    let data = monitor_tests::TempDir::new("restart");
    let dir = data.0.to_str().expect("utf-8").to_string();
    let service = format!("svc=port:{port}");
    let args = [
        "--data-dir",
        &dir,
        "--service",
        &service,
        "--flush-interval-secs",
        "1",
    ];
    let api: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let old = Agent::start_on(api, &args);
    assert!(send(port, &[request("GET", "/before-kill", &[])]).starts_with("HTTP/1.1 200"));
    old.wait_inventory("service=svc", |e| {
        e.iter().any(|e| e.route == "/before-kill")
    });
    std::thread::sleep(Duration::from_millis(1500));
    let killed_at = std::time::Instant::now();
    let mut dying = old.kill_now();
    let mut new = Agent::spawn(api, &args);
    // Once its probes are attached, a call is captured, whether or not the old one is gone.
    let deadline = killed_at + Duration::from_secs(30);
    while !new.stderr().contains("tracepoints; capturing") {
        assert!(new.running(), "the new agent exited: {}", new.stderr());
        assert!(std::time::Instant::now() < deadline, "{}", new.stderr());
        std::thread::sleep(Duration::from_millis(20));
    }
    let overlapped = dying.still_exiting();
    assert!(send(port, &[request("GET", "/during-takeover", &[])]).starts_with("HTTP/1.1 200"));
    new.wait_healthy();
    eprintln!(
        "new agent healthy {:.1} s after the kill; the old one was {}still exiting when the \
         new one captured",
        killed_at.elapsed().as_secs_f64(),
        if overlapped { "" } else { "no longer " }
    );
    drop(dying);
    let got = served(&new, port, "GET", "/during-takeover");
    assert_eq!(got.len(), 1, "{}", new.stderr());
    let eps = new.wait_inventory("service=svc", |e| {
        e.iter().any(|e| e.route == "/before-kill")
            && e.iter().any(|e| e.route == "/during-takeover")
    });
    assert!(eps.iter().any(|e| e.route == "/before-kill"), "{eps:#?}");
    assert!(!new.stderr().contains("cannot listen"), "{}", new.stderr());
}
