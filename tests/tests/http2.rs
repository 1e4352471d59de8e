//! End-to-end: HTTP/2 and gRPC, real agent, real eBPF, real peers on loopback: the `h2`
//! crate (h2peer), tonic (grpcpeer), nginx with curl and h2load, and a Python server that
//! accepts `Upgrade: h2c`.

use std::{
    collections::HashMap,
    io::{BufRead, BufReader, Write},
    process::{Child, ChildStdout, Command, Stdio},
    time::{Duration, Instant},
};

use monitor_agent::{
    api::response::InventoryAnswer,
    protocol::exchange::{EndingFrame, Field, Grpc, Sender},
    record::{CallRecord, Role},
};
use monitor_tests::{
    agent::{by_role, served_on, RECORD_WAIT},
    free_port,
    peers::{self, curl, grpc_server, ready_server, run_ok, GrpcCalls, Nginx, NginxOptions, Proc},
    workspace_root, Agent,
};
use serde_json::Value;

const GRPCPEER: &str = env!("CARGO_BIN_EXE_grpcpeer");

/// Load tests here wait longer than the harness's default.
const WAIT: Duration = RECORD_WAIT.saturating_mul(2);

fn h2_server(port: u16) -> Proc {
    peers::h2_server(env!("CARGO_BIN_EXE_h2peer"), port)
}

/// Runs `h2peer client` to completion and returns its JSON summary.
fn h2_client(port: u16, args: &[&str]) -> Value {
    let out = run_ok(
        Command::new(env!("CARGO_BIN_EXE_h2peer"))
            .args(["client", "--port", &port.to_string()])
            .args(args),
        "h2peer client",
    );
    serde_json::from_slice(&out.stdout).expect("h2peer client prints JSON")
}

/// (path, status) of every record of `role`, sorted.
fn calls_of(records: &[CallRecord], role: Role) -> Vec<(String, u16)> {
    let mut v: Vec<(String, u16)> = by_role(records, role)
        .iter()
        .map(|r| (r.path.clone(), r.status))
        .collect();
    v.sort();
    v
}

#[test]
fn h2_client_and_server_with_100_concurrent_streams() {
    let port = free_port();
    let _server = h2_server(port);
    let agent = Agent::start();
    let summary = h2_client(port, &["--count", "300", "--concurrency", "100"]);
    assert_eq!(summary["completed"], 300, "{summary}");
    assert!(
        summary["max_in_flight"].as_u64().unwrap_or(0) >= 100,
        "the client must really keep 100 streams open: {summary}"
    );
    // Every stream of both processes is one call.
    let recs = agent.wait_records(600, WAIT, |r| served_on(r, port));
    let mut want: Vec<(String, u16)> = (0..300).map(|i| (format!("/items/{i}"), 200)).collect();
    want.sort();
    for role in [Role::Client, Role::Server] {
        assert_eq!(calls_of(&recs, role), want, "{role:?} side");
    }
    for r in &recs {
        assert_eq!(r.protocol.as_str(), "http/2", "{r:?}");
        assert_eq!(r.method, "GET", "{r:?}");
        assert!(r.unknown.is_empty(), "nothing unknown: {r:?}");
        assert!(r.duration_us < 10_000_000 && r.response_bytes > 9, "{r:?}");
    }
    let conns: std::collections::HashSet<u16> = recs.iter().map(|r| r.client.port).collect();
    assert_eq!(conns.len(), 1, "one connection carried every stream");

    // Statuses, trailers and a reset, with a POST body, on a second connection.
    let summary = h2_client(
        port,
        &[
            "--paths",
            "/status/404,/trailers,/reset,/status/503,/bytes/3000",
            "--count",
            "5",
            "--method",
            "POST",
            "--body-bytes",
            "3000",
        ],
    );
    assert_eq!(summary["completed"], 5, "{summary}");
    let more = |p: &str| -> Vec<CallRecord> {
        let p = p.to_string();
        agent.wait_records(2, WAIT, move |r| served_on(r, port) && r.path == p)
    };
    for (path, status) in [
        ("/status/404", 404),
        ("/trailers", 200),
        ("/status/503", 503),
        ("/bytes/3000", 200),
    ] {
        let recs = more(path);
        assert_eq!(recs.len(), 2, "{path}: {recs:#?}");
        for r in &recs {
            assert_eq!(r.status, status, "{r:?}");
            assert_eq!(r.method, "POST", "{r:?}");
            assert_eq!(r.request_body_bytes, 3000, "{r:?}");
            assert!(r.stream_error.is_none(), "{r:?}");
        }
    }
    // Bodies within the 4 KiB captured per syscall are counted exactly (larger ones: see
    // `large_concurrent_bodies_lose_detail_never_truth`).
    for r in more("/bytes/3000") {
        assert_eq!(r.response_body_bytes, 3000, "{r:?}");
    }
    let reset = more("/reset");
    assert_eq!(reset.len(), 2, "{reset:#?}");
    for r in &reset {
        assert_eq!(r.status, 0, "{r:?}");
        let e = r.stream_error.expect("a stream error");
        assert_eq!(e.frame, EndingFrame::RstStream, "{r:?}");
        assert_eq!(e.code.name(), "INTERNAL_ERROR", "{r:?}");
        assert_eq!(e.by, Sender::Server, "{r:?}");
    }
    let errors = agent.metric("monitor_parse_errors_total{protocol=\"http/2\"}");
    assert_eq!(errors, Some(0.0), "{}", agent.metrics());
}

