//! The agent's HTTP endpoint: health, metrics and the JSON query API.

mod error;
mod query;
pub mod response;
pub(crate) mod serve;

use std::{
    net::{IpAddr, SocketAddr},
    sync::{Arc, Mutex, RwLock},
};

use axum::{
    extract::State,
    http::{header, StatusCode},
    middleware,
    response::{IntoResponse, Response},
    routing::get,
    Router,
};
use thiserror::Error;

pub use error::ApiError;

use crate::{
    calls::RecentCalls, enforcement::Enforcement, health::Health, identity::KubeIndex,
    inventory::Inventory, metrics::Metrics, spec::registry::SpecRegistry, violations::Violations,
};

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ListenError {
    #[error("refusing to listen on non-loopback address {0} without an API token (set --api-token or MONITOR_API_TOKEN)")]
    TokenRequired(SocketAddr),
}

/// Off loopback, the query API must be protected; `/metrics` and `/healthz` stay open so
/// Prometheus and probes keep working.
pub fn check_listen(addr: SocketAddr, token: Option<&str>) -> Result<(), ListenError> {
    if !addr.ip().is_loopback() && token.is_none_or(str::is_empty) {
        return Err(ListenError::TokenRequired(addr));
    }
    Ok(())
}

#[derive(Clone)]
pub(crate) struct ApiState {
    /// Which of the threads that see traffic still run, for `/healthz`.
    pub(crate) health: Arc<Health>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) inventory: Arc<Mutex<Inventory>>,
    pub(crate) recent: Arc<RecentCalls>,
    pub(crate) specs: Arc<Mutex<SpecRegistry>>,
    pub(crate) violations: Arc<Violations>,
    pub(crate) enforcement: Arc<Enforcement>,
    /// Kubernetes names, when the agent reads them.
    pub(crate) kube: Option<Arc<RwLock<KubeIndex>>>,
    /// Required as `Authorization: Bearer` on `/api/` when set.
    pub(crate) token: Option<Arc<str>>,
    /// Connection and follow-stream limits.
    pub(crate) guard: Arc<serve::Guard>,
}

pub(crate) fn router(state: ApiState) -> Router {
    let api = Router::new()
        .route("/api/v1/inventory", get(query::inventory))
        .route("/api/v1/inventory/unused", get(query::unused))
        .route("/api/v1/calls", get(query::calls))
        .route("/api/v1/openapi", get(query::openapi))
        .route("/api/v1/specs", get(query::specs))
        .route("/api/v1/violations", get(query::violations))
        .route("/api/v1/policy", get(query::policy))
        .route("/api/v1/workloads", get(query::workloads))
        .fallback(api_not_found)
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .merge(api)
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            require_local_host,
        ))
        .with_state(state)
}

/// Without a token the API trusts whoever reaches its loopback address, and a web page the
/// operator opens could reach it too by DNS rebinding (a name of the page's that resolves
/// to 127.0.0.1). The browser sends that name as `Host`: only addresses and `localhost`
/// are accepted then.
async fn require_local_host(
    State(state): State<ApiState>,
    req: axum::extract::Request,
    next: middleware::Next,
) -> Response {
    if state.token.is_none() {
        if let Some(host) = req.headers().get(header::HOST) {
            if !is_local_host(host.as_bytes()) {
                let shown = String::from_utf8_lossy(host.as_bytes()).into_owned();
                return ApiError::new(
                    StatusCode::MISDIRECTED_REQUEST,
                    format!("Host {shown:?} is not an address: without --api-token this agent answers only requests to an IP address or localhost"),
                )
                .into_response();
            }
        }
    }
    next.run(req).await
}

