//! The policy file: its types, loading with file/line/reason errors, and writing it back.
//!
//! Every string with rules of its own is a validated newtype whose `Deserialize` checks it
//! inside the deserializer's `visit_str`. That is deliberate: serde_yaml_ng stamps an
//! error with the position of the scalar being visited, whereas a `try_from = "String"`
//! conversion fails after the scalar was read and is reported at the enclosing list, one
//! or more lines off. A policy that loads is therefore valid as a whole, and evaluation
//! never has to second-guess it.

use crate::route::RoutePattern;
use std::{fmt, fmt::Write as _, marker::PhantomData, ops::Deref, path::Path, str::FromStr};

use serde::{
    de::{self, Deserializer, SeqAccess, Visitor},
    Deserialize, Serialize, Serializer,
};
use thiserror::Error;

use super::yaml::{flow, scalar};

#[derive(Debug, Error)]
pub enum PolicyError {
    #[error("{path}: cannot read the policy: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    /// `reason` names the key path, the problem and, when known, the line and column.
    #[error("{path}: {reason}")]
    Invalid {
        path: String,
        /// 1-based, for callers that show it apart from the message.
        line: Option<usize>,
        reason: String,
    },
}

/// What happens to a call no allow rule speaks about.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DefaultAction {
    /// Every call must be allowed by a rule: the safe reading of a policy that forgot it.
    #[default]
    Deny,
    /// Only calls to services named in some rule's `to` are checked, so a policy can be
    /// adopted one service at a time.
    Allow,
}

impl DefaultAction {
    pub fn as_str(self) -> &'static str {
        match self {
            DefaultAction::Deny => "deny",
            DefaultAction::Allow => "allow",
        }
    }
}

/// A service as the agent names it (`--service` rule, container id, process name,
/// `ip`/`ip:port`), or `*` for any.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceName(String);

impl ServiceName {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_any(&self) -> bool {
        self.0 == "*"
    }

    pub fn matches(&self, service: &str) -> bool {
        self.is_any() || self.0 == service
    }
}

impl FromStr for ServiceName {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        check_text(s, "service name")?;
        Ok(ServiceName(s.to_owned()))
    }
}

/// An HTTP method token, kept upper-case because methods are compared without case.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Method(String);

impl Method {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn matches(&self, method: &str) -> bool {
        self.0.eq_ignore_ascii_case(method)
    }
}

impl FromStr for Method {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let tchar = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
        if s.is_empty() || !s.chars().all(tchar) {
            return Err(format!(
                "{s:?} is not an HTTP method token (like GET or POST)"
            ));
        }
        Ok(Method(s.to_ascii_uppercase()))
    }
}

/// An issuer or audience: any text a JWT claim can hold, printable.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClaimValue(String);

impl ClaimValue {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for ClaimValue {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        check_text(s, "claim value")?;
        Ok(ClaimValue(s.to_owned()))
    }
}

/// One OAuth scope: `scope` claims are space-separated, so a space would be two scopes.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Scope(String);

impl Scope {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Scope {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        check_text(s, "scope")?;
        if s.contains(char::is_whitespace) {
            return Err(format!(
                "scope {s:?} contains a space: list each scope apart"
            ));
        }
        Ok(Scope(s.to_owned()))
    }
}

fn check_text(s: &str, what: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err(format!("empty {what}"));
    }
    if s.chars().any(char::is_control) {
        return Err(format!("{what} {s:?} contains control characters"));
    }
    Ok(())
}

/// A list that must name something: an empty `from` or `methods` is always a mistake
/// (it would silently allow nothing), so it is refused where it is written.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct NonEmpty<T>(Vec<T>);

impl<T> NonEmpty<T> {
    pub fn new(items: Vec<T>) -> Option<NonEmpty<T>> {
        (!items.is_empty()).then_some(NonEmpty(items))
    }

    #[must_use]
    pub fn with(mut self, item: T) -> NonEmpty<T> {
        self.0.push(item);
        self
    }
}

impl<T> Deref for NonEmpty<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        &self.0
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AllowRule {
    pub from: NonEmpty<ServiceName>,
    pub to: NonEmpty<ServiceName>,
    /// `None`: any method.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub methods: Option<NonEmpty<Method>>,
    /// `None`: any path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routes: Option<NonEmpty<RoutePattern>>,
}

/// Requirements on every call to the matching endpoints, whoever the caller.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointRule {
    pub service: ServiceName,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub methods: Option<NonEmpty<Method>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routes: Option<NonEmpty<RoutePattern>>,
    #[serde(default)]
    pub require: Require,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Require {
    #[serde(default)]
    pub credentials: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuers: Option<NonEmpty<ClaimValue>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audiences: Option<NonEmpty<ClaimValue>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scopes: Option<NonEmpty<Scope>>,
    /// On unless turned off: an expired token is almost always worth knowing about.
    #[serde(default = "yes")]
    pub reject_expired: bool,
}