fn nginx_h2(tls: bool) -> Nginx {
    Nginx::start_with(
        free_port(),
        NginxOptions {
            tls,
            http2: true,
            ..Default::default()
        },
    )
}

/// `h2load` (bounded: -n requests over -c connections, -m streams each); returns how many
/// requests succeeded.
fn h2load(url: &str, n: u32) -> u64 {
    let out = run_ok(
        Command::new("h2load").args(["-n", &n.to_string(), "-c", "10", "-m", "10", url]),
        "h2load",
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.starts_with("requests:"))
        .unwrap_or_else(|| panic!("h2load printed no summary: {text}"));
    let succeeded = line
        .split(',')
        .find_map(|part| part.trim().strip_suffix(" succeeded"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no succeeded count in {line}"));
    assert_eq!(succeeded, u64::from(n), "h2load: {text}");
    succeeded
}

#[test]
fn nginx_over_h2c_and_tls_with_curl_and_h2load() {
    let plain = nginx_h2(false);
    let tls = nginx_h2(true);
    let agent = Agent::start();

    curl(&[
        "--http2-prior-knowledge",
        &format!("http://127.0.0.1:{}/api/one", plain.port),
    ]);
    curl(&[
        "-k",
        "--http2",
        &format!("https://127.0.0.1:{}/api/two", tls.port),
    ]);
    for (port, path, is_tls) in [
        (plain.port, "/api/one", false),
        (tls.port, "/api/two", true),
    ] {
        let recs = agent.wait_records(2, WAIT, |r| served_on(r, port) && r.path == path);
        assert_eq!(recs.len(), 2, "{path}: {recs:#?}");
        for role in [Role::Client, Role::Server] {
            let r = by_role(&recs, role);
            assert_eq!(r.len(), 1, "{role:?} {path}: {recs:#?}");
            let r = r[0];
            assert_eq!(r.protocol.as_str(), "http/2", "{r:?}");
            assert_eq!(r.method, "GET", "{r:?}");
            assert_eq!(r.status, 200, "{r:?}");
            assert_eq!(r.tls, is_tls, "{r:?}");
            assert_eq!(
                r.host.as_deref().unwrap_or(""),
                format!("127.0.0.1:{port}"),
                "{r:?}"
            );
            assert_eq!(
                r.response_content_type.as_deref().unwrap_or(""),
                "application/json",
                "{r:?}"
            );
        }
    }

    // Load: every request h2load completed is exactly one call on each side.
    let n: u32 = 20_000;
    for (url, port) in [
        (format!("http://127.0.0.1:{}/load", plain.port), plain.port),
        (format!("https://127.0.0.1:{}/load", tls.port), tls.port),
    ] {
        let done = h2load(&url, n);
        let deadline = Instant::now() + WAIT;
        let count = |role: Role| {
            agent
                .records(|r| served_on(r, port) && r.path == "/load" && r.role == role)
                .len() as u64
        };
        while (count(Role::Client) < done || count(Role::Server) < done)
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(100));
        }
        std::thread::sleep(Duration::from_millis(500));
        assert_eq!(count(Role::Server), done, "{url}: nginx side");
        assert_eq!(count(Role::Client), done, "{url}: h2load side");
        let wrong = agent.records(|r| served_on(r, port) && r.path == "/load" && r.status != 200);
        assert!(
            wrong.is_empty(),
            "{url}: {:#?}",
            &wrong[..wrong.len().min(5)]
        );
    }
    assert_eq!(
        nginx_served(&plain) + nginx_served(&tls),
        2 + 2 * n as usize
    );
    assert_eq!(
        agent.metric("monitor_ringbuf_drops_total"),
        Some(0.0),
        "no drops, so the counts above are exact"
    );
}

