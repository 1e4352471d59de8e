//! End-to-end: the API inventory built from real traffic, classified against a declared
//! spec, persisted across a crash, and queried through the API and the CLI.

use std::{
    collections::BTreeSet,
    path::PathBuf,
    process::Command,
    time::{Duration, Instant},
};

use monitor_agent::{
    api::response::{CallsAnswer, InventoryAnswer, SpecsAnswer, UnusedAnswer},
    inventory::{view::EndpointView, SpecStatus},
};
use monitor_tests::{
    agent::{agent_bin, service},
    free_port,
    peers::{api_server, curl, peer_script, run_ok, spec_path, Proc},
    wait_listening, workspace_root, Agent, Cgroup, TempDir,
};
use serde_json::Value;

/// A JWT whose payload says iss=https://issuer.test, sub=svc-orders (signature is junk: the
/// agent never verifies, it only reports who claims to be calling).
const JWT: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpc3MiOiJodHRwczovL2lzc3Vlci50ZXN0Iiwic3ViIjoic3ZjLW9yZGVycyJ9.c2lnbmF0dXJl";

/// (method, route, spec_status, calls) of every endpoint in `eps`.
fn summary(eps: &[EndpointView]) -> BTreeSet<(String, String, SpecStatus, u64)> {
    eps.iter()
        .map(|e| (e.method.clone(), e.route.clone(), e.spec_status, e.calls))
        .collect()
}

fn total_calls(eps: &[EndpointView]) -> u64 {
    eps.iter().map(|e| e.calls).sum()
}

/// How often `key` was seen in one of an endpoint's tallies (statuses, auth...).
fn tally(counts: &std::collections::BTreeMap<String, u64>, key: &str) -> u64 {
    counts.get(key).copied().unwrap_or(0)
}

fn find<'a>(eps: &'a [EndpointView], method: &str, route: &str) -> &'a EndpointView {
    eps.iter()
        .find(|e| e.method == method && e.route == route)
        .unwrap_or_else(|| panic!("no endpoint {method} {route} in {eps:#?}"))
}

/// `openapi-spec-validator`, installed into target/pyenv by `cargo xtask setup --peers`.
fn validator() -> PathBuf {
    let p = std::env::var_os("MONITOR_OPENAPI_VALIDATOR").map_or_else(
        || workspace_root().join("target/pyenv/bin/openapi-spec-validator"),
        PathBuf::from,
    );
    assert!(
        p.exists(),
        "{} is missing: run `cargo xtask setup --peers` (it installs openapi-spec-validator from PyPI)",
        p.display()
    );
    p
}

