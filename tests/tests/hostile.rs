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
    peers::{peer_script, ready_server, Proc},
    Agent,
};

fn server(port: u16) -> Proc {
    ready_server(
        Command::new("python3")
            .arg(peer_script("any_method_server.py"))
            .arg(port.to_string()),
        "any_method_server.py",
        port,
    )
}

/// Sends one request as the given writes on a fresh connection, each write its own
/// syscall, and reads the whole answer; returns its status line.
fn send(port: u16, writes: &[Vec<u8>]) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_nodelay(true).expect("nodelay");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    for w in writes {
        s.write_all(w).expect("write");
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

/// Each shape that once went unseen: one server-side call, with the method, target and
/// status the server saw. (Heads longer than the 4 KiB the kernel copies per write, and
/// request lines longer than that, are not seen whole yet: issue 13 continues.)
#[test]
fn every_request_shape_the_server_answers_is_one_call() {
    let port = free_port();
    let _server = server(port);
    let agent = Agent::start();
    let headers = |n: usize| -> Vec<(String, String)> {
        (0..n).map(|i| (format!("X-H{i}"), "1".into())).collect()
    };
    let cases: Vec<(&str, String, Vec<Vec<u8>>)> = vec![
        ("GET", "/plain".into(), vec![request("GET", "/plain", &[])]),
        (
            "GET",
            "/headers-80".into(),
            vec![request("GET", "/headers-80", &headers(80))],
        ),
        (
            "GET",
            "/headers-255".into(),
            vec![request("GET", "/headers-255", &headers(255))],
        ),
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
        (
            "PROPFIND",
            "/dav".into(),
            vec![request("PROPFIND", "/dav", &[])],
        ),
        (
            "PURGE",
            "/cache".into(),
            vec![request("PURGE", "/cache", &[])],
        ),
        ("M-SEARCH", "*".into(), vec![request("M-SEARCH", "*", &[])]),
    ];
    let mut missing = Vec::new();
    for (method, path, writes) in &cases {
        let status = send(port, writes);
        assert!(status.starts_with("HTTP/1.1 200"), "{path}: {status}");
        let got = served(&agent, port, method, path);
        let shown: String = path.chars().take(40).collect();
        match got.as_slice() {
            [r] => assert_eq!(r.status, 200, "{shown}: {r:?}"),
            [] => missing.push(format!("{method} {shown}")),
            more => panic!("{method} {shown}: {} calls for one request", more.len()),
        }
    }
    assert!(missing.is_empty(), "no call for: {missing:?}");
}

/// Paths of thousands of segments, sent in 1 KiB writes: the agent stays up and still
/// reports the next ordinary call exactly.
#[test]
fn deep_paths_do_not_crash_the_agent() {
    let port = free_port();
    let _server = server(port);
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
    let _server = server(port);
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
    let _server = server(port);
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
