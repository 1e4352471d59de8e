//! `GET /api/v1/...` handlers. Every parameter is checked: an unknown or malformed one is a
//! 400 that names it, never silently ignored (a typo in a filter would otherwise return
//! everything and look like an answer).

use std::{collections::HashMap, convert::Infallible, time::SystemTime};

use super::{
    response::{
        CallsAnswer, InventoryAnswer, PolicyAnswer, SpecsAnswer, UnusedAnswer, ViolationsAnswer,
        WorkloadsAnswer,
    },
    serve::{Follower, FOLLOW_MAX, MAX_FOLLOWERS},
    ApiError, ApiState,
};
use crate::{
    calls::CallFilter,
    inventory::{openapi, view, SpecStatus},
    policy::Reason,
    violations::{ViolationFilter, ViolationRecord},
};
use axum::{
    body::Body,
    extract::{rejection::QueryRejection, Query, State},
    http::{header, StatusCode},
    response::{IntoResponse, Response},
    Json,
};

type Raw = Result<Query<Vec<(String, String)>>, QueryRejection>;

/// Checked query parameters.
struct Params(HashMap<String, String>);

impl Params {
    fn parse(raw: Raw, allowed: &[&str]) -> Result<Params, ApiError> {
        let Query(pairs) =
            raw.map_err(|e| ApiError::bad_request(format!("malformed query string: {e}")))?;
        let mut map = HashMap::new();
        for (k, v) in pairs {
            if !allowed.contains(&k.as_str()) {
                return Err(ApiError::bad_request(if allowed.is_empty() {
                    format!("unknown query parameter {k:?}: this endpoint takes none")
                } else {
                    format!(
                        "unknown query parameter {k:?} (allowed: {})",
                        allowed.join(", ")
                    )
                }));
            }
            if map.insert(k.clone(), v).is_some() {
                return Err(ApiError::bad_request(format!(
                    "query parameter {k:?} given twice"
                )));
            }
        }
        Ok(Params(map))
    }

    fn get(&self, k: &str) -> Option<&str> {
        self.0.get(k).map(String::as_str)
    }

    fn non_empty(&self, k: &str) -> Result<Option<String>, ApiError> {
        match self.get(k) {
            Some("") => Err(ApiError::bad_request(format!(
                "query parameter {k:?} is empty"
            ))),
            v => Ok(v.map(str::to_string)),
        }
    }
}

/// `since`: an RFC 3339 time, or a duration back from now (`15m`, `2h`, `7d`).
fn parse_since(s: &str) -> Result<SystemTime, ApiError> {
    if let Ok(t) = humantime::parse_rfc3339_weak(s) {
        return Ok(t);
    }
    if let Ok(d) = humantime::parse_duration(s) {
        return Ok(SystemTime::now()
            .checked_sub(d)
            .unwrap_or(SystemTime::UNIX_EPOCH));
    }
    Err(ApiError::bad_request(format!(
        "since={s:?} is neither an RFC 3339 time (2026-11-27T10:00:00Z) nor a duration (15m, 2h)"
    )))
}

fn parse_status(s: &str) -> Result<SpecStatus, ApiError> {
    SpecStatus::parse(s).ok_or_else(|| {
        ApiError::bad_request(format!(
            "spec_status={s:?} is not one of documented, shadow, zombie"
        ))
    })
}

pub(super) async fn inventory(State(st): State<ApiState>, raw: Raw) -> Result<Response, ApiError> {
    let p = Params::parse(raw, &["service", "spec_status", "since"])?;
    let filter = view::Filter {
        service: p.non_empty("service")?,
        spec_status: p.get("spec_status").map(parse_status).transpose()?,
        since: p.get("since").map(parse_since).transpose()?,
    };
    let endpoints = {
        let inv = st.inventory.lock().map_err(|_| internal())?;
        view::endpoints(&inv, &filter)
    };
    Ok(Json(InventoryAnswer {
        count: endpoints.len(),
        endpoints,
    })
    .into_response())
}

pub(super) async fn unused(State(st): State<ApiState>, raw: Raw) -> Result<Response, ApiError> {
    let p = Params::parse(raw, &["service"])?;
    let service = p.non_empty("service")?;
    let unused = {
        let inv = st.inventory.lock().map_err(|_| internal())?;
        view::unused(&inv, service.as_deref())
    };
    Ok(Json(UnusedAnswer {
        count: unused.len(),
        unused,
    })
    .into_response())
}

pub(super) async fn calls(State(st): State<ApiState>, raw: Raw) -> Result<Response, ApiError> {
    let p = Params::parse(raw, &["limit", "service", "route", "follow"])?;
    let limit = parse_limit(p.get("limit"), st.recent.capacity())?;
    let follow = parse_follow(p.get("follow"))?;
    let filter = CallFilter {
        service: p.non_empty("service")?,
        route: p.non_empty("route")?,
    };
    if follow {
        let place = follower(&st)?;
        let rx = st.recent.follow();
        return Ok(ndjson(place, rx, move |c: &crate::record::CallRecord| {
            filter.matches(c)
        }));
    }
    let calls = st.recent.latest(limit, &filter);
    Ok(Json(CallsAnswer {
        count: calls.len(),
        calls,
    })
    .into_response())
}

