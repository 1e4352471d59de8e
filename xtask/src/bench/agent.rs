//! The agent under measurement: started afresh for each measurement, either for real or
//! with the floor programs (`run --hooks-only`), and read through its metrics endpoint
//! and `/proc`.

use std::{
    io::Read,
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result};

use super::{free_port, wait_port, Guard};

/// What is attached to the hooks during a measurement.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Nothing: the workload alone.
    None,
    /// The same hooks with programs that return at once.
    Floor,
    /// The agent.
    Agent,
}

impl Mode {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Mode::None => "no agent",
            Mode::Floor => "empty programs",
            Mode::Agent => "agent",
        }
    }
}

/// A running agent (or floor), stopped when dropped.
pub(crate) struct Agent {
    process: Guard,
    api: u16,
    /// Its own data directory, so that no inventory from an earlier run is restored.
    data: PathBuf,
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.data);
    }
}

impl Agent {
    /// Starts `bin` and waits until its programs are attached.
    pub(crate) fn start(bin: &Path, mode: Mode) -> Result<Agent> {
        let api = free_port()?;
        let data = std::env::temp_dir().join(format!("monitor-bench-data-{api}"));
        let mut cmd = Command::new(bin);
        cmd.args([
            "run",
            "--output",
            "none",
            "--kernel-stats",
            "--listen",
            &format!("127.0.0.1:{api}"),
        ])
        .arg("--data-dir")
        .arg(&data);
        if mode == Mode::Floor {
            cmd.arg("--hooks-only");
        }
        let process = Guard(
            cmd.stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .context("starting the agent")?,
        );
        let agent = Agent { process, api, data };
        wait_port(api)?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while agent.metric("monitor_attached_programs") == 0.0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(agent)
    }

    pub(crate) fn pid(&self) -> u32 {
        self.process.0.id()
    }

    /// Sum of the samples whose name (with labels) is `name`, or starts with it when it
    /// ends in `{` or `,` (some or all label sets of one metric).
    pub(crate) fn metric(&self, name: &str) -> f64 {
        scrape(self.api)
            .lines()
            .filter_map(|l| l.rsplit_once(' '))
            .filter(|(k, _)| *k == name || (name.ends_with(['{', ',']) && k.starts_with(name)))
            .filter_map(|(_, v)| v.parse::<f64>().ok())
            .sum()
    }

    /// User and system CPU the agent has used so far.
    pub(crate) fn cpu_seconds(&self) -> Result<f64> {
        cpu_seconds(self.pid())
    }

    /// Resident memory now, whole and by kind.
    pub(crate) fn memory(&self) -> Result<Memory> {
        Memory::of(self.pid())
    }

    /// Runs of the OpenSSL probe programs (entries and returns; `SSL_free` left out).
    pub(crate) fn tls_probe_hits(&self) -> f64 {
        [
            "ssl_read",
            "ssl_read_ex",
            "ssl_write",
            "ssl_write_ex",
            "ssl_return",
        ]
        .iter()
        .map(|p| self.metric(&format!("monitor_program_runs_total{{program=\"{p}\"}}")))
        .sum()
    }

    /// Time the kernel has spent in the loaded programs (all of them).
    pub(crate) fn kernel_seconds(&self) -> f64 {
        self.metric("monitor_program_run_seconds_total{")
    }
}

/// What an agent did while one load ran.
pub(crate) struct Usage {
    /// User and system CPU of the agent process.
    pub(crate) cpu_secs: f64,
    /// Time spent in the eBPF programs (charged to the traced processes, not the agent).
    pub(crate) kernel_secs: f64,
    /// Hits of the OpenSSL probes (entries and returns).
    pub(crate) tls_hits: f64,
    /// Calls of the load's protocol the agent made, by role.
    pub(crate) client_calls: f64,
    pub(crate) server_calls: f64,
}

