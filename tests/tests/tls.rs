//! End-to-end: TLS plaintext at the OpenSSL boundary, real agent, real peers on loopback.

use std::{
    net::SocketAddr,
    process::{Command, Stdio},
    time::Duration,
};

use monitor_agent::record::{CallRecord, Role};
use monitor_tests::{
    agent::{comm, served_on, RECORD_WAIT},
    free_port,
    peers::{curl, peer_script, run_ok, self_signed_cert, Nginx, NginxOptions, Proc},
    wait_listening, Agent, TempDir,
};

/// Method, path, status of every record of `role`, in order.
fn calls(records: &[CallRecord], role: Role) -> Vec<(String, String, u16)> {
    records
        .iter()
        .filter(|r| r.role == role)
        .map(|r| (r.method.to_string(), r.path.clone(), r.status))
        .collect()
}

fn expect(paths: &[&str], status: u16) -> Vec<(String, String, u16)> {
    paths
        .iter()
        .map(|p| ("GET".to_string(), p.to_string(), status))
        .collect()
}

/// (probes, single-stepped) from the agent's log line for the file whose name contains
/// `file` (`... probes attached to FILE (..., N probes, M single-stepped)`).
fn placement(stderr: &str, file: &str) -> (usize, usize) {
    let line = stderr
        .lines()
        .find(|l| l.contains("probes attached to") && l.contains(file))
        .unwrap_or_else(|| panic!("no probes attached to {file}: {stderr}"));
    let numbers: Vec<usize> = line
        .rsplit('(')
        .next()
        .unwrap_or("")
        .split([',', ' ', ')'])
        .filter_map(|w| w.parse().ok())
        .collect();
    match numbers[..] {
        [.., probes, stepped] => (probes, stepped),
        _ => panic!("no counts in {line}"),
    }
}

/// Every record on the port is TLS plaintext: nothing was parsed from ciphertext.
fn assert_all_tls(records: &[CallRecord]) {
    for r in records {
        assert!(r.tls, "record not marked TLS: {r:?}");
    }
}

#[test]
fn curl_to_nginx_over_tls_on_one_connection() {
    let port = free_port();
    let _nginx = Nginx::start_with(
        port,
        NginxOptions {
            tls: true,
            ..Default::default()
        },
    );
    let agent = Agent::start();
    let urls: Vec<String> = ["/s1", "/s2?q=1", "/s3"]
        .iter()
        .map(|p| format!("https://127.0.0.1:{port}{p}"))
        .collect();
    let mut args = vec!["-k"];
    args.extend(urls.iter().map(String::as_str));
    curl(&args);
    let recs = agent.wait_records(6, RECORD_WAIT, |r| served_on(r, port));
    let want = expect(&["/s1", "/s2?q=1", "/s3"], 200);
    assert_eq!(calls(&recs, Role::Client), want, "client side: {recs:#?}");
    assert_eq!(calls(&recs, Role::Server), want, "server side: {recs:#?}");
    assert_all_tls(&recs);
    let client_ports: std::collections::HashSet<u16> = recs.iter().map(|r| r.client.port).collect();
    assert_eq!(
        client_ports.len(),
        1,
        "one connection carried all three: {recs:#?}"
    );
    assert!(recs.iter().any(|r| comm(&r.server) == "nginx"), "{recs:#?}");
    // Debian's OpenSSL 3: SSL_read/SSL_write start with `sub`, so the probes sit on the
    // internal functions' `push` (and SSL_free's first branch): none single-stepped.
    assert_eq!(placement(&agent.stderr(), "libssl.so"), (5, 0));
}