fn is_port(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// An IP address or `localhost`, with or without a port.
fn is_local_host(host: &[u8]) -> bool {
    let Ok(host) = std::str::from_utf8(host) else {
        return false;
    };
    // A bare IPv6 address (not valid in `Host`, but unambiguous).
    if host.parse::<IpAddr>().is_ok() {
        return true;
    }
    let name = if let Some(rest) = host.strip_prefix('[') {
        match rest.split_once(']') {
            Some((addr, "")) => addr,
            Some((addr, port)) if port.strip_prefix(':').is_some_and(is_port) => addr,
            _ => return false,
        }
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) if is_port(port) => name,
            _ => host,
        }
    };
    name.parse::<IpAddr>().is_ok()
        || name.eq_ignore_ascii_case("localhost")
        || name.eq_ignore_ascii_case("localhost.")
}

/// Compares in time independent of where the strings differ.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn require_token(
    State(state): State<ApiState>,
    req: axum::extract::Request,
    next: middleware::Next,
) -> Response {
    if let Some(token) = &state.token {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        let ok = given.is_some_and(|g| same_secret(g.as_bytes(), token.as_bytes()));
        if !ok {
            let mut r = ApiError::new(
                StatusCode::UNAUTHORIZED,
                if given.is_some() {
                    "wrong API token"
                } else {
                    "this API needs a token: send Authorization: Bearer <token>"
                },
            )
            .into_response();
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
            return r;
        }
    }
    next.run(req).await
}

/// 200 while every part that sees traffic runs; 503 naming those that stopped, so that a
/// liveness probe restarts an agent that would otherwise serve its API blind.
async fn healthz(State(state): State<ApiState>) -> Response {
    let stopped = state.health.stopped();
    if stopped.is_empty() {
        return "ok\n".into_response();
    }
    (
        StatusCode::SERVICE_UNAVAILABLE,
        format!("stopped: {}\n", stopped.join(", ")),
    )
        .into_response()
}

async fn metrics(State(state): State<ApiState>) -> Response {
    let body = state.metrics.encode();
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

async fn api_not_found(uri: axum::http::Uri) -> Response {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!(
            "no API endpoint {}: try /api/v1/inventory, /api/v1/inventory/unused, /api/v1/calls, /api/v1/openapi, /api/v1/specs, /api/v1/violations, /api/v1/policy",
            uri.path()
        ),
    )
    .into_response()
}

async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        "not found: try /healthz, /metrics or /api/v1/inventory\n",
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_loopback_needs_token() {
        let any: SocketAddr = "0.0.0.0:9464".parse().unwrap();
        let lo: SocketAddr = "127.0.0.1:9464".parse().unwrap();
        let lo6: SocketAddr = "[::1]:9464".parse().unwrap();
        assert_eq!(
            check_listen(any, None),
            Err(ListenError::TokenRequired(any))
        );
        assert_eq!(
            check_listen(any, Some("")),
            Err(ListenError::TokenRequired(any))
        );
        assert!(check_listen(any, Some("t0k")).is_ok());
        assert!(check_listen(lo, None).is_ok());
        assert!(check_listen(lo6, None).is_ok());
    }

    #[test]
    fn only_addresses_and_localhost_are_local_hosts() {
        for h in [
            "127.0.0.1",
            "127.0.0.1:9464",
            "[::1]:9464",
            "[::1]",
            "::1",
            "10.1.2.3:80",
            "localhost",
            "LocalHost:9464",
            "localhost.",
        ] {
            assert!(is_local_host(h.as_bytes()), "{h}");
        }
        for h in [
            "evil.example",
            "evil.example:9464",
            "127.0.0.1.nip.io",
            "localhost.evil.example",
            "",
            "[::1",
            "127.0.0.1:x",
        ] {
            assert!(!is_local_host(h.as_bytes()), "{h}");
        }
        assert!(!is_local_host(b"\xff"));
    }

    #[test]
    fn secrets_compare_exactly() {
        assert!(same_secret(b"abc", b"abc"));
        assert!(!same_secret(b"abc", b"abd"));
        assert!(!same_secret(b"abc", b"abcd"));
        assert!(!same_secret(b"", b"a"));
    }
}
