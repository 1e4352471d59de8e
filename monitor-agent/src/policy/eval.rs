//! Judging one call against a policy.
//!
//! Evaluation reports exactly one reason, the first that applies in a fixed order, so that
//! counts per reason add up to the number of violating calls and the same call always
//! gets the same verdict. Edge checks come first because a call that should not happen
//! at all is the bigger finding than how it authenticated.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::schema::{AllowRule, DefaultAction, EndpointRule, Method, NonEmpty, Policy, Require};
use crate::{
    protocol::credentials::{Auth, AuthKind},
    record::CallRecord,
    route::{path_of, RoutePattern},
};

/// What evaluation needs from a call; borrowed so the agent can judge every call without
/// copying it.
#[derive(Clone, Copy, Debug)]
pub struct CallFacts<'a> {
    pub client_service: &'a str,
    pub server_service: &'a str,
    pub method: &'a str,
    /// The request target; its query string is ignored.
    pub path: &'a str,
    /// The templated route, e.g. `/api/v1/orders/{id}`.
    pub route: &'a str,
    /// The credential, with its decoded claims when it is a JWT.
    pub auth: &'a Auth,
    /// When the call happened, for the expiry check.
    pub at: SystemTime,
}

impl<'a> CallFacts<'a> {
    /// The facts of a record, naming services the way the inventory does (an unnamed
    /// client is `unknown`), so a policy suggested from the inventory fits its calls.
    pub fn from_record(record: &'a CallRecord) -> CallFacts<'a> {
        CallFacts {
            client_service: record.client.service.as_deref().unwrap_or("unknown"),
            server_service: record.server.service.as_deref().unwrap_or(""),
            method: &record.method,
            path: &record.path,
            route: &record.route,
            auth: &record.auth,
            at: record.ts,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    UnknownCaller,
    EdgeNotAllowed,
    MethodNotAllowed,
    RouteNotAllowed,
    MissingCredentials,
    IssuerNotAllowed,
    AudienceNotAllowed,
    ScopeMissing,
    TokenExpired,
}

impl Reason {
    /// Every reason, in evaluation order, for metrics that want a zero per label.
    pub const ALL: [Reason; 9] = [
        Reason::UnknownCaller,
        Reason::EdgeNotAllowed,
        Reason::MethodNotAllowed,
        Reason::RouteNotAllowed,
        Reason::MissingCredentials,
        Reason::IssuerNotAllowed,
        Reason::AudienceNotAllowed,
        Reason::ScopeMissing,
        Reason::TokenExpired,
    ];

    /// The serialized name, static so it can be a metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::UnknownCaller => "unknown_caller",
            Reason::EdgeNotAllowed => "edge_not_allowed",
            Reason::MethodNotAllowed => "method_not_allowed",
            Reason::RouteNotAllowed => "route_not_allowed",
            Reason::MissingCredentials => "missing_credentials",
            Reason::IssuerNotAllowed => "issuer_not_allowed",
            Reason::AudienceNotAllowed => "audience_not_allowed",
            Reason::ScopeMissing => "scope_missing",
            Reason::TokenExpired => "token_expired",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Violation {
    pub reason: Reason,
    /// A sentence naming the rule context, e.g. "no allow rule from frontend to admin".
    pub detail: String,
    /// The allow rule(s) or endpoint requirement involved, as the file's key path
    /// (`allow[2]`, `endpoints[0]`), when there is one.
    pub rule: Option<String>,
}

#[allow(
    clippy::unnecessary_wraps,
    reason = "returned as the verdict of a check"
)]
fn violation(reason: Reason, detail: String, rule: Option<String>) -> Option<Violation> {
    Some(Violation {
        reason,
        detail,
        rule,
    })
}

impl Policy {
    /// The first reason this call violates the policy, or `None` when it is allowed.
    pub fn evaluate(&self, call: &CallFacts<'_>) -> Option<Violation> {
        if self.checks_edges_to(call.server_service) {
            if let Some(v) = self.check_edge(call) {
                return Some(v);
            }
        }
        self.endpoint_rules()
            .iter()
            .enumerate()
            .filter(|(_, e)| endpoint_matches(e, call))
            .find_map(|(i, e)| check_require(&e.require, &format!("endpoints[{i}]"), call))
    }

    /// With `default: allow`, only services some rule speaks about are fenced in.
    fn checks_edges_to(&self, server: &str) -> bool {
        self.default_action() == DefaultAction::Deny
            || self
                .allow_rules()
                .iter()
                .any(|r| r.to.iter().any(|s| s.matches(server)))
    }

    fn check_edge(&self, call: &CallFacts<'_>) -> Option<Violation> {
        let (client, server) = (call.client_service, call.server_service);
        let rules = self.allow_rules().iter().enumerate();
        if !self
            .allow_rules()
            .iter()
            .any(|r| r.from.iter().any(|s| s.matches(client)))
        {
            return violation(
                Reason::UnknownCaller,
                format!("no allow rule has {client} among its callers"),
                None,
            );
        }
        let edge: Vec<(usize, &AllowRule)> = rules
            .filter(|(_, r)| {
                r.from.iter().any(|s| s.matches(client)) && r.to.iter().any(|s| s.matches(server))
            })
            .collect();
        if edge.is_empty() {
            return violation(
                Reason::EdgeNotAllowed,
                format!("no allow rule from {client} to {server}"),
                None,
            );
        }
        let method: Vec<(usize, &AllowRule)> = edge
            .iter()
            .copied()
            .filter(|(_, r)| methods_match(&r.methods, call.method))
            .collect();
        if method.is_empty() {
            return violation(
                Reason::MethodNotAllowed,
                format!(
                    "no allow rule from {client} to {server} allows method {}",
                    call.method
                ),
                rule_names(&edge),
            );
        }
        if !method.iter().any(|(_, r)| routes_match(&r.routes, call)) {
            return violation(
                Reason::RouteNotAllowed,
                format!(
                    "no allow rule from {client} to {server} allows {} {}",
                    call.method,
                    path_of(call.path)
                ),
                rule_names(&method),
            );
        }
        None
    }
}

#[allow(
    clippy::unnecessary_wraps,
    reason = "a violation's optional rule field"
)]
fn rule_names(rules: &[(usize, &AllowRule)]) -> Option<String> {
    let names: Vec<String> = rules.iter().map(|(i, _)| format!("allow[{i}]")).collect();
    Some(names.join(", "))
}

