//! The agent's HTTP endpoint: health, metrics and (later) queries.

use std::{net::SocketAddr, sync::Arc};

use axum::{
    extract::State,
    http::{header, StatusCode},
    response::{IntoResponse, Response},
    routing::get,
    Router,
};
use thiserror::Error;

use crate::metrics::Metrics;

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
pub struct ApiState {
    pub metrics: Arc<Metrics>,
}

pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .with_state(state)
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

async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        "not found: try /healthz or /metrics\n",
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
}
