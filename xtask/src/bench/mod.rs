//! `cargo xtask bench`: what the agent costs the traffic it watches, against nginx on
//! loopback.
//!
//! - Saturation cases (wrk for HTTP/1.1, h2load for HTTP/2, plaintext and TLS): rounds
//!   alternate no agent, the same hooks with empty programs (the floor no eBPF agent on
//!   these hooks can go below), and the agent, so all three see the same machine state.
//! - A fixed-rate case (oha, open loop with latency correction): latency percentiles with
//!   and without the agent, and the agent's CPU per request.
//! - A memory case: the agent's resident memory with many idle keep-alive connections.
//! - A probe-cost case: the kernel's cost of one uprobe hit by the instruction it sits on.

mod agent;
mod fixed_rate;
mod load;
mod memory;
mod probe_cost;
mod saturation;

use std::{
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use clap::Args;

use crate::{nginx, setup, util};
use load::Tool;

#[derive(Args)]
pub(crate) struct BenchArgs {
    /// Seconds of load per measurement.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Rounds; each round measures without the agent, with empty programs, then with the
    /// agent.
    #[arg(long, default_value_t = 3)]
    rounds: u32,
    /// Concurrent wrk connections.
    #[arg(long, default_value_t = 32)]
    connections: u32,
    /// wrk threads.
    #[arg(long, default_value_t = 1)]
    threads: u32,
    /// Requests per h2load measurement (HTTP/2 cases): h2load is bounded by count so that
    /// every request it started is also completed.
    #[arg(long, default_value_t = 200_000)]
    h2_requests: u64,
    /// Requests per second of the fixed-rate case.
    #[arg(long, default_value_t = 20_000)]
    rate: u32,
    /// Idle keep-alive connections of the memory case.
    #[arg(long, default_value_t = 10_000)]
    idle_connections: u32,
    /// Only the cases whose name contains this ("plaintext", "tls", "http/2", "h2c",
    /// "fixed rate", "memory", "probe cost"); all when empty.
    #[arg(long, default_value = "")]
    case: String,
    /// Measure this agent binary instead of building the checkout's (an older build, to
    /// compare two versions on one machine).
    #[arg(long, value_name = "PATH")]
    agent: Option<PathBuf>,
}

impl BenchArgs {
    fn wants(&self, name: &str) -> bool {
        self.case.is_empty() || name.to_lowercase().contains(&self.case.to_lowercase())
    }
}

/// nginx's listeners, by case.
struct Ports {
    plain: u16,
    tls: u16,
    h2c: u16,
    h2_tls: u16,
}

pub(crate) fn run(args: BenchArgs) -> Result<()> {
    if !util::is_root() {
        bail!("the benchmark loads eBPF programs: run it as root");
    }
    setup::all(true)?;
    let oha = if args.wants("fixed rate") {
        Some(setup::oha()?)
    } else {
        None
    };
    let bin = if let Some(path) = &args.agent {
        path.clone()
    } else {
        util::cargo(&["build", "--release", "--package", "monitor-agent"])?;
        util::workspace_root().join("target/release/monitor-agent")
    };
    let dir = std::env::temp_dir().join(format!("monitor-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let result = probe_cost_case(&args, &dir)
        .and_then(|()| start_nginx(&dir))
        .and_then(|(nginx, ports)| {
            let r = cases(&args, &bin, oha.as_deref(), &ports);
            drop(nginx);
            r
        });
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn probe_cost_case(args: &BenchArgs, dir: &Path) -> Result<()> {
    if args.wants("probe cost") {
        probe_cost::measure(args, dir)?;
    }
    Ok(())
}

fn cases(args: &BenchArgs, bin: &Path, oha: Option<&Path>, ports: &Ports) -> Result<()> {
    let url = |port: u16, scheme: &str| format!("{scheme}://127.0.0.1:{port}/api/items");
    let saturation = [
        ("plaintext HTTP/1.1", url(ports.plain, "http"), Tool::Wrk),
        ("HTTP/1.1 over TLS", url(ports.tls, "https"), Tool::Wrk),
        (
            "HTTP/2 h2c (prior knowledge)",
            url(ports.h2c, "http"),
            Tool::H2load,
        ),
        ("HTTP/2 over TLS", url(ports.h2_tls, "https"), Tool::H2load),
    ];
    for (name, url, tool) in &saturation {
        if args.wants(name) {
            saturation::measure(name, url, *tool, bin, args)?;
        }
    }
    if let Some(oha) = oha {
        fixed_rate::measure(&url(ports.plain, "http"), oha, bin, args)?;
    }
    if args.wants("memory") {
        memory::measure(ports.plain, bin, args)?;
    }
    Ok(())
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A child stopped with SIGTERM when dropped (also on error paths): SIGKILL would leave
/// nginx's workers behind.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.0.id().to_string())
            .status();
        let _ = self.0.wait();
    }
}

/// nginx with a listener per case.
fn start_nginx(dir: &Path) -> Result<(Guard, Ports)> {
    // Held together while chosen, so that no two are the same.
    let held = [(); 4].map(|()| TcpListener::bind("127.0.0.1:0"));
    let mut chosen = Vec::new();
    for l in held {
        chosen.push(l?.local_addr()?.port());
    }
    let ports = Ports {
        plain: chosen[0],
        tls: chosen[1],
        h2c: chosen[2],
        h2_tls: chosen[3],
    };
    let (mut openssl, cert, key) = nginx::self_signed_cert_cmd(dir);
    util::output(&mut openssl)?;
    let listen = |port: u16, tls: bool, http2: bool| nginx::Listen {
        addr: ([127, 0, 0, 1], port).into(),
        tls,
        http2,
    };
    let conf = nginx::NginxConf {
        dir,
        listen: vec![
            listen(ports.plain, false, false),
            listen(ports.tls, true, false),
            listen(ports.h2c, false, true),
            listen(ports.h2_tls, true, true),
        ],
        cert: Some((cert, key)),
        access_log: false,
        locations: r#"        location / { default_type application/json; return 200 '{"items":[1,2,3]}'; }"#,
    };
    let path = dir.join("nginx.conf");
    std::fs::write(&path, conf.render())?;
    let child = Command::new(nginx::nginx_bin())
        .arg("-c")
        .arg(&path)
        .arg("-p")
        .arg(dir)
        .stdout(Stdio::null())
        .spawn()
        .context("starting nginx")?;
    let guard = Guard(child);
    for p in [ports.plain, ports.tls, ports.h2c, ports.h2_tls] {
        wait_port(p)?;
    }
    Ok((guard, ports))
}

fn wait_port(port: u16) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("nothing listening on port {port} after 30 s")
}

fn mean(v: impl IntoIterator<Item = f64>) -> f64 {
    let (sum, n) = v
        .into_iter()
        .fold((0.0, 0usize), |(s, n), x| (s + x, n + 1));
    sum / n.max(1) as f64
}
