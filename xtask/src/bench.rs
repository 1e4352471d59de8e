//! `cargo xtask bench`: wrk (HTTP/1.1) and h2load (HTTP/2) against nginx on loopback,
//! alternating rounds without and with the agent, so both see the same machine state. Prints throughput of each, their ratio,
//! the agent's CPU per captured call, and captured/completed with the drop counters.

use std::{
    io::Read,
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use clap::Args;

use crate::{nginx, setup, util};

#[derive(Args)]
pub(crate) struct BenchArgs {
    /// Seconds of load per measurement.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Rounds; each round measures without, then with the agent.
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
    /// Only the cases whose name contains this ("plaintext", "tls", "http/2", "h2c");
    /// all when empty.
    #[arg(long, default_value = "")]
    case: String,
    /// Measure this agent binary instead of building the checkout's (an older build, to
    /// compare two versions on one machine).
    #[arg(long, value_name = "PATH")]
    agent: Option<PathBuf>,
}

/// Which load generator drives a case, and so which protocol the agent counts.
#[derive(Clone, Copy, PartialEq)]
enum Tool {
    Wrk,
    H2load,
}

impl Tool {
    fn protocol(self) -> &'static str {
        match self {
            Tool::Wrk => "http/1.1",
            Tool::H2load => "http/2",
        }
    }
}

struct WrkResult {
    requests: u64,
    rps: f64,
}

struct AgentRound {
    wrk: WrkResult,
    cpu_secs: f64,
    /// Time spent in the eBPF programs (charged to the traced processes, not the agent).
    kernel_secs: f64,
    client_calls: f64,
    server_calls: f64,
    drops: f64,
    truncations: f64,
}

