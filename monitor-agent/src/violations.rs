//! Policy violations: a bounded ring for `GET /api/v1/violations`, a broadcast for
//! `--follow`, the `api_policy_violations_total` counter and one JSON line per violation
//! on stderr, rate-limited per (edge, reason) so a misbehaving client cannot flood logs.

use std::{
    collections::HashMap,
    io::Write,
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime},
};

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family},
    registry::Registry,
};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::{
    policy::{Reason, Violation},
    protocol::credentials::Auth,
    recent::Recent,
    record::{CallRecord, Peer},
};

/// At most one log line per (edge, reason) in this period; the rest are counted and the
/// count is reported with the next line.
const LOG_EVERY: Duration = Duration::from_secs(10);
const MAX_LIMITERS: usize = 10_000;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ViolationLabels {
    pub client_service: String,
    pub server_service: String,
    pub reason: String,
}

/// One call the policy does not allow, with why.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ViolationRecord {
    #[serde(
        serialize_with = "crate::record::rfc3339",
        deserialize_with = "crate::record::from_rfc3339"
    )]
    pub ts: SystemTime,
    pub reason: Reason,
    /// The rule context in a sentence.
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    pub client_service: String,
    pub server_service: String,
    pub method: String,
    pub path: String,
    pub route: String,
    pub status: u16,
    pub client: Peer,
    pub server: Peer,
    pub auth: Auth,
}

impl ViolationRecord {
    pub fn new(call: &CallRecord, v: Violation) -> ViolationRecord {
        ViolationRecord {
            ts: call.ts,
            reason: v.reason,
            detail: v.detail,
            rule: v.rule,
            client_service: call.client.service.as_deref().unwrap_or("").to_string(),
            server_service: call.server.service.as_deref().unwrap_or("").to_string(),
            method: call.method.to_string(),
            path: call.path.clone(),
            route: call.route.to_string(),
            status: call.status,
            client: call.client.clone(),
            server: call.server.clone(),
            auth: call.auth.clone(),
        }
    }
}

/// Which violations a query or follower wants.
#[derive(Clone, Debug, Default)]
pub struct ViolationFilter {
    /// Either side's service.
    pub service: Option<String>,
    pub reason: Option<Reason>,
    pub since: Option<SystemTime>,
}

impl ViolationFilter {
    pub fn matches(&self, v: &ViolationRecord) -> bool {
        self.service
            .as_deref()
            .is_none_or(|s| v.client_service == s || v.server_service == s)
            && self.reason.is_none_or(|r| r == v.reason)
            && self.since.is_none_or(|t| v.ts >= t)
    }
}

struct Limiter {
    last: Instant,
    suppressed: u64,
}

pub struct Violations {
    recent: Recent<ViolationRecord>,
    counter: Family<ViolationLabels, Counter>,
    limiter: Mutex<HashMap<(String, String, Reason), Limiter>>,
    /// Log lines go to stderr unless turned off (tests of the ring alone).
    log: bool,
}

impl Violations {
    pub fn new(capacity: usize, registry: &mut Registry) -> Violations {
        let counter = Family::<ViolationLabels, Counter>::default();
        registry.register(
            "api_policy_violations",
            "Calls the policy does not allow, by caller, callee and reason",
            counter.clone(),
        );
        Violations {
            recent: Recent::new(capacity, 1024),
            counter,
            limiter: Mutex::new(HashMap::new()),
            log: true,
        }
    }

    pub fn capacity(&self) -> usize {
        self.recent.capacity()
    }

    pub fn record(&self, v: ViolationRecord) {
        self.counter
            .get_or_create(&ViolationLabels {
                client_service: v.client_service.clone(),
                server_service: v.server_service.clone(),
                reason: v.reason.as_str().to_string(),
            })
            .inc();
        if self.log {
            self.log_line(&v);
        }
        self.recent.push_all([Arc::new(v)]);
    }

    fn log_line(&self, v: &ViolationRecord) {
        let Ok(mut lim) = self.limiter.lock() else {
            return;
        };
        if lim.len() >= MAX_LIMITERS {
            crate::limits::Limit::ViolationLimiters.reached();
            lim.clear();
        }
        let key = (v.client_service.clone(), v.server_service.clone(), v.reason);
        let now = Instant::now();
        let suppressed = match lim.get_mut(&key) {
            Some(l) if now.duration_since(l.last) < LOG_EVERY => {
                l.suppressed += 1;
                return;
            }
            Some(l) => {
                l.last = now;
                std::mem::take(&mut l.suppressed)
            }
            None => {
                lim.insert(
                    key,
                    Limiter {
                        last: now,
                        suppressed: 0,
                    },
                );
                0
            }
        };
        drop(lim);
        let line = serde_json::json!({
            "level": "warn",
            "msg": "policy violation",
            "violation": v,
            "suppressed_since_last": suppressed,
        });
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "{line}");
    }

    /// The newest `limit` matching violations, oldest first.
    pub fn latest(&self, limit: usize, f: &ViolationFilter) -> Vec<Arc<ViolationRecord>> {
        self.recent.latest(limit, |v| f.matches(v))
    }

    pub fn follow(&self) -> broadcast::Receiver<Arc<ViolationRecord>> {
        self.recent.follow()
    }
}
