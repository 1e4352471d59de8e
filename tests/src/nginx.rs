//! nginx as a peer, written once for the end-to-end tests (`peers::Nginx`) and the
//! benchmark (`cargo xtask bench`): its configuration, its self-signed certificate and where
//! its binary is. Only `std`, so that xtask can include this file (`#[path]`) without the
//! test harness's dependencies.

use std::{
    fmt::Write as _,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Command,
};

/// One `listen` line.
#[derive(Clone, Copy, Debug)]
pub struct Listen {
    pub addr: SocketAddr,
    pub tls: bool,
    /// h2 by ALPN with `tls`, prior knowledge (h2c) without.
    pub http2: bool,
}

/// A whole nginx configuration: one server, running in the foreground from `dir`, where its
/// pid file, logs and temp paths go.
#[derive(Clone, Debug)]
pub struct NginxConf<'a> {
    pub dir: &'a Path,
    pub listen: Vec<Listen>,
    /// (certificate, key), required when a listener has `tls`.
    pub cert: Option<(PathBuf, PathBuf)>,
    /// One line per request in `dir/access.log` (the tests' count of what was served); off
    /// for the benchmark, where it would be measured too.
    pub access_log: bool,
    /// The `location` blocks.
    pub locations: &'a str,
}

impl NginxConf<'_> {
    pub fn render(&self) -> String {
        let d = self.dir.display();
        let mut listen = String::new();
        for l in &self.listen {
            let addr = match l.addr {
                SocketAddr::V4(a) => a.to_string(),
                SocketAddr::V6(a) => format!("[{}]:{}", a.ip(), a.port()),
            };
            let tls = if l.tls { " ssl" } else { "" };
            let h2 = if l.http2 { " http2" } else { "" };
            let _ = writeln!(listen, "        listen {addr}{h2}{tls};");
        }
        if let Some((cert, key)) = &self.cert {
            let _ = writeln!(listen, "        ssl_certificate {};", cert.display());
            let _ = writeln!(listen, "        ssl_certificate_key {};", key.display());
        }
        let access_log = if self.access_log {
            format!("{d}/access.log")
        } else {
            "off".to_string()
        };
        format!(
            r"daemon off;
master_process on;
worker_processes 1;
user root;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
worker_rlimit_nofile 65536;
events {{ worker_connections 16384; }}
http {{
    access_log {access_log};
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    keepalive_requests 1000000;
    sendfile on;
    server {{
{listen}        root {d};
{locations}
    }}
}}
",
            locations = self.locations,
        )
    }
}

/// Debian's nginx is in /usr/sbin, which is not on every PATH.
pub fn nginx_bin() -> &'static str {
    if Path::new("/usr/sbin/nginx").exists() {
        "/usr/sbin/nginx"
    } else {
        "nginx"
    }
}

/// The openssl command that writes a self-signed certificate and key for
/// `localhost`/127.0.0.1 into `dir`, and where they will be.
pub fn self_signed_cert_cmd(dir: &Path) -> (Command, PathBuf, PathBuf) {
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    let mut cmd = Command::new("openssl");
    cmd.args([
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
    .arg(&cert);
    (cmd, cert, key)
}
