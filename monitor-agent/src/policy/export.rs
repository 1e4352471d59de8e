//! The policy as Kubernetes manifests, so what the monitor checks can be enforced by the
//! network or the mesh.
//!
//! The policy names services the way the agent does; a cluster selects pods by labels and
//! identifies callers by service account. [`Placements`] says how, for each name: from the
//! API server when the agent reads it (the labels its pods really carry, in their own
//! namespace), else assumed (`app.kubernetes.io/name: <service>` in the operator's
//! namespace, a service account named like the service). Every export's header says which.
//! Beyond that:
//!
//! - a caller named by an IP address (a peer the agent did not observe) is that address;
//! - `*` is any pod (as a server) or any source (as a caller);
//! - a caller in another namespace than the server is selected with its namespace too.
//!
//! Names that cannot be placed are skipped with a comment rather than guessed at. One
//! manifest is written per server service (per `to` entry), since each system unions the
//! allow rules that select a workload; `default: deny` adds a namespace-wide deny, in each
//! namespace a manifest lands in, where the system has a reliable way to say it.
//! `endpoints` requirements are not exported: enforcing them needs the issuers' keys
//! (Istio `RequestAuthentication`), which the policy does not know.
//!
//! What each system can express differs:
//! - `NetworkPolicy` is L4: callers only, every port (the policy does not know ports).
//! - `CiliumNetworkPolicy` adds L7 rules: method and path regexes converted from the
//!   patterns (`{x}`/`*` → `[^/]+`, `**` → any remainder, anchored, query allowed).
//!   Cilium needs a port for L7 rules, so they apply to the container port named `http`.
//! - Istio `AuthorizationPolicy` paths support a trailing `*` only, so a pattern becomes
//!   a prefix ending at its first wildcard: broader than the policy.

use std::{
    collections::BTreeSet, fmt, fmt::Write as _, net::IpAddr, net::SocketAddr, str::FromStr,
};

use crate::route::{Part, RoutePattern, Seg};

use super::{
    placement::{Placements, Pods, SERVICE_LABEL},
    schema::{AllowRule, DefaultAction, Method, NonEmpty, Policy, ServiceName},
    yaml::{flow, scalar},
};

/// The label Kubernetes (1.21 and later) puts on every namespace, naming it.
const NAMESPACE_LABEL: &str = "kubernetes.io/metadata.name";
/// The label Cilium gives every endpoint, naming its namespace.
const CILIUM_NAMESPACE_LABEL: &str = "k8s:io.kubernetes.pod.namespace";
/// The named container port Cilium's L7 rules apply to.
pub const CILIUM_HTTP_PORT: &str = "http";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ExportFormat {
    /// The policy file itself.
    Policy,
    NetworkPolicy,
    Cilium,
    Istio,
}

impl ExportFormat {
    pub const ALL: [ExportFormat; 4] = [
        ExportFormat::Policy,
        ExportFormat::NetworkPolicy,
        ExportFormat::Cilium,
        ExportFormat::Istio,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ExportFormat::Policy => "policy",
            ExportFormat::NetworkPolicy => "networkpolicy",
            ExportFormat::Cilium => "cilium",
            ExportFormat::Istio => "istio",
        }
    }
}

impl fmt::Display for ExportFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ExportFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        ExportFormat::ALL
            .into_iter()
            .find(|f| f.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                format!(
                    "unknown export format {s:?}: expected policy, networkpolicy, cilium or istio"
                )
            })
    }
}

/// Multi-document YAML for `format`, each manifest in the namespace of the pods it selects.
pub fn export(p: &Policy, format: ExportFormat, placements: &Placements) -> String {
    if format == ExportFormat::Policy {
        return p.to_yaml();
    }
    let mut out = header(p, format, placements);
    if p.default_action() == DefaultAction::Deny {
        let names = targets(p).into_iter().map(ServiceName::as_str);
        for namespace in placements.namespaces(names) {
            default_deny(&mut out, format, &namespace);
        }
    }
    for target in targets(p) {
        let rules: Vec<(usize, &AllowRule)> = p
            .allow_rules()
            .iter()
            .enumerate()
            .filter(|(_, r)| r.to.contains(target))
            .collect();
        let Some((namespace, selector)) = Selector::of(target, placements) else {
            let _ = writeln!(
                out,
                "# {}: not a pod label value or a workload the cluster named, so no manifest selects it\n",
                scalar(target.as_str())
            );
            continue;
        };
        let doc = Doc {
            namespace: &namespace,
            target,
            selector: &selector,
            rules: &rules,
            placements,
        };
        match format {
            ExportFormat::NetworkPolicy => doc.network_policy(&mut out),
            ExportFormat::Cilium => doc.cilium(&mut out),
            ExportFormat::Istio => doc.istio(&mut out),
            ExportFormat::Policy => unreachable!("returned above"),
        }
    }
    out
}