fn methods_match(methods: &Option<NonEmpty<Method>>, method: &str) -> bool {
    methods
        .as_ref()
        .is_none_or(|ms| ms.iter().any(|m| m.matches(method)))
}

fn routes_match(routes: &Option<NonEmpty<RoutePattern>>, call: &CallFacts<'_>) -> bool {
    routes.as_ref().is_none_or(|ps| {
        ps.iter()
            .any(|p| p.matches_path(call.path) || p.matches_route(call.route))
    })
}

fn endpoint_matches(e: &EndpointRule, call: &CallFacts<'_>) -> bool {
    e.service.matches(call.server_service)
        && methods_match(&e.methods, call.method)
        && routes_match(&e.routes, call)
}

/// Requirements in a fixed order: presence, then who issued the token, for whom, with
/// which rights, and finally whether it was still valid.
fn check_require(r: &Require, rule: &str, call: &CallFacts<'_>) -> Option<Violation> {
    let auth = call.auth;
    let failed = missing_credentials(r, auth)
        .or_else(|| wrong_issuer(r, auth))
        .or_else(|| wrong_audience(r, auth))
        .or_else(|| missing_scopes(r, auth))
        .or_else(|| expired_token(r, auth, call.at));
    let (reason, detail) = failed?;
    violation(reason, format!("{rule}: {detail}"), Some(rule.to_owned()))
}

/// What a requirement found wrong: the reason, and the detail shown to the operator.
type Failed = Option<(Reason, String)>;

/// The token's claims, when the call carried a JWT at all.
fn jwt_of(auth: &Auth) -> Option<&Auth> {
    (auth.kind == AuthKind::Jwt).then_some(auth)
}

fn not_jwt(auth: &Auth) -> String {
    format!("the call carried {}, not a JWT", auth.label())
}

fn missing_credentials(r: &Require, auth: &Auth) -> Failed {
    (r.needs_credentials() && auth.kind == AuthKind::None).then(|| {
        (
            Reason::MissingCredentials,
            "requires credentials; the call carried none".to_owned(),
        )
    })
}

