//! How a cluster selects the pods behind each service name the agent uses, taken from the
//! API server's objects rather than assumed, so that exported policies select the real
//! pods: a workload on this node by the labels its pods share, a Service by its own
//! `spec.selector`.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{PodFacts, ServiceFacts};

/// Labels a pod carries for one revision or one replica only; a selector with one of them
/// would miss the workload's other pods.
const PER_POD_LABELS: [&str; 5] = [
    "pod-template-hash",
    "controller-revision-hash",
    "pod-template-generation",
    "statefulset.kubernetes.io/pod-name",
    "apps.kubernetes.io/pod-index",
];

/// Labels kept per object. An object with more keeps none: a selector made of a subset
/// would select more pods than the workload's, which a policy must never do.
pub(super) const MAX_LABELS: usize = 64;

pub type Labels = BTreeMap<String, String>;

/// The pods behind one service name, as a policy selects them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkloadSelector {
    /// The name the inventory and policies use (`namespace/workload` or
    /// `namespace/service`).
    pub service: String,
    pub namespace: String,
    /// `Deployment`, `StatefulSet`, `Pod`... for a workload on this node; `Service` for a
    /// Service whose pods were not seen here.
    pub kind: String,
    /// Labels every pod of it carries (per-replica labels left out); never empty.
    pub labels: Labels,
    /// The pods' service account, when known (not for a Service).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account: Option<String>,
}

/// `metadata.labels` or `spec.selector`: string pairs, none per-replica; `None` past
/// `MAX_LABELS`.
pub(super) fn labels_of(map: &Value) -> Option<Labels> {
    let obj = map.as_object()?;
    if obj.len() > MAX_LABELS {
        return None;
    }
    Some(
        obj.iter()
            .filter(|(k, _)| !PER_POD_LABELS.contains(&k.as_str()))
            .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
            .collect(),
    )
}

/// Keeps the pairs both have.
fn intersect(into: &mut Labels, other: &Labels) {
    into.retain(|k, v| other.get(k) == Some(v));
}

/// Selectors for this node's workloads (labels their pods share) and for Services by
/// selector; a workload's own pods win over a Service of the same name.
pub(super) fn selectors<'a>(
    pods: impl Iterator<Item = &'a PodFacts>,
    services: impl Iterator<Item = &'a ServiceFacts>,
) -> HashMap<String, WorkloadSelector> {
    let mut out: HashMap<String, WorkloadSelector> = HashMap::new();
    let mut unselectable: Vec<String> = Vec::new();
    for p in pods {
        let w = &p.workload;
        let name = w.service();
        let Some(labels) = &p.labels else {
            unselectable.push(name);
            continue;
        };
        match out.get_mut(&name) {
            Some(sel) => intersect(&mut sel.labels, labels),
            None => {
                out.insert(
                    name.clone(),
                    WorkloadSelector {
                        service: name,
                        namespace: w.namespace.clone(),
                        kind: w.kind.clone(),
                        labels: labels.clone(),
                        service_account: Some(w.service_account.clone()),
                    },
                );
            }
        }
    }
    for name in unselectable {
        out.remove(&name);
    }
    out.retain(|_, s| !s.labels.is_empty());
    for svc in services {
        let Some(labels) = svc.selector.as_ref().filter(|l| !l.is_empty()) else {
            continue;
        };
        let Some((namespace, _)) = svc.name.split_once('/') else {
            continue;
        };
        out.entry(svc.name.to_string())
            .or_insert_with(|| WorkloadSelector {
                service: svc.name.to_string(),
                namespace: namespace.to_owned(),
                kind: "Service".to_owned(),
                labels: labels.clone(),
                service_account: None,
            });
    }
    out
}