#[test]
fn python_urllib_to_python_https_server() {
    let port = free_port();
    let dir = TempDir::new("pytls");
    let (cert, key) = self_signed_cert(&dir.0);
    let _server = Proc::spawn(
        Command::new("python3")
            .arg(peer_script("server.py"))
            .args([&port.to_string(), "127.0.0.1"])
            .arg(&cert)
            .arg(&key)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit()),
        "server.py (TLS)",
    );
    wait_listening(SocketAddr::from(([127, 0, 0, 1], port)), "server.py (TLS)");
    let agent = Agent::start();
    let out = run_ok(
        Command::new("python3")
            .arg(peer_script("tls_client.py"))
            .arg(&cert)
            .arg(format!("https://127.0.0.1:{port}/py/1"))
            .arg(format!("https://127.0.0.1:{port}/py/2")),
        "tls_client.py",
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "200\n200\n");
    let recs = agent.wait_records(4, RECORD_WAIT, |r| served_on(r, port));
    let want = expect(&["/py/1", "/py/2"], 200);
    // urllib opens one connection per request, and records of different connections may
    // come out in either order.
    let sorted = |mut v: Vec<(String, String, u16)>| {
        v.sort();
        v
    };
    assert_eq!(
        sorted(calls(&recs, Role::Client)),
        want,
        "client side: {recs:#?}"
    );
    assert_eq!(
        sorted(calls(&recs, Role::Server)),
        want,
        "server side: {recs:#?}"
    );
    assert_all_tls(&recs);
}

/// A server whose OpenSSL is a file no running process had mapped, started after the
/// agent: only the exec event can lead the agent to it.
#[test]
fn tls_server_started_after_the_agent_with_its_own_libssl() {
    let agent = Agent::start();
    let libdir = TempDir::new("libssl");
    let system = [
        "/usr/lib/x86_64-linux-gnu/libssl.so.3",
        "/lib/x86_64-linux-gnu/libssl.so.3",
    ]
    .into_iter()
    .find(|p| std::path::Path::new(p).exists())
    .expect("the system's libssl.so.3");
    std::fs::copy(system, libdir.0.join("libssl.so.3")).expect("copy libssl");
    let port = free_port();
    let nginx = Nginx::start_with(
        port,
        NginxOptions {
            tls: true,
            env: vec![("LD_LIBRARY_PATH".into(), libdir.0.display().to_string())],
            ..Default::default()
        },
    );
    let maps =
        std::fs::read_to_string(format!("/proc/{}/maps", nginx.proc.pid())).unwrap_or_default();
    assert!(
        maps.contains(&*libdir.0.to_string_lossy()),
        "nginx did not load the copied libssl"
    );
    // The agent promises to attach within one second of the exec.
    std::thread::sleep(Duration::from_millis(1200));
    curl(&["-k", &format!("https://127.0.0.1:{port}/late")]);
    let recs = agent.wait_records(2, RECORD_WAIT, |r| served_on(r, port));
    assert_eq!(
        calls(&recs, Role::Server),
        expect(&["/late"], 200),
        "{recs:#?}\n{}",
        agent.stderr()
    );
    assert_eq!(
        calls(&recs, Role::Client),
        expect(&["/late"], 200),
        "{recs:#?}"
    );
    assert_all_tls(&recs);
    assert!(
        agent.stderr().contains(&*libdir.0.to_string_lossy()),
        "attach not logged: {}",
        agent.stderr()
    );
}

/// Node.js carries OpenSSL inside its executable and feeds it through memory BIOs: no
/// syscall happens inside SSL_read/SSL_write, so the agent ties each `SSL*` to the socket
/// the same thread reads or writes around the call.
#[test]
fn node_https_client_and_server() {
    let port = free_port();
    let dir = TempDir::new("nodetls");
    let (cert, key) = self_signed_cert(&dir.0);
    let script = peer_script("node_tls.js");
    let _server = Proc::spawn(
        Command::new("node")
            .arg(&script)
            .args(["server", &port.to_string()])
            .arg(&cert)
            .arg(&key)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit()),
        "node_tls.js server",
    );
    wait_listening(
        SocketAddr::from(([127, 0, 0, 1], port)),
        "node_tls.js server",
    );
    let agent = Agent::start();
    let out = run_ok(
        Command::new("node")
            .arg(&script)
            .args(["client", &port.to_string(), "/n/1", "/n/2?x=y"]),
        "node_tls.js client",
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "200\n200\n");
    let recs = agent.wait_records(4, RECORD_WAIT, |r| served_on(r, port));
    let want = expect(&["/n/1", "/n/2?x=y"], 200);
    assert_eq!(calls(&recs, Role::Client), want, "client side: {recs:#?}");
    assert_eq!(calls(&recs, Role::Server), want, "server side: {recs:#?}");
    assert_all_tls(&recs);
    assert!(
        recs.iter()
            .all(|r| comm(&r.server) == "node" || comm(&r.client) == "node"),
        "{recs:#?}"
    );
    // Node's OpenSSL functions start with `push %rbp`: probed at their entries, emulated.
    assert_eq!(placement(&agent.stderr(), "node"), (9, 0));
}

