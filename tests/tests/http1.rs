//! End-to-end: real agent, real eBPF, real HTTP/1.x peers on loopback.

use std::{
    io::{BufRead, BufReader, Write},
    net::SocketAddr,
    process::{Command, Stdio},
    time::Duration,
};

use monitor_agent::{
    protocol::exchange::Protocol,
    record::{CallRecord, Role},
};
use monitor_tests::{
    agent::{agent_bin, by_role, comm, served_on, RECORD_WAIT},
    free_port,
    peers::{curl, peer_script, ready_server, run_ok, Nginx, Proc},
    wait_listening, Agent, TempDir,
};
/// Exactly one client-role and one server-role record, both describing `method path status`.
fn assert_one_call_per_role(records: &[CallRecord], method: &str, path: &str, status: u16) {
    for role in [Role::Client, Role::Server] {
        let got = by_role(records, role);
        assert_eq!(
            got.len(),
            1,
            "expected exactly one {role:?}-role record for {method} {path}, got {records:#?}"
        );
        let r = got[0];
        assert_eq!(r.method, method, "{role:?} method: {r:?}");
        assert_eq!(r.path, path, "{role:?} path: {r:?}");
        assert_eq!(r.status, status, "{role:?} status: {r:?}");
        assert_eq!(r.protocol, Protocol::Http1, "{r:?}");
        assert!(!r.tls, "{r:?}");
    }
}

fn python_http_server(port: u16, root: &std::path::Path) -> Proc {
    let p = Proc::spawn(
        Command::new("python3")
            .args([
                "-m",
                "http.server",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
            ])
            .current_dir(root)
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
        "python3 -m http.server",
    );
    wait_listening(
        SocketAddr::from(([127, 0, 0, 1], port)),
        "python http.server",
    );
    p
}

/// `tests/peers/SCRIPT serve PORT`, for the peers that are both server and client.
fn two_sided_server(script: &str, port: u16) -> Proc {
    ready_server(
        Command::new("python3")
            .arg(peer_script(script))
            .args(["serve", &port.to_string()]),
        &format!("{script} serve"),
        port,
    )
}