pub(crate) fn run(args: BenchArgs) -> Result<()> {
    if !util::is_root() {
        bail!("the benchmark loads eBPF programs: run it as root");
    }
    setup::all(true)?;
    let bin = if let Some(path) = &args.agent {
        path.clone()
    } else {
        util::cargo(&["build", "--release", "--package", "monitor-agent"])?;
        util::workspace_root().join("target/release/monitor-agent")
    };
    let dir = std::env::temp_dir().join(format!("monitor-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let ports = [free_port()?, free_port()?, free_port()?, free_port()?];
    let nginx = start_nginx(&dir, ports)?;
    let cases = [
        (
            "plaintext HTTP/1.1",
            format!("http://127.0.0.1:{}/api/items", ports[0]),
            Tool::Wrk,
        ),
        (
            "HTTP/1.1 over TLS",
            format!("https://127.0.0.1:{}/api/items", ports[1]),
            Tool::Wrk,
        ),
        (
            "HTTP/2 h2c (prior knowledge)",
            format!("http://127.0.0.1:{}/api/items", ports[2]),
            Tool::H2load,
        ),
        (
            "HTTP/2 over TLS",
            format!("https://127.0.0.1:{}/api/items", ports[3]),
            Tool::H2load,
        ),
    ];
    let mut result = Ok(());
    for (name, url, tool) in &cases {
        if !args.case.is_empty() && !name.to_lowercase().contains(&args.case.to_lowercase()) {
            continue;
        }
        result = measure(name, url, *tool, &bin, &args);
        if result.is_err() {
            break;
        }
    }
    drop(nginx);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// Alternates rounds without and with the agent against `url` and prints the table.
fn measure(name: &str, url: &str, tool: Tool, bin: &PathBuf, args: &BenchArgs) -> Result<()> {
    // Warm up nginx and the page cache.
    let _ = load(tool, url, 1, args);
    let mut without = Vec::new();
    let mut with = Vec::new();
    for round in 1..=args.rounds {
        let base = load(tool, url, args.duration, args)?;
        eprintln!("{name} round {round}: without agent {:.0} req/s", base.rps);
        without.push(base);
        let r = with_agent(bin, url, tool, args)?;
        eprintln!(
            "{name} round {round}: with agent    {:.0} req/s, agent cpu {:.2}s, calls client {} server {}, drops {}",
            r.wrk.rps, r.cpu_secs, r.client_calls, r.server_calls, r.drops
        );
        with.push(r);
    }

    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let rps_without = mean(&without.iter().map(|w| w.rps).collect::<Vec<_>>());
    let rps_with = mean(&with.iter().map(|w| w.wrk.rps).collect::<Vec<_>>());
    let completed: u64 = with.iter().map(|w| w.wrk.requests).sum();
    let client: f64 = with.iter().map(|w| w.client_calls).sum();
    let server: f64 = with.iter().map(|w| w.server_calls).sum();
    let drops: f64 = with.iter().map(|w| w.drops).sum();
    let truncations: f64 = with.iter().map(|w| w.truncations).sum();
    let cpu: f64 = with.iter().map(|w| w.cpu_secs).sum();
    let kernel: f64 = with.iter().map(|w| w.kernel_secs).sum();
    let captured = client + server;
    let how = match tool {
        Tool::Wrk => format!(
            "wrk -t{} -c{} -d{}s",
            args.threads, args.connections, args.duration
        ),
        Tool::H2load => format!(
            "h2load -t{} -c{} -m10 -n{}",
            args.threads, args.connections, args.h2_requests
        ),
    };
    println!(
        "\nbenchmark ({name}): {how} against nginx `return 200` on loopback, {} rounds",
        args.rounds
    );
    println!("| measure | value |");
    println!("| --- | --- |");
    println!("| requests/s without agent (mean) | {rps_without:.0} |");
    println!("| requests/s with agent (mean) | {rps_with:.0} |");
    println!(
        "| throughput ratio with/without | {:.3} |",
        rps_with / rps_without.max(1.0)
    );
    println!("| requests completed (load tool, with agent) | {completed} |");
    println!(
        "| client-role calls captured / completed | {:.4} |",
        client / completed.max(1) as f64
    );
    println!(
        "| server-role calls captured / completed | {:.4} |",
        server / completed.max(1) as f64
    );
    println!("| ring-buffer drops | {drops} |");
    println!("| truncations | {truncations} |");
    println!("| agent CPU (user+sys) | {cpu:.2} s |");
    println!(
        "| agent CPU per captured call | {:.2} us |",
        cpu * 1e6 / captured.max(1.0)
    );
    println!(
        "| agent CPU per million captured calls | {:.2} s |",
        cpu * 1e6 / captured.max(1.0)
    );
    println!("| time in eBPF programs (charged to nginx and the load tool) | {kernel:.2} s |");
    println!(
        "| eBPF time per captured call | {:.2} us |",
        kernel * 1e6 / captured.max(1.0)
    );
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
        terminate(self.0.id());
        let _ = self.0.wait();
    }
}

/// nginx on `ports`: HTTP/1.1, HTTP/1.1 over TLS, h2c, HTTP/2 over TLS.
fn start_nginx(dir: &Path, ports: [u16; 4]) -> Result<Guard> {
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
            listen(ports[0], false, false),
            listen(ports[1], true, false),
            listen(ports[2], false, true),
            listen(ports[3], true, true),
        ],
        cert: Some((cert, key)),
        access_log: false,
        locations: r#"        location / { default_type application/json; return 200 '{"items":[1,2,3]}'; }"#,
    };
    let path = dir.join("nginx.conf");
    std::fs::write(&path, conf.render())?;
    let nginx = nginx::nginx_bin();
    let child = Command::new(nginx)
        .arg("-c")
        .arg(&path)
        .arg("-p")
        .arg(dir)
        .stdout(Stdio::null())
        .spawn()
        .context("starting nginx")?;
    let guard = Guard(child);
    for p in ports {
        wait_port(p)?;
    }
    Ok(guard)
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

fn load(tool: Tool, url: &str, secs: u64, args: &BenchArgs) -> Result<WrkResult> {
    match tool {
        Tool::Wrk => wrk(url, secs, args),
        // The warm-up (one second of wrk) becomes a tenth of the requests here.
        Tool::H2load if secs == 1 => h2load(url, (args.h2_requests / 10).max(1000), args),
        Tool::H2load => h2load(url, args.h2_requests, args),
    }
}

/// `h2load -n`: every started request completes, so captured/completed is exact.
fn h2load(url: &str, n: u64, args: &BenchArgs) -> Result<WrkResult> {
    let out = util::output(
        Command::new("h2load")
            .arg(format!("-t{}", args.threads))
            .arg(format!("-c{}", args.connections))
            .args(["-m", "10", "-n"])
            .arg(n.to_string())
            .arg(url),
    )?;
    let requests = out
        .lines()
        .find_map(|l| {
            l.strip_prefix("requests:")?
                .split(',')
                .find_map(|p| p.trim().strip_suffix(" succeeded"))?
                .trim()
                .parse()
                .ok()
        })
        .with_context(|| format!("no succeeded count in h2load output: {out}"))?;
    let rps = out
        .lines()
        .find_map(|l| {
            l.strip_prefix("finished in ")?
                .split(", ")
                .nth(1)?
                .strip_suffix(" req/s")?
                .parse()
                .ok()
        })
        .with_context(|| format!("no req/s in h2load output: {out}"))?;
    Ok(WrkResult { requests, rps })
}

fn wrk(url: &str, secs: u64, args: &BenchArgs) -> Result<WrkResult> {
    let out = util::output(
        Command::new("wrk")
            .arg(format!("-t{}", args.threads))
            .arg(format!("-c{}", args.connections))
            .arg(format!("-d{}s", secs.max(1)))
            .arg(url),
    )?;
    let requests = out
        .lines()
        .find_map(|l| {
            l.trim()
                .split_once(" requests in ")
                .and_then(|(n, _)| n.trim().parse().ok())
        })
        .with_context(|| format!("no request count in wrk output: {out}"))?;
    let rps = out
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("Requests/sec:")
                .and_then(|v| v.trim().parse().ok())
        })
        .with_context(|| format!("no Requests/sec in wrk output: {out}"))?;
    Ok(WrkResult { requests, rps })
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
    let hz = clock_ticks_per_sec();
    Ok(ticks / hz)
}

