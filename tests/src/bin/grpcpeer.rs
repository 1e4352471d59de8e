//! `grpcpeer`: a real gRPC peer (tonic + prost, plaintext h2c, loopback only)
//! for end-to-end tests of the agent's HTTP/2 + gRPC decoder.
//!
//! The `demo.Greeter` service is written by hand the way tonic's generated
//! code is, so neither protoc nor a build script is needed:
//!
//! ```proto
//! package demo;
//! service Greeter {
//!   rpc SayHello(HelloRequest) returns (HelloReply);
//!   rpc CountTo(CountRequest) returns (stream Count);
//! }
//! message HelloRequest { string name = 1; }
//! message HelloReply { string message = 1; }
//! message CountRequest { int32 n = 1; bool fail = 2; }
//! message Count { int32 i = 1; }
//! ```

#[path = "../peer_main.rs"]
mod peer_main;

use std::fmt::Write as _;
use std::{convert::Infallible, process::ExitCode, time::Duration};

use clap::{Parser, Subcommand};
use futures_util::stream;
use tonic::{
    codegen::{http, Body, BoxFuture, BoxStream, Context, Poll, Service, StdError},
    server::{NamedService, ServerStreamingService, UnaryService},
    transport::{server::TcpIncoming, Channel, Endpoint, Server},
    Code, Request, Response, Status,
};
use tonic_prost::ProstCodec;

const SAY_HELLO: &str = "/demo.Greeter/SayHello";
const COUNT_TO: &str = "/demo.Greeter/CountTo";
/// Bound on one whole client run.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound on connecting, and on each call.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------- messages

#[derive(Clone, PartialEq, prost::Message)]
pub struct HelloRequest {
    #[prost(string, tag = "1")]
    pub name: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct HelloReply {
    #[prost(string, tag = "1")]
    pub message: String,
}

#[derive(Clone, Copy, PartialEq, prost::Message)]
pub struct CountRequest {
    #[prost(int32, tag = "1")]
    pub n: i32,
    #[prost(bool, tag = "2")]
    pub fail: bool,
}

#[derive(Clone, Copy, PartialEq, prost::Message)]
pub struct Count {
    #[prost(int32, tag = "1")]
    pub i: i32,
}

// ---------------------------------------------------------------- CLI

#[derive(Parser)]
#[command(about = "gRPC (h2c) test peer on 127.0.0.1: service demo.Greeter")]
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
    },
    /// Make the calls below, in this order, on one channel; print one JSON line.
    Client(ClientArgs),
}

#[derive(Parser)]
struct ClientArgs {
    #[arg(long)]
    port: u16,
    /// SayHello calls that succeed (grpc-status 0).
    #[arg(long, default_value_t = 0)]
    ok: u32,
    /// SayHello{name:"missing"} calls (grpc-status 5).
    #[arg(long, default_value_t = 0)]
    missing: u32,
    /// SayHello{name:"boom"} calls (grpc-status 13).
    #[arg(long, default_value_t = 0)]
    boom: u32,
    /// One CountTo{n:N} call when N > 0 (N messages, grpc-status 0).
    #[arg(long, default_value_t = 0)]
    stream: i32,
    /// One CountTo{n:N, fail:true} call when N > 0 (N messages, then grpc-status 9).
    #[arg(long, default_value_t = 0)]
    stream_fail: i32,
    /// CountTo{n:0, fail:true} calls (trailers-only response, grpc-status 9).
    #[arg(long, default_value_t = 0)]
    stream_fail_empty: u32,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    peer_main::run("grpcpeer", async {
        match cli.cmd {
            Cmd::Server { port } => server(port).await,
            Cmd::Client(args) => match tokio::time::timeout(CLIENT_TIMEOUT, client(args)).await {
                Ok(res) => res,
                Err(_) => Err(format!("timed out after {} s", CLIENT_TIMEOUT.as_secs())),
            },
        }
    })
}

// ---------------------------------------------------------------- server

/// The `demo.Greeter` service, routed by path as tonic's generated server is.
#[derive(Clone, Copy, Default)]
struct GreeterServer;

impl NamedService for GreeterServer {
    const NAME: &'static str = "demo.Greeter";
}

struct SayHelloSvc;

impl UnaryService<HelloRequest> for SayHelloSvc {
    type Response = HelloReply;
    type Future = BoxFuture<Response<HelloReply>, Status>;

    fn call(&mut self, request: Request<HelloRequest>) -> Self::Future {
        Box::pin(async move {
            let name = request.into_inner().name;
            match name.as_str() {
                "missing" => Err(Status::not_found("no such person")),
                "boom" => Err(Status::internal("boom")),
                _ => Ok(Response::new(HelloReply {
                    message: format!("hello {name}"),
                })),
            }
        })
    }
}

struct CountToSvc;

impl ServerStreamingService<CountRequest> for CountToSvc {
    type Response = Count;
    type ResponseStream = BoxStream<Count>;
    type Future = BoxFuture<Response<Self::ResponseStream>, Status>;

    fn call(&mut self, request: Request<CountRequest>) -> Self::Future {
        Box::pin(async move {
            let CountRequest { n, fail } = request.into_inner();
            if n <= 0 && fail {
                // Nothing to stream: tonic answers with a trailers-only response.
                return Err(Status::failed_precondition("stopped"));
            }
            let mut items: Vec<Result<Count, Status>> = (1..=n).map(|i| Ok(Count { i })).collect();
            if fail {
                items.push(Err(Status::failed_precondition("stopped")));
            }
            let stream: Self::ResponseStream = Box::pin(stream::iter(items));
            Ok(Response::new(stream))
        })
    }
}

