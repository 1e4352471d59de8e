//! Service-to-service policy: which services may call which, how, and with what
//! credentials, checked against every observed call.
//!
//! The agent already sees every call with both endpoints named, so a policy can be
//! checked without enforcing anything: violations are findings, not drops. This module
//! is pure (no I/O but [`Policy::load`], no clock: the call carries its time) so that the
//! pipeline, the API, the CLI and tests all judge calls the same way. It also writes a
//! least-privilege policy from the inventory ([`suggest()`]) and exports a policy as
//! Kubernetes, Cilium or Istio manifests ([`export()`]).
//!
//! # The policy file
//!
//! ```yaml
//! default: deny          # deny: every call must be allowed by a rule (the default)
//!                        # allow: only calls to services named in some rule's `to` are checked
//! allow:
//!   - from: [frontend]              # client services, as the agent names them; "*" = any caller
//!     to: [orders, payments]        # server services; "*" = any
//!     methods: [GET, POST]          # optional; absent = any method (compared without case)
//!     routes: ["/api/v1/orders", "/api/v1/orders/{id}", "/static/**"]  # optional; absent = any path
//!   - from: ["*"]                   # quote "*": bare, YAML reads it as an alias
//!     to: [health]
//!   - from: [orders]
//!     to: [payments]
//!     methods: [POST]
//!     routes: ["/api/v1/charges"]
//! endpoints:                        # requirements on calls to matching endpoints, whoever the caller
//!   - service: orders               # "*" = any
//!     methods: [POST]               # optional
//!     routes: ["/api/v1/orders"]    # optional
//!     require:
//!       credentials: true           # some credential: basic, bearer, jwt, api_key or other
//!       issuers: ["https://auth.test"]  # the JWT's iss is one of these (implies a JWT)
//!       audiences: ["orders"]           # the JWT's aud (string or list) contains one of these
//!       scopes: ["orders:write"]        # scope (space-separated) / scp contains ALL of these
//!       reject_expired: true            # the default: a JWT whose exp is before the call is rejected
//!   - service: payments
//!     require:
//!       credentials: true
//!       reject_expired: false
//!   - service: "*"                  # no requirement but the default expiry check
//! ```
//!
//! Every key but `from`/`to` (in an allow rule) and `service` (in an endpoint entry) is
//! optional; `default` defaults to `deny`. Unknown keys, a `default` other than
//! allow/deny, empty lists, bad method tokens, bad route patterns and unknown `require`
//! keys are refused with the file, the line and the reason:
//! `policy.yaml: allow[0].routes[1]: route "api/x" must start with / at line 6 column 9`.
//!
//! **Route patterns** are `/`-separated segments: `{name}` or `*` matches exactly one
//! non-empty segment, a final `**` matches any remainder (none included), anything else
//! matches literally. One trailing slash and the query string are ignored. A call
//! matches when its path does, or when its templated route does with each `{x}`
//! placeholder sitting where the pattern has `{name}`, `*` or `**`. Quote patterns with
//! `{` or `*` in flow lists (`["/a/{id}"]`).
//!
//! # Evaluation
//!
//! [`Policy::evaluate`] gives the first reason that applies, in this order:
//!
//! 1. Edge checks, when `default: deny`, or when `default: allow` and the server is
//!    named in some rule's `to` (or a rule has `to: ["*"]`): `unknown_caller` (the caller
//!    is in no rule's `from`), `edge_not_allowed` (no rule from the caller to the
//!    server), `method_not_allowed` (rules cover the edge, none allows the method),
//!    `route_not_allowed` (some allow the method, none the path).
//! 2. Requirements of every `endpoints` entry matching the call's service, method and
//!    path, in file order, each checked in the order `missing_credentials`,
//!    `issuer_not_allowed`, `audience_not_allowed`, `scope_missing`, `token_expired`.
//!    A requirement that needs a JWT's claims fails when the credential is not a JWT, or
//!    when its claims were not decoded.

mod eval;
mod export;
mod placement;
mod schema;
mod suggest;
mod yaml;

#[cfg(test)]
mod tests;

pub use crate::route::RoutePattern;
pub use eval::{CallFacts, Reason, Violation};
pub use export::{export, ExportFormat, CILIUM_HTTP_PORT};
pub use placement::{Placements, SERVICE_LABEL};
pub use schema::{
    AllowRule, ClaimValue, DefaultAction, EndpointRule, Method, NonEmpty, Policy, PolicyError,
    Require, Scope, ServiceName,
};
pub use suggest::suggest;