fn clock_ticks_per_sec() -> f64 {
    util::output(Command::new("getconf").arg("CLK_TCK"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
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

/// Sum of the samples whose name (with labels) is `name`, or starts with it when it ends
/// in `{` or `,` (some or all label sets of one metric).
fn metric_sum(port: u16, name: &str) -> f64 {
    scrape(port)
        .lines()
        .filter_map(|l| l.rsplit_once(' '))
        .filter(|(k, _)| *k == name || (name.ends_with(['{', ',']) && k.starts_with(name)))
        .filter_map(|(_, v)| v.parse::<f64>().ok())
        .sum()
}

fn metric(port: u16, name: &str) -> f64 {
    metric_sum(port, name)
}

fn with_agent(bin: &PathBuf, url: &str, tool: Tool, args: &BenchArgs) -> Result<AgentRound> {
    let api = free_port()?;
    let agent = Guard(
        Command::new(bin)
            .args([
                "run",
                "--output",
                "none",
                "--kernel-stats",
                "--listen",
                &format!("127.0.0.1:{api}"),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting the agent")?,
    );
    wait_port(api)?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while metric(api, "monitor_attached_programs") == 0.0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    // Summed over the `tls` label.
    let protocol = tool.protocol();
    let client_calls = format!("monitor_calls_total{{protocol=\"{protocol}\",role=\"client\",");
    let server_calls = format!("monitor_calls_total{{protocol=\"{protocol}\",role=\"server\",");
    let (client0, server0) = (metric(api, &client_calls), metric(api, &server_calls));
    let kernel0 = metric_sum(api, "monitor_program_run_seconds_total{");
    let cpu0 = cpu_seconds(agent.0.id())?;
    let result = load(tool, url, args.duration, args);
    // Let the agent drain what is queued before reading its counters.
    std::thread::sleep(Duration::from_millis(1500));
    let cpu1 = cpu_seconds(agent.0.id())?;
    let round = AgentRound {
        wrk: result?,
        cpu_secs: cpu1 - cpu0,
        kernel_secs: metric_sum(api, "monitor_program_run_seconds_total{") - kernel0,
        // The scrape just before the load is itself a client-role HTTP/1.1 call, counted
        // once it completes.
        client_calls: metric(api, &client_calls)
            - client0
            - if tool == Tool::Wrk { 1.0 } else { 0.0 },
        server_calls: metric(api, &server_calls) - server0,
        drops: metric(api, "monitor_ringbuf_drops_total"),
        truncations: metric(api, "monitor_truncations_total"),
    };
    Ok(round)
}

fn terminate(pid: u32) {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status();
}