impl<B> Service<http::Request<B>> for GreeterServer
where
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        match req.uri().path() {
            SAY_HELLO => Box::pin(async move {
                let codec = ProstCodec::<HelloReply, HelloRequest>::default();
                let mut grpc = tonic::server::Grpc::new(codec);
                Ok(grpc.unary(SayHelloSvc, req).await)
            }),
            COUNT_TO => Box::pin(async move {
                let codec = ProstCodec::<Count, CountRequest>::default();
                let mut grpc = tonic::server::Grpc::new(codec);
                Ok(grpc.server_streaming(CountToSvc, req).await)
            }),
            other => {
                let status = Status::unimplemented(format!("no method {other}"));
                Box::pin(async move { Ok(status.into_http()) })
            }
        }
    }
}

async fn server(port: u16) -> Result<(), String> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .map_err(|e| format!("binding 127.0.0.1:{port}: {e}"))?;
    peer_main::say("ready");
    Server::builder()
        .serve_with_incoming(GreeterServer, TcpIncoming::from(listener))
        .await
        .map_err(|e| format!("serving: {e}"))
}

// ---------------------------------------------------------------- client

struct Call {
    method: &'static str,
    grpc_status: i32,
    messages: u32,
}

/// A status the server sent is a result; one the client made up from a
/// transport error (it carries the error as its source) is a failure.
fn server_status(method: &str, status: Status) -> Result<Status, String> {
    if std::error::Error::source(&status).is_some() || status.code() == Code::Unavailable {
        Err(format!("{method}: transport failure: {}", chain(&status)))
    } else {
        Ok(status)
    }
}

/// An error with its sources, `a: b: c`.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let _ = write!(text, ": {s}");
        cur = s.source();
    }
    text
}

async fn say_hello(grpc: &mut tonic::client::Grpc<Channel>, name: &str) -> Result<Call, String> {
    grpc.ready()
        .await
        .map_err(|e| format!("{SAY_HELLO}: channel not ready: {e}"))?;
    let codec = ProstCodec::<HelloRequest, HelloReply>::default();
    let path = http::uri::PathAndQuery::from_static(SAY_HELLO);
    let req = Request::new(HelloRequest {
        name: name.to_string(),
    });
    let (grpc_status, messages) = match grpc.unary(req, path, codec).await {
        Ok(_) => (0, 1),
        Err(s) => (server_status(SAY_HELLO, s)?.code() as i32, 0),
    };
    Ok(Call {
        method: SAY_HELLO,
        grpc_status,
        messages,
    })
}

async fn count_to(
    grpc: &mut tonic::client::Grpc<Channel>,
    n: i32,
    fail: bool,
) -> Result<Call, String> {
    grpc.ready()
        .await
        .map_err(|e| format!("{COUNT_TO}: channel not ready: {e}"))?;
    let codec = ProstCodec::<CountRequest, Count>::default();
    let path = http::uri::PathAndQuery::from_static(COUNT_TO);
    let req = Request::new(CountRequest { n, fail });
    let mut messages = 0;
    let grpc_status = match grpc.server_streaming(req, path, codec).await {
        Err(s) => server_status(COUNT_TO, s)?.code() as i32,
        Ok(resp) => {
            let mut body = resp.into_inner();
            // Bounded: the server sends at most n messages, and the call has a deadline.
            loop {
                match body.message().await {
                    Ok(Some(_)) => messages += 1,
                    Ok(None) => break 0,
                    Err(s) => break server_status(COUNT_TO, s)?.code() as i32,
                }
            }
        }
    };
    Ok(Call {
        method: COUNT_TO,
        grpc_status,
        messages,
    })
}

async fn client(args: ClientArgs) -> Result<(), String> {
    let endpoint = Endpoint::try_from(format!("http://127.0.0.1:{}", args.port))
        .map_err(|e| format!("endpoint: {e}"))?
        .connect_timeout(CALL_TIMEOUT)
        .timeout(CALL_TIMEOUT);
    // One Channel is one HTTP/2 connection; every call below shares it.
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| format!("connecting to 127.0.0.1:{}: {}", args.port, chain(&e)))?;
    let mut grpc = tonic::client::Grpc::new(channel);

    let mut calls = Vec::new();
    for i in 0..args.ok {
        calls.push(say_hello(&mut grpc, &format!("peer{i}")).await?);
    }
    for _ in 0..args.missing {
        calls.push(say_hello(&mut grpc, "missing").await?);
    }
    for _ in 0..args.boom {
        calls.push(say_hello(&mut grpc, "boom").await?);
    }
    if args.stream > 0 {
        calls.push(count_to(&mut grpc, args.stream, false).await?);
    }
    if args.stream_fail > 0 {
        calls.push(count_to(&mut grpc, args.stream_fail, true).await?);
    }
    for _ in 0..args.stream_fail_empty {
        calls.push(count_to(&mut grpc, 0, true).await?);
    }
    drop(grpc);

    let json = serde_json::json!({
        "calls": calls
            .iter()
            .map(|c| serde_json::json!({
                "method": c.method,
                "grpc_status": c.grpc_status,
                "messages": c.messages,
            }))
            .collect::<Vec<_>>(),
    });
    peer_main::say(&json.to_string());
    Ok(())
}
