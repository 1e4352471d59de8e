//! A real Prometheus for the tests that check what it scrapes and what the dashboard asks.

use std::{
    net::SocketAddr,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::{agent::http_get, free_port, peers::Proc, TempDir};

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub struct Prometheus {
    _proc: Proc,
    pub addr: SocketAddr,
    _dir: TempDir,
}

impl Prometheus {
    /// Scrapes one target every second, as job `monitor`.
    pub fn start(target: SocketAddr) -> Prometheus {
        Prometheus::start_with(&format!(
            "  - job_name: monitor\n    static_configs:\n      - targets: ['{target}']\n"
        ))
    }

    /// Runs with `scrape_configs` (YAML list items, indented by two spaces), scraping every
    /// second.
    pub fn start_with(scrape_configs: &str) -> Prometheus {
        let bin = ["/usr/bin/prometheus", "/usr/local/bin/prometheus"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .expect("prometheus is not installed: run `cargo xtask setup --peers` (Debian package prometheus)");
        let dir = TempDir::new("prometheus");
        let conf = dir.0.join("prometheus.yml");
        std::fs::write(
            &conf,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n{scrape_configs}"
            ),
        )
        .unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let proc = Proc::spawn(
            Command::new(bin)
                .arg(format!("--config.file={}", conf.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.0.join("data").display()
                ))
                .arg(format!("--web.listen-address={addr}"))
                .arg("--log.level=warn")
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(dir.0.join("prometheus.log")).unwrap()),
            "prometheus",
        );
        if std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(10)).is_err() {
            wait_for_listening_or_say_why(addr, &dir);
        }
        // Listening comes before ready: queries get 503 until the TSDB is open.
        let deadline = Instant::now() + Duration::from_mins(1);
        while !matches!(http_get(addr, "/-/ready"), Ok((200, _))) {
            assert!(
                Instant::now() < deadline,
                "prometheus not ready within 60 s"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        Prometheus {
            _proc: proc,
            addr,
            _dir: dir,
        }
    }

    pub fn query(&self, expr: &str) -> Vec<Value> {
        let (status, body) = http_get(
            self.addr,
            &format!("/api/v1/query?query={}", percent_encode(expr)),
        )
        .unwrap_or_else(|e| panic!("querying prometheus: {e}"));
        let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        assert_eq!(status, 200, "prometheus rejected {expr}: {body}");
        assert_eq!(v["status"], "success", "{expr}: {body}");
        v["data"]["result"].as_array().cloned().unwrap_or_default()
    }

    /// Waits (up to 30 s) until `expr` returns something and `ok` accepts it.
    pub fn wait(&self, expr: &str, ok: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let r = self.query(expr);
            if (!r.is_empty() && ok(&r)) || Instant::now() > deadline {
                return r;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

/// Prometheus exits at once on a bad config: say what it said.
fn wait_for_listening_or_say_why(addr: SocketAddr, dir: &TempDir) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(addr).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = std::fs::read_to_string(dir.0.join("prometheus.log")).unwrap_or_default();
    panic!("prometheus did not listen on {addr} within 10 s: {log}");
}