fn yes() -> bool {
    true
}

impl Default for Require {
    fn default() -> Require {
        Require {
            credentials: false,
            issuers: None,
            audiences: None,
            scopes: None,
            reject_expired: true,
        }
    }
}

impl Require {
    /// Whether some credential must be present: every JWT requirement implies one.
    pub fn needs_credentials(&self) -> bool {
        self.credentials
            || self.issuers.is_some()
            || self.audiences.is_some()
            || self.scopes.is_some()
    }
}

/// A parsed, validated policy.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    #[serde(default)]
    default: DefaultAction,
    #[serde(default)]
    allow: Vec<AllowRule>,
    #[serde(default)]
    endpoints: Vec<EndpointRule>,
}

impl Policy {
    pub fn new(
        default: DefaultAction,
        allow: Vec<AllowRule>,
        endpoints: Vec<EndpointRule>,
    ) -> Policy {
        Policy {
            default,
            allow,
            endpoints,
        }
    }

    pub fn load(path: &Path) -> Result<Policy, PolicyError> {
        let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Policy::parse(&path.display().to_string(), &text)
    }

    /// `source` names the file in errors.
    pub fn parse(source: &str, text: &str) -> Result<Policy, PolicyError> {
        let invalid = |line, reason: String| PolicyError::Invalid {
            path: source.to_owned(),
            line,
            // One line, so logs and the CLI show the whole message.
            reason: reason.replace('\n', " "),
        };
        // `Option` so that an empty or comments-only file is told apart from one that
        // sets nothing but `default`.
        let parsed: Option<Policy> = serde_yaml_ng::from_str(text)
            .map_err(|e| invalid(e.location().map(|l| l.line()), e.to_string()))?;
        parsed.ok_or_else(|| {
            invalid(
                None,
                "the policy is empty; write at least `default: deny` or `default: allow`"
                    .to_owned(),
            )
        })
    }

    pub fn default_action(&self) -> DefaultAction {
        self.default
    }

    pub fn allow_rules(&self) -> &[AllowRule] {
        &self.allow
    }

    pub fn endpoint_rules(&self) -> &[EndpointRule] {
        &self.endpoints
    }

    /// The policy in the file syntax, flow lists and all; `parse` reads it back equal.
    pub fn to_yaml(&self) -> String {
        let mut s = format!("default: {}\n", self.default.as_str());
        s.push_str(if self.allow.is_empty() {
            "allow: []\n"
        } else {
            "allow:\n"
        });
        for r in &self.allow {
            let _ = writeln!(
                s,
                "  - from: {}",
                flow(r.from.iter().map(ServiceName::as_str))
            );
            let _ = writeln!(s, "    to: {}", flow(r.to.iter().map(ServiceName::as_str)));
            write_methods_routes(&mut s, &r.methods, &r.routes);
        }
        s.push_str(if self.endpoints.is_empty() {
            "endpoints: []\n"
        } else {
            "endpoints:\n"
        });
        for e in &self.endpoints {
            let _ = writeln!(s, "  - service: {}", scalar(e.service.as_str()));
            write_methods_routes(&mut s, &e.methods, &e.routes);
            write_require(&mut s, &e.require);
        }
        s
    }
}

fn write_methods_routes(
    s: &mut String,
    methods: &Option<NonEmpty<Method>>,
    routes: &Option<NonEmpty<RoutePattern>>,
) {
    if let Some(m) = methods {
        let _ = writeln!(s, "    methods: {}", flow(m.iter().map(Method::as_str)));
    }
    if let Some(r) = routes {
        let _ = writeln!(
            s,
            "    routes: {}",
            flow(r.iter().map(RoutePattern::as_str))
        );
    }
}

fn write_require(s: &mut String, r: &Require) {
    if *r == Require::default() {
        return;
    }
    s.push_str("    require:\n");
    if r.credentials {
        s.push_str("      credentials: true\n");
    }
    if let Some(v) = &r.issuers {
        let _ = writeln!(
            s,
            "      issuers: {}",
            flow(v.iter().map(ClaimValue::as_str))
        );
    }
    if let Some(v) = &r.audiences {
        let _ = writeln!(
            s,
            "      audiences: {}",
            flow(v.iter().map(ClaimValue::as_str))
        );
    }
    if let Some(v) = &r.scopes {
        let _ = writeln!(s, "      scopes: {}", flow(v.iter().map(Scope::as_str)));
    }
    if !r.reject_expired {
        s.push_str("      reject_expired: false\n");
    }
}