fn header(p: &Policy, format: ExportFormat, placements: &Placements) -> String {
    // Quoted when odd, so that no namespace can break out of a comment line.
    let namespace = scalar(placements.namespace());
    let mut s = format!(
        "# Generated by monitor-agent from a policy with default: {} ({} allow rules), as {}.\n",
        p.default_action().as_str(),
        p.allow_rules().len(),
        format
    );
    if placements.known() > 0 {
        let _ = writeln!(
            s,
            "# Pods are selected by the labels the API server has for them ({} workloads and Services, each\n\
             # in its own namespace); other names are assumed labelled {SERVICE_LABEL}: <service> in namespace {namespace}.",
            placements.known()
        );
    } else {
        let _ = writeln!(
            s,
            "# Assumes each service's pods are labelled {SERVICE_LABEL}: <service> in namespace {namespace}."
        );
    }
    match format {
        ExportFormat::NetworkPolicy => s.push_str(
            "# L4 only: methods and routes are not enforced, and allowed callers may use every port\n\
             # (the policy does not know ports). Callers are pods or IP addresses; a caller in another\n\
             # namespace is selected by its namespace's kubernetes.io/metadata.name label (set by\n\
             # Kubernetes 1.21 and later; label the namespace so on older clusters).\n",
        ),
        ExportFormat::Cilium => {
            let _ = writeln!(
                s,
                "# L7 rules apply to the container port named {CILIUM_HTTP_PORT:?} (Cilium needs a port for them);\n\
                 # path regexes allow a query string. Callers are endpoints of this namespace or CIDRs."
            );
        }
        ExportFormat::Istio => {
            let _ = writeln!(
                s,
                "# Callers are their pods' service accounts (assumed named like the service:\n\
                 # cluster.local/ns/{namespace}/sa/<service>). Istio paths only end in `*`, so each\n\
                 # route pattern becomes a prefix ending at its first wildcard: broader than the policy."
            );
        }
        ExportFormat::Policy => {}
    }
    if !p.endpoint_rules().is_empty() {
        s.push_str(
            "# The policy's `endpoints` credential requirements are not exported: enforcing them needs\n\
             # the issuers' keys (e.g. Istio RequestAuthentication).\n",
        );
    }
    if p.default_action() == DefaultAction::Deny && format == ExportFormat::Cilium {
        s.push_str(
            "# default: deny is not exported for Cilium: only the services named below are fenced in.\n\
             # Apply the networkpolicy export's monitor-default-deny (Cilium enforces it) for the rest.\n",
        );
    }
    s.push('\n');
    s
}

fn default_deny(out: &mut String, format: ExportFormat, namespace: &str) {
    match format {
        ExportFormat::NetworkPolicy => {
            out.push_str("---\n# default: deny: no ingress to any pod of the namespace unless a policy below allows it.\n");
            meta(
                out,
                "networking.k8s.io/v1",
                "NetworkPolicy",
                "monitor-default-deny",
                namespace,
            );
            out.push_str("spec:\n  podSelector: {}\n  policyTypes: [Ingress]\n\n");
        }
        ExportFormat::Istio => {
            out.push_str("---\n# default: deny: an ALLOW policy without rules allows nothing in the namespace,\n# so only what the policies below allow gets through.\n");
            meta(
                out,
                "security.istio.io/v1",
                "AuthorizationPolicy",
                "monitor-allow-nothing",
                namespace,
            );
            out.push_str("spec: {}\n\n");
        }
        ExportFormat::Cilium | ExportFormat::Policy => {}
    }
}

/// Every `to` entry once, in a stable order.
fn targets(p: &Policy) -> BTreeSet<&ServiceName> {
    p.allow_rules().iter().flat_map(|r| r.to.iter()).collect()
}

fn meta(out: &mut String, api: &str, kind: &str, name: &str, namespace: &str) {
    let _ = write!(
        out,
        "apiVersion: {api}\nkind: {kind}\nmetadata:\n  name: {}\n  namespace: {}\n  labels:\n    app.kubernetes.io/managed-by: monitor-agent\n",
        scalar(name),
        scalar(namespace)
    );
}

/// The pods a manifest applies to.
enum Selector {
    All,
    Pods(Vec<(String, String)>),
}

impl Selector {
    /// The selector and the namespace its manifest goes in.
    fn of(target: &ServiceName, placements: &Placements) -> Option<(String, Selector)> {
        if target.is_any() {
            return Some((placements.namespace().to_owned(), Selector::All));
        }
        let pods = placements.pods(target.as_str())?;
        Some((pods.namespace, Selector::Pods(pods.labels)))
    }

    /// `podSelector`/`endpointSelector`/`selector` body at `indent`.
    fn write(&self, out: &mut String, key: &str, indent: &str) {
        match self {
            Selector::All => {
                let _ = writeln!(out, "{indent}{key}: {{}}");
            }
            Selector::Pods(labels) => {
                let _ = writeln!(out, "{indent}{key}:");
                let inner = format!("{indent}  ");
                match_labels(out, &inner, &inner, labels.iter());
            }
        }
    }
}

