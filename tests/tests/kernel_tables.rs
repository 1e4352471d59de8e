//! End-to-end: the kernel's own tables (syscalls in flight, connection state) are small
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

/// Four slots for syscalls in flight, 24 server threads blocked in a read: most reads lose
/// their arguments, and their bytes. Connections whose first request was lost are kept;
/// once the others are gone, their later requests are captured after a counted hole.
#[test]
fn a_full_syscall_table_is_a_counted_hole_not_a_blind_connection() {
    let port = free_port();
    let _server = any_method_server(port);
    let service = format!("tables=port:{port}");
    let agent = Agent::start_with(&["--kernel-inflight-syscalls", "4", "--service", &service]);
    let mut conns: Vec<TcpStream> = (0..24).map(|_| connect(port)).collect();
    // Every server thread is now blocked in its first read.
    std::thread::sleep(Duration::from_secs(1));
    let first: BTreeSet<String> = (0..conns.len()).map(|i| format!("/first/{i}")).collect();
    for (i, c) in conns.iter_mut().enumerate() {
        assert!(exchange(c, &format!("/first/{i}")).starts_with("HTTP/1.1 200"));
    }
    let seen = served_paths(&agent, port, &first, first.len());
    assert!(
        counter(&agent, "monitor_syscall_args_lost_total") > 0.0,
        "{}",
        agent.metrics()
    );
    let blind: Vec<usize> = (0..conns.len())
        .filter(|i| !seen.contains(&format!("/first/{i}")))
        .take(2)
        .collect();
    assert!(
        !blind.is_empty(),
        "every first request was captured: {seen:?}"
    );
    // Only the connections that lost their first request stay open.
    let mut kept: Vec<(usize, TcpStream)> = conns
        .drain(..)
        .enumerate()
        .filter(|(i, _)| blind.contains(i))
        .collect();
    std::thread::sleep(Duration::from_secs(1));
    // The read each kept thread is in began while the table was full: its request is lost
    // too. The reads after it have room.
    let mut later = BTreeSet::new();
    for round in 0..3 {
        for (i, c) in &mut kept {
            let path = format!("/later/{i}/{round}");
            assert!(exchange(c, &path).starts_with("HTTP/1.1 200"));
            if round > 0 {
                later.insert(path);
            }
        }
    }
    let got = served_paths(&agent, port, &later, later.len());
    assert_eq!(got, later, "{}", agent.stderr());
    assert!(
        counter(
            &agent,
            "monitor_stream_holes_total{reason=\"syscall_table_full\"}"
        ) > 0.0,
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
