//! The agent under test, run as a child process with JSON output.

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpStream},
    path::PathBuf,
    process::{Child, Command, ExitStatus, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use monitor_agent::{
    api::response::{ErrorAnswer, InventoryAnswer},
    inventory::view::EndpointView,
    record::{CallRecord, Peer, Role},
};
use serde::de::DeserializeOwned;

use crate::{free_port, require_root, workspace_root, TempDir};

pub struct Agent {
    child: Option<Child>,
    records: Arc<Mutex<Vec<CallRecord>>>,
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
        let api: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
        Agent::start_on(api, extra)
    }

    /// [`Agent::start_with`] listening on `api`.
    pub fn start_on(api: SocketAddr, extra: &[&str]) -> Agent {
        let mut agent = Agent::spawn(api, extra);
        agent.wait_healthy();
        agent
    }

    /// Starts the agent on `api` without waiting for it.
    pub fn spawn(api: SocketAddr, extra: &[&str]) -> Agent {
        require_root();
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
                match serde_json::from_str::<CallRecord>(&line) {
                    Ok(v) => sink.lock().expect("records").push(v),
                    Err(e) => {
                        panic!("agent printed a line that is not a call record ({e}): {line}")
                    }
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
        Agent {
            child: Some(child),
            records,
            stderr,
            api,
            _data: data,
        }
    }

    /// Waits until the agent serves `/healthz` (30 s at most), which it does only once
    /// every program is attached.
    pub fn wait_healthy(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok((200, _)) = http_get(self.api, "/healthz") {
                return;
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("agent exited during start ({status}): {}", self.stderr());
            }
            assert!(
                Instant::now() < deadline,
                "agent not healthy within 30 s: {}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends SIGKILL and returns at once: the process may take seconds to be gone.
    pub fn kill_now(mut self) -> Exiting {
        let child = self.child.take().expect("running agent");
        // SAFETY: signalling our own child by PID.
        unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
        Exiting(child)
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Every record so far that `pred` accepts.
    pub fn records(&self, pred: impl Fn(&CallRecord) -> bool) -> Vec<CallRecord> {
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
        pred: impl Fn(&CallRecord) -> bool,
    ) -> Vec<CallRecord> {
        let deadline = Instant::now() + timeout;
        while self.records(&pred).len() < n && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_millis(700));
        self.records(&pred)
    }

    /// GET on the query API: (status, body).
    pub fn api_raw(&self, path: &str, token: Option<&str>) -> (u16, String) {
        http_get_with(self.api, path, token)
            .unwrap_or_else(|e| panic!("GET {path} on the agent failed: {e}"))
    }

    /// GET on the query API, which must answer 200 with a `T`.
    pub fn api<T: DeserializeOwned>(&self, path: &str) -> T {
        self.api_with(path, None)
    }

    pub fn api_with<T: DeserializeOwned>(&self, path: &str, token: Option<&str>) -> T {
        let (status, body) = self.api_raw(path, token);
        assert_eq!(status, 200, "GET {path}: {body}");
        serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("GET {path}: not the expected answer ({e}): {body}"))
    }

    /// GET on the query API, which must refuse: (status, the error's sentence).
    pub fn api_error(&self, path: &str, token: Option<&str>) -> (u16, String) {
        let (status, body) = self.api_raw(path, token);
        assert_ne!(status, 200, "GET {path} should have failed: {body}");
        let e: ErrorAnswer = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("GET {path}: not an error answer ({e}): {body}"));
        (status, e.error)
    }

    /// Polls `/api/v1/inventory?QUERY` until `done` accepts the endpoint list (or 20 s pass)
    /// and returns the last list.
    pub fn wait_inventory(
        &self,
        query: &str,
        done: impl Fn(&[EndpointView]) -> bool,
    ) -> Vec<EndpointView> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let inv: InventoryAnswer = self.api(&format!("/api/v1/inventory?{query}"));
            if done(&inv.endpoints) || Instant::now() > deadline {
                return inv.endpoints;
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
    pub fn stop_with(self, signal: i32) -> ExitStatus {
        self.stop_with_log(signal).0
    }

    /// As `stop_with`, also returning all the agent logged.
    pub fn stop_with_log(mut self, signal: i32) -> (ExitStatus, String) {
        let status = self.wait_exit(signal);
        // The log reader drains the closed pipe shortly after the exit.
        std::thread::sleep(Duration::from_millis(300));
        (status, self.stderr())
    }

    fn wait_exit(&mut self, signal: i32) -> ExitStatus {
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

/// A killed agent on its way out; dropping it waits for the process to be gone.
pub struct Exiting(pub Child);

impl Exiting {
    /// Whether it has not exited yet.
    pub fn still_exiting(&mut self) -> bool {
        matches!(self.0.try_wait(), Ok(None))
    }
}

impl Drop for Exiting {
    fn drop(&mut self) {
        let _ = self.0.wait();
    }
}

/// How long a test waits for the records its traffic causes: far above the agent's
/// ~10 ms from last byte to record, short enough that a missing call fails quickly.
pub const RECORD_WAIT: Duration = Duration::from_secs(10);

/// The records of one observed side.
pub fn by_role(records: &[CallRecord], role: Role) -> Vec<&CallRecord> {
    records.iter().filter(|r| r.role == role).collect()
}

/// The process name of a peer whose process was observed, else "".
pub fn comm(p: &Peer) -> &str {
    p.comm.as_deref().unwrap_or("")
}

/// The service a peer was named as, else "".
pub fn service(p: &Peer) -> &str {
    p.service.as_deref().unwrap_or("")
}

/// Is `r` a record of a call served on `port`?
pub fn served_on(r: &CallRecord, port: u16) -> bool {
    r.server.port == port
}