/// Validates in the deserializer's own `visit_str`, so the error carries the line and
/// key path of the offending scalar (see the module doc).
fn validated<'de, D, T>(d: D, expecting: &'static str) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr<Err: fmt::Display>,
{
    struct Text<T>(&'static str, PhantomData<T>);
    impl<T: FromStr<Err: fmt::Display>> Visitor<'_> for Text<T> {
        type Value = T;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }
        fn visit_str<E: de::Error>(self, s: &str) -> Result<T, E> {
            s.parse().map_err(E::custom)
        }
    }
    d.deserialize_str(Text(expecting, PhantomData))
}

macro_rules! text_serde {
    ($($ty:ty => $expecting:literal),* $(,)?) => {$(
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                validated(d, $expecting)
            }
        }
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }
    )*};
}

text_serde! {
    ServiceName => "a service name",
    Method => "an HTTP method",
    RoutePattern => "a route pattern like /api/v1/orders/{id}",
    ClaimValue => "a claim value",
    Scope => "a scope",
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for NonEmpty<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct List<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for List<T> {
            type Value = NonEmpty<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a non-empty list")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                NonEmpty::new(items).ok_or_else(|| {
                    de::Error::custom(
                        "empty list: name at least one entry (an optional key can be left out instead)",
                    )
                })
            }
        }
        d.deserialize_seq(List(PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = include_str!("testdata/full.yaml");

    #[test]
    fn the_documented_example_loads() {
        let p = Policy::parse("p.yaml", FULL).unwrap();
        assert_eq!(p.default_action(), DefaultAction::Deny);
        assert_eq!(p.allow_rules().len(), 3);
        let r = &p.allow_rules()[0];
        assert_eq!(r.from[0].as_str(), "frontend");
        assert_eq!(r.to.len(), 2);
        let methods: Vec<_> = r
            .methods
            .as_ref()
            .unwrap()
            .iter()
            .map(Method::as_str)
            .collect();
        assert_eq!(methods, ["GET", "POST"]);
        assert_eq!(r.routes.as_ref().unwrap()[2].as_str(), "/static/**");
        assert!(p.allow_rules()[1].from[0].is_any());
        assert!(p.allow_rules()[1].methods.is_none());
        let e = &p.endpoint_rules()[0];
        assert_eq!(e.service.as_str(), "orders");
        assert!(e.require.credentials && e.require.reject_expired);
        assert_eq!(
            e.require.issuers.as_ref().unwrap()[0].as_str(),
            "https://auth.test"
        );
        assert_eq!(
            e.require.scopes.as_ref().unwrap()[0].as_str(),
            "orders:write"
        );
        assert!(!p.endpoint_rules()[1].require.reject_expired);
        assert_eq!(p.endpoint_rules()[2].require, Require::default());
    }

    #[test]
    fn the_module_doc_example_is_the_fixture() {
        let doc: String = include_str!("mod.rs")
            .lines()
            .filter_map(|l| l.strip_prefix("//!"))
            .map(|l| l.strip_prefix(' ').unwrap_or(l))
            .skip_while(|l| *l != "```yaml")
            .skip(1)
            .take_while(|l| *l != "```")
            .fold(String::new(), |mut doc, l| {
                doc.push_str(l);
                doc.push('\n');
                doc
            });
        assert_eq!(
            Policy::parse("mod.rs", &doc).unwrap(),
            Policy::parse("full.yaml", FULL).unwrap()
        );
    }

    #[test]
    fn methods_are_upper_cased_and_defaults_apply() {
        let p = Policy::parse(
            "p.yaml",
            "allow:\n  - {from: [a], to: [b], methods: [get, Patch]}\n",
        )
        .unwrap();
        assert_eq!(p.default_action(), DefaultAction::Deny);
        let m = p.allow_rules()[0].methods.as_ref().unwrap();
        assert_eq!(m[1].as_str(), "PATCH");
        assert!(m[0].matches("get") && m[0].matches("GET"));
        assert!(p.endpoint_rules().is_empty());
        let p = Policy::parse("p.yaml", "default: allow\n").unwrap();
        assert_eq!(p.default_action(), DefaultAction::Allow);
    }

    #[test]
    fn mistakes_name_file_line_and_reason() {
        let cases: &[(&str, usize, &str)] = &[
            ("default: deny\nalow: []\n", 2, "unknown field `alow`"),
            ("default: maybe\n", 1, "unknown variant `maybe`"),
            (
                "allow:\n  - from: [a]\n    to: [b]\n    method: [GET]\n",
                4,
                "unknown field `method`",
            ),
            (
                "allow:\n  - from: []\n    to: [b]\n",
                2,
                "allow[0].from: empty list",
            ),
            (
                "allow:\n  - from: [a]\n    to: []\n",
                3,
                "allow[0].to: empty list",
            ),
            ("allow:\n  - to: [b]\n", 2, "missing field `from`"),
            (
                "allow:\n  - from: [a]\n    to: [b]\n    routes:\n      - /ok\n      - api/x\n",
                6,
                "allow[0].routes[1]: route \"api/x\" must start with /",
            ),
            (
                "allow:\n  - from: [a]\n    to: [b]\n    routes: [\"/a/**/b\"]\n",
                4,
                "`**` must be the last segment",
            ),
            (
                "allow:\n  - from: [a]\n    to: [b]\n    methods: [GET, \"PO ST\"]\n",
                4,
                "allow[0].methods[1]: \"PO ST\" is not an HTTP method token",
            ),
            (
                "allow:\n  - from: [a]\n    to: [b]\n    methods: []\n",
                4,
                "empty list",
            ),
            (
                "endpoints:\n  - service: orders\n    require:\n      credential: true\n",
                4,
                "endpoints[0].require: unknown field `credential`",
            ),
            (
                "endpoints:\n  - service: orders\n    require:\n      scopes: [\"a b\"]\n",
                4,
                "contains a space",
            ),
            ("endpoints:\n  - service: \"\"\n", 2, "empty service name"),
            (
                "endpoints:\n  - methods: [GET]\n",
                2,
                "missing field `service`",
            ),
            ("allow: [\n", 2, ""),
            ("allow: nope\n", 1, "expected a sequence"),
            (
                "default: deny\n---\ndefault: allow\n",
                0,
                "more than one document",
            ),
        ];
        for (text, line, needle) in cases {
            let e = Policy::parse("/etc/monitor/policy.yaml", text).unwrap_err();
            let msg = e.to_string();
            assert!(msg.starts_with("/etc/monitor/policy.yaml: "), "{msg}");
            assert!(msg.contains(needle), "{text:?}: {msg}");
            assert!(!msg.contains('\n'), "{msg}");
            if *line > 0 {
                assert!(msg.contains(&format!("at line {line} ")), "{text:?}: {msg}");
                assert!(matches!(e, PolicyError::Invalid { line: Some(l), .. } if l == *line));
            }
        }
    }

    #[test]
    fn empty_files_and_unreadable_files_are_errors() {
        for text in ["", "# nothing yet\n"] {
            let e = Policy::parse("p.yaml", text).unwrap_err().to_string();
            assert!(e.starts_with("p.yaml: the policy is empty"), "{e}");
        }
        let e = Policy::load(Path::new("/nonexistent/policy.yaml")).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("/nonexistent/policy.yaml: cannot read"),
            "{e}"
        );
    }

    #[test]
    fn load_reads_the_file() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/policy/testdata/full.yaml");
        assert_eq!(
            Policy::load(&path).unwrap(),
            Policy::parse("x", FULL).unwrap()
        );
    }

    #[test]
    fn to_yaml_round_trips() {
        let p = Policy::parse("p.yaml", FULL).unwrap();
        let yaml = p.to_yaml();
        assert_eq!(Policy::parse("again.yaml", &yaml).unwrap(), p, "{yaml}");
        assert!(
            yaml.contains("routes: [/api/v1/orders, \"/api/v1/orders/{id}\", \"/static/**\"]"),
            "{yaml}"
        );

        let odd = Policy::new(
            DefaultAction::Allow,
            vec![AllowRule {
                from: NonEmpty(vec!["*".parse().unwrap(), "Web Content".parse().unwrap()]),
                to: NonEmpty(vec![
                    "10.0.0.1:8080".parse().unwrap(),
                    "true".parse().unwrap(),
                ]),
                methods: None,
                routes: None,
            }],
            vec![],
        );
        let yaml = odd.to_yaml();
        assert_eq!(Policy::parse("odd.yaml", &yaml).unwrap(), odd, "{yaml}");
        assert_eq!(
            Policy::parse("e.yaml", &Policy::default().to_yaml()).unwrap(),
            Policy::default()
        );
    }

    #[test]
    fn serializes_as_the_file_syntax() {
        let p = Policy::parse("p.yaml", FULL).unwrap();
        let json = serde_json::to_value(&p).unwrap();
        assert_eq!(json["allow"][0]["methods"][1], "POST");
        assert_eq!(
            json["endpoints"][0]["require"]["issuers"][0],
            "https://auth.test"
        );
        let back: Policy = serde_json::from_value(json).unwrap();
        assert_eq!(back, p);
    }
}