/// `matchLabels:` after `head`, with one `key: value` line per label below it; `indent`
/// is the column of `matchLabels` (`head` may end in a list's `- `).
fn match_labels<'a>(
    out: &mut String,
    head: &str,
    indent: &str,
    labels: impl Iterator<Item = &'a (String, String)>,
) {
    let _ = writeln!(out, "{head}matchLabels:");
    for (k, v) in labels {
        let _ = writeln!(out, "{indent}  {}: {}", scalar(k), scalar(v));
    }
}

/// Callers of some rules, by how a cluster can name them.
#[derive(Default)]
struct Callers {
    any: bool,
    pods: BTreeSet<Pods>,
    ips: BTreeSet<IpAddr>,
    /// Names, and why.
    skipped: BTreeSet<(String, &'static str)>,
}

impl Callers {
    fn of<'a>(
        names: impl IntoIterator<Item = &'a ServiceName>,
        placements: &Placements,
    ) -> Callers {
        let mut c = Callers::default();
        for n in names {
            let s = n.as_str();
            if n.is_any() {
                c.any = true;
            } else if let Some(ip) = ip_of(s) {
                c.ips.insert(ip);
            } else if let Some(pods) = placements.pods(s) {
                c.pods.insert(pods);
            } else {
                let why = "not a pod label value, a workload the cluster named or an address";
                c.skipped.insert((s.to_owned(), why));
            }
        }
        c
    }

    /// Callers as service accounts (Istio's principals): pods whose account is unknown
    /// are skipped.
    fn by_account<'a>(
        names: impl IntoIterator<Item = &'a ServiceName>,
        placements: &Placements,
    ) -> Callers {
        let mut c = Callers::of(names, placements);
        let unknown: Vec<Pods> = c
            .pods
            .iter()
            .filter(|p| p.account.is_none())
            .cloned()
            .collect();
        for pods in unknown {
            c.pods.remove(&pods);
            let name = pods
                .labels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>();
            let why = "a Service whose pods' service account the agent has not seen";
            c.skipped
                .insert((format!("{}/{{{}}}", pods.namespace, name.join(",")), why));
        }
        c
    }

    fn is_empty(&self) -> bool {
        !self.any && self.pods.is_empty() && self.ips.is_empty()
    }

    fn note_skipped(&self, out: &mut String, indent: &str) {
        for (s, why) in &self.skipped {
            let _ = writeln!(out, "{indent}# caller {} skipped: {why}", scalar(s));
        }
    }
}

struct Doc<'a> {
    /// Where the target's pods are, and so the manifest.
    namespace: &'a str,
    target: &'a ServiceName,
    selector: &'a Selector,
    rules: &'a [(usize, &'a AllowRule)],
    placements: &'a Placements,
}

