//! End-to-end: service-to-service policy on real traffic. Four services (frontend, orders,
//! payments, admin), each its own process on its own port, called by real HTTP clients
//! (curl, under each caller's own process name) with JWTs minted by the test.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::Command,
    sync::Arc,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use monitor_agent::{
    api::response::{PolicyAnswer, ViolationsAnswer},
    policy::Reason,
    violations::ViolationRecord,
};
use monitor_tests::{
    agent::{agent_bin, run_cli},
    free_port,
    peers::{peer_script, run_ok, Proc},
    wait_listening, Agent, TempDir,
};

const POLICY: &str = r#"
default: deny
allow:
  - from: [frontend]
    to: [orders]
    methods: [GET, POST]
    routes: ["/api/orders", "/api/orders/{id}"]
  - from: [orders]
    to: [payments]
    methods: [POST]
    routes: ["/api/payments"]
endpoints:
  - service: payments
    routes: ["/api/payments"]
    require:
      credentials: true
      issuers: ["https://auth.test"]
      audiences: ["payments"]
      scopes: ["payments:write"]
"#;

/// The services, their ports, and curl copies that run under the callers' names.
struct Mesh {
    _servers: Vec<Proc>,
    orders: u16,
    payments: u16,
    admin: u16,
    bin: TempDir,
}

impl Mesh {
    fn start() -> Mesh {
        let (orders, payments, admin) = (free_port(), free_port(), free_port());
        let servers = [("orders", orders), ("payments", payments), ("admin", admin)]
            .into_iter()
            .map(|(name, port)| {
                let p = Proc::spawn(
                    Command::new("python3")
                        .arg(peer_script("svc.py"))
                        .arg(name)
                        .arg(port.to_string()),
                    name,
                );
                wait_listening(([127, 0, 0, 1], port).into(), name);
                p
            })
            .collect();
        let bin = TempDir::new("callers");
        let curl = String::from_utf8(
            run_ok(
                Command::new("sh").args(["-c", "command -v curl"]),
                "which curl",
            )
            .stdout,
        )
        .unwrap();
        for name in ["frontend", "ordersvc"] {
            std::fs::copy(curl.trim(), bin.0.join(name)).expect("copying curl");
        }
        Mesh {
            _servers: servers,
            orders,
            payments,
            admin,
            bin,
        }
    }

    /// `monitor-agent run` arguments naming every service.
    fn rules(&self) -> Vec<String> {
        [
            "frontend=comm:frontend".to_string(),
            "orders=comm:ordersvc".to_string(),
            format!("orders=port:{}", self.orders),
            format!("payments=port:{}", self.payments),
            format!("admin=port:{}", self.admin),
        ]
        .into_iter()
        .flat_map(|r| ["--service".to_string(), r])
        .collect()
    }

    /// One call from `caller` (a curl copy, or plain curl for "curl").
    fn call(&self, caller: &str, method: &str, port: u16, path: &str, token: Option<&str>) {
        let exe: PathBuf = if caller == "curl" {
            "curl".into()
        } else {
            self.bin.0.join(caller)
        };
        let mut cmd = Command::new(exe);
        cmd.args(["-sS", "--max-time", "10", "-o", "/dev/null", "-X", method]);
        if let Some(t) = token {
            cmd.arg("-H").arg(format!("Authorization: Bearer {t}"));
        }
        if method == "POST" {
            cmd.args(["-H", "Content-Type: application/json", "-d", "{}"]);
        }
        cmd.arg(format!("http://127.0.0.1:{port}{path}"));
        run_ok(&mut cmd, caller);
    }

    /// Traffic the policy allows.
    fn clean_traffic(&self) {
        let good = jwt("https://auth.test", "payments", "payments:write", 3600);
        self.call("frontend", "GET", self.orders, "/api/orders", None);
        self.call("frontend", "GET", self.orders, "/api/orders/42", None);
        self.call("frontend", "POST", self.orders, "/api/orders", None);
        self.call(
            "ordersvc",
            "POST",
            self.payments,
            "/api/payments",
            Some(&good),
        );
    }
}

fn b64url(bytes: &[u8]) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// An unsigned-in-spirit JWT (the agent decodes, never verifies): `exp` is now + `ttl_secs`.
fn jwt(iss: &str, aud: &str, scope: &str, ttl_secs: i64) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let header = b64url(br#"{"alg":"RS256","typ":"JWT"}"#);
    let payload = serde_json::json!({"iss": iss, "sub": "svc-orders", "aud": aud, "scope": scope, "exp": now + ttl_secs});
    format!(
        "{header}.{}.{}",
        b64url(payload.to_string().as_bytes()),
        b64url(b"not-a-real-signature")
    )
}