fn wrong_issuer(r: &Require, auth: &Auth) -> Failed {
    let issuers = r.issuers.as_ref()?;
    let list = join(issuers.iter().map(super::schema::ClaimValue::as_str));
    let had = match jwt_of(auth).map(|c| c.issuer.as_deref()) {
        None => not_jwt(auth),
        Some(Some(iss)) if issuers.iter().any(|i| i.as_str() == iss) => return None,
        Some(found) => format!("the token's issuer is {}", found.unwrap_or("absent")),
    };
    Some((
        Reason::IssuerNotAllowed,
        format!("requires a JWT issued by {list}; {had}"),
    ))
}

fn wrong_audience(r: &Require, auth: &Auth) -> Failed {
    let audiences = r.audiences.as_ref()?;
    let list = join(audiences.iter().map(super::schema::ClaimValue::as_str));
    let found = jwt_of(auth).map(|c| &c.audiences);
    if found.is_some_and(|f| audiences.iter().any(|a| f.iter().any(|x| x == a.as_str()))) {
        return None;
    }
    let had = match found {
        None => not_jwt(auth),
        Some(f) if f.is_empty() => "the token names no audience".to_owned(),
        Some(f) => format!("the token is for {}", join(f.iter().map(String::as_str))),
    };
    Some((
        Reason::AudienceNotAllowed,
        format!("requires a JWT for {list}; {had}"),
    ))
}

fn missing_scopes(r: &Require, auth: &Auth) -> Failed {
    let scopes = r.scopes.as_ref()?;
    let found = jwt_of(auth).map(|c| &c.scopes);
    let missing: Vec<&str> = scopes
        .iter()
        .map(super::schema::Scope::as_str)
        .filter(|s| !found.is_some_and(|f| f.iter().any(|x| x == s)))
        .collect();
    if missing.is_empty() {
        return None;
    }
    let had = match found {
        None => format!("; {}", not_jwt(auth)),
        Some(_) => String::new(),
    };
    Some((
        Reason::ScopeMissing,
        format!(
            "requires scope {} which the token lacks{had}",
            join(missing.into_iter())
        ),
    ))
}

fn expired_token(r: &Require, auth: &Auth, at: SystemTime) -> Failed {
    let exp = jwt_of(auth)
        .and_then(|c| c.expires_at)
        .filter(|_| r.reject_expired)?;
    expired(exp, at).then(|| {
        (
            Reason::TokenExpired,
            format!(
                "the JWT expired at {} before the call at {}",
                unix_time(exp),
                unix_time(unix_us(at).div_euclid(1_000_000) as i64)
            ),
        )
    })
}

/// `exp < at`, in microseconds: a call at the very second of `exp` is still in time, one
/// a moment later is not, and times before 1970 need no special case.
fn expired(exp: i64, at: SystemTime) -> bool {
    i128::from(exp) * 1_000_000 < unix_us(at)
}

fn unix_us(t: SystemTime) -> i128 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_micros() as i128,
        Err(e) => -(e.duration().as_micros() as i128),
    }
}

/// RFC 3339 when humantime can write it (1970..=9999), else the raw number: claims and
/// clocks are not to be trusted to stay in that range, and formatting must not panic.
fn unix_time(secs: i64) -> String {
    match u64::try_from(secs) {
        Ok(s) if s < 253_402_300_800 => {
            humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(s)).to_string()
        }
        _ => format!("unix {secs}"),
    }
}