impl Doc<'_> {
    fn name(&self) -> String {
        if self.target.is_any() {
            "monitor-allow-any-service".to_owned()
        } else {
            // `shop/orders`, placed in namespace shop, is `orders` there.
            let name = self.target.as_str();
            let local = name
                .strip_prefix(self.namespace)
                .and_then(|n| n.strip_prefix('/'))
                .unwrap_or(name);
            format!("monitor-allow-{}", dns_name(local))
        }
    }

    fn comment(&self, out: &mut String) {
        let rules: Vec<String> = self
            .rules
            .iter()
            .map(|(i, _)| format!("allow[{i}]"))
            .collect();
        let _ = writeln!(
            out,
            "---\n# {}, as allowed by {}",
            scalar(self.target.as_str()),
            rules.join(", ")
        );
    }

    fn network_policy(&self, out: &mut String) {
        self.comment(out);
        meta(
            out,
            "networking.k8s.io/v1",
            "NetworkPolicy",
            &self.name(),
            self.namespace,
        );
        out.push_str("spec:\n");
        self.selector.write(out, "podSelector", "  ");
        out.push_str("  policyTypes: [Ingress]\n");
        let callers = Callers::of(
            self.rules.iter().flat_map(|(_, r)| r.from.iter()),
            self.placements,
        );
        callers.note_skipped(out, "  ");
        if callers.any {
            out.push_str("  ingress:\n    - {}\n\n");
            return;
        }
        if callers.is_empty() {
            out.push_str("  ingress: []\n\n");
            return;
        }
        out.push_str("  ingress:\n    - from:\n");
        for pods in &callers.pods {
            if pods.namespace == self.namespace {
                out.push_str("        - podSelector:\n");
            } else {
                out.push_str("        - namespaceSelector:\n");
                let ns = [(NAMESPACE_LABEL.to_owned(), pods.namespace.clone())];
                match_labels(out, "            ", "            ", ns.iter());
                out.push_str("          podSelector:\n");
            }
            match_labels(out, "            ", "            ", pods.labels.iter());
        }
        for ip in &callers.ips {
            let _ = writeln!(
                out,
                "        - ipBlock:\n            cidr: {}",
                host_cidr(*ip)
            );
        }
        out.push('\n');
    }

    fn cilium(&self, out: &mut String) {
        let mut ingress = String::new();
        let mut entries = 0;
        for (i, rule) in self.rules {
            let callers = Callers::of(rule.from.iter(), self.placements);
            callers.note_skipped(&mut ingress, "    ");
            if callers.is_empty() {
                let _ = writeln!(ingress, "    # allow[{i}]: no caller can be selected");
                continue;
            }
            let ports = cilium_ports(rule);
            // Cilium refuses rules that combine kinds of peers, so each kind gets its own.
            let mut peers = Vec::new();
            if callers.any {
                peers.push("fromEntities: [all]\n".to_owned());
            }
            if !callers.pods.is_empty() {
                let mut s = "fromEndpoints:\n".to_owned();
                for pods in &callers.pods {
                    let mut labels = pods.labels.clone();
                    if pods.namespace != self.namespace {
                        labels.push((CILIUM_NAMESPACE_LABEL.to_owned(), pods.namespace.clone()));
                    }
                    match_labels(&mut s, "        - ", "          ", labels.iter());
                }
                peers.push(s);
            }
            if !callers.ips.is_empty() {
                let cidrs: Vec<String> = callers.ips.iter().map(|ip| host_cidr(*ip)).collect();
                peers.push(format!(
                    "fromCIDR: {}\n",
                    flow(cidrs.iter().map(String::as_str))
                ));
            }
            for peer in peers {
                entries += 1;
                let _ = write!(ingress, "    # allow[{i}]\n    - {peer}{ports}");
            }
        }
        if entries == 0 {
            // An empty ingress list would not fence the endpoints in, so no manifest.
            let _ = writeln!(
                out,
                "# {}: no caller can be selected, nothing to allow\n",
                scalar(self.target.as_str())
            );
            return;
        }
        self.comment(out);
        meta(
            out,
            "cilium.io/v2",
            "CiliumNetworkPolicy",
            &self.name(),
            self.namespace,
        );
        out.push_str("spec:\n");
        self.selector.write(out, "endpointSelector", "  ");
        out.push_str("  ingress:\n");
        out.push_str(&ingress);
        out.push('\n');
    }

    fn istio(&self, out: &mut String) {
        self.comment(out);
        meta(
            out,
            "security.istio.io/v1",
            "AuthorizationPolicy",
            &self.name(),
            self.namespace,
        );
        out.push_str("spec:\n");
        self.selector.write(out, "selector", "  ");
        out.push_str("  action: ALLOW\n");
        let mut rules = String::new();
        let mut entries = 0;
        for (i, rule) in self.rules {
            let callers = Callers::by_account(rule.from.iter(), self.placements);
            callers.note_skipped(&mut rules, "    ");
            if callers.is_empty() {
                // A rule without `from` would allow every source.
                let _ = writeln!(rules, "    # allow[{i}]: no caller can be named");
                continue;
            }
            entries += 1;
            let _ = writeln!(rules, "    # allow[{i}]");
            let mut body = String::new();
            if !callers.any {
                body.push_str("      from:\n");
                if !callers.pods.is_empty() {
                    let principals: Vec<String> = callers
                        .pods
                        .iter()
                        .filter_map(|p| {
                            let account = p.account.as_deref()?;
                            Some(format!("cluster.local/ns/{}/sa/{account}", p.namespace))
                        })
                        .collect();
                    let _ = writeln!(
                        body,
                        "        - source:\n            principals: {}",
                        flow(principals.iter().map(String::as_str))
                    );
                }
                if !callers.ips.is_empty() {
                    let ips: Vec<String> = callers.ips.iter().map(IpAddr::to_string).collect();
                    let _ = writeln!(
                        body,
                        "        - source:\n            ipBlocks: {}",
                        flow(ips.iter().map(String::as_str))
                    );
                }
            }
            if rule.methods.is_some() || rule.routes.is_some() {
                body.push_str("      to:\n        - operation:\n");
                if let Some(m) = &rule.methods {
                    let _ = writeln!(
                        body,
                        "            methods: {}",
                        flow(m.iter().map(Method::as_str))
                    );
                }
                if let Some(routes) = &rule.routes {
                    let paths = istio_paths(routes);
                    let _ = writeln!(
                        body,
                        "            paths: {}",
                        flow(paths.iter().map(String::as_str))
                    );
                }
            }
            match body.strip_prefix("      ") {
                Some(rest) => {
                    let _ = write!(rules, "    - {rest}");
                }
                // Any source, any request: Istio's allow-all rule.
                None => rules.push_str("    - {}\n"),
            }
        }
        if entries > 0 {
            out.push_str("  rules:\n");
        }
        // Without rules an ALLOW policy allows nothing, which is what the policy says.
        out.push_str(&rules);
        out.push('\n');
    }
}

