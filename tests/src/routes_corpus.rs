//! Route discovery measured on a corpus of real-looking requests (`../shared/routes-dev`):
//! every request replayed through the real agent, each API served by nginx on its own
//! port (and named by a `port:` rule), no spec loaded, then the agent's final inventory and
//! the route each call record carried scored against the APIs' own templates.
//!
//! Used by `cargo xtask routes` (the whole corpus, figures for BENCHMARKS.md) and by the
//! end-to-end test `routes.rs` (a sample, against a floor).

use std::{
    collections::{BTreeMap, HashMap},
    fmt::Write as _,
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpStream},
    path::Path,
    time::Duration,
};

use monitor_agent::{
    api::response::InventoryAnswer,
    record::{CallRecord, Role},
};

use crate::{
    free_ports,
    nginx::{Listen, NginxConf},
    peers::{spawn_nginx, Proc},
    Agent, TempDir,
};

/// One request of the corpus and the template it was made from.
#[derive(Clone, Debug)]
pub struct Request {
    pub api: String,
    pub method: String,
    /// As sent, query string included.
    pub path: String,
    pub template: String,
}

/// `urls.tsv` (api, method, path, template): every `every`-th line, shuffled with `seed`
/// so that APIs and templates interleave as real traffic does.
pub fn load(file: &Path, every: usize, seed: u64) -> Vec<Request> {
    let text = std::fs::read_to_string(file)
        .unwrap_or_else(|e| panic!("cannot read the corpus {}: {e}", file.display()));
    let mut out: Vec<Request> = text
        .lines()
        .step_by(every.max(1))
        .filter_map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (f.len() >= 4).then(|| Request {
                api: f[0].into(),
                method: f[1].into(),
                path: f[2].into(),
                template: f[3].into(),
            })
        })
        .collect();
    shuffle(&mut out, seed);
    out
}

/// Fisher-Yates with xorshift: the same order for the same seed.
fn shuffle<T>(v: &mut [T], seed: u64) {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for i in (1..v.len()).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.swap(i, usize::try_from(x % (i as u64 + 1)).unwrap_or(0));
    }
}