fn nginx_served(n: &Nginx) -> usize {
    n.served()
}

#[test]
fn h2c_upgrade_from_http1() {
    let port = free_port();
    let python = workspace_root().join("target/pyenv/bin/python");
    let _server = ready_server(
        Command::new(&python)
            .arg(workspace_root().join("tests/peers/h2c_upgrade.py"))
            .arg(port.to_string()),
        "h2c upgrade server",
        port,
    );
    let agent = Agent::start();
    let out = curl(&[
        "--http2",
        &format!("http://127.0.0.1:{port}/status/201"),
        &format!("http://127.0.0.1:{port}/second"),
    ]);
    assert!(out.contains("ok /second"), "{out}");
    let recs = agent.wait_records(4, WAIT, |r| served_on(r, port));
    for role in [Role::Client, Role::Server] {
        assert_eq!(
            calls_of(&recs, role),
            vec![
                ("/second".to_string(), 200),
                ("/status/201".to_string(), 201)
            ],
            "{role:?}: {recs:#?}"
        );
    }
    // The upgraded request was sent as HTTP/1.1 but answered as stream 1 of HTTP/2.
    for r in &recs {
        assert_eq!(r.protocol.as_str(), "http/2", "{r:?}");
        assert_eq!(r.method, "GET", "{r:?}");
    }
    assert!(
        !recs.iter().any(|r| r.status == 101),
        "the 101 is not a call of its own: {recs:#?}"
    );
}