/// `toPorts` for one allow rule: L7 rules on the `http` port, or none when the rule
/// allows every method and path (an L3 allow, every port).
fn cilium_ports(rule: &AllowRule) -> String {
    if rule.methods.is_none() && rule.routes.is_none() {
        return String::new();
    }
    let method = rule.methods.as_ref().map(method_regex);
    let paths: Vec<Option<String>> = match &rule.routes {
        Some(routes) => routes.iter().map(|r| Some(path_regex(r))).collect(),
        None => vec![None],
    };
    let mut s = format!(
        "      toPorts:\n        - ports:\n            - port: {}\n              protocol: TCP\n          rules:\n            http:\n",
        scalar(CILIUM_HTTP_PORT)
    );
    for path in paths {
        let mut fields = Vec::new();
        if let Some(m) = &method {
            fields.push(format!("method: {}", scalar(m)));
        }
        if let Some(p) = &path {
            fields.push(format!("path: {}", scalar(p)));
        }
        let _ = writeln!(s, "              - {{{}}}", fields.join(", "));
    }
    s
}

fn method_regex(methods: &NonEmpty<Method>) -> String {
    let alts: Vec<String> = methods.iter().map(|m| regex_escape(m.as_str())).collect();
    if alts.len() == 1 {
        format!("^{}$", alts[0])
    } else {
        format!("^({})$", alts.join("|"))
    }
}

/// Anchored; one trailing slash and a query string are allowed because the policy's
/// matcher ignores both, and Envoy matches the whole `:path`, query included.
pub(super) fn path_regex(p: &RoutePattern) -> String {
    let mut s = String::from("^");
    for seg in p.segments() {
        s.push('/');
        match seg {
            Seg::Param(_) => s.push_str(PARAM_REGEX),
            Seg::Literal(l) => s.push_str(&regex_escape(l)),
            Seg::Mixed(parts) => {
                for p in parts {
                    match p {
                        Part::Param(_) => s.push_str(PARAM_REGEX),
                        Part::Literal(l) => s.push_str(&regex_escape(l)),
                    }
                }
            }
        }
    }
    if p.has_rest() {
        s.push_str(if p.segments().is_empty() {
            "/.*"
        } else {
            "([/?].*)?"
        });
    } else if p.segments().is_empty() {
        s.push_str("/(\\?.*)?");
    } else {
        s.push_str("/?(\\?.*)?");
    }
    s.push('$');
    s
}

/// One parameter's value: a non-empty piece of one segment.
const PARAM_REGEX: &str = "[^/?]+";

fn regex_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Istio paths: exact, or a prefix ending in `*` cut at the first wildcard segment.
pub(super) fn istio_paths(routes: &[RoutePattern]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut push = |p: String| {
        if !out.contains(&p) {
            out.push(p);
        }
    };
    for r in routes {
        let literals: Vec<&str> = r
            .segments()
            .iter()
            .map_while(|s| match s {
                Seg::Literal(l) => Some(&**l),
                Seg::Param(_) | Seg::Mixed(_) => None,
            })
            .collect();
        let prefix = format!("/{}", literals.join("/"));
        if literals.len() < r.segments().len() {
            push(if literals.is_empty() {
                "/*".to_owned()
            } else {
                format!("{prefix}/*")
            });
        } else if r.has_rest() {
            if literals.is_empty() {
                push("/*".to_owned());
            } else {
                push(prefix.clone());
                push(format!("{prefix}/*"));
            }
        } else {
            push(prefix);
        }
    }
    out
}

fn ip_of(s: &str) -> Option<IpAddr> {
    s.parse::<IpAddr>()
        .ok()
        .or_else(|| s.parse::<SocketAddr>().ok().map(|a| a.ip()))
}

fn host_cidr(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(_) => format!("{ip}/32"),
        IpAddr::V6(_) => format!("{ip}/128"),
    }
}