/// `{anything}` → `{x}`, also inside a segment; the query string dropped.
pub fn mask(route: &str) -> String {
    let route = route.split('?').next().unwrap_or_default();
    let mut out = String::with_capacity(route.len());
    let mut depth = 0;
    for c in route.chars() {
        match c {
            '{' => {
                if depth == 0 {
                    out.push_str("{x}");
                }
                depth += 1;
            }
            '}' if depth > 0 => depth -= 1,
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

/// How one API (or all) fared.
#[derive(Clone, Debug, Default)]
pub struct Score {
    pub requests: usize,
    /// Requests filed under the right template in the final inventory: per (method,
    /// template), the smaller of the endpoint's calls and the template's requests.
    pub final_right: usize,
    /// Requests whose call record carried the right route when it was made.
    pub made_right: usize,
    /// Wrong records with a parameter where the template has a literal (over-merged) or a
    /// literal where it has a parameter (under-merged).
    pub over: usize,
    pub under: usize,
    /// Endpoints of the final inventory, and the real operations (method, template).
    pub endpoints: usize,
    pub operations: usize,
}

impl Score {
    pub fn final_accuracy(&self) -> f64 {
        ratio(self.final_right, self.requests)
    }
    pub fn made_accuracy(&self) -> f64 {
        ratio(self.made_right, self.requests)
    }
    pub fn endpoints_per_operation(&self) -> f64 {
        ratio(self.endpoints, self.operations)
    }
    fn add(&mut self, o: &Score) {
        self.requests += o.requests;
        self.final_right += o.final_right;
        self.made_right += o.made_right;
        self.over += o.over;
        self.under += o.under;
        self.endpoints += o.endpoints;
        self.operations += o.operations;
    }
}

#[allow(clippy::cast_precision_loss)]
fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

/// Routes `requests` in process with the agent's own router, without the kernel: each
/// line `api<TAB>method<TAB>path<TAB>route`, the route the final routes give (or with
/// `as_made`, the route each call got when it was made), which the corpus's `score.py`
/// reads. For quick work on the rules; [`replay`] is the measure.
pub fn route_offline(requests: &[Request], as_made: bool) -> String {
    use monitor_agent::route::{RouteKind, Router};
    let mut router = Router::new(Vec::new(), 50);
    let made: Vec<String> = requests
        .iter()
        .map(|r| {
            router
                .route(&r.api, &r.method, &r.path, RouteKind::Complete)
                .route
                .to_string()
        })
        .collect();
    let mut out = String::new();
    for (r, at_the_time) in requests.iter().zip(made) {
        let route = if as_made {
            at_the_time
        } else {
            router.reroute(&r.api, &r.method, &at_the_time)
        };
        let _ = writeln!(out, "{}\t{}\t{}\t{route}", r.api, r.method, r.path);
    }
    out
}

/// Per API, and the total under `TOTAL`.
pub type Report = BTreeMap<String, Score>;

/// The report as a table.
pub fn table(report: &Report) -> String {
    let mut s = format!(
        "{:<11}{:>9}{:>8}{:>8}{:>7}{:>7}{:>11}{:>9}\n",
        "api", "requests", "final", "made", "over", "under", "endpoints", "per op"
    );
    for (api, sc) in report {
        let _ = writeln!(
            s,
            "{:<11}{:>9}{:>8.3}{:>8.3}{:>7}{:>7}{:>6}/{:<4}{:>9.2}",
            api,
            sc.requests,
            sc.final_accuracy(),
            sc.made_accuracy(),
            sc.over,
            sc.under,
            sc.endpoints,
            sc.operations,
            sc.endpoints_per_operation()
        );
    }
    s
}

/// Replays `requests` through a fresh agent and scores what it filed.
pub fn replay(requests: &[Request]) -> Report {
    let mut apis: Vec<&str> = requests.iter().map(|r| r.api.as_str()).collect();
    apis.sort_unstable();
    apis.dedup();
    let ports: HashMap<&str, u16> = apis.iter().copied().zip(free_ports(apis.len())).collect();
    let server = Server::start(&ports.values().copied().collect::<Vec<_>>());
    let rules: Vec<String> = ports
        .iter()
        .flat_map(|(api, port)| ["--service".to_string(), format!("{api}=port:{port}")])
        .collect();
    let mut args: Vec<&str> = rules.iter().map(String::as_str).collect();
    args.extend(["--max-endpoints", "200000", "--recent-calls", "10"]);
    let agent = Agent::start_with(&args);
    send_all(requests, &ports);
    let ours =
        |r: &CallRecord| r.role == Role::Server && ports.values().any(|p| *p == r.server.port);
    let records = agent.wait_records(requests.len(), Duration::from_mins(2), ours);
    assert_eq!(
        records.len(),
        requests.len(),
        "the agent filed {} of the {} requests replayed",
        records.len(),
        requests.len()
    );
    let inventory: InventoryAnswer = agent.api("/api/v1/inventory");
    drop(server);
    score(requests, &records, &inventory)
}

/// nginx answering 200 to anything on each port.
struct Server {
    _proc: Proc,
    _dir: TempDir,
}

impl Server {
    fn start(ports: &[u16]) -> Server {
        let dir = TempDir::new("routes-nginx");
        let conf = NginxConf {
            dir: &dir.0,
            listen: ports
                .iter()
                .map(|p| Listen {
                    addr: SocketAddr::from(([127, 0, 0, 1], *p)),
                    tls: false,
                    http2: false,
                })
                .collect(),
            cert: None,
            access_log: false,
            locations: "        location / { return 200 'ok'; }",
        };
        let proc = spawn_nginx(&conf, &[]);
        Server {
            _proc: proc,
            _dir: dir,
        }
    }
}

/// Every request in order, over one keep-alive connection per API.
fn send_all(requests: &[Request], ports: &HashMap<&str, u16>) {
    let mut conns: HashMap<&str, BufReader<TcpStream>> = HashMap::new();
    for r in requests {
        let conn = conns.entry(&r.api).or_insert_with(|| {
            let s = TcpStream::connect(("127.0.0.1", ports[r.api.as_str()])).expect("connect");
            s.set_read_timeout(Some(Duration::from_secs(10))).ok();
            BufReader::new(s)
        });
        let head = format!(
            "{} {} HTTP/1.1\r\nHost: {}\r\nContent-Length: 0\r\n\r\n",
            r.method, r.path, r.api
        );
        conn.get_mut().write_all(head.as_bytes()).expect("send");
        read_response(conn, r.method == "HEAD");
    }
}

/// Reads one response (headers, then `Content-Length` bytes unless it answers a HEAD).
fn read_response(conn: &mut BufReader<TcpStream>, head: bool) {
    let mut length = 0usize;
    let mut line = String::new();
    loop {
        line.clear();
        let n = conn.read_line(&mut line).expect("response");
        assert!(n > 0, "nginx closed the connection");
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                length = v.trim().parse().unwrap_or(0);
            }
        }
    }
    if !head && length > 0 {
        let mut body = vec![0; length];
        conn.read_exact(&mut body).expect("body");
    }
}

/// Scores the records (as made) and the final inventory against the templates. Each API
/// was sent on one connection, which the agent parses in order, so its records come in
/// the order its requests went (record paths cannot be compared: secret-looking values in
/// them are hashed).
fn score(requests: &[Request], records: &[CallRecord], inv: &InventoryAnswer) -> Report {
    let mut sent: HashMap<&str, Vec<&Request>> = HashMap::new();
    for r in requests {
        sent.entry(&r.api).or_default().push(r);
    }
    let mut filed: HashMap<String, Vec<&CallRecord>> = HashMap::new();
    for rec in records {
        let api = rec
            .server
            .service
            .as_deref()
            .unwrap_or_default()
            .to_string();
        filed.entry(api).or_default().push(rec);
    }
    let mut report = Report::new();
    let mut per_template: HashMap<(String, String, String), usize> = HashMap::new();
    for (api, reqs) in &sent {
        let sc = report.entry((*api).to_string()).or_default();
        let recs = filed.get(*api).map_or(&[][..], Vec::as_slice);
        assert_eq!(
            recs.len(),
            reqs.len(),
            "{api}: records and requests differ in number"
        );
        for (req, rec) in reqs.iter().zip(recs) {
            assert_eq!(
                rec.method, req.method,
                "{api}: records out of order at {}",
                req.path
            );
            let want = mask(&req.template);
            sc.requests += 1;
            let got = mask(&rec.route);
            if got == want {
                sc.made_right += 1;
            } else {
                let (over, under) = merge_kind(&got, &want);
                sc.over += usize::from(over);
                sc.under += usize::from(under);
            }
            *per_template
                .entry(((*api).to_string(), req.method.clone(), want))
                .or_default() += 1;
        }
    }
    let mut endpoints: HashMap<(String, String, String), u64> = HashMap::new();
    for e in &inv.endpoints {
        if let Some(sc) = report.get_mut(&e.service) {
            sc.endpoints += 1;
            let k = (e.service.clone(), e.method.clone(), mask(&e.route));
            *endpoints.entry(k).or_default() += e.calls;
        }
    }
    for ((api, method, t), n) in &per_template {
        let calls = endpoints
            .get(&(api.clone(), method.clone(), t.clone()))
            .copied();
        let sc = report.entry(api.clone()).or_default();
        sc.operations += 1;
        sc.final_right += usize::try_from(calls.unwrap_or(0)).unwrap_or(0).min(*n);
    }
    let mut total = Score::default();
    for sc in report.values() {
        total.add(sc);
    }
    report.insert("TOTAL".into(), total);
    report
}

/// Whether a wrong route has a parameter where the template has a literal, and a literal
/// where it has a parameter.
fn merge_kind(got: &str, want: &str) -> (bool, bool) {
    let (g, w): (Vec<&str>, Vec<&str>) = (got.split('/').collect(), want.split('/').collect());
    if g.len() != w.len() {
        return (false, false);
    }
    let over = g
        .iter()
        .zip(&w)
        .any(|(a, b)| a.contains("{x}") && !b.contains("{x}"));
    let under = g
        .iter()
        .zip(&w)
        .any(|(a, b)| !a.contains("{x}") && b.contains("{x}"));
    (over, under)
}
