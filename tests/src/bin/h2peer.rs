//! `h2peer`: a real HTTP/2 peer (h2c, prior knowledge, loopback only) built on
//! the `h2` crate, for end-to-end tests of the agent's HTTP/2 decoder.
//!
//! `h2peer server --port P [--delay-ms D]` serves until killed;
//! `h2peer client --port P --count N --concurrency C [...]` issues N requests
//! on ONE connection and prints one JSON line with the results.

#[path = "../peer_main.rs"]
mod peer_main;

use std::{
    future::poll_fn,
    process::ExitCode,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use clap::{Parser, Subcommand};
use futures_util::stream::{FuturesUnordered, StreamExt};
use h2::{client::SendRequest, server::SendResponse, Reason, RecvStream, SendStream};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use tokio::net::{TcpListener, TcpStream};

/// DATA is sent in chunks of at most this many bytes.
const CHUNK: usize = 16 * 1024;
/// Largest body `/bytes/N` will send.
const MAX_BYTES: usize = 10 * 1024 * 1024;
/// Streams the server lets the client keep open at once.
const SERVER_MAX_STREAMS: u32 = 1000;
/// Bound on one server-side stream (reading the request, answering).
const STREAM_TIMEOUT: Duration = Duration::from_mins(1);
/// Bound on the HTTP/2 handshake, both sides.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Parser)]
#[command(about = "HTTP/2 (h2c prior knowledge) test peer on 127.0.0.1")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Listen on 127.0.0.1:PORT, print `ready`, serve until killed.
    Server {
        #[arg(long)]
        port: u16,
        /// Delay every response by this many milliseconds (after the request
        /// body has been read).
        #[arg(long, default_value_t = 0)]
        delay_ms: u64,
    },
    /// Issue COUNT requests on one connection, print one JSON line.
    Client(ClientArgs),
}

#[derive(Parser)]
struct ClientArgs {
    #[arg(long)]
    port: u16,
    /// Number of requests.
    #[arg(long, default_value_t = 1)]
    count: usize,
    /// Most requests in flight at once.
    #[arg(long, default_value_t = 1)]
    concurrency: usize,
    /// Request i goes to `{prefix}{i}` (unless --paths is given).
    #[arg(long, default_value = "/items/")]
    path_prefix: String,
    /// Exact paths, comma separated, used round-robin to reach COUNT.
    #[arg(long, value_delimiter = ',')]
    paths: Vec<String>,
    /// Extra request header `name:value` (repeatable).
    #[arg(long = "header")]
    headers: Vec<String>,
    /// Request method (default GET, or POST when --body-bytes is given).
    #[arg(long)]
    method: Option<String>,
    /// Send a request body of this many bytes.
    #[arg(long, default_value_t = 0)]
    body_bytes: usize,
    /// After this many requests completed, print `paused` and wait for one
    /// line on stdin before sending the rest on the same connection.
    #[arg(long)]
    pause_after: Option<usize>,
    /// Bound on the request work (the stdin wait is not counted).
    #[arg(long, default_value_t = 30)]
    timeout_secs: u64,
    /// Bound on the wait for the stdin line after `paused`.
    #[arg(long, default_value_t = 300)]
    pause_timeout_secs: u64,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    peer_main::run("h2peer", async {
        match cli.cmd {
            Cmd::Server { port, delay_ms } => server(port, Duration::from_millis(delay_ms)).await,
            Cmd::Client(args) => client(args).await,
        }
    })
}

// ---------------------------------------------------------------- sending

/// Sends `data` on `stream` in chunks of at most [`CHUNK`] bytes, each only
/// once the peer's flow-control window has granted capacity for it.
async fn send_body(
    stream: &mut SendStream<Bytes>,
    mut data: Bytes,
    end: bool,
) -> Result<(), h2::Error> {
    if data.is_empty() {
        if end {
            stream.send_data(Bytes::new(), true)?;
        }
        return Ok(());
    }
    while !data.is_empty() {
        let want = data.len().min(CHUNK);
        stream.reserve_capacity(want);
        let mut cap = stream.capacity();
        while cap == 0 {
            cap = match poll_fn(|cx| stream.poll_capacity(cx)).await {
                Some(res) => res?,
                None => return Err(h2::Error::from(Reason::STREAM_CLOSED)),
            };
        }
        let chunk = data.split_to(want.min(cap));
        stream.send_data(chunk, end && data.is_empty())?;
    }
    Ok(())
}

/// Reads a whole body, handing each chunk's flow-control capacity back.
/// Returns the number of bytes read.
async fn drain(body: &mut RecvStream) -> Result<usize, h2::Error> {
    let mut total = 0;
    while let Some(chunk) = body.data().await {
        let chunk = chunk?;
        total += chunk.len();
        body.flow_control().release_capacity(chunk.len())?;
    }
    // Trailers, if the peer sent any, end the stream.
    body.trailers().await?;
    Ok(total)
}