fn join<'a>(items: impl Iterator<Item = &'a str>) -> String {
    items.collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: &str = "\
default: deny
allow:
  - from: [frontend]
    to: [orders]
    methods: [GET, POST]
    routes: [\"/api/v1/orders\", \"/api/v1/orders/{id}\", \"/static/**\"]
  - from: [frontend]
    to: [orders]
    methods: [DELETE]
    routes: [\"/api/v1/orders/{id}\"]
  - from: [kubelet]
    to: [health]
  - from: [batch]
    to: [\"*\"]
    methods: [GET]
endpoints:
  - service: orders
    methods: [POST]
    routes: [\"/api/v1/orders\"]
    require:
      credentials: true
  - service: orders
    methods: [GET]
    routes: [\"/api/v1/orders/{id}\"]
    require:
      issuers: [\"https://auth.test\"]
      audiences: [orders, shop]
      scopes: [\"orders:read\", \"orders:admin\"]
  - service: \"*\"
    routes: [\"/static/**\"]
";

    /// 2026-01-01T00:00:00Z
    const NOW: u64 = 1_767_225_600;

    fn policy(text: &str) -> Policy {
        Policy::parse("p.yaml", text).unwrap()
    }

    fn jwt(iss: &str) -> Auth {
        Auth {
            kind: AuthKind::Jwt,
            issuer: Some(iss.to_owned()),
            ..Auth::default()
        }
    }

    fn claims(iss: &str, aud: &[&str], scopes: &[&str], exp: Option<i64>) -> Auth {
        Auth {
            kind: AuthKind::Jwt,
            issuer: Some(iss.to_owned()),
            subject: Some("user-1".to_owned()),
            audiences: aud.iter().map(ToString::to_string).collect(),
            scopes: scopes.iter().map(ToString::to_string).collect(),
            expires_at: exp,
            ..Auth::default()
        }
    }

    static NONE: std::sync::LazyLock<Auth> = std::sync::LazyLock::new(Auth::default);

    fn call<'a>(client: &'a str, server: &'a str, method: &'a str, path: &'a str) -> CallFacts<'a> {
        CallFacts {
            client_service: client,
            server_service: server,
            method,
            path,
            route: path_of(path),
            auth: &NONE,
            at: UNIX_EPOCH + Duration::from_secs(NOW),
        }
    }

    fn reason(p: &Policy, c: &CallFacts<'_>) -> Option<Reason> {
        p.evaluate(c).map(|v| v.reason)
    }

    #[test]
    fn allowed_calls() {
        let p = policy(POLICY);
        let bearer = Auth {
            kind: AuthKind::Bearer,
            ..Auth::default()
        };
        let good = claims(
            "https://auth.test",
            &["orders"],
            &["orders:read", "orders:admin"],
            None,
        );
        for c in [
            call("frontend", "orders", "GET", "/api/v1/orders?page=2"),
            CallFacts {
                auth: &good,
                ..call("frontend", "orders", "get", "/api/v1/orders/42")
            },
            call("frontend", "orders", "DELETE", "/api/v1/orders/42"),
            call("frontend", "orders", "GET", "/static/app/main.js"),
            call("kubelet", "health", "GET", "/healthz"),
            call("batch", "billing", "GET", "/anything"),
            CallFacts {
                auth: &bearer,
                ..call("frontend", "orders", "POST", "/api/v1/orders")
            },
        ] {
            assert_eq!(p.evaluate(&c), None, "{c:?}");
        }
    }

    #[test]
    fn edge_reasons() {
        let p = policy(POLICY);
        let v = p
            .evaluate(&call("intruder", "orders", "GET", "/api/v1/orders"))
            .unwrap();
        assert_eq!(v.reason, Reason::UnknownCaller);
        assert_eq!(v.rule, None);
        assert!(v.detail.contains("intruder"), "{}", v.detail);

        let v = p.evaluate(&call("frontend", "admin", "GET", "/")).unwrap();
        assert_eq!(v.reason, Reason::EdgeNotAllowed);
        assert_eq!(v.detail, "no allow rule from frontend to admin");

        let v = p
            .evaluate(&call("frontend", "orders", "PUT", "/api/v1/orders/1"))
            .unwrap();
        assert_eq!(v.reason, Reason::MethodNotAllowed);
        assert_eq!(v.rule.as_deref(), Some("allow[0], allow[1]"));
        assert!(v.detail.contains("PUT"));

        let v = p
            .evaluate(&call("frontend", "orders", "DELETE", "/api/v1/orders?x=1"))
            .unwrap();
        assert_eq!(v.reason, Reason::RouteNotAllowed);
        assert_eq!(v.rule.as_deref(), Some("allow[1]"));
        assert!(v.detail.ends_with("DELETE /api/v1/orders"), "{}", v.detail);

        assert_eq!(
            reason(&p, &call("batch", "billing", "POST", "/x")),
            Some(Reason::MethodNotAllowed)
        );
    }

    #[test]
    fn a_star_caller_makes_every_caller_known() {
        let p =
            policy("allow:\n  - {from: [\"*\"], to: [health]}\n  - {from: [web], to: [orders]}\n");
        assert_eq!(p.evaluate(&call("intruder", "health", "GET", "/")), None);
        assert_eq!(
            reason(&p, &call("intruder", "orders", "GET", "/")),
            Some(Reason::EdgeNotAllowed)
        );
    }

    #[test]
    fn templated_routes_are_accepted() {
        let p = policy(POLICY);
        // A path no pattern takes, filed under a template one does.
        let c = CallFacts {
            route: "/api/v1/orders/{id}",
            ..call("frontend", "orders", "DELETE", "/v1/orders/42")
        };
        assert_eq!(p.evaluate(&c), None);
        let c = CallFacts {
            route: "/api/v1/{param}/{id}",
            ..call("frontend", "orders", "DELETE", "/api/v1/x/")
        };
        assert_eq!(reason(&p, &c), Some(Reason::RouteNotAllowed));
    }

    #[test]
    fn default_allow_checks_only_services_named_in_to() {
        let text =
            "default: allow\nallow:\n  - from: [frontend]\n    to: [orders]\n    methods: [GET]\n";
        let p = policy(text);
        assert_eq!(p.evaluate(&call("anyone", "billing", "DELETE", "/x")), None);
        assert_eq!(
            reason(&p, &call("anyone", "orders", "GET", "/x")),
            Some(Reason::UnknownCaller)
        );
        assert_eq!(
            reason(&p, &call("frontend", "orders", "POST", "/x")),
            Some(Reason::MethodNotAllowed)
        );
        assert_eq!(p.evaluate(&call("frontend", "orders", "GET", "/x")), None);

        let deny = policy(&text.replace("allow\n", "deny\n"));
        assert_eq!(
            reason(&deny, &call("frontend", "billing", "GET", "/x")),
            Some(Reason::EdgeNotAllowed)
        );
        assert_eq!(
            reason(&deny, &call("anyone", "billing", "GET", "/x")),
            Some(Reason::UnknownCaller)
        );
        // `to: ["*"]` fences in every service, even with default allow.
        let star = policy("default: allow\nallow:\n  - {from: [a], to: [\"*\"]}\n");
        assert_eq!(
            reason(&star, &call("b", "billing", "GET", "/x")),
            Some(Reason::UnknownCaller)
        );
        // Requirements apply whatever the default.
        let req = policy(
            "default: allow\nendpoints:\n  - service: billing\n    require: {credentials: true}\n",
        );
        assert_eq!(
            reason(&req, &call("b", "billing", "GET", "/x")),
            Some(Reason::MissingCredentials)
        );
        let empty = policy("default: deny\n");
        assert_eq!(
            reason(&empty, &call("a", "b", "GET", "/")),
            Some(Reason::UnknownCaller)
        );
    }

    #[test]
    fn missing_credentials() {
        let p = policy(POLICY);
        let v = p
            .evaluate(&call("frontend", "orders", "POST", "/api/v1/orders"))
            .unwrap();
        assert_eq!(v.reason, Reason::MissingCredentials);
        assert_eq!(v.rule.as_deref(), Some("endpoints[0]"));
        // JWT requirements imply a credential too.
        let v = p
            .evaluate(&call("frontend", "orders", "GET", "/api/v1/orders/1"))
            .unwrap();
        assert_eq!(v.reason, Reason::MissingCredentials);
        assert_eq!(v.rule.as_deref(), Some("endpoints[1]"));
        // An endpoint entry without requirements only rejects expired tokens.
        assert_eq!(
            p.evaluate(&call("frontend", "orders", "GET", "/static/x")),
            None
        );
    }

    #[test]
    fn jwt_requirements_in_order() {
        let p = policy(POLICY);
        let good = claims(
            "https://auth.test",
            &["shop"],
            &["orders:admin", "orders:read", "x"],
            None,
        );
        let auth = jwt("https://auth.test");
        let base = CallFacts {
            auth: &good,
            ..call("frontend", "orders", "GET", "/api/v1/orders/7")
        };
        assert_eq!(p.evaluate(&base), None);

        let basic = Auth {
            kind: AuthKind::Basic,
            detail: Some("al".into()),
            ..Auth::default()
        };
        let v = p
            .evaluate(&CallFacts {
                auth: &basic,
                ..base
            })
            .unwrap();
        assert_eq!(v.reason, Reason::IssuerNotAllowed);
        assert!(
            v.detail.contains("carried basic, not a JWT"),
            "{}",
            v.detail
        );

        let evil = claims("https://evil.test", &[], &[], Some(0));
        let v = p
            .evaluate(&CallFacts {
                auth: &evil,
                ..base
            })
            .unwrap();
        assert_eq!(
            v.reason,
            Reason::IssuerNotAllowed,
            "issuer before audience, scope and expiry"
        );
        assert!(v.detail.contains("https://evil.test"));

        // Without decoded claims the issuer still comes from the record's auth.
        let v = p
            .evaluate(&CallFacts {
                auth: &auth,
                ..base
            })
            .unwrap();
        assert_eq!(v.reason, Reason::AudienceNotAllowed);

        let wrong_aud = claims("https://auth.test", &["billing"], &[], Some(0));
        let v = p
            .evaluate(&CallFacts {
                auth: &wrong_aud,
                ..base
            })
            .unwrap();
        assert_eq!(
            v.reason,
            Reason::AudienceNotAllowed,
            "audience before scope and expiry"
        );
        assert!(v.detail.contains("for billing"), "{}", v.detail);

        let few_scopes = claims("https://auth.test", &["orders"], &["orders:read"], Some(0));
        let v = p
            .evaluate(&CallFacts {
                auth: &few_scopes,
                ..base
            })
            .unwrap();
        assert_eq!(v.reason, Reason::ScopeMissing, "scope before expiry");
        assert!(v.detail.contains("orders:admin"), "{}", v.detail);
        assert!(!v.detail.contains("orders:read,"), "{}", v.detail);
    }

    #[test]
    fn issuer_required_and_absent() {
        let p = policy("endpoints:\n  - service: s\n    require: {issuers: [a]}\n");
        let no_iss = Auth {
            kind: AuthKind::Jwt,
            ..Auth::default()
        };
        let c = CallFacts {
            auth: &no_iss,
            ..call("x", "s", "GET", "/")
        };
        let v = p.evaluate(&c);
        // default deny with no allow rules: the caller is unknown first.
        assert_eq!(v.unwrap().reason, Reason::UnknownCaller);
        let p = policy("default: allow\nendpoints:\n  - service: s\n    require: {issuers: [a]}\n");
        let v = p.evaluate(&c).unwrap();
        assert_eq!(v.reason, Reason::IssuerNotAllowed);
        assert!(v.detail.ends_with("issuer is absent"), "{}", v.detail);
    }

    #[test]
    fn expired_tokens_at_a_given_time() {
        let p = policy(
            "default: allow\nendpoints:\n  - service: s\n    require: {credentials: true}\n",
        );
        let at = UNIX_EPOCH + Duration::from_secs(NOW);
        let cases = [
            (NOW as i64 - 1, true),
            (NOW as i64, false),
            (NOW as i64 + 3600, false),
            (-5, true),
            (i64::MAX, false),
        ];
        for (exp, is_expired) in cases {
            let c = claims("i", &[], &[], Some(exp));
            let facts = CallFacts {
                auth: &c,
                at,
                ..call("x", "s", "GET", "/")
            };
            let v = p.evaluate(&facts);
            assert_eq!(
                v.as_ref().map(|v| v.reason),
                is_expired.then_some(Reason::TokenExpired),
                "{exp}"
            );
            if exp == NOW as i64 - 1 {
                let d = v.unwrap().detail;
                assert!(
                    d.contains(
                        "expired at 2025-12-31T23:59:59Z before the call at 2026-01-01T00:00:00Z"
                    ),
                    "{d}"
                );
            }
        }
    }

    #[test]
    fn expiry_edge_cases() {
        let p = policy(
            "default: allow\nendpoints:\n  - service: s\n    require: {credentials: true}\n",
        );
        let auth = jwt("i");
        let at = UNIX_EPOCH + Duration::from_secs(NOW);
        // A sub-second later call is past an expiry at the whole second.
        let c = claims("i", &[], &[], Some(NOW as i64));
        let later = CallFacts {
            auth: &c,
            at: at + Duration::from_millis(1),
            ..call("x", "s", "GET", "/")
        };
        assert_eq!(reason(&p, &later), Some(Reason::TokenExpired));
        // Clocks before 1970 and claims past 9999 are judged and written without panicking.
        let c = claims("i", &[], &[], Some(-10));
        let before_1970 = CallFacts {
            auth: &c,
            at: UNIX_EPOCH - Duration::from_secs(5),
            ..call("x", "s", "GET", "/")
        };
        let v = p.evaluate(&before_1970).unwrap();
        assert!(
            v.detail
                .contains("expired at unix -10 before the call at unix -5"),
            "{}",
            v.detail
        );
        let far = claims("i", &[], &[], Some(300_000_000_000));
        assert_eq!(
            p.evaluate(&CallFacts {
                auth: &far,
                ..before_1970
            }),
            None
        );
        // Turned off, and tokens without exp or without decoded claims, pass.
        let off = policy(
            "default: allow\nendpoints:\n  - service: s\n    require: {reject_expired: false}\n",
        );
        assert_eq!(off.evaluate(&later), None);
        let no_exp = claims("i", &[], &[], None);
        assert_eq!(
            p.evaluate(&CallFacts {
                auth: &no_exp,
                ..later
            }),
            None
        );
        assert_eq!(
            p.evaluate(&CallFacts {
                auth: &auth,
                ..later
            }),
            None
        );
        // A claim set passed with a non-JWT credential is not the credential's.
        let bearer = Auth {
            kind: AuthKind::Bearer,
            ..Auth::default()
        };
        assert_eq!(
            p.evaluate(&CallFacts {
                auth: &bearer,
                ..later
            }),
            None
        );
    }

    #[test]
    fn every_endpoint_rule_applies_in_file_order() {
        let text = "default: allow\nendpoints:\n  - service: s\n    routes: [\"/a/**\"]\n    require: {scopes: [x]}\n  - service: s\n    require: {issuers: [i]}\n";
        let p = policy(text);
        let c = claims("other", &[], &["x"], None);
        let facts = CallFacts {
            auth: &c,
            ..call("x", "s", "GET", "/a/b")
        };
        let v = p.evaluate(&facts).unwrap();
        assert_eq!(
            (v.reason, v.rule.as_deref()),
            (Reason::IssuerNotAllowed, Some("endpoints[1]"))
        );
        let c = claims("i", &[], &[], None);
        let v = p.evaluate(&CallFacts { auth: &c, ..facts }).unwrap();
        assert_eq!(
            (v.reason, v.rule.as_deref()),
            (Reason::ScopeMissing, Some("endpoints[0]"))
        );
    }

    #[test]
    fn edge_checks_come_before_requirements() {
        let p = policy(POLICY);
        // Both a bad route and no credentials: the route is reported.
        assert_eq!(
            reason(&p, &call("frontend", "orders", "POST", "/api/v2/orders")),
            Some(Reason::RouteNotAllowed)
        );
        assert_eq!(
            reason(&p, &call("stranger", "orders", "POST", "/api/v1/orders")),
            Some(Reason::UnknownCaller)
        );
    }

    #[test]
    fn reason_names_match_serde() {
        for r in Reason::ALL {
            assert_eq!(
                serde_json::to_string(&r).unwrap(),
                format!("\"{}\"", r.as_str())
            );
        }
        let v = Violation {
            reason: Reason::TokenExpired,
            detail: "d".into(),
            rule: None,
        };
        assert_eq!(
            serde_json::to_string(&v).unwrap(),
            r#"{"reason":"token_expired","detail":"d","rule":null}"#
        );
    }

    #[test]
    fn facts_from_a_record() {
        use crate::record::{Peer, Role};
        let mut client = Peer::remote("10.0.0.2:40000".parse().unwrap());
        let server = Peer::remote("10.0.0.3:80".parse().unwrap());
        client.service = None;
        let mut rec = CallRecord::sample(Role::Server, client, server, "GET", "/a/1?x=2");
        rec.route = "/a/{id}".into();
        let facts = CallFacts::from_record(&rec);
        assert_eq!(facts.client_service, "unknown");
        assert_eq!(facts.server_service, "");
        assert_eq!((facts.path, facts.route), ("/a/1?x=2", "/a/{id}"));
        assert_eq!(facts.at, UNIX_EPOCH);
    }
}