#[test]
#[allow(clippy::too_many_lines, reason = "one scenario, read top to bottom")]
fn declared_shadow_zombie_and_unused_are_exact() {
    let port = free_port();
    let _server = api_server(port);
    let spec = spec_path();
    let agent = Agent::start_with(&[
        "--spec",
        &format!("users={}", spec.display()),
        "--service",
        &format!("users=port:{port}"),
    ]);
    let base = format!("http://127.0.0.1:{port}/api/v1");
    for _ in 0..3 {
        curl(&[&format!("{base}/users")]);
    }
    for id in ["1", "2", "9"] {
        curl(&[&format!("{base}/users/{id}")]);
    }
    for _ in 0..2 {
        curl(&[
            "-X",
            "POST",
            "-H",
            "Content-Type: application/json",
            "-H",
            &format!("Authorization: Bearer {JWT}"),
            "-d",
            r#"{"name":"edsger"}"#,
            &format!("{base}/users"),
        ]);
    }
    curl(&[&format!("{base}/admin/debug")]);
    curl(&[&format!("{base}/admin/debug?verbose=1")]);
    curl(&[
        "-H",
        "X-API-Key: k-123456",
        &format!("{base}/legacy/report?format=csv&api_key=zzz"),
    ]);
    // Another client: two calls on one keep-alive connection from Python.
    run_ok(
        Command::new("python3").arg("-c").arg(format!(
            "import http.client\nc = http.client.HTTPConnection('127.0.0.1', {port})\n\
             for _ in range(2):\n    c.request('GET', '/api/v1/users/3')\n    c.getresponse().read()\n"
        )),
        "python client",
    );

    agent.wait_inventory("service=users", |e| total_calls(e) >= 13);
    let want: BTreeSet<(String, String, SpecStatus, u64)> = [
        ("GET", "/api/v1/users", SpecStatus::Documented, 3),
        ("POST", "/api/v1/users", SpecStatus::Documented, 2),
        ("GET", "/api/v1/users/{userId}", SpecStatus::Documented, 5),
        ("GET", "/api/v1/admin/debug", SpecStatus::Shadow, 2),
        ("GET", "/api/v1/legacy/report", SpecStatus::Zombie, 1),
    ]
    .into_iter()
    .map(|(m, r, s, n)| (m.into(), r.into(), s, n))
    .collect();
    // Wait a little longer: a call counted twice would show up late.
    std::thread::sleep(Duration::from_millis(2500));
    let eps = agent.wait_inventory("service=users", |_| true);
    assert_eq!(summary(&eps), want, "inventory of users: {eps:#?}");

    let get_user = find(&eps, "GET", "/api/v1/users/{userId}");
    assert_eq!(get_user.errors_4xx, 1, "{get_user:?}");
    assert_eq!(tally(&get_user.statuses, "200"), 4, "{get_user:?}");
    assert_eq!(tally(&get_user.statuses, "404"), 1, "{get_user:?}");
    assert_eq!(get_user.operation_id.as_deref(), Some("getUser"));
    let callers: BTreeSet<(String, u64)> = get_user
        .callers
        .iter()
        .map(|c| (c.service.clone(), c.calls))
        .collect();
    assert_eq!(
        callers,
        BTreeSet::from([("curl".into(), 3), ("python3".into(), 2)]),
        "{get_user:?}"
    );
    let latency = &get_user.latency_us;
    assert!(
        latency.p50 > Some(0) && latency.p99 >= latency.p50,
        "{latency:?}"
    );
    assert_eq!(
        tally(&get_user.response_content_types, "application/json"),
        5,
        "{get_user:?}"
    );
    let create = find(&eps, "POST", "/api/v1/users");
    assert_eq!(
        tally(&create.auth, "jwt iss=https://issuer.test"),
        2,
        "{create:?}"
    );
    assert_eq!(
        tally(&create.request_content_types, "application/json"),
        2,
        "{create:?}"
    );
    assert_eq!(tally(&create.statuses, "201"), 2, "{create:?}");
    let legacy = find(&eps, "GET", "/api/v1/legacy/report");
    assert_eq!(tally(&legacy.auth, "api_key x-api-key"), 1, "{legacy:?}");
    assert_eq!(legacy.query_params, ["api_key", "format"]);
    let debug = find(&eps, "GET", "/api/v1/admin/debug");
    assert_eq!(tally(&debug.auth, "none"), 2, "{debug:?}");
    let text = serde_json::to_string(&eps).unwrap();
    for secret in ["k-123456", "zzz", "c2lnbmF0dXJl"] {
        assert!(!text.contains(secret), "inventory leaks {secret}: {text}");
    }

    // Filters.
    let shadow: InventoryAnswer = agent.api("/api/v1/inventory?service=users&spec_status=shadow");
    assert_eq!(shadow.count, 1, "{shadow:?}");
    let later: InventoryAnswer =
        agent.api("/api/v1/inventory?service=users&since=2999-01-01T00:00:00Z");
    assert_eq!(later.count, 0, "{later:?}");
    let recent: InventoryAnswer = agent.api("/api/v1/inventory?service=users&since=10m");
    assert_eq!(recent.count, 5, "{recent:?}");

    // Declared but never called.
    let unused: UnusedAnswer = agent.api("/api/v1/inventory/unused?service=users");
    let unused: BTreeSet<(String, String)> = unused
        .unused
        .iter()
        .map(|u| (u.method.clone(), u.route.clone()))
        .collect();
    assert_eq!(
        unused,
        BTreeSet::from([
            ("DELETE".into(), "/api/v1/users/{userId}".into()),
            ("GET".into(), "/api/v1/health".into()),
        ])
    );

    // Recent calls: counted once, with both sides' identities.
    let calls: CallsAnswer = agent.api("/api/v1/calls?service=users&route=/api/v1/admin/debug");
    assert_eq!(calls.calls.len(), 2, "{calls:#?}");
    for c in &calls.calls {
        assert_eq!(service(&c.client), "curl", "{c:?}");
        assert_eq!(service(&c.server), "users", "{c:?}");
        assert!(c.seen_by_both, "{c:?}");
    }

    // The CLI: one command shows every endpoint with its status.
    let (code, table, err) = agent.cli(&["inventory", "--service", "users"]);
    assert_eq!(code, 0, "{err}");
    let line = |route: &str| {
        table
            .lines()
            .find(|l| l.split_whitespace().nth(2) == Some(route))
            .unwrap_or_else(|| panic!("no {route} row in:\n{table}"))
            .to_string()
    };
    assert!(line("/api/v1/admin/debug").contains("SHADOW"), "{table}");
    assert!(line("/api/v1/legacy/report").contains("ZOMBIE"), "{table}");
    assert!(
        line("/api/v1/users/{userId}").contains("documented"),
        "{table}"
    );
    assert!(
        table.contains("5 endpoints: 3 documented, 1 shadow, 1 zombie"),
        "{table}"
    );

    // spec check fails the build when shadow or zombie endpoints exist.
    let (code, report, err) = agent.cli(&[
        "spec",
        "check",
        "--service",
        "users",
        spec.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "spec check should fail: {report}{err}");
    assert!(
        report.contains("1 shadow, 1 zombie, 2 declared but unused"),
        "{report}"
    );

    // The observed OpenAPI document validates.
    let (code, doc, err) = agent.cli(&["inventory", "--openapi", "users"]);
    assert_eq!(code, 0, "{err}");
    let parsed: Value = serde_json::from_str(&doc).expect("openapi export is JSON");
    assert_eq!(parsed["openapi"], "3.1.0");
    assert!(
        parsed
            .pointer("/paths/~1api~1v1~1users~1{userId}/get/parameters")
            .is_some(),
        "{doc}"
    );
    assert!(
        parsed
            .pointer("/paths/~1api~1v1~1users~1{userId}/get/responses/404")
            .is_some(),
        "{doc}"
    );
    let dir = TempDir::new("openapi");
    let file = dir.0.join("users.json");
    std::fs::write(&file, &doc).unwrap();
    let out = run_ok(
        Command::new(validator()).arg(&file),
        "openapi-spec-validator",
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("OK"),
        "{out:?}"
    );
}

#[test]
fn inventory_survives_kill_9() {
    let port = free_port();
    let _server = api_server(port);
    let data = TempDir::new("kill9");
    let data_dir = data.0.to_str().unwrap().to_string();
    let args = [
        "--data-dir",
        &data_dir,
        "--flush-interval-secs",
        "1",
        "--service",
        &format!("users=port:{port}"),
    ];
    let agent = Agent::start_with(&args);
    let url = format!("http://127.0.0.1:{port}/api/v1/users/1");
    for _ in 0..20 {
        curl(&[&url]);
    }
    let eps = agent.wait_inventory("service=users", |e| total_calls(e) >= 20);
    assert_eq!(total_calls(&eps), 20, "{eps:#?}");
    let first_seen = find(&eps, "GET", "/api/v1/users/{id}").first_seen.clone();
    // Two flush intervals: the 20 calls are on disk.
    std::thread::sleep(Duration::from_millis(2500));

    // Kill -9 while traffic is flowing.
    let traffic = {
        let url = url.clone();
        std::thread::spawn(move || {
            for _ in 0..30 {
                let _ = Command::new("curl")
                    .args(["-s", "--max-time", "5", &url])
                    .output();
            }
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    let status = agent.stop_with(libc::SIGKILL);
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(libc::SIGKILL)
    );
    traffic.join().unwrap();

    let agent = Agent::start_with(&args);
    let eps = agent.wait_inventory("service=users", |e| !e.is_empty());
    let restored = find(&eps, "GET", "/api/v1/users/{id}");
    let calls = restored.calls;
    assert!(
        (20..=50).contains(&calls),
        "after kill -9 the inventory should hold the 20 flushed calls and at most the 30 sent since: {calls}"
    );
    assert_eq!(
        restored.first_seen, first_seen,
        "first_seen changed across the restart"
    );
    // And it keeps counting on top of what was restored.
    curl(&[&url]);
    let eps = agent.wait_inventory("service=users", |e| total_calls(e) > calls);
    assert_eq!(total_calls(&eps), calls + 1, "{eps:#?}");
}

#[test]
#[allow(clippy::too_many_lines, reason = "one scenario, read top to bottom")]
fn bad_spec_query_and_token_get_clear_errors() {
    let dir = TempDir::new("badspec");
    let spec = dir.0.join("users.yaml");
    std::fs::write(
        &spec,
        "openapi: 3.0.3\ninfo: {title: u, version: '1'}\npaths:\n  /a: [\n",
    )
    .unwrap();
    let agent = Agent::start_with(&[
        "--spec",
        &format!("users={}", spec.display()),
        "--api-token",
        "s3cret-token",
    ]);
    let token = Some("s3cret-token");

    // The broken spec is reported with file and line; the agent runs on.
    let specs: SpecsAnswer = agent.api_with("/api/v1/specs", token);
    let err = specs.specs[0].error.as_deref().unwrap_or("");
    assert!(
        err.starts_with(&format!("{}:5:", spec.display())),
        "{specs:?}"
    );
    assert!(!specs.specs[0].loaded);
    assert!(
        agent.stderr().contains("users.yaml:5:"),
        "{}",
        agent.stderr()
    );

    // Fixed on disk: picked up without a restart.
    let good = "openapi: 3.0.3\ninfo: {title: u, version: '1'}\npaths:\n  /a:\n    get: {responses: {'200': {description: ok}}}\n";
    std::fs::write(&spec, good).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s: SpecsAnswer = agent.api_with("/api/v1/specs", token);
        let s = &s.specs[0];
        if s.loaded && s.error.is_none() {
            assert_eq!(s.operations, 1);
            break;
        }
        assert!(Instant::now() < deadline, "fixed spec not reloaded: {s:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    // Broken again and reloaded by SIGHUP: the previous version stays in force.
    std::fs::write(&spec, "openapi: 3.0.3\npaths: 7\n").unwrap();
    // SAFETY: signalling our own child by PID.
    unsafe { libc::kill(agent.pid() as i32, libc::SIGHUP) };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s: SpecsAnswer = agent.api_with("/api/v1/specs", token);
        let s = &s.specs[0];
        if let Some(error) = &s.error {
            assert!(s.loaded, "{s:?}");
            assert_eq!(s.operations, 1, "{s:?}");
            assert!(error.contains("/paths"), "{s:?}");
            break;
        }
        assert!(Instant::now() < deadline, "broken spec not reported: {s:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        agent
            .metric("monitor_spec_load_errors_total")
            .unwrap_or(0.0)
            >= 2.0
    );

    // Bad query parameters: 400 with a JSON error naming the problem.
    for (path, needle) in [
        (
            "/api/v1/inventory?bogus=1",
            "unknown query parameter \"bogus\"",
        ),
        (
            "/api/v1/inventory?spec_status=maybe",
            "documented, shadow, zombie",
        ),
        ("/api/v1/inventory?since=yesterday", "RFC 3339"),
        ("/api/v1/calls?limit=-3", "limit"),
        ("/api/v1/openapi", "service parameter is required"),
        ("/api/v1/inventory?service=a&service=b", "given twice"),
    ] {
        let (status, error) = agent.api_error(path, token);
        assert_eq!(status, 400, "{path}: {error}");
        assert!(error.contains(needle), "{path}: {error}");
    }
    let (status, error) = agent.api_error("/api/v1/openapi?service=nobody", token);
    assert_eq!(status, 404, "{error}");

    // Wrong or missing token: 401, while /metrics and /healthz stay open.
    let (status, error) = agent.api_error("/api/v1/inventory", Some("wrong"));
    assert_eq!(status, 401, "{error}");
    assert_eq!(error, "wrong API token");
    let (status, _) = agent.api_error("/api/v1/inventory", None);
    assert_eq!(status, 401);
    assert!(agent.metric("monitor_inventory_endpoints").is_some());
    let (code, _, err) = agent.cli(&["inventory", "--token", "wrong"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("401") && err.contains("wrong API token"),
        "{err}"
    );
    let (code, _, err) = agent.cli(&["inventory", "--token", "s3cret-token"]);
    assert_eq!(code, 0, "{err}");

    // A spec check with a broken file fails as an error, not as findings.
    let (code, _, err) = agent.cli(&[
        "spec",
        "check",
        "--service",
        "users",
        spec.to_str().unwrap(),
        "--token",
        "s3cret-token",
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("users.yaml"), "{err}");

    // Still healthy after all of it.
    let (status, _) = monitor_tests::agent::http_get(agent.api, "/healthz").unwrap();
    assert_eq!(status, 200);
}

#[test]
fn services_are_named_by_rule_container_or_process() {
    let ports: Vec<u16> = (0..4).map(|_| free_port()).collect();
    let container_id = format!("c0ffee{:058x}", u64::from(std::process::id()));
    let cg_container = Cgroup::new(&format!("monitor-test-{container_id}.scope"));
    let cg_special = Cgroup::new(&format!("monitor-test-special-{}", std::process::id()));
    let servers: Vec<Proc> = ports
        .iter()
        .map(|p| {
            let s = Proc::spawn(
                Command::new("python3")
                    .arg(peer_script("server.py"))
                    .arg(p.to_string()),
                "server.py",
            );
            wait_listening(([127, 0, 0, 1], *p).into(), "server.py");
            s
        })
        .collect();
    cg_container.adopt(servers[0].pid());
    cg_special.adopt(servers[1].pid());
    let curl_exe = std::fs::canonicalize(
        String::from_utf8(
            run_ok(
                Command::new("sh").args(["-c", "command -v curl"]),
                "which curl",
            )
            .stdout,
        )
        .unwrap()
        .trim(),
    )
    .unwrap();
    // Two rules from a config file, one from the command line.
    let conf_dir = TempDir::new("identity-config");
    let conf = conf_dir.0.join("monitor.yaml");
    std::fs::write(
        &conf,
        format!(
            "services:\n  - bycgroup=cgroup:monitor-test-special\n  - fetcher=exe:{}\n",
            curl_exe.display()
        ),
    )
    .unwrap();
    let agent = Agent::start_with(&[
        "--service",
        &format!("byport=port:{}", ports[2]),
        "--config",
        conf.to_str().unwrap(),
    ]);
    for p in &ports {
        curl(&[&format!("http://127.0.0.1:{p}/who")]);
    }
    let short_id = &container_id[..12];
    let want = [short_id, "bycgroup", "byport", "python3"];
    let mut named = Vec::new();
    for (service, port) in want.iter().zip(&ports) {
        let eps = agent.wait_inventory(&format!("service={service}"), |e| total_calls(e) >= 1);
        let ep = eps
            .iter()
            .find(|e| e.route == "/who")
            .unwrap_or_else(|| panic!("server on {port} not named {service}: {eps:#?}"));
        assert_eq!(ep.calls, 1, "{ep:?}");
        let first_caller = ep.callers.first().map(|c| c.service.as_str());
        assert_eq!(first_caller, Some("fetcher"), "{ep:?}");
        named.push(service.to_string());
    }
    assert_eq!(named.len(), 4);
    drop(servers);
}

#[test]
fn calls_follow_streams_new_calls() {
    let port = free_port();
    let _server = api_server(port);
    let agent = Agent::start_with(&["--service", &format!("users=port:{port}")]);
    let mut follower = Command::new(agent_bin())
        .args(["calls", "--follow", "--service", "users", "--server"])
        .arg(format!("http://{}", agent.api))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("starting calls --follow");
    let stdout = follower.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // The follower is connected once it has subscribed; keep calling until lines arrive.
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut lines = Vec::new();
    let mut sent = 0;
    while lines.len() < 2 && Instant::now() < deadline {
        curl(&[&format!("http://127.0.0.1:{port}/api/v1/users/{sent}")]);
        sent += 1;
        while let Ok(l) = rx.recv_timeout(Duration::from_millis(300)) {
            lines.push(l);
        }
    }
    // SAFETY: signalling our own child by PID.
    unsafe { libc::kill(follower.id() as i32, libc::SIGTERM) };
    let _ = follower.wait();
    assert!(
        lines.len() >= 2,
        "calls --follow printed {lines:?} after {sent} calls"
    );
    for l in &lines {
        assert!(l.contains("curl -> users GET /api/v1/users/"), "{l}");
    }
}