/// `n` bytes of a repeating printable pattern.
fn pattern(n: usize) -> Bytes {
    let unit = b"0123456789abcdefghijklmnopqrstuvwxyz\n";
    Bytes::from(unit.iter().copied().cycle().take(n).collect::<Vec<u8>>())
}

// ---------------------------------------------------------------- server

struct InFlight {
    now: AtomicUsize,
    max: AtomicUsize,
}

impl InFlight {
    fn enter(&self) {
        let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        let prev = self.max.fetch_max(now, Ordering::SeqCst);
        if now > prev && (now <= 10 || now.is_multiple_of(10)) {
            eprintln!("h2peer server: max_in_flight {now}");
        }
    }
    fn leave(&self) {
        self.now.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn server(port: u16, delay: Duration) -> Result<(), String> {
    let listener = TcpListener::bind(("127.0.0.1", port))
        .await
        .map_err(|e| format!("binding 127.0.0.1:{port}: {e}"))?;
    peer_main::say("ready");
    let stats = Arc::new(InFlight {
        now: AtomicUsize::new(0),
        max: AtomicUsize::new(0),
    });
    loop {
        let (sock, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                eprintln!("h2peer server: accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let stats = stats.clone();
        tokio::spawn(async move {
            match serve_conn(sock, delay, stats).await {
                // Readiness probes connect and close without a word.
                Err(e) if e.contains("before reading preface") => {}
                Err(e) => eprintln!("h2peer server: connection from {peer}: {e}"),
                Ok(()) => {}
            }
        });
    }
}

async fn serve_conn(sock: TcpStream, delay: Duration, stats: Arc<InFlight>) -> Result<(), String> {
    let _ = sock.set_nodelay(true);
    let mut builder = h2::server::Builder::new();
    builder.max_concurrent_streams(SERVER_MAX_STREAMS);
    let mut conn = tokio::time::timeout(HANDSHAKE_TIMEOUT, builder.handshake::<_, Bytes>(sock))
        .await
        .map_err(|_| "handshake timed out".to_string())?
        .map_err(|e| format!("handshake: {e}"))?;
    // accept() also drives the connection; it returns None once it is closed.
    while let Some(next) = conn.accept().await {
        let (req, respond) = next.map_err(|e| format!("connection: {e}"))?;
        let stats = stats.clone();
        stats.enter();
        tokio::spawn(async move {
            let path = req.uri().path().to_string();
            match tokio::time::timeout(STREAM_TIMEOUT, handle(req, respond, delay)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => eprintln!("h2peer server: stream {path}: {e}"),
                Err(_) => eprintln!("h2peer server: stream {path}: timed out"),
            }
            stats.leave();
        });
    }
    Ok(())
}

/// What the server answers to one request path.
enum Reply {
    Body(StatusCode, Bytes),
    Trailers,
    Reset,
    /// A gRPC answer: one empty message, then `grpc-status` with this value, whatever it
    /// is (a hostile server's codes need not be the 17 defined ones).
    Grpc(String),
}

fn route(path: &str) -> Reply {
    let bad = |msg: &str| Reply::Body(StatusCode::BAD_REQUEST, Bytes::from(format!("{msg}\n")));
    if let Some(code) = path.strip_prefix("/status/") {
        return match code.parse::<u16>().ok().filter(|c| (200..=599).contains(c)) {
            Some(c) => Reply::Body(
                StatusCode::from_u16(c).expect("200..=599 is valid"),
                Bytes::from(format!("status {c}\n")),
            ),
            None => bad("bad status"),
        };
    }
    if let Some(n) = path.strip_prefix("/bytes/") {
        return match n.parse::<usize>().ok().filter(|n| *n <= MAX_BYTES) {
            Some(n) => Reply::Body(StatusCode::OK, pattern(n)),
            None => bad("bad size"),
        };
    }
    if let Some(code) = path.strip_prefix("/grpc-status/") {
        return Reply::Grpc(code.to_string());
    }
    match path {
        "/trailers" => Reply::Trailers,
        "/reset" => Reply::Reset,
        _ => Reply::Body(StatusCode::OK, Bytes::from(format!("ok {path}\n"))),
    }
}

fn head(status: StatusCode, len: usize) -> Response<()> {
    let mut resp = Response::new(());
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert("content-type", HeaderValue::from_static("text/plain"));
    h.insert("content-length", HeaderValue::from(len));
    resp
}

async fn handle(
    req: Request<RecvStream>,
    mut respond: SendResponse<Bytes>,
    delay: Duration,
) -> Result<(), h2::Error> {
    let (parts, mut body) = req.into_parts();
    drain(&mut body).await?;
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    match route(parts.uri.path()) {
        Reply::Reset => respond.send_reset(Reason::INTERNAL_ERROR),
        Reply::Grpc(code) => {
            let mut resp = Response::new(());
            resp.headers_mut()
                .insert("content-type", HeaderValue::from_static("application/grpc"));
            let mut stream = respond.send_response(resp, false)?;
            send_body(&mut stream, Bytes::from_static(&[0, 0, 0, 0, 0]), false).await?;
            let mut trailers = HeaderMap::new();
            if let Ok(v) = HeaderValue::from_str(&code) {
                trailers.insert("grpc-status", v);
            }
            stream.send_trailers(trailers)?;
        }
        Reply::Trailers => {
            let body = Bytes::from_static(b"ok\n");
            let mut stream = respond.send_response(head(StatusCode::OK, body.len()), false)?;
            send_body(&mut stream, body, false).await?;
            let mut trailers = HeaderMap::new();
            trailers.insert("x-checksum", HeaderValue::from_static("abc"));
            stream.send_trailers(trailers)?;
        }
        Reply::Body(status, body) => {
            // 204/304 and HEAD carry no body.
            let bodiless = status == StatusCode::NO_CONTENT
                || status == StatusCode::NOT_MODIFIED
                || parts.method == Method::HEAD;
            if bodiless {
                let len = if status == StatusCode::NO_CONTENT {
                    0
                } else {
                    body.len()
                };
                respond.send_response(head(status, len), true)?;
            } else {
                let mut stream = respond.send_response(head(status, body.len()), false)?;
                send_body(&mut stream, body, true).await?;
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------- client

struct Plan {
    port: u16,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
}

struct Outcome {
    index: usize,
    path: String,
    status: u16,
    reset: bool,
    bytes: usize,
}

fn parse_headers(raw: &[String]) -> Result<HeaderMap, String> {
    let mut map = HeaderMap::new();
    for h in raw {
        let (k, v) = h
            .split_once(':')
            .ok_or_else(|| format!("--header {h:?}: expected name:value"))?;
        let name = HeaderName::from_bytes(k.trim().to_ascii_lowercase().as_bytes())
            .map_err(|e| format!("--header {h:?}: {e}"))?;
        let value = HeaderValue::from_str(v.trim()).map_err(|e| format!("--header {h:?}: {e}"))?;
        map.append(name, value);
    }
    Ok(map)
}

async fn one(
    sender: SendRequest<Bytes>,
    plan: Arc<Plan>,
    index: usize,
    path: String,
) -> Result<Outcome, String> {
    let label = format!("request {index} ({path})");
    let fatal = |e: h2::Error| format!("{label}: {e}");
    let reset = |path: String| Outcome {
        index,
        path,
        status: 0,
        reset: true,
        bytes: 0,
    };
    let mut sender = sender.ready().await.map_err(fatal)?;
    let mut req = Request::new(());
    *req.method_mut() = plan.method.clone();
    *req.uri_mut() = format!("http://127.0.0.1:{}{path}", plan.port)
        .parse()
        .map_err(|e| format!("request {index}: bad path {path:?}: {e}"))?;
    *req.headers_mut() = plan.headers.clone();
    let has_body = !plan.body.is_empty();
    if has_body {
        req.headers_mut()
            .insert("content-length", HeaderValue::from(plan.body.len()));
    }
    let (resp_fut, mut send) = sender.send_request(req, !has_body).map_err(fatal)?;
    if has_body {
        match send_body(&mut send, plan.body.clone(), true).await {
            Ok(()) => {}
            Err(e) if e.is_reset() && e.is_remote() => return Ok(reset(path)),
            // The response may already say why; look at it below.
            Err(_) => {}
        }
    }
    let resp = match resp_fut.await {
        Ok(r) => r,
        Err(e) if e.is_reset() && e.is_remote() => return Ok(reset(path)),
        Err(e) => return Err(fatal(e)),
    };
    let status = resp.status().as_u16();
    let mut body = resp.into_body();
    let bytes = match drain(&mut body).await {
        Ok(n) => n,
        Err(e) if e.is_reset() && e.is_remote() => return Ok(reset(path)),
        Err(e) => return Err(fatal(e)),
    };
    Ok(Outcome {
        index,
        path,
        status,
        reset: false,
        bytes,
    })
}

/// Runs requests `range` with at most `concurrency` in flight, appending to
/// `out`. Returns the largest number that was in flight at once.
async fn run_batch(
    sender: &SendRequest<Bytes>,
    plan: &Arc<Plan>,
    paths: &[String],
    range: std::ops::Range<usize>,
    concurrency: usize,
    out: &mut Vec<Outcome>,
) -> Result<usize, String> {
    let mut pending = FuturesUnordered::new();
    let mut next = range.start;
    let mut max_in_flight = 0;
    loop {
        while next < range.end && pending.len() < concurrency {
            pending.push(one(sender.clone(), plan.clone(), next, paths[next].clone()));
            next += 1;
        }
        max_in_flight = max_in_flight.max(pending.len());
        match pending.next().await {
            Some(res) => out.push(res?),
            None => break,
        }
    }
    Ok(max_in_flight)
}

async fn wait_for_line(limit: Duration) -> Result<(), String> {
    let read = tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).map(|n| n > 0)
    });
    match tokio::time::timeout(limit, read).await {
        Err(_) => Err(format!(
            "no line on stdin within {} s after `paused`",
            limit.as_secs()
        )),
        Ok(Err(e)) => Err(format!("stdin reader: {e}")),
        Ok(Ok(Err(e))) => Err(format!("reading stdin: {e}")),
        Ok(Ok(Ok(false))) => Err("stdin closed while paused".into()),
        Ok(Ok(Ok(true))) => Ok(()),
    }
}

#[allow(clippy::too_many_lines, reason = "one scenario, read top to bottom")]
async fn client(args: ClientArgs) -> Result<(), String> {
    if args.concurrency == 0 {
        return Err("--concurrency must be at least 1".into());
    }
    let method = match &args.method {
        Some(m) => Method::from_bytes(m.to_ascii_uppercase().as_bytes())
            .map_err(|e| format!("--method {m:?}: {e}"))?,
        None if args.body_bytes > 0 => Method::POST,
        None => Method::GET,
    };
    let plan = Arc::new(Plan {
        port: args.port,
        method,
        headers: parse_headers(&args.headers)?,
        body: pattern(args.body_bytes),
    });
    let paths: Vec<String> = if args.paths.is_empty() {
        (0..args.count)
            .map(|i| format!("{}{i}", args.path_prefix))
            .collect()
    } else {
        args.paths
            .iter()
            .cycle()
            .take(args.count)
            .cloned()
            .collect()
    };
    let budget = Duration::from_secs(args.timeout_secs);
    let started = Instant::now();

    let connect = async {
        let tcp = TcpStream::connect(("127.0.0.1", args.port))
            .await
            .map_err(|e| format!("connecting to 127.0.0.1:{}: {e}", args.port))?;
        let _ = tcp.set_nodelay(true);
        h2::client::Builder::new()
            .handshake::<_, Bytes>(tcp)
            .await
            .map_err(|e| format!("HTTP/2 handshake: {e}"))
    };
    let (sender, connection) = tokio::time::timeout(HANDSHAKE_TIMEOUT, connect)
        .await
        .map_err(|_| "connecting timed out".to_string())??;
    let conn_task = tokio::spawn(connection);

    let pause_at = args.pause_after.map_or(args.count, |k| k.min(args.count));
    let mut results = Vec::with_capacity(args.count);
    let first = tokio::time::timeout(
        budget,
        run_batch(
            &sender,
            &plan,
            &paths,
            0..pause_at,
            args.concurrency,
            &mut results,
        ),
    )
    .await
    .map_err(|_| format!("timed out after {} s", budget.as_secs()))??;
    let mut max_in_flight = first;
    let mut work = started.elapsed();

    if args.pause_after.is_some() {
        peer_main::say("paused");
        wait_for_line(Duration::from_secs(args.pause_timeout_secs)).await?;
        let resumed = Instant::now();
        let left = budget.saturating_sub(work);
        let second = tokio::time::timeout(
            left,
            run_batch(
                &sender,
                &plan,
                &paths,
                pause_at..args.count,
                args.concurrency,
                &mut results,
            ),
        )
        .await
        .map_err(|_| format!("timed out after {} s", budget.as_secs()))??;
        max_in_flight = max_in_flight.max(second);
        work += resumed.elapsed();
    }

    // Graceful close: with every SendRequest gone and no stream open, the
    // connection sends GOAWAY and finishes.
    drop(sender);
    match tokio::time::timeout(Duration::from_secs(5), conn_task).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => eprintln!("h2peer client: closing connection: {e}"),
        Ok(Err(e)) => eprintln!("h2peer client: connection task: {e}"),
        Err(_) => eprintln!("h2peer client: connection did not close within 5 s"),
    }

    results.sort_by_key(|r| r.index);
    let json = serde_json::json!({
        "completed": results.len(),
        "max_in_flight": max_in_flight,
        "elapsed_ms": work.as_millis() as u64,
        "results": results
            .iter()
            .map(|r| serde_json::json!({
                "path": r.path,
                "status": r.status,
                "reset": r.reset,
                "bytes": r.bytes,
            }))
            .collect::<Vec<_>>(),
    });
    peer_main::say(&json.to_string());
    Ok(())
}
