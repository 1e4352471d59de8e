//! End-to-end: the kernel's own tables (reads blocked at start, connection state) are small
//! on purpose here, so that a workload fills them. What the kernel then loses must be a
//! counted hole in the stream, never a connection the agent goes blind to: calls after the
//! hole, on the same keep-alive connections, are captured.

use std::{
    collections::BTreeSet,
    io::{Read, Write},
    net::TcpStream,
    time::Duration,
};

use monitor_agent::record::Role;
use monitor_tests::{
    agent::{served_on, RECORD_WAIT},
    free_port,
    peers::any_method_server,
    Agent,
};

fn connect(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s
}

/// One keep-alive request on `s`; returns the status line once the whole answer is read.
fn exchange(s: &mut TcpStream, path: &str) -> String {
    let req = format!("GET {path} HTTP/1.1\r\nHost: tables.test\r\n\r\n");
    s.write_all(req.as_bytes()).expect("write");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = s.read(&mut buf).expect("read answer");
        assert!(n > 0, "server closed before answering {path}");
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("Content-Length: "))
                .and_then(|v| v.trim().parse().ok())
                .expect("content-length");
            if body.len() >= len {
                return head.lines().next().unwrap_or_default().to_string();
            }
        }
    }
}

/// Server-side records of `port` whose path is one of `paths`.
fn served_paths(agent: &Agent, port: u16, paths: &BTreeSet<String>, n: usize) -> BTreeSet<String> {
    agent
        .wait_records(n, RECORD_WAIT, |r| {
            served_on(r, port) && r.role == Role::Server && paths.contains(&r.path)
        })
        .into_iter()
        .map(|r| r.path)
        .collect()
}

fn counter(agent: &Agent, name: &str) -> f64 {
    agent
        .metric(name)
        .unwrap_or_else(|| panic!("no sample {name}:\n{}", agent.metrics()))
}

/// Opens `n` keep-alive connections to `port` and waits until every server thread is
/// blocked in its first read.
fn idle_connections(port: u16, n: usize) -> Vec<TcpStream> {
    let conns = (0..n).map(|_| connect(port)).collect();
    std::thread::sleep(Duration::from_secs(1));
    conns
}

/// Sends `/{tag}/{i}` on each connection; returns the paths sent.
fn one_request_each(conns: &mut [TcpStream], tag: &str) -> BTreeSet<String> {
    let mut paths = BTreeSet::new();
    for (i, c) in conns.iter_mut().enumerate() {
        let path = format!("/{tag}/{i}");
        assert!(exchange(c, &path).starts_with("HTTP/1.1 200"));
        paths.insert(path);
    }
    paths
}

/// 24 server threads already blocked in a read when the agent starts never ran the entry
/// program: the agent stashes those reads on their behalf, so every first request is
/// captured, and so is every later one (the threads' own syscall state from then on).
#[test]
fn reads_blocked_before_start_are_picked_up() {
    let port = free_port();
    let _server = any_method_server(port);
    let service = format!("tables=port:{port}");
    let mut conns = idle_connections(port, 24);
    let agent = Agent::start_with(&["--service", &service]);
    let first = one_request_each(&mut conns, "first");
    let seen = served_paths(&agent, port, &first, first.len());
    assert_eq!(seen, first, "{}", agent.stderr());
    let later = one_request_each(&mut conns, "later");
    let seen = served_paths(&agent, port, &later, later.len());
    assert_eq!(seen, later, "{}", agent.stderr());
    let lost = counter(&agent, "monitor_syscall_args_lost_total");
    assert!(lost < 0.5, "{lost} syscalls lost");
}

/// Room for 4 of the reads blocked at start, 24 blocked: the others' first requests are
/// lost and counted, and the connections are not blind: every later request is captured.
#[test]
fn blocked_reads_beyond_the_table_are_counted_and_their_connections_recover() {
    let port = free_port();
    let _server = any_method_server(port);
    let service = format!("tables=port:{port}");
    let mut conns = idle_connections(port, 24);
    let agent = Agent::start_with(&["--kernel-blocked-reads", "4", "--service", &service]);
    let first = one_request_each(&mut conns, "first");
    let later = one_request_each(&mut conns, "later");
    let seen = served_paths(&agent, port, &later, later.len());
    assert_eq!(seen, later, "{}", agent.stderr());
    let seen_first = served_paths(&agent, port, &first, 0);
    assert!(
        seen_first.len() <= 4,
        "more first requests captured than the table holds: {seen_first:?}"
    );
    assert!(
        counter(&agent, "monitor_syscall_args_lost_total") >= 20.0,
        "{}",
        agent.metrics()
    );
}

/// Sixteen slots for connection state, 40 keep-alive connections (80 sockets on
/// loopback): the kernel forgets most of them between two requests. Each forgotten
/// connection continues after a counted hole, and its second request is captured.
#[test]
fn a_forgotten_connection_continues_after_a_counted_hole() {
    let port = free_port();
    let _server = any_method_server(port);
    let service = format!("tables=port:{port}");
    let agent = Agent::start_with(&["--kernel-connections", "16", "--service", &service]);
    let mut conns: Vec<TcpStream> = (0..40).map(|_| connect(port)).collect();
    for (i, c) in conns.iter_mut().enumerate() {
        assert!(exchange(c, &format!("/one/{i}")).starts_with("HTTP/1.1 200"));
    }
    let second: BTreeSet<String> = (0..conns.len()).map(|i| format!("/two/{i}")).collect();
    for (i, c) in conns.iter_mut().enumerate() {
        assert!(exchange(c, &format!("/two/{i}")).starts_with("HTTP/1.1 200"));
    }
    let got = served_paths(&agent, port, &second, second.len());
    assert_eq!(got, second, "{}\n{}", agent.stderr(), agent.metrics());
    assert!(
        counter(
            &agent,
            "monitor_stream_holes_total{reason=\"connection_forgotten\"}"
        ) > 0.0,
        "{}",
        agent.metrics()
    );
}