#[test]
#[allow(clippy::too_many_lines, reason = "one scenario, read top to bottom")]
fn grpc_unary_and_server_streaming_with_ok_and_error_statuses() {
    let port = free_port();
    let _server = grpc_server(GRPCPEER, port);
    let agent = Agent::start();
    let calls = GrpcCalls {
        ok: 2,
        missing: 1,
        boom: 1,
        stream: 5,
        stream_fail: 3,
        stream_fail_empty: 1,
    };
    let out = run_ok(&mut calls.client(GRPCPEER, port), "grpcpeer client");
    let summary: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let seen: Vec<(String, u64)> = summary["calls"]
        .as_array()
        .expect("calls")
        .iter()
        .map(|c| {
            let method = c["method"].as_str().unwrap_or_default().to_string();
            (method, c["grpc_status"].as_u64().unwrap_or(u64::MAX))
        })
        .collect();
    let hello = "/demo.Greeter/SayHello".to_string();
    let count = "/demo.Greeter/CountTo".to_string();
    let want = vec![
        (hello.clone(), 0),
        (hello.clone(), 0),
        (hello.clone(), 5),
        (hello.clone(), 13),
        (count.clone(), 0),
        (count.clone(), 9),
        (count.clone(), 9),
    ];
    assert_eq!(seen, want, "what the client saw");
    let recs = agent.wait_records(14, WAIT, |r| served_on(r, port));
    for role in [Role::Client, Role::Server] {
        let mut got: Vec<(String, String, u64, u64)> = by_role(&recs, role)
            .iter()
            .map(|r| {
                assert_eq!(r.protocol.as_str(), "grpc", "{r:?}");
                assert_eq!(r.method, "POST", "{r:?}");
                assert_eq!(r.status, 200, "HTTP status beside the gRPC one: {r:?}");
                let grpc = r.grpc.clone().unwrap_or_default();
                assert_eq!(grpc.service, "demo.Greeter", "{r:?}");
                assert_eq!(r.route, r.path, "gRPC paths are routes as they are: {r:?}");
                assert_eq!(
                    r.request_content_type.as_deref().unwrap_or(""),
                    "application/grpc",
                    "{r:?}"
                );
                (
                    r.path.clone(),
                    grpc.method,
                    grpc.status.map_or(u64::MAX, u64::from),
                    r.response_body_bytes,
                )
            })
            .collect();
        got.sort();
        let mut expect: Vec<(String, String, u64)> = want
            .iter()
            .map(|(p, s)| (p.clone(), p.rsplit('/').next().unwrap().to_string(), *s))
            .collect();
        expect.sort();
        assert_eq!(
            got.iter()
                .map(|(p, m, s, _)| (p.clone(), m.clone(), *s))
                .collect::<Vec<_>>(),
            expect,
            "{role:?} side: {recs:#?}"
        );
        // Five streamed messages carry more body than an error without messages.
        let streamed = got.iter().find(|g| g.0 == count && g.2 == 0).unwrap().3;
        let empty = got.iter().find(|g| g.0 == count && g.2 == 9 && g.3 == 0);
        assert!(streamed > 5 * 5, "{got:?}");
        assert!(empty.is_some(), "trailers-only error has no body: {got:?}");
    }
    let messages: HashMap<u32, String> = by_role(&recs, Role::Server)
        .iter()
        .filter_map(|r| match &r.grpc {
            Some(Grpc {
                status: Some(s),
                message: Some(m),
                ..
            }) => Some((*s, m.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(
        messages.get(&5).map(String::as_str),
        Some("no such person"),
        "{messages:?}"
    );
    let metrics = agent.metrics();
    assert!(
        metrics.contains("rpc_grpc_status_code=\"5\"")
            && metrics.contains("rpc_grpc_status_code=\"13\""),
        "{metrics}"
    );
}

/// A client paused half-way through, waiting for a line on its stdin.
struct Paused {
    child: Child,
    out: BufReader<ChildStdout>,
}

impl Paused {
    fn start(cmd: &mut Command) -> Paused {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("paused client");
        let mut out = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        out.read_line(&mut line).expect("paused");
        assert_eq!(line.trim(), "paused");
        Paused { child, out }
    }

    fn finish(mut self) -> Value {
        writeln!(self.child.stdin.as_mut().expect("stdin"), "go").expect("resume");
        let mut line = String::new();
        self.out.read_line(&mut line).expect("summary");
        assert!(self.child.wait().expect("wait").success());
        serde_json::from_str(&line).expect("JSON")
    }
}

fn unknown_fields(r: &CallRecord) -> Vec<&'static str> {
    r.unknown.iter().map(Field::name).collect()
}

#[test]
fn connection_opened_before_the_agent_with_header_table_entries() {
    let port = free_port();
    let _server = h2_server(port);
    // The client's encoder indexes every field. Two requests before the agent exists put
    // their paths, the authority and a custom header into the client's header table; after
    // the attach, repeats of those paths are bare table references.
    let client = Paused::start(
        Command::new(workspace_root().join("target/pyenv/bin/python")).args([
            workspace_root()
                .join("tests/peers/h2_paused_client.py")
                .to_str()
                .expect("path"),
            &port.to_string(),
            "/warm/a,/warm/b,/warm/a,/fresh/c,/fresh/c,/status/418,/warm/b",
            "2",
        ]),
    );
    let agent = Agent::start();
    let summary = client.finish();
    assert_eq!(
        summary["results"].as_array().map(Vec::len),
        Some(7),
        "{summary}"
    );
    let recs = agent.wait_records(10, WAIT, |r| served_on(r, port));
    for role in [Role::Client, Role::Server] {
        let mut got: Vec<(String, u16, Vec<&str>)> = by_role(&recs, role)
            .iter()
            .map(|r| {
                assert_eq!(r.method, "GET", "{r:?}");
                assert_eq!(r.protocol.as_str(), "http/2", "{r:?}");
                (r.path.clone(), r.status, unknown_fields(r))
            })
            .collect();
        got.sort();
        // Paths sent before the attach are unknown (empty, never guessed); paths first
        // sent after it are exact, and so are their repeats, which refer to entries
        // inserted after the attach. The authority was indexed before the attach.
        let unknown_path = vec!["path", "host"];
        let known = vec!["host"];
        assert_eq!(
            got,
            vec![
                (String::new(), 200, unknown_path.clone()),
                (String::new(), 200, unknown_path.clone()),
                ("/fresh/c".to_string(), 200, known.clone()),
                ("/fresh/c".to_string(), 200, known.clone()),
                ("/status/418".to_string(), 418, known.clone()),
            ],
            "{role:?}: {recs:#?}"
        );
    }
    // Calls with an unknown path are shown but never filed under an endpoint.
    assert_eq!(
        agent.metric("monitor_calls_incomplete_total"),
        Some(4.0),
        "{recs:#?}"
    );
    let inventory: InventoryAnswer = agent.api("/api/v1/inventory");
    let routes: Vec<&str> = inventory
        .endpoints
        .iter()
        .map(|e| e.route.as_str())
        .collect();
    assert!(routes.contains(&"/fresh/c"), "{routes:?}");
    assert!(
        !routes.contains(&""),
        "no endpoint for unknown paths: {routes:?}"
    );
}

/// Responses far larger than the 4 KiB the kernel copies per syscall, many at once on one
/// connection, in both directions: frames of other streams are lost with the cut bytes, so
/// calls may be missing or carry unknown fields, but no call is ever reported with a wrong
/// path or status.
#[test]
fn large_concurrent_bodies_lose_detail_never_truth() {
    let port = free_port();
    let _server = h2_server(port);
    let agent = Agent::start();
    let paths = "/bytes/100000,/bytes/300000,/status/201";
    let summary = h2_client(
        port,
        &[
            "--paths",
            paths,
            "--count",
            "90",
            "--concurrency",
            "10",
            "--method",
            "POST",
            "--body-bytes",
            "20000",
        ],
    );
    assert_eq!(summary["completed"], 90, "{summary}");
    // Wait for the server side's records to settle.
    let recs = agent.wait_records(180, Duration::from_secs(5), |r| served_on(r, port));
    assert!(!recs.is_empty(), "some calls must be reported");
    let mut per_path: HashMap<String, usize> = HashMap::new();
    for r in &recs {
        let unknown = unknown_fields(r);
        let path = r.path.as_str();
        if unknown.contains(&"path") {
            assert_eq!(path, "", "{r:?}");
            continue;
        }
        let want = match path {
            "/bytes/100000" | "/bytes/300000" => 200,
            "/status/201" => 201,
            other => panic!("a path that was never sent: {other}: {r:?}"),
        };
        if unknown.contains(&"status") {
            assert_eq!(r.status, 0, "{r:?}");
        } else {
            assert_eq!(r.status, want, "a wrong status: {r:?}");
        }
        *per_path
            .entry(format!("{} {path}", r.role.as_str()))
            .or_default() += 1;
    }
    for (k, n) in &per_path {
        assert!(*n <= 30, "{k}: more calls than requests: {per_path:?}");
    }
    eprintln!("reported per role and path (30 requests each): {per_path:?}");
}