/// Violations the agent reports for the services of this test, after the pairing window.
fn violations(agent: &Agent, at_least: usize) -> Vec<Arc<ViolationRecord>> {
    let ours = || {
        let answer: ViolationsAnswer = agent.api("/api/v1/violations?limit=1000");
        answer
            .violations
            .into_iter()
            .filter(|v| ["orders", "payments", "admin"].contains(&v.server_service.as_str()))
            .collect::<Vec<_>>()
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if ours().len() >= at_least || Instant::now() > deadline {
            // A late duplicate would show up within the pairing window.
            std::thread::sleep(Duration::from_millis(2500));
            return ours();
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn summary(list: &[Arc<ViolationRecord>]) -> BTreeSet<(String, String, String, String, Reason)> {
    list.iter()
        .map(|v| {
            (
                v.client_service.clone(),
                v.server_service.clone(),
                v.method.clone(),
                v.path.clone(),
                v.reason,
            )
        })
        .collect()
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
#[allow(clippy::too_many_lines, reason = "one scenario, read top to bottom")]
fn each_kind_of_unauthorized_call_is_one_violation() {
    let mesh = Mesh::start();
    let dir = TempDir::new("policy");
    let policy = write(&dir.0, "policy.yaml", POLICY);
    let mut args = mesh.rules();
    args.extend(["--policy".to_string(), policy.display().to_string()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let agent = Agent::start_with(&args);

    mesh.clean_traffic();
    let clean = violations(&agent, 0);
    assert!(clean.is_empty(), "allowed traffic was flagged: {clean:#?}");

    let (o, p, a) = (mesh.orders, mesh.payments, mesh.admin);
    mesh.call("frontend", "GET", a, "/api/admin/users", None);
    mesh.call("frontend", "DELETE", o, "/api/orders/42", None);
    mesh.call("frontend", "GET", o, "/api/orders/42/internal", None);
    mesh.call("curl", "GET", o, "/api/orders", None);
    mesh.call("ordersvc", "POST", p, "/api/payments", None);
    mesh.call(
        "ordersvc",
        "POST",
        p,
        "/api/payments",
        Some(&jwt("https://auth.test", "billing", "payments:write", 3600)),
    );
    mesh.call(
        "ordersvc",
        "POST",
        p,
        "/api/payments",
        Some(&jwt(
            "https://evil.test",
            "payments",
            "payments:write",
            3600,
        )),
    );
    mesh.call(
        "ordersvc",
        "POST",
        p,
        "/api/payments",
        Some(&jwt("https://auth.test", "payments", "payments:read", 3600)),
    );
    mesh.call(
        "ordersvc",
        "POST",
        p,
        "/api/payments",
        Some(&jwt("https://auth.test", "payments", "payments:write", -60)),
    );

    let got = violations(&agent, 9);
    let want: BTreeSet<(String, String, String, String, Reason)> = [
        (
            "frontend",
            "admin",
            "GET",
            "/api/admin/users",
            Reason::EdgeNotAllowed,
        ),
        (
            "frontend",
            "orders",
            "DELETE",
            "/api/orders/42",
            Reason::MethodNotAllowed,
        ),
        (
            "frontend",
            "orders",
            "GET",
            "/api/orders/42/internal",
            Reason::RouteNotAllowed,
        ),
        (
            "curl",
            "orders",
            "GET",
            "/api/orders",
            Reason::UnknownCaller,
        ),
        (
            "orders",
            "payments",
            "POST",
            "/api/payments",
            Reason::MissingCredentials,
        ),
        (
            "orders",
            "payments",
            "POST",
            "/api/payments",
            Reason::AudienceNotAllowed,
        ),
        (
            "orders",
            "payments",
            "POST",
            "/api/payments",
            Reason::IssuerNotAllowed,
        ),
        (
            "orders",
            "payments",
            "POST",
            "/api/payments",
            Reason::ScopeMissing,
        ),
        (
            "orders",
            "payments",
            "POST",
            "/api/payments",
            Reason::TokenExpired,
        ),
    ]
    .into_iter()
    .map(|(a, b, c, d, e)| (a.into(), b.into(), c.into(), d.into(), e))
    .collect();
    assert_eq!(got.len(), 9, "one violation per bad call: {got:#?}");
    assert_eq!(summary(&got), want);
    for v in &got {
        assert!(!v.detail.is_empty(), "{v:?}");
        assert!(
            !serde_json::to_string(v)
                .unwrap()
                .contains("not-a-real-signature"),
            "a token leaked: {v:?}"
        );
    }

    // Filters, the counter, the log line, the CLI.
    let only: ViolationsAnswer =
        agent.api("/api/v1/violations?reason=token_expired&service=payments");
    assert_eq!(only.count, 1, "{only:?}");
    let (status, bad) = agent.api_error("/api/v1/violations?reason=rude", None);
    assert_eq!(status, 400, "{bad}");
    let m = agent.metric("api_policy_violations_total{client_service=\"frontend\",server_service=\"admin\",reason=\"edge_not_allowed\"}");
    assert_eq!(m, Some(1.0));
    assert!(
        agent.stderr().contains("\"reason\":\"scope_missing\""),
        "no violation log line"
    );
    let (code, table, err) = agent.cli(&["violations", "--service", "admin"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        table
            .lines()
            .any(|l| l.contains("frontend") && l.contains("edge_not_allowed")),
        "{table}"
    );
}

#[test]
fn a_suggested_policy_allows_what_was_seen_and_nothing_else() {
    let mesh = Mesh::start();
    let dir = TempDir::new("suggest");
    let rules = mesh.rules();
    let rules: Vec<&str> = rules.iter().map(String::as_str).collect();
    let data = TempDir::new("suggest-data");
    let data_dir = data.0.display().to_string();
    let mut args = rules.clone();
    args.extend(["--data-dir", &data_dir]);
    let agent = Agent::start_with(&args);
    mesh.clean_traffic();
    agent.wait_inventory("service=payments", |e| !e.is_empty());
    std::thread::sleep(Duration::from_millis(2500));
    let (code, suggested, err) = agent.cli(&["policy", "suggest"]);
    assert_eq!(code, 0, "{err}");
    for format in ["networkpolicy", "cilium", "istio"] {
        let (code, out, err) = agent.cli(&["policy", "suggest", "--format", format]);
        assert_eq!(code, 0, "{format}: {err}");
        assert!(out.contains("kind:"), "{format}: {out}");
    }
    drop(agent);
    let policy = write(&dir.0, "suggested.yaml", &suggested);
    let (code, out, err) = run_cli(&["policy", "check", policy.to_str().unwrap()]);
    assert_eq!(
        code, 0,
        "suggested policy does not load: {out}{err}\n{suggested}"
    );

    let fresh = TempDir::new("suggest-data2");
    let fresh_dir = fresh.0.display().to_string();
    let policy_arg = policy.display().to_string();
    let mut args = rules.clone();
    args.extend(["--policy", &policy_arg, "--data-dir", &fresh_dir]);
    let agent = Agent::start_with(&args);
    mesh.clean_traffic();
    let replay = violations(&agent, 0);
    assert!(
        replay.is_empty(),
        "replayed traffic flagged by its own suggested policy: {replay:#?}\n{suggested}"
    );
    // One new edge: exactly that edge is flagged.
    mesh.call("frontend", "GET", mesh.payments, "/api/payments", None);
    let got = violations(&agent, 1);
    assert_eq!(got.len(), 1, "{got:#?}");
    assert_eq!(got[0].client_service, "frontend");
    assert_eq!(got[0].server_service, "payments");
    assert_eq!(got[0].reason, Reason::EdgeNotAllowed);
}

#[test]
fn an_invalid_policy_is_refused_and_the_previous_one_stays() {
    let mesh = Mesh::start();
    let dir = TempDir::new("badpolicy");
    let policy = write(&dir.0, "policy.yaml", POLICY);
    let broken = "default: deny\nallow:\n  - from: [frontend]\n    to: [orders]\n    methods: [GET]\n    routes: [\"no-slash\"]\n";

    // At start: a clear error naming file and line, and no agent.
    let bad = write(&dir.0, "bad.yaml", broken);
    let out = Command::new(agent_bin())
        .args([
            "run",
            "--listen",
            &format!("127.0.0.1:{}", free_port()),
            "--policy",
        ])
        .arg(&bad)
        .arg("--data-dir")
        .arg(dir.0.join("data"))
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.yaml") && err.contains("line 6"), "{err}");

    // While running: the new file is refused, the previous policy keeps working.
    let mut args = mesh.rules();
    args.extend(["--policy".to_string(), policy.display().to_string()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let agent = Agent::start_with(&args);
    std::fs::write(&policy, broken).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let st: PolicyAnswer = agent.api("/api/v1/policy");
        if let Some(error) = &st.error {
            assert!(st.loaded, "{st:?}");
            assert!(error.contains("line 6"), "{st:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the broken policy was not reported: {st:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    mesh.call("frontend", "GET", mesh.admin, "/api/admin", None);
    let got = violations(&agent, 1);
    assert_eq!(
        got.len(),
        1,
        "the previous policy is no longer enforced: {got:#?}"
    );
    assert_eq!(got[0].reason, Reason::EdgeNotAllowed);
    assert!(
        agent
            .metric("monitor_policy_load_errors_total")
            .unwrap_or(0.0)
            >= 1.0
    );
}
