//! Memory: the agent's resident memory while many keep-alive connections, each having
//! made one call, sit idle (what a node full of pooled clients looks like).

use std::{
    io::{Read, Write},
    net::TcpStream,
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};

use super::{
    agent::{calls, Agent, Mode},
    BenchArgs,
};
use crate::util;

const REQUEST: &[u8] = b"GET /api/items HTTP/1.1\r\nHost: bench\r\n\r\n";

pub(super) fn measure(port: u16, bin: &Path, args: &BenchArgs) -> Result<()> {
    let n = args.idle_connections;
    // One descriptor per connection, in this process.
    util::run(
        Command::new("prlimit")
            .arg(format!("--pid={}", std::process::id()))
            .arg(format!("--nofile={0}:{0}", u64::from(n) + 1024)),
    )?;
    let agent = Agent::start(bin, Mode::Agent)?;
    std::thread::sleep(Duration::from_secs(2));
    let idle = agent.memory()?;
    let (client0, server0) = calls(&agent, "http/1.1");
    let started = Instant::now();
    let conns = open_and_call(port, n)?;
    let opened = started.elapsed();
    // Until the agent has every call (or a minute has passed), then a little longer for its
    // memory to settle.
    let deadline = Instant::now() + Duration::from_mins(1);
    let (mut client, mut server) = (0.0, 0.0);
    // Scrapes before this one, each a client call of its own.
    let mut scrapes = 1.0;
    while Instant::now() < deadline {
        let (c, s) = calls(&agent, "http/1.1");
        (client, server) = (c - client0 - scrapes, s - server0);
        scrapes += 1.0;
        if client >= f64::from(n) && server >= f64::from(n) {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(3));
    let open = agent.memory()?;
    let tracked = agent.metric("monitor_tracked_connections");
    drop(conns);
    std::thread::sleep(Duration::from_secs(3));
    let closed = agent.memory()?;
    let mib = |b: u64| b as f64 / f64::from(1 << 20);
    println!(
        "\nbenchmark (memory): {n} keep-alive connections to nginx on loopback, one call each, then idle"
    );
    println!("| measure | value |");
    println!("| --- | --- |");
    println!(
        "| connections opened and called in | {:.1} s |",
        opened.as_secs_f64()
    );
    println!("| agent RSS before | {:.1} MiB |", mib(idle.rss));
    println!(
        "| **agent RSS with {n} idle connections** | **{:.1} MiB** |",
        mib(open.rss)
    );
    println!(
        "| agent RSS after they closed | {:.1} MiB |",
        mib(closed.rss)
    );
    println!(
        "| of the RSS with the connections: heap and stacks | {:.1} MiB |",
        mib(open.anon)
    );
    println!(
        "| of the RSS with the connections: ring buffer, mapped twice | {:.1} MiB |",
        mib(open.ring_buffer)
    );
    println!(
        "| agent PSS with the connections (ring buffer counted once) | {:.1} MiB |",
        mib(open.pss)
    );
    println!("| connections the agent tracked | {tracked} |");
    println!(
        "| client-role calls captured / made | {:.4} |",
        client / f64::from(n)
    );
    println!(
        "| server-role calls captured / made | {:.4} |",
        server / f64::from(n)
    );
    Ok(())
}

/// `n` connections, each having sent one request and read its whole response.
fn open_and_call(port: u16, n: u32) -> Result<Vec<TcpStream>> {
    let mut conns = Vec::with_capacity(n as usize);
    let mut buf = [0u8; 4096];
    for i in 0..n {
        let mut s = TcpStream::connect(("127.0.0.1", port))
            .with_context(|| format!("connection {i} of {n}"))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        s.write_all(REQUEST)?;
        let mut got = Vec::new();
        while !complete(&got) {
            let k = s.read(&mut buf)?;
            if k == 0 {
                bail!("nginx closed connection {i} before answering");
            }
            got.extend_from_slice(&buf[..k]);
        }
        conns.push(s);
    }
    Ok(conns)
}

/// Whether `got` holds a whole response with a `Content-Length` body.
fn complete(got: &[u8]) -> bool {
    let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
    let len = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    got.len() >= end + 4 + len
}