/// Runs `load` while a fresh agent started under `mode` watches, and reads its counters
/// around it; the agent is returned for any other figure.
pub(crate) fn watched<T>(
    bin: &Path,
    mode: Mode,
    protocol: &str,
    load: impl FnOnce() -> Result<T>,
) -> Result<(T, Usage, Agent)> {
    let agent = Agent::start(bin, mode)?;
    let (client0, server0) = calls(&agent, protocol);
    let kernel0 = agent.kernel_seconds();
    let tls0 = agent.tls_probe_hits();
    let cpu0 = agent.cpu_seconds()?;
    let result = load();
    // Let the agent drain what is queued before reading its counters.
    std::thread::sleep(Duration::from_millis(1500));
    let cpu1 = agent.cpu_seconds()?;
    let (client1, server1) = calls(&agent, protocol);
    // The scrape just before the load is itself a client-role HTTP/1.1 call.
    let scrape = if protocol == "http/1.1" { 1.0 } else { 0.0 };
    let usage = Usage {
        cpu_secs: cpu1 - cpu0,
        kernel_secs: agent.kernel_seconds() - kernel0,
        tls_hits: agent.tls_probe_hits() - tls0,
        client_calls: client1 - client0 - scrape,
        server_calls: server1 - server0,
    };
    Ok((result?, usage, agent))
}

/// Calls the agent has made of `protocol` traffic, by role. Each look is itself a
/// client-role HTTP/1.1 call (this process scraping the agent), counted once it completes.
pub(crate) fn calls(agent: &Agent, protocol: &str) -> (f64, f64) {
    // Summed over the `tls` label.
    let client = format!("monitor_calls_total{{protocol=\"{protocol}\",role=\"client\",");
    let server = format!("monitor_calls_total{{protocol=\"{protocol}\",role=\"server\",");
    (agent.metric(&client), agent.metric(&server))
}

fn scrape(port: u16) -> String {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    let _ = std::io::Write::write_all(&mut s, b"GET /metrics HTTP/1.0\r\n\r\n");
    let mut body = String::new();
    let _ = s.read_to_string(&mut body);
    body
}

fn cpu_seconds(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("odd /proc stat")?;
    let f: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 (utime, stime) are at 11 and 12 after the comm.
    let ticks: f64 = f.get(11).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    Ok(ticks / clock_ticks_per_sec())
}

fn clock_ticks_per_sec() -> f64 {
    crate::util::output(Command::new("getconf").arg("CLK_TCK"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// A process's resident memory, in bytes: the whole (`VmRSS`, what `top` shows), its heap
/// and stacks (`RssAnon`), and the kernel ring buffer's pages mapped into it. The kernel
/// maps a ring buffer's data pages twice (so a record that wraps reads as one piece), and
/// RSS counts both mappings; PSS counts each page once.
pub(crate) struct Memory {
    pub rss: u64,
    pub anon: u64,
    pub ring_buffer: u64,
    pub pss: u64,
}

impl Memory {
    fn of(pid: u32) -> Result<Memory> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))?;
        let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps"))?;
        let mut ring_buffer = 0;
        let mut in_ring = false;
        for line in smaps.lines() {
            // A mapping's line starts with its address range; its fields with `Name:`.
            if line
                .split(' ')
                .next()
                .is_some_and(|first| !first.ends_with(':'))
            {
                in_ring = line.ends_with("anon_inode:bpf-map");
            } else if in_ring {
                ring_buffer += kib(line, "Rss:").unwrap_or(0);
            }
        }
        let field = |text: &str, name: &str| {
            text.lines()
                .find_map(|l| kib(l, name))
                .with_context(|| format!("no {name} in /proc/{pid}"))
        };
        Ok(Memory {
            rss: field(&status, "VmRSS:")?,
            anon: field(&status, "RssAnon:")?,
            ring_buffer,
            pss: field(&rollup, "Pss:")?,
        })
    }
}

/// The byte count of a `/proc` line `NAME   123 kB`.
fn kib(line: &str, name: &str) -> Option<u64> {
    let v: u64 = line
        .strip_prefix(name)?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse()
        .ok()?;
    Some(v * 1024)
}
