//! Real peers the tests drive, each killed by PID when dropped.

use std::{
    io::{BufRead, BufReader},
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use crate::{
    nginx::{nginx_bin, self_signed_cert_cmd, Listen, NginxConf},
    wait_listening, workspace_root, TempDir,
};

/// A child process terminated (SIGTERM, then SIGKILL) when dropped.
pub struct Proc {
    pub child: Child,
    what: String,
}

impl Proc {
    pub fn spawn(cmd: &mut Command, what: &str) -> Proc {
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("starting {what}: {e} (is it installed?)"));
        Proc {
            child,
            what: what.to_string(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // SAFETY: signalling our own child by PID.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!("{} ignored SIGTERM; killing", self.what);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts a peer that prints `ready` once it listens on 127.0.0.1:`port`.
pub fn ready_server(cmd: &mut Command, what: &str, port: u16) -> Proc {
    let mut p = Proc::spawn(cmd.stdout(Stdio::piped()).stderr(Stdio::inherit()), what);
    let out = p.child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(out)
        .read_line(&mut line)
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_eq!(line.trim(), "ready", "{what} did not start");
    wait_listening(SocketAddr::from(([127, 0, 0, 1], port)), what);
    p
}

/// `h2peer server` (the binary at `h2peer`, `CARGO_BIN_EXE_h2peer` in a test) on `port`.
pub fn h2_server(h2peer: &str, port: u16) -> Proc {
    ready_server(
        Command::new(h2peer).args(["server", "--port", &port.to_string()]),
        "h2peer server",
        port,
    )
}

/// `peers/any_method_server.py` on `port`: answers 200 to any method, with up to 300
/// headers and 64 KiB lines, so that hostile request shapes all reach a server.
pub fn any_method_server(port: u16) -> Proc {
    ready_server(
        Command::new("python3")
            .arg(peer_script("any_method_server.py"))
            .arg(port.to_string()),
        "any_method_server.py",
        port,
    )
}

/// The tonic server of `src/bin/grpcpeer.rs`; `bin` is its path, which only the
/// integration tests know (`env!("CARGO_BIN_EXE_grpcpeer")`).
pub fn grpc_server(bin: &str, port: u16) -> Proc {
    ready_server(
        Command::new(bin).args(["server", "--port", &port.to_string()]),
        "grpcpeer server",
        port,
    )
}

/// The calls one `grpcpeer client` run makes; it prints a JSON summary of them.
#[derive(Clone, Copy, Debug, Default)]
pub struct GrpcCalls {
    /// SayHello calls answered OK.
    pub ok: u32,
    /// SayHello calls answered NOT_FOUND, with a message.
    pub missing: u32,
    /// SayHello calls answered INTERNAL.
    pub boom: u32,
    /// Messages of one CountTo stream that ends OK (none when 0).
    pub stream: u32,
    /// Messages of one CountTo stream that then fails (none when 0).
    pub stream_fail: u32,
    /// CountTo calls failing at once (trailers-only responses).
    pub stream_fail_empty: u32,
}

impl GrpcCalls {
    pub fn client(&self, bin: &str, port: u16) -> Command {
        let mut cmd = Command::new(bin);
        cmd.args(["client", "--port", &port.to_string()]);
        for (flag, n) in [
            ("--ok", self.ok),
            ("--missing", self.missing),
            ("--boom", self.boom),
            ("--stream", self.stream),
            ("--stream-fail", self.stream_fail),
            ("--stream-fail-empty", self.stream_fail_empty),
        ] {
            cmd.args([flag, &n.to_string()]);
        }
        cmd
    }
}

pub fn peer_script(name: &str) -> PathBuf {
    workspace_root().join("tests/peers").join(name)
}

/// A self-signed certificate and key for `localhost`/127.0.0.1, made with openssl.
pub fn self_signed_cert(dir: &Path) -> (PathBuf, PathBuf) {
    let (mut cmd, cert, key) = self_signed_cert_cmd(dir);
    run_ok(&mut cmd, "openssl req");
    (cert, key)
}

/// How nginx is started.
#[derive(Default)]
pub struct NginxOptions {
    /// Serve HTTPS with a self-signed certificate.
    pub tls: bool,
    /// Extra environment (for example `LD_LIBRARY_PATH`).
    pub env: Vec<(String, String)>,
    /// Serve HTTP/2: negotiated by ALPN with `tls`, prior knowledge (h2c) without.
    pub http2: bool,
}

/// nginx in the foreground with its own config, logs and pid file in a temp dir.
pub struct Nginx {
    pub proc: Proc,
    pub port: u16,
    pub dir: TempDir,
}

impl Nginx {
    /// Serves `return 200` on `/`, a 204 on `/empty`, and static files from `root`, on
    /// 127.0.0.1 and [::1] at `port`.
    pub fn start(port: u16) -> Nginx {
        Nginx::start_with(port, NginxOptions::default())
    }

    pub fn start_with(port: u16, opts: NginxOptions) -> Nginx {
        let dir = TempDir::new("nginx");
        let cert = opts.tls.then(|| self_signed_cert(&dir.0));
        std::fs::write(dir.0.join("index.html"), "hello from nginx\n").expect("index");
        let listen = |ip: std::net::IpAddr| Listen {
            addr: SocketAddr::new(ip, port),
            tls: opts.tls,
            http2: opts.http2,
        };
        let conf = NginxConf {
            dir: &dir.0,
            listen: vec![
                listen(std::net::Ipv4Addr::LOCALHOST.into()),
                listen(std::net::Ipv6Addr::LOCALHOST.into()),
            ],
            cert,
            access_log: true,
            locations: r#"        location = /empty { return 204; }
        location /api/ { default_type application/json; return 200 '{"ok":true}'; }
        location / { try_files $uri /index.html; }"#,
        };
        let proc = spawn_nginx(&conf, &opts.env);
        Nginx { proc, port, dir }
    }

    /// Lines in the access log: the requests nginx actually served.
    pub fn served(&self) -> usize {
        std::fs::read_to_string(self.dir.0.join("access.log")).map_or(0, |s| s.lines().count())
    }
}

/// nginx in the foreground with `conf` (written into its directory) and `env`, once it
/// accepts connections on each of its IPv4 listen addresses.
pub fn spawn_nginx(conf: &NginxConf<'_>, env: &[(String, String)]) -> Proc {
    let conf_path = conf.dir.join("nginx.conf");
    std::fs::write(&conf_path, conf.render()).expect("nginx.conf");
    let proc = Proc::spawn(
        Command::new(nginx_bin())
            .arg("-c")
            .arg(&conf_path)
            .arg("-p")
            .arg(conf.dir)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit()),
        "nginx",
    );
    for l in conf.listen.iter().filter(|l| l.addr.is_ipv4()) {
        wait_listening(l.addr, "nginx");
    }
    proc
}

/// Runs a command to completion and returns its output, failing the test if it fails.
pub fn run_ok(cmd: &mut Command, what: &str) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {what}: {e} (is it installed?)"));
    assert!(
        out.status.success(),
        "{what} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `curl -s` with `args`; returns stdout.
pub fn curl(args: &[&str]) -> String {
    let out = run_ok(
        Command::new("curl")
            .arg("-sS")
            .arg("--max-time")
            .arg("10")
            .args(args),
        "curl",
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `tests/peers/api_server.py` on `port`: part of `api_spec.yaml`, plus an undeclared and a
/// deprecated endpoint.
pub fn api_server(port: u16) -> Proc {
    let p = Proc::spawn(
        Command::new("python3")
            .arg(peer_script("api_server.py"))
            .arg(port.to_string()),
        "api_server.py",
    );
    wait_listening(([127, 0, 0, 1], port).into(), "api_server.py");
    p
}

/// The spec `api_server.py` partly implements.
pub fn spec_path() -> PathBuf {
    peer_script("api_spec.yaml")
}