/// `tests/peers/SCRIPT ARGS...` run to the end (the client side); what it printed.
fn two_sided_client(script: &str, args: &[&str]) -> String {
    let out = run_ok(
        Command::new("python3").arg(peer_script(script)).args(args),
        script,
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn test_server(port: u16, bind: &str) -> Proc {
    let p = Proc::spawn(
        Command::new("python3")
            .arg(peer_script("server.py"))
            .args([&port.to_string(), bind])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit()),
        "tests/peers/server.py",
    );
    if bind.contains(':') {
        wait_listening(
            format!("[{bind}]:{port}").parse().expect("addr"),
            "server.py",
        );
    } else {
        wait_listening(format!("{bind}:{port}").parse().expect("addr"), "server.py");
    }
    p
}

#[test]
fn curl_to_python_http_server_is_one_call_per_role() {
    let dir = TempDir::new("www");
    std::fs::create_dir_all(dir.0.join("a")).expect("mkdir");
    std::fs::write(dir.0.join("a/b"), "bee\n").expect("file");
    let port = free_port();
    let _server = python_http_server(port, &dir.0);
    let agent = Agent::start();
    assert_eq!(
        curl(&[&format!("http://127.0.0.1:{port}/a/b?x=1")]),
        "bee\n"
    );
    let recs = agent.wait_records(2, RECORD_WAIT, |r| served_on(r, port));
    assert_one_call_per_role(&recs, "GET", "/a/b?x=1", 200);
    let client = by_role(&recs, Role::Client)[0];
    let server = by_role(&recs, Role::Server)[0];
    assert_eq!(client.route, "/a/b");
    assert_eq!(comm(&client.client), "curl", "{client:?}");
    assert!(comm(&server.server).starts_with("python"), "{server:?}");
    assert_eq!(client.server.ip.to_string(), "127.0.0.1");
    assert_eq!(
        client.client.port, server.client.port,
        "both sides name the same connection"
    );
    assert_eq!(
        client.host.as_deref(),
        Some(format!("127.0.0.1:{port}").as_str())
    );
    let now = std::time::SystemTime::now();
    for r in [client, server] {
        let d = r.duration_us;
        assert!(d > 0 && d < 5_000_000, "implausible duration {d}us: {r:?}");
        assert!(r.request_bytes > 20 && r.response_bytes > 4, "{r:?}");
        let age = now.duration_since(r.ts).unwrap_or(Duration::MAX);
        assert!(age < Duration::from_mins(1), "implausible time: {r:?}");
    }
    // The server saw the same bytes the client sent.
    assert_eq!(client.request_bytes, server.request_bytes);
    assert_eq!(client.response_bytes, server.response_bytes);
}

#[test]
fn keep_alive_connection_carries_several_requests() {
    let port = free_port();
    let nginx = Nginx::start(port);
    let agent = Agent::start();
    let urls: Vec<String> = (1..=3)
        .map(|i| format!("http://127.0.0.1:{port}/k{i}"))
        .collect();
    curl(&urls.iter().map(String::as_str).collect::<Vec<_>>());
    let recs = agent.wait_records(6, RECORD_WAIT, |r| served_on(r, port));
    assert_eq!(nginx.served(), 3);
    for role in [Role::Client, Role::Server] {
        let got = by_role(&recs, role);
        let paths: Vec<&str> = got.iter().map(|r| r.path.as_str()).collect();
        assert_eq!(paths, ["/k1", "/k2", "/k3"], "{role:?} records: {recs:#?}");
        let conn_ports: std::collections::HashSet<u16> =
            got.iter().map(|r| r.client.port).collect();
        assert_eq!(
            conn_ports.len(),
            1,
            "all three requests used one connection: {got:#?}"
        );
        assert!(got.iter().all(|r| r.status == 200));
    }
}

#[test]
fn wrk_burst_is_captured_exactly() {
    wrk_burst_exactly(&[]);
}

/// The same with parsing on shard threads: by default a machine of up to 3 CPUs parses
/// on the reader thread itself.
#[test]
fn wrk_burst_is_captured_exactly_by_shard_threads() {
    wrk_burst_exactly(&["--workers", "3"]);
}

fn wrk_burst_exactly(agent_args: &[&str]) {
    let port = free_port();
    let nginx = Nginx::start(port);
    let agent = Agent::start_with(agent_args);
    let out = run_ok(
        Command::new("wrk")
            .args(["-t1", "-c4", "-d2s", "--timeout", "5s"])
            .arg(format!("http://127.0.0.1:{port}/api/items")),
        "wrk",
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let completed: usize = text
        .lines()
        .find_map(|l| {
            l.trim()
                .split_once(" requests in ")
                .and_then(|(n, _)| n.trim().parse().ok())
        })
        .unwrap_or_else(|| panic!("no request count in wrk output: {text}"));
    assert!(completed > 100, "wrk completed too few requests: {text}");
    // nginx's access log is the truth for the server side; wrk's count for the client side
    // (requests in flight when wrk stops are served but never counted by wrk).
    std::thread::sleep(Duration::from_millis(300));
    let served = nginx.served();
    let server_recs = |r: &CallRecord| served_on(r, port) && r.role == Role::Server;
    let client_recs = |r: &CallRecord| served_on(r, port) && r.role == Role::Client;
    let got_server = agent
        .wait_records(served, Duration::from_secs(30), server_recs)
        .len();
    let got_client = agent
        .wait_records(completed, Duration::from_secs(10), client_recs)
        .len();
    let drops = agent.metric("monitor_ringbuf_drops_total");
    assert_eq!(
        got_server, served,
        "server-role calls vs nginx access log (drops: {drops:?})"
    );
    assert_eq!(
        got_client, completed,
        "client-role calls vs wrk's count (drops: {drops:?})"
    );
    let wrong =
        agent.records(|r| served_on(r, port) && (r.path != "/api/items" || r.status != 200));
    assert!(
        wrong.is_empty(),
        "records with wrong path/status: {:#?}",
        &wrong[..wrong.len().min(3)]
    );
}

#[test]
fn connection_opened_before_agent_is_captured_from_next_request() {
    let port = free_port();
    let _server = test_server(port, "127.0.0.1");
    let mut client = Proc::spawn(
        Command::new("python3")
            .arg(peer_script("preopen_client.py"))
            .arg(port.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped()),
        "preopen_client.py",
    );
    let mut lines = BufReader::new(client.child.stdout.take().expect("stdout")).lines();
    assert_eq!(lines.next().and_then(Result::ok).as_deref(), Some("ready"));
    let agent = Agent::start();
    writeln!(client.child.stdin.as_mut().expect("stdin")).expect("signal client");
    assert_eq!(
        lines.next().and_then(Result::ok).as_deref(),
        Some("done 200")
    );
    let recs = agent.wait_records(2, RECORD_WAIT, |r| served_on(r, port));
    assert_one_call_per_role(&recs, "GET", "/after?when=later", 200);
}

#[test]
fn plain_tcp_echo_is_not_a_call() {
    let port = free_port();
    let agent = Agent::start();
    let before = agent
        .metric("monitor_other_connections_total")
        .unwrap_or(0.0);
    let out = run_ok(
        Command::new("python3")
            .arg(peer_script("echo.py"))
            .args([&port.to_string(), "20"]),
        "echo.py",
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok 20");
    std::thread::sleep(Duration::from_millis(800));
    let recs = agent.records(|r| served_on(r, port) || r.client.port == port);
    assert!(
        recs.is_empty(),
        "echo traffic produced call records: {recs:#?}"
    );
    let after = agent
        .metric("monitor_other_connections_total")
        .unwrap_or(0.0);
    assert!(
        after >= before + 2.0,
        "both echo sockets should be classified as not HTTP ({before} -> {after})"
    );
}

#[test]
fn ipv6_loopback() {
    let port = free_port();
    let _nginx = Nginx::start(port);
    let agent = Agent::start();
    curl(&["-g", &format!("http://[::1]:{port}/v6?q=1")]);
    let recs = agent.wait_records(2, RECORD_WAIT, |r| served_on(r, port));
    assert_one_call_per_role(&recs, "GET", "/v6?q=1", 200);
    for r in &recs {
        assert_eq!(r.server.ip.to_string(), "::1", "{r:?}");
        assert_eq!(r.client.ip.to_string(), "::1", "{r:?}");
    }
}

#[test]
fn post_with_chunked_request_body() {
    let port = free_port();
    let _server = test_server(port, "127.0.0.1");
    let dir = TempDir::new("post");
    let body = vec![b'x'; 10_000];
    std::fs::write(dir.0.join("body"), &body).expect("body");
    let agent = Agent::start();
    let reply = curl(&[
        "-X",
        "POST",
        "-H",
        "Transfer-Encoding: chunked",
        "--data-binary",
        &format!("@{}", dir.0.join("body").display()),
        &format!("http://127.0.0.1:{port}/upload"),
    ]);
    assert_eq!(reply, "got 10000 bytes\n");
    let recs = agent.wait_records(2, RECORD_WAIT, |r| served_on(r, port));
    assert_one_call_per_role(&recs, "POST", "/upload", 201);
    for r in &recs {
        assert!(r.request_bytes > 10_000, "chunked body counted: {r:?}");
    }
}

#[test]
fn head_204_and_sendfile_body_on_one_connection() {
    let port = free_port();
    let nginx = Nginx::start(port);
    // 300 KB static file: nginx sends it with sendfile, which the agent sees only as a count.
    std::fs::write(nginx.dir.0.join("big.bin"), vec![b'z'; 300_000]).expect("big file");
    let agent = Agent::start();
    let base = format!("http://127.0.0.1:{port}");
    let big = format!("{base}/big.bin");
    let empty = format!("{base}/empty");
    let after = format!("{base}/after");
    curl(&[
        "-o",
        "/dev/null",
        &big,
        "-o",
        "/dev/null",
        &empty,
        "-o",
        "/dev/null",
        &after,
    ]);
    curl(&["-I", &format!("{base}/index.html")]);
    let recs = agent.wait_records(8, RECORD_WAIT, |r| served_on(r, port));
    for role in [Role::Client, Role::Server] {
        // Order is defined within a connection; the HEAD came on a second connection.
        let mut got: Vec<(String, u16)> = by_role(&recs, role)
            .iter()
            .map(|r| (format!("{} {}", r.method, r.path), r.status))
            .collect();
        let head = got
            .iter()
            .position(|(c, _)| c.starts_with("HEAD"))
            .map(|i| got.remove(i));
        assert_eq!(
            got,
            [
                ("GET /big.bin".to_string(), 200),
                ("GET /empty".to_string(), 204),
                ("GET /after".to_string(), 200),
            ],
            "{role:?}: {recs:#?}"
        );
        assert_eq!(
            head,
            Some(("HEAD /index.html".to_string(), 200)),
            "{role:?}: {recs:#?}"
        );
        let big = by_role(&recs, role)
            .into_iter()
            .find(|r| r.path == "/big.bin")
            .expect("big.bin record");
        assert!(big.response_bytes > 300_000, "body bytes counted: {big:?}");
    }
}

/// Path, status and response body size of each of `role`'s calls, in order.
fn answers(recs: &[CallRecord], role: Role) -> Vec<(&str, u16, u64)> {
    by_role(recs, role)
        .iter()
        .map(|r| (r.path.as_str(), r.status, r.response_body_bytes))
        .collect()
}

/// Writes are captured as they start: asyncio's non-blocking sends into a small send buffer
/// move part of each 2 MiB answer and send the rest again later, from where the stream
/// really is. Every answer is still one call per role, of the exact size, and what was
/// captured twice was counted and kept once.
#[test]
fn partial_writes_sent_again_make_exact_calls() {
    let port = free_port();
    let _server = two_sided_server("partial_writes.py", port);
    let agent = Agent::start();
    let printed = two_sided_client("partial_writes.py", &["fetch", &port.to_string(), "3"]);
    let body = 2 * 1024 * 1024;
    assert_eq!(
        printed.lines().collect::<Vec<_>>(),
        vec![format!("200 {body}"); 3]
    );
    let recs = agent.wait_records(6, RECORD_WAIT, |r| served_on(r, port));
    for role in [Role::Client, Role::Server] {
        let got = answers(&recs, role);
        assert_eq!(
            got,
            [
                ("/big/0", 200, body),
                ("/big/1", 200, body),
                ("/big/2", 200, body)
            ],
            "{role:?}: {recs:#?}"
        );
    }
    let overlap = agent
        .metric("monitor_stream_overlap_bytes_total")
        .unwrap_or(0.0);
    assert!(overlap > 0.0, "the server's writes were partial: {overlap}");
}

/// `sendmsg` and `recvmsg_into` of several buffers on both sides: a head and a body in
/// separate buffers make one record when the whole call fits one (gathered in the kernel,
/// up to the 8 buffers it walks), a call too long for one is copied buffer by buffer, and
/// one of more buffers than the kernel walks loses only the bytes past them, as a gap of
/// their true size. Each call is exact.
#[test]
fn vectored_reads_and_writes_make_exact_calls() {
    let port = free_port();
    let _server = two_sided_server("vectored.py", port);
    let agent = Agent::start();
    let specs = ["20:1", "3000:4", "10000:3", "100:6", "100:30"];
    let mut args = vec!["fetch".to_string(), port.to_string()];
    args.extend(specs.iter().map(ToString::to_string));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let printed = two_sided_client("vectored.py", &args);
    assert_eq!(
        printed.lines().collect::<Vec<_>>(),
        ["200 20", "200 3000", "200 10000", "200 100", "200 100"]
    );
    let recs = agent.wait_records(10, RECORD_WAIT, |r| served_on(r, port));
    for role in [Role::Client, Role::Server] {
        let got = answers(&recs, role);
        assert_eq!(
            got,
            [
                ("/vec/20/1", 200, 20),
                ("/vec/3000/4", 200, 3000),
                ("/vec/10000/3", 200, 10000),
                ("/vec/100/6", 200, 100),
                ("/vec/100/30", 200, 100)
            ],
            "{role:?}: {recs:#?}"
        );
    }
}

#[test]
fn sigint_and_sigterm_exit_zero() {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        let agent = Agent::start();
        let (status, log) = agent.stop_with_log(sig);
        assert!(
            status.success(),
            "agent exit status on signal {sig}: {status}"
        );
        // Every program attached is detached, by the agent itself (all at once).
        let number_before = |text: &str, marker: &str| -> Option<usize> {
            let (head, _) = text.split_once(marker)?;
            head.rsplit(' ').next()?.parse().ok()
        };
        let tracepoints = number_before(&log, " tracepoints; capturing").expect("attached");
        let detached = number_before(&log, " attachments in ").expect("detached line");
        assert!(detached >= tracepoints, "{log}");
    }
}

#[test]
fn refuses_to_run_without_root_in_one_sentence() {
    monitor_tests::require_root();
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(agent_bin())
        .args(["run", "--listen", &format!("127.0.0.1:{}", free_port())])
        .output()
        .expect("setpriv");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("must run as root"), "stderr: {err}");
}

#[test]
fn refuses_non_loopback_listen_without_token() {
    let out = Command::new(agent_bin())
        .args(["run", "--listen", "0.0.0.0:1"])
        .env_remove("MONITOR_API_TOKEN")
        .output()
        .expect("agent");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("without an API token"), "stderr: {err}");
}