fn parse_limit(s: Option<&str>, cap: usize) -> Result<usize, ApiError> {
    match s {
        None => Ok(100.min(cap)),
        Some(s) => s
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=cap).contains(n))
            .ok_or_else(|| {
                ApiError::bad_request(format!("limit={s:?} must be a number from 1 to {cap}"))
            }),
    }
}

fn parse_follow(s: Option<&str>) -> Result<bool, ApiError> {
    match s {
        None | Some("false" | "0") => Ok(false),
        Some("true" | "1") => Ok(true),
        Some(s) => Err(ApiError::bad_request(format!(
            "follow={s:?} must be true or false"
        ))),
    }
}

/// A place for one more follow stream, or 503.
fn follower(st: &ApiState) -> Result<Follower, ApiError> {
    st.guard.follower().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{MAX_FOLLOWERS} follow streams are already open; try again later"),
        )
    })
}

/// New items as JSON Lines, while the client stays and for at most `FOLLOW_MAX`.
fn ndjson<T, F>(
    place: Follower,
    rx: tokio::sync::broadcast::Receiver<std::sync::Arc<T>>,
    keep: F,
) -> Response
where
    T: serde::Serialize + Send + Sync + 'static,
    F: Fn(&T) -> bool + Send + 'static,
{
    let until = tokio::time::Instant::now() + FOLLOW_MAX;
    let state = (rx, keep, place);
    let stream = futures_util::stream::unfold(state, move |(mut rx, keep, place)| async move {
        loop {
            let Ok(next) = tokio::time::timeout_at(until, rx.recv()).await else {
                return None;
            };
            match next {
                Ok(c) if keep(&c) => {
                    let mut line = serde_json::to_vec(&*c).unwrap_or_default();
                    line.push(b'\n');
                    let line = Ok::<_, Infallible>(bytes::Bytes::from(line));
                    return Some((line, (rx, keep, place)));
                }
                Ok(_) => {}
                // A slow follower skips what it missed.
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    (
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(stream),
    )
        .into_response()
}

pub(super) async fn openapi(State(st): State<ApiState>, raw: Raw) -> Result<Response, ApiError> {
    let p = Params::parse(raw, &["service"])?;
    let Some(service) = p.non_empty("service")? else {
        return Err(ApiError::bad_request(
            "the service parameter is required: /api/v1/openapi?service=NAME",
        ));
    };
    let endpoints = {
        let inv = st.inventory.lock().map_err(|_| internal())?;
        view::endpoints(
            &inv,
            &view::Filter {
                service: Some(service.clone()),
                ..Default::default()
            },
        )
    };
    if endpoints.is_empty() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no endpoint of service {service:?} has been observed"),
        ));
    }
    Ok(Json(openapi::export(&service, &endpoints)).into_response())
}

pub(super) async fn specs(State(st): State<ApiState>, raw: Raw) -> Result<Response, ApiError> {
    Params::parse(raw, &[])?;
    let states = st.specs.lock().map_err(|_| internal())?.states();
    Ok(Json(SpecsAnswer { specs: states }).into_response())
}

pub(super) async fn workloads(State(st): State<ApiState>, raw: Raw) -> Result<Response, ApiError> {
    let p = Params::parse(raw, &["service"])?;
    let service = p.non_empty("service")?;
    let mut workloads = match &st.kube {
        Some(index) => index.read().map_err(|_| internal())?.selectors(),
        None => Vec::new(),
    };
    if let Some(s) = service {
        workloads.retain(|w| w.service == s);
    }
    Ok(Json(WorkloadsAnswer {
        count: workloads.len(),
        workloads,
    })
    .into_response())
}

fn internal() -> ApiError {
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "the agent's state is unavailable (a worker failed); see its log",
    )
}

pub(super) async fn violations(State(st): State<ApiState>, raw: Raw) -> Result<Response, ApiError> {
    let p = Params::parse(raw, &["service", "reason", "since", "limit", "follow"])?;
    let cap = st.violations.capacity();
    let limit = parse_limit(p.get("limit"), cap)?;
    let reason = p
        .get("reason")
        .map(|r| {
            serde_json::from_value::<Reason>(serde_json::Value::String(r.to_string())).map_err(|_| {
                ApiError::bad_request(format!(
                    "reason={r:?} is not one of unknown_caller, edge_not_allowed, method_not_allowed, route_not_allowed, missing_credentials, issuer_not_allowed, audience_not_allowed, scope_missing, token_expired"
                ))
            })
        })
        .transpose()?;
    let filter = ViolationFilter {
        service: p.non_empty("service")?,
        reason,
        since: p.get("since").map(parse_since).transpose()?,
    };
    if parse_follow(p.get("follow"))? {
        let place = follower(&st)?;
        let rx = st.violations.follow();
        return Ok(ndjson(place, rx, move |v: &ViolationRecord| {
            filter.matches(v)
        }));
    }
    let list = st.violations.latest(limit, &filter);
    Ok(Json(ViolationsAnswer {
        count: list.len(),
        violations: list,
    })
    .into_response())
}

pub(super) async fn policy(State(st): State<ApiState>, raw: Raw) -> Result<Response, ApiError> {
    Params::parse(raw, &[])?;
    let answer: PolicyAnswer = st.enforcement.state();
    Ok(Json(answer).into_response())
}