/// Builds the Go peer (`tests/peers/gotls`) with Debian's Go, optionally stripped of its
/// symbol table, into `dir`. The build cache lives under `target/` so reruns are fast.
fn build_go_peer(dir: &std::path::Path, stripped: bool) -> std::path::PathBuf {
    let root = monitor_tests::workspace_root();
    let out = dir.join(if stripped { "gotls-stripped" } else { "gotls" });
    let mut cmd = Command::new("go");
    cmd.current_dir(root.join("tests/peers/gotls"))
        .env("GOCACHE", root.join("target/go-cache"))
        .env("GOPATH", root.join("target/go-path"))
        .env("GOFLAGS", "-mod=mod")
        .env("GOTOOLCHAIN", "local")
        .env("CGO_ENABLED", "0")
        .arg("build");
    if stripped {
        cmd.arg("-ldflags=-s -w");
    }
    run_ok(cmd.arg("-o").arg(&out).arg("."), "go build");
    out
}

/// Go's crypto/tls: probes at the entry and every RET of `(*tls.Conn).Write`/`Read`. The
/// server runs before the agent (found by the /proc scan); the client starts after it and
/// waits a second before its first request (found through its exec event).
fn go_client_and_server(stripped: bool) {
    let dir = TempDir::new("gotls");
    let bin = build_go_peer(&dir.0, stripped);
    let (cert, key) = self_signed_cert(&dir.0);
    let port = free_port();
    let _server = Proc::spawn(
        Command::new(&bin)
            .args(["server", &port.to_string()])
            .arg(&cert)
            .arg(&key)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit()),
        "gotls server",
    );
    wait_listening(SocketAddr::from(([127, 0, 0, 1], port)), "gotls server");
    let agent = Agent::start();
    let out = run_ok(
        Command::new(&bin).args(["client", &port.to_string(), "1000", "/go/1", "/go/2?k=v"]),
        "gotls client",
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "200\n200\n");
    let recs = agent.wait_records(4, RECORD_WAIT, |r| served_on(r, port));
    let want = expect(&["/go/1", "/go/2?k=v"], 200);
    assert_eq!(
        calls(&recs, Role::Client),
        want,
        "client side: {recs:#?}\n{}",
        agent.stderr()
    );
    assert_eq!(
        calls(&recs, Role::Server),
        want,
        "server side: {recs:#?}\n{}",
        agent.stderr()
    );
    assert_all_tls(&recs);
    // Entries past the stack check (emulated); RETs of Read only, single-stepped.
    let name = bin.file_name().unwrap().to_string_lossy().to_string();
    let (probes, stepped) = placement(&agent.stderr(), &name);
    assert_eq!(probes, stepped + 2, "{}", agent.stderr());
    assert!(stepped > 0);
    let sites = run_ok(
        Command::new(monitor_tests::agent::agent_bin())
            .arg("probe-sites")
            .arg(&bin),
        "probe-sites",
    );
    let sites = String::from_utf8_lossy(&sites.stdout);
    let write: Vec<&str> = sites.lines().filter(|l| l.contains("Write")).collect();
    assert_eq!(write.len(), 1, "{sites}");
    assert!(write[0].starts_with("entry") && write[0].ends_with("\temulated"));
    let read_rets = sites.lines().filter(|l| l.starts_with("ret")).count();
    assert_eq!(read_rets, stepped, "{sites}");
}

#[test]
fn go_client_and_server_with_symbols() {
    go_client_and_server(false);
}

#[test]
fn go_client_and_server_stripped() {
    go_client_and_server(true);
}