#[test]
fn garbage_on_an_http_connection_is_counted_never_a_call() {
    use std::io::Read;
    let port = free_port();
    let _server = test_server(port, "127.0.0.1");
    let agent = Agent::start();
    let before = agent
        .metric("monitor_parse_errors_total{protocol=\"http/1.1\"}")
        .unwrap_or(0.0);
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    s.write_all(b"GET /fine HTTP/1.1\r\nHost: t\r\n\r\n")
        .expect("request");
    let mut buf = [0u8; 4096];
    let n = s.read(&mut buf).expect("response");
    assert!(
        buf[..n].starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );
    // Binary garbage where the next request should start: the server answers 400 and closes.
    s.write_all(b"\x16\x00\xff\xfegarbage that is no request\r\n\r\n")
        .expect("garbage");
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    drop(s);
    let recs = agent.wait_records(2, RECORD_WAIT, |r| served_on(r, port));
    assert_one_call_per_role(&recs, "GET", "/fine", 200);
    let after = agent
        .metric("monitor_parse_errors_total{protocol=\"http/1.1\"}")
        .unwrap_or(0.0);
    assert!(
        after > before,
        "garbage was not counted as a parse error ({before} -> {after})"
    );
}

/// A connection that leaves HTTP (a `101` to a WebSocket) is switched off in the kernel
/// once the agent has parsed the switch: the stream that follows costs no records, the
/// upgrade itself is still one call per role, and the close still ends the connection.
#[test]
fn a_connection_that_leaves_http_is_switched_off_in_the_kernel() {
    let port = free_port();
    let _server = two_sided_server("upgrade_stream.py", port);
    let agent = Agent::start();
    let events = || agent.metric("monitor_ringbuf_events_total").unwrap_or(0.0);
    let switched = || {
        agent
            .metric("monitor_connections_switched_off_total")
            .unwrap_or(0.0)
    };
    let (events0, switched0) = (events(), switched());
    let messages = 300;
    let printed = two_sided_client(
        "upgrade_stream.py",
        &["stream", &port.to_string(), &messages.to_string(), "1.5"],
    );
    // Read at once: the agent's API traffic is captured too (on the test's side).
    let records = events() - events0;
    assert_eq!(
        printed.lines().collect::<Vec<_>>(),
        ["HTTP/1.1 101 Switching Protocols", "done"]
    );
    let recs = agent.wait_records(2, RECORD_WAIT, |r| served_on(r, port));
    assert_one_call_per_role(&recs, "GET", "/chat", 101);
    // Both ends, the client's socket and the server's, were switched off.
    assert!(switched() - switched0 >= 2.0, "{}", agent.metrics());
    // 300 messages each way, written and read on both sockets: 1,200 segments, of which
    // at most those before the switch took effect became records.
    assert!(
        records < 100.0,
        "{records} records for a connection switched off after its upgrade"
    );
}
