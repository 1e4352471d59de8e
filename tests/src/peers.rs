//! Real peers the tests drive, each killed by PID when dropped.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use crate::{wait_listening, workspace_root, TempDir};

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

pub fn peer_script(name: &str) -> PathBuf {
    workspace_root().join("tests/peers").join(name)
}

/// A self-signed certificate and key for `localhost`/127.0.0.1, made with openssl.
pub fn self_signed_cert(dir: &Path) -> (PathBuf, PathBuf) {
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    run_ok(
        Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            ])
            .args([
                "-subj",
                "/CN=localhost",
                "-addext",
                "subjectAltName=IP:127.0.0.1,DNS:localhost",
            ])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert),
        "openssl req",
    );
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
        let ssl = if opts.tls {
            let (cert, key) = self_signed_cert(&dir.0);
            format!(
                " ssl;\n        ssl_certificate {};\n        ssl_certificate_key {}",
                cert.display(),
                key.display()
            )
        } else {
            String::new()
        };
        let h2 = if opts.http2 { " http2" } else { "" };
        let d = dir.0.display();
        std::fs::write(dir.0.join("index.html"), "hello from nginx\n").expect("index");
        let conf = format!(
            r#"daemon off;
master_process on;
worker_processes 1;
user root;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log {d}/access.log;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    keepalive_requests 100000;
    sendfile on;
    server {{
        listen 127.0.0.1:{port}{h2}{ssl};
        listen [::1]:{port}{h2}{ssl_v6};
        root {d};
        location = /empty {{ return 204; }}
        location /api/ {{ default_type application/json; return 200 '{{"ok":true}}'; }}
        location / {{ try_files $uri /index.html; }}
    }}
}}
"#,
            ssl_v6 = if opts.tls { " ssl" } else { "" },
        );
        let conf_path = dir.0.join("nginx.conf");
        std::fs::write(&conf_path, conf).expect("nginx.conf");
        let nginx = if Path::new("/usr/sbin/nginx").exists() {
            "/usr/sbin/nginx"
        } else {
            "nginx"
        };
        let proc = Proc::spawn(
            Command::new(nginx)
                .arg("-c")
                .arg(&conf_path)
                .arg("-p")
                .arg(&dir.0)
                .envs(opts.env.iter().map(|(k, v)| (k, v)))
                .stdout(Stdio::null())
                .stderr(Stdio::inherit()),
            "nginx",
        );
        wait_listening(SocketAddr::from(([127, 0, 0, 1], port)), "nginx");
        Nginx { proc, port, dir }
    }

    /// Lines in the access log: the requests nginx actually served.
    pub fn served(&self) -> usize {
        std::fs::read_to_string(self.dir.0.join("access.log")).map_or(0, |s| s.lines().count())
    }
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