/// A DNS label for object names, with a hash of the original when it had to change, so
/// that `Orders` and `orders` do not collide.
fn dns_name(service: &str) -> String {
    let mut s: String = service
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9') => c,
            _ => '-',
        })
        .collect();
    s.truncate(40);
    let s = s.trim_matches('-').to_owned();
    if s == service {
        return s;
    }
    let hash = service.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    if s.is_empty() {
        format!("{hash:08x}")
    } else {
        format!("{s}-{hash:08x}")
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;
    use serde_yaml_ng::Value;

    use super::*;
    use crate::identity::kubernetes::WorkloadSelector;

    const FULL: &str = include_str!("testdata/full.yaml");

    fn docs(yaml: &str) -> Vec<Value> {
        serde_yaml_ng::Deserializer::from_str(yaml)
            .map(|d| Value::deserialize(d).unwrap_or_else(|e| panic!("{e}\n{yaml}")))
            .filter(|v| !v.is_null())
            .collect()
    }

    fn kinds(docs: &[Value]) -> Vec<&str> {
        docs.iter().map(|d| d["kind"].as_str().unwrap()).collect()
    }

    fn by_name<'a>(docs: &'a [Value], name: &str) -> &'a Value {
        docs.iter()
            .find(|d| d["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no {name}"))
    }

    fn full() -> Policy {
        Policy::parse("p.yaml", FULL).unwrap()
    }

    #[test]
    fn formats_parse_by_name() {
        for f in ExportFormat::ALL {
            assert_eq!(f.as_str().parse::<ExportFormat>(), Ok(f));
            assert_eq!(f.to_string().to_uppercase().parse::<ExportFormat>(), Ok(f));
        }
        assert!("calico"
            .parse::<ExportFormat>()
            .unwrap_err()
            .contains("calico"));
    }

    #[test]
    fn policy_format_is_the_policy_file() {
        let p = full();
        let out = export(&p, ExportFormat::Policy, &Placements::assumed("shop"));
        assert_eq!(Policy::parse("x", &out).unwrap(), p);
    }

    #[test]
    fn network_policy() {
        let out = export(
            &full(),
            ExportFormat::NetworkPolicy,
            &Placements::assumed("shop"),
        );
        assert!(out.contains("app.kubernetes.io/name: <service>"), "{out}");
        let d = docs(&out);
        assert_eq!(kinds(&d), ["NetworkPolicy"; 4]);
        let deny = by_name(&d, "monitor-default-deny");
        assert_eq!(
            deny["spec"]["podSelector"],
            Value::Mapping(Default::default())
        );
        let orders = by_name(&d, "monitor-allow-orders");
        assert_eq!(orders["metadata"]["namespace"], "shop");
        assert_eq!(
            orders["spec"]["podSelector"]["matchLabels"][SERVICE_LABEL],
            "orders"
        );
        let from = &orders["spec"]["ingress"][0]["from"];
        assert_eq!(
            from[0]["podSelector"]["matchLabels"][SERVICE_LABEL],
            "frontend"
        );
        assert!(orders["spec"]["ingress"][0].get("ports").is_none());
        let payments = by_name(&d, "monitor-allow-payments");
        let from = payments["spec"]["ingress"][0]["from"]
            .as_sequence()
            .unwrap();
        assert_eq!(from.len(), 2, "frontend and orders");
        // `from: ["*"]`: any source.
        let health = by_name(&d, "monitor-allow-health");
        assert_eq!(
            health["spec"]["ingress"][0],
            Value::Mapping(Default::default())
        );
    }

    #[test]
    fn cilium() {
        let out = export(&full(), ExportFormat::Cilium, &Placements::assumed("shop"));
        let d = docs(&out);
        assert_eq!(kinds(&d), ["CiliumNetworkPolicy"; 3]);
        let orders = by_name(&d, "monitor-allow-orders");
        assert_eq!(orders["apiVersion"], "cilium.io/v2");
        let rule = &orders["spec"]["ingress"][0];
        assert_eq!(
            rule["fromEndpoints"][0]["matchLabels"][SERVICE_LABEL],
            "frontend"
        );
        let port = &rule["toPorts"][0]["ports"][0];
        assert_eq!(
            (port["port"].as_str(), port["protocol"].as_str()),
            (Some("http"), Some("TCP"))
        );
        let http = rule["toPorts"][0]["rules"]["http"].as_sequence().unwrap();
        assert_eq!(http.len(), 3);
        assert_eq!(http[0]["method"], "^(GET|POST)$");
        assert_eq!(http[0]["path"], "^/api/v1/orders/?(\\?.*)?$");
        assert_eq!(http[1]["path"], "^/api/v1/orders/[^/?]+/?(\\?.*)?$");
        assert_eq!(http[2]["path"], "^/static([/?].*)?$");
        let health = by_name(&d, "monitor-allow-health");
        assert_eq!(health["spec"]["ingress"][0]["fromEntities"][0], "all");
        assert!(health["spec"]["ingress"][0].get("toPorts").is_none());
    }

    #[test]
    fn istio() {
        let out = export(&full(), ExportFormat::Istio, &Placements::assumed("shop"));
        assert!(out.contains("broader than the policy"), "{out}");
        let d = docs(&out);
        assert_eq!(kinds(&d), ["AuthorizationPolicy"; 4]);
        let nothing = by_name(&d, "monitor-allow-nothing");
        assert_eq!(nothing["spec"], Value::Mapping(Default::default()));
        let orders = by_name(&d, "monitor-allow-orders");
        assert_eq!(orders["spec"]["action"], "ALLOW");
        assert_eq!(
            orders["spec"]["selector"]["matchLabels"][SERVICE_LABEL],
            "orders"
        );
        let rule = &orders["spec"]["rules"][0];
        assert_eq!(
            rule["from"][0]["source"]["principals"][0],
            "cluster.local/ns/shop/sa/frontend"
        );
        let op = &rule["to"][0]["operation"];
        assert_eq!(op["methods"][1], "POST");
        let paths: Vec<&str> = op["paths"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(
            paths,
            ["/api/v1/orders", "/api/v1/orders/*", "/static", "/static/*"]
        );
        let health = by_name(&d, "monitor-allow-health");
        let rule = &health["spec"]["rules"][0];
        assert_eq!(
            *rule,
            Value::Mapping(Default::default()),
            "any source, any request"
        );
    }

    #[test]
    fn odd_names_are_skipped_or_mapped() {
        let text = "default: allow\nallow:\n  - from: [\"Web Content\", 10.0.0.7, \"fe80::1\", web]\n    to: [\"10.0.0.9:8080\", \"*\", Api_v2]\n    methods: [GET]\n  - from: [\"bad name\"]\n    to: [api]\n";
        let p = Policy::parse("p.yaml", text).unwrap();
        for format in [
            ExportFormat::NetworkPolicy,
            ExportFormat::Cilium,
            ExportFormat::Istio,
        ] {
            let out = export(&p, format, &Placements::assumed("team-a"));
            let d = docs(&out);
            assert!(
                out.contains("\"10.0.0.9:8080\": not a pod label value"),
                "{out}"
            );
            assert!(out.contains("caller \"Web Content\" skipped"), "{out}");
            let names: Vec<&str> = d
                .iter()
                .map(|v| v["metadata"]["name"].as_str().unwrap())
                .collect();
            assert_eq!(names[0], "monitor-allow-any-service", "{format}\n{out}");
            let hashed = names[1].strip_prefix("monitor-allow-api-v2-").unwrap();
            assert!(
                hashed.len() == 8 && hashed.chars().all(|c| c.is_ascii_hexdigit()),
                "{hashed}"
            );
            match format {
                ExportFormat::NetworkPolicy => {
                    let api = by_name(&d, "monitor-allow-api");
                    assert_eq!(api["spec"]["ingress"], Value::Sequence(vec![]));
                }
                ExportFormat::Cilium => {
                    assert_eq!(names.len(), 2, "{out}");
                    assert!(
                        out.contains("# api: no caller can be selected, nothing to allow"),
                        "{out}"
                    );
                }
                _ => assert!(
                    by_name(&d, "monitor-allow-api")["spec"]
                        .get("rules")
                        .is_none(),
                    "{out}"
                ),
            }
            let any = by_name(&d, "monitor-allow-any-service");
            match format {
                ExportFormat::NetworkPolicy => {
                    let from = &any["spec"]["ingress"][0]["from"];
                    assert_eq!(from[0]["podSelector"]["matchLabels"][SERVICE_LABEL], "web");
                    assert_eq!(from[1]["ipBlock"]["cidr"], "10.0.0.7/32");
                    assert_eq!(from[2]["ipBlock"]["cidr"], "fe80::1/128");
                }
                ExportFormat::Cilium => {
                    let ingress = any["spec"]["ingress"].as_sequence().unwrap();
                    assert_eq!(ingress.len(), 2, "endpoints and CIDRs apart");
                    assert_eq!(ingress[1]["fromCIDR"][0], "10.0.0.7/32");
                    assert_eq!(
                        ingress[1]["toPorts"][0]["rules"]["http"][0]["method"],
                        "^GET$"
                    );
                }
                _ => {
                    let from = &any["spec"]["rules"][0]["from"];
                    assert_eq!(
                        from[0]["source"]["principals"][0],
                        "cluster.local/ns/team-a/sa/web"
                    );
                    assert_eq!(from[1]["source"]["ipBlocks"][1], "fe80::1");
                    assert!(any["spec"]["rules"][0]["to"][0]["operation"]
                        .get("paths")
                        .is_none());
                }
            }
        }
    }

    #[test]
    fn regexes_and_istio_paths() {
        let r = |s: &str| s.parse::<RoutePattern>().unwrap();
        assert_eq!(path_regex(&r("/")), "^/(\\?.*)?$");
        assert_eq!(path_regex(&r("/**")), "^/.*$");
        assert_eq!(
            path_regex(&r("/a.b/{x}/*")),
            "^/a\\.b/[^/?]+/[^/?]+/?(\\?.*)?$"
        );
        assert_eq!(path_regex(&r("/a/{x}/**")), "^/a/[^/?]+([/?].*)?$");
        assert_eq!(
            istio_paths(&[
                r("/"),
                r("/**"),
                r("/a/{x}/b"),
                r("/a/{y}"),
                r("/{v}/x"),
                r("/s/**")
            ]),
            ["/", "/*", "/a/*", "/s", "/s/*"]
        );
    }

    #[test]
    fn a_namespace_cannot_break_out_of_a_comment() {
        let p = Policy::parse("p.yaml", "allow:\n  - {from: [a], to: [b]}\n").unwrap();
        for format in ExportFormat::ALL {
            let out = export(&p, format, &Placements::assumed("x\nkind: Secret"));
            let d = docs(&out);
            assert!(
                d.iter()
                    .all(|v| v.get("kind") != Some(&Value::from("Secret"))),
                "{out}"
            );
        }
    }

    #[test]
    fn empty_policies_export_cleanly() {
        for format in ExportFormat::ALL {
            let out = export(&Policy::default(), format, &Placements::assumed("ns"));
            let d = docs(&out);
            if format != ExportFormat::Policy {
                assert!(d.len() <= 1, "{format}: {out}");
            }
        }
    }

    fn selector(
        service: &str,
        kind: &str,
        labels: &[(&str, &str)],
        sa: Option<&str>,
    ) -> WorkloadSelector {
        WorkloadSelector {
            service: service.to_owned(),
            namespace: service.split_once('/').unwrap().0.to_owned(),
            kind: kind.to_owned(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            service_account: sa.map(str::to_owned),
        }
    }

    /// A suggestion from a cluster: names `namespace/workload`, placed by the API server.
    fn placed() -> (Policy, Placements) {
        let p = Policy::parse(
            "p.yaml",
            "default: deny\nallow:\n  - {from: [shop/client, edge/gateway, pay/billing, 10.1.2.3, unknown/x], to: [shop/orders]}\n  - {from: [shop/client], to: [pay/payments], methods: [POST]}\n",
        )
        .unwrap();
        let placements = Placements::from_cluster(
            "default",
            vec![
                selector(
                    "shop/orders",
                    "Deployment",
                    &[("app", "orders"), ("tier", "backend")],
                    Some("orders"),
                ),
                selector("shop/client", "Pod", &[("app", "client")], Some("shopper")),
                selector("edge/gateway", "DaemonSet", &[("app", "gw")], Some("gw")),
                selector("pay/billing", "Service", &[("app", "billing")], None),
                selector("pay/payments", "Service", &[("app", "payments")], None),
            ],
        );
        (p, placements)
    }

    #[test]
    fn pods_the_cluster_placed_are_selected_by_their_own_labels_and_namespace() {
        let (p, placements) = placed();
        let out = export(&p, ExportFormat::NetworkPolicy, &placements);
        assert!(
            out.contains("labels the API server has for them (5 workloads"),
            "{out}"
        );
        let d = docs(&out);
        let denies: Vec<&str> = d
            .iter()
            .filter(|v| v["metadata"]["name"] == "monitor-default-deny")
            .map(|v| v["metadata"]["namespace"].as_str().unwrap())
            .collect();
        assert_eq!(denies, ["pay", "shop"], "a deny where each manifest lands");
        let orders = d
            .iter()
            .find(|v| v["spec"]["podSelector"]["matchLabels"]["app"] == "orders")
            .unwrap();
        assert_eq!(orders["metadata"]["namespace"], "shop");
        assert_eq!(
            orders["spec"]["podSelector"]["matchLabels"]["tier"],
            "backend"
        );
        let from = orders["spec"]["ingress"][0]["from"].as_sequence().unwrap();
        assert_eq!(from.len(), 4, "{out}");
        // Same namespace: the pods alone; another namespace: that namespace's pods.
        assert_eq!(from[2]["podSelector"]["matchLabels"]["app"], "client");
        assert!(from[2].get("namespaceSelector").is_none());
        assert_eq!(from[0]["podSelector"]["matchLabels"]["app"], "gw");
        assert_eq!(
            from[0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
            "edge"
        );
        assert_eq!(
            from[1]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
            "pay"
        );
        assert_eq!(from[3]["ipBlock"]["cidr"], "10.1.2.3/32");
        assert!(out.contains("caller unknown/x skipped"), "{out}");
        let payments = d
            .iter()
            .find(|v| v["spec"]["podSelector"]["matchLabels"]["app"] == "payments")
            .unwrap();
        assert_eq!(payments["metadata"]["namespace"], "pay");
        assert_eq!(payments["metadata"]["name"], "monitor-allow-payments");
    }

    #[test]
    fn cilium_and_istio_name_the_placed_callers_namespace_and_account() {
        let (p, placements) = placed();
        let cilium = docs(&export(&p, ExportFormat::Cilium, &placements));
        let orders = cilium
            .iter()
            .find(|v| v["spec"]["endpointSelector"]["matchLabels"]["app"] == "orders")
            .unwrap();
        let from = &orders["spec"]["ingress"][0]["fromEndpoints"];
        assert_eq!(
            from[0]["matchLabels"]["k8s:io.kubernetes.pod.namespace"],
            "edge"
        );
        assert!(from[2]["matchLabels"]
            .get("k8s:io.kubernetes.pod.namespace")
            .is_none());

        // Istio names callers by service account: a Service's pods' account is unknown.
        let out = export(&p, ExportFormat::Istio, &placements);
        let istio = docs(&out);
        let orders = istio
            .iter()
            .find(|v| v["spec"]["selector"]["matchLabels"]["app"] == "orders")
            .unwrap();
        let principals = &orders["spec"]["rules"][0]["from"][0]["source"]["principals"];
        assert_eq!(principals[0], "cluster.local/ns/edge/sa/gw");
        assert_eq!(principals[1], "cluster.local/ns/shop/sa/shopper");
        assert!(principals.get(2).is_none(), "{out}");
        assert!(
            out.contains("skipped: a Service whose pods' service account"),
            "{out}"
        );
    }
}
