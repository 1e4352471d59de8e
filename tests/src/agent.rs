//! The agent under test, run as a child process with JSON output.

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpStream},
    path::PathBuf,
    process::{Child, Command, ExitStatus, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::{free_port, require_root, workspace_root, TempDir};

pub struct Agent {
    child: Option<Child>,
    records: Arc<Mutex<Vec<Value>>>,
    stderr: Arc<Mutex<String>>,
    pub api: SocketAddr,
    /// The inventory database directory, unless the test chose its own.
    _data: Option<TempDir>,
}

/// The binary built by `cargo xtask test` (or a plain cargo build as a fallback).
pub fn agent_bin() -> PathBuf {
    if let Ok(p) = std::env::var("MONITOR_AGENT_BIN") {
        return PathBuf::from(p);
    }
    for profile in ["release", "debug"] {
        let p = workspace_root()
            .join("target")
            .join(profile)
            .join("monitor-agent");
        if p.exists() {
            return p;
        }
    }
    panic!("monitor-agent binary not found: run the tests with `cargo xtask test`")
}

/// Runs the agent binary as a command-line tool; returns (exit code, stdout, stderr).
pub fn run_cli(args: &[&str]) -> (i32, String, String) {
    cli_output(Command::new(agent_bin()).args(args))
}

fn cli_output(cmd: &mut Command) -> (i32, String, String) {
    let out = cmd.output().expect("running the monitor-agent CLI");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Sends one HTTP/1.0 GET to the agent's API and returns (status, body).
pub fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    http_get_with(addr, path, None)
}

/// Like `http_get`, with a bearer token.
pub fn http_get_with(
    addr: SocketAddr,
    path: &str,
    token: Option<&str>,
) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n{auth}\r\n")?;
    let mut resp = String::new();
    s.read_to_string(&mut resp)?;
    let status = resp
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

impl Agent {
    pub fn start() -> Agent {
        Agent::start_with(&[])
    }

    /// Starts `monitor-agent run --output json` plus `extra`, and waits until it serves
    /// `/healthz`, which it does only once every program is attached. Unless `extra` sets
    /// `--data-dir`, the inventory lives in a scratch directory removed with the agent.
    pub fn start_with(extra: &[&str]) -> Agent {
        require_root();
        let api: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
        let data = (!extra.contains(&"--data-dir")).then(|| TempDir::new("agent-data"));
        let mut cmd = Command::new(agent_bin());
        cmd.args(["run", "--output", "json", "--listen", &api.to_string()]);
        if let Some(d) = &data {
            cmd.arg("--data-dir").arg(&d.0);
        }
        let mut child = cmd
            .args(extra)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting monitor-agent");
        let records = Arc::new(Mutex::new(Vec::new()));
        let stdout = child.stdout.take().expect("stdout");
        let sink = records.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                match serde_json::from_str::<Value>(&line) {
                    Ok(v) => sink.lock().expect("records").push(v),
                    Err(e) => panic!("agent printed a line that is not JSON ({e}): {line}"),
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let err_sink = stderr.clone();
        let err_pipe = child.stderr.take().expect("stderr");
        std::thread::spawn(move || {
            for line in BufReader::new(err_pipe).lines() {
                let Ok(line) = line else { break };
                err_sink.lock().expect("stderr").push_str(&(line + "\n"));
            }
        });
        let mut agent = Agent {
            child: Some(child),
            records,
            stderr,
            api,
            _data: data,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok((200, _)) = http_get(api, "/healthz") {
                break;
            }
            if let Some(status) = agent
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("agent exited during start ({status}): {}", agent.stderr());
            }
            assert!(
                Instant::now() < deadline,
                "agent not healthy within 30 s: {}",
                agent.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        agent
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Every record so far that `pred` accepts.
    pub fn records(&self, pred: impl Fn(&Value) -> bool) -> Vec<Value> {
        self.records
            .lock()
            .expect("records")
            .iter()
            .filter(|r| pred(r))
            .cloned()
            .collect()
    }

    /// Waits until at least `n` records match, then a little longer so that extra (wrong)
    /// records have a chance to show up, and returns all matching ones.
    pub fn wait_records(
        &self,
        n: usize,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        while self.records(&pred).len() < n && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_millis(700));
        self.records(&pred)
    }

    /// GET on the query API; the body parsed as JSON (Null when it is not JSON).
    pub fn api_get(&self, path: &str) -> (u16, Value) {
        self.api_get_with(path, None)
    }

    pub fn api_get_with(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        let (status, body) = http_get_with(self.api, path, token)
            .unwrap_or_else(|e| panic!("GET {path} on the agent failed: {e}"));
        (status, serde_json::from_str(&body).unwrap_or(Value::Null))
    }

    /// Polls `/api/v1/inventory?QUERY` until `done` accepts the endpoint list (or 20 s pass)
    /// and returns the last list.
    pub fn wait_inventory(&self, query: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (status, body) = self.api_get(&format!("/api/v1/inventory?{query}"));
            assert_eq!(status, 200, "inventory query failed: {body}");
            let eps = body["endpoints"].as_array().cloned().unwrap_or_default();
            if done(&eps) || Instant::now() > deadline {
                return eps;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// A query command (`inventory`, `calls`, ...) against this agent, without any token
    /// from the environment; returns (exit code, stdout, stderr).
    pub fn cli(&self, args: &[&str]) -> (i32, String, String) {
        cli_output(
            Command::new(agent_bin())
                .args(args)
                .arg("--server")
                .arg(format!("http://{}", self.api))
                .env_remove("MONITOR_API_TOKEN"),
        )
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    pub fn metrics(&self) -> String {
        http_get(self.api, "/metrics")
            .map(|(_, b)| b)
            .unwrap_or_default()
    }

    /// Value of one sample, `name` including its labels exactly as exported.
    pub fn metric(&self, name: &str) -> Option<f64> {
        self.metrics().lines().find_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            (k == name).then(|| v.parse().ok()).flatten()
        })
    }

    /// Sends `signal` and waits for the agent to exit.
    pub fn stop_with(mut self, signal: i32) -> ExitStatus {
        let mut child = self.child.take().expect("running agent");
        // SAFETY: signalling our own child by PID.
        unsafe { libc::kill(child.id() as i32, signal) };
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("agent did not exit within 15 s of signal {signal}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: signalling our own child by PID.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// How long a test waits for the records its traffic causes: far above the agent's
/// ~10 ms from last byte to record, short enough that a missing call fails quickly.
pub const RECORD_WAIT: Duration = Duration::from_secs(10);

/// The records of one observed side (`client` or `server`).
pub fn by_role<'a>(records: &'a [Value], role: &str) -> Vec<&'a Value> {
    records.iter().filter(|r| r.s("/role") == role).collect()
}

/// Helpers to read fields of a call record.
pub trait RecordExt {
    fn s(&self, pointer: &str) -> &str;
    fn n(&self, pointer: &str) -> u64;
}

impl RecordExt for Value {
    fn s(&self, pointer: &str) -> &str {
        self.pointer(pointer).and_then(Value::as_str).unwrap_or("")
    }
    fn n(&self, pointer: &str) -> u64 {
        self.pointer(pointer)
            .and_then(Value::as_u64)
            .unwrap_or(u64::MAX)
    }
}

/// Is `r` a record of a call served on `port`?
pub fn served_on(r: &Value, port: u16) -> bool {
    r.pointer("/server/port").and_then(Value::as_u64) == Some(u64::from(port))
}
