//! Where the pods behind a policy's service names are, and how a manifest selects them.
//!
//! An agent that reads the API server knows, for each `namespace/workload` it observed and
//! each `namespace/service`, the labels the pods really carry and their service account
//! ([`WorkloadSelector`]). Names it does not know (a policy written by hand, an agent
//! without Kubernetes) fall back to an assumed label, `app.kubernetes.io/name: <name>`,
//! in the namespace the operator gives, and to a service account named like the service.

use std::collections::{BTreeSet, HashMap};

use crate::identity::kubernetes::WorkloadSelector;

/// The label assumed to select a service's pods when the cluster did not say.
pub const SERVICE_LABEL: &str = "app.kubernetes.io/name";

/// The pods of one service name, as a manifest selects them.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Pods {
    pub namespace: String,
    /// Never empty: an empty selector would select every pod.
    pub labels: Vec<(String, String)>,
    /// For Istio principals; unknown for a Service seen only by its selector.
    pub account: Option<String>,
}

/// Service names → pods: the cluster's answers, else the assumption.
#[derive(Clone, Debug)]
pub struct Placements {
    known: HashMap<String, WorkloadSelector>,
    namespace: String,
}

impl Placements {
    /// Every name assumed to be a label value in `namespace`.
    pub fn assumed(namespace: &str) -> Placements {
        Placements::from_cluster(namespace, Vec::new())
    }

    /// The cluster's selectors first; other names assumed in `namespace`.
    pub fn from_cluster(namespace: &str, workloads: Vec<WorkloadSelector>) -> Placements {
        Placements {
            known: workloads
                .into_iter()
                .filter(|w| !w.labels.is_empty())
                .map(|w| (w.service.clone(), w))
                .collect(),
            namespace: namespace.to_owned(),
        }
    }

    /// The namespace for names the cluster did not place.
    pub(super) fn namespace(&self) -> &str {
        &self.namespace
    }

    /// How many names the cluster placed.
    pub(super) fn known(&self) -> usize {
        self.known.len()
    }

    /// The pods behind `name`, or `None` when it can be neither looked up nor assumed.
    pub(super) fn pods(&self, name: &str) -> Option<Pods> {
        if let Some(w) = self.known.get(name) {
            return Some(Pods {
                namespace: w.namespace.clone(),
                labels: w
                    .labels
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
                account: w.service_account.clone(),
            });
        }
        is_label_value(name).then(|| Pods {
            namespace: self.namespace.clone(),
            labels: vec![(SERVICE_LABEL.to_owned(), name.to_owned())],
            account: Some(name.to_owned()),
        })
    }

    /// Every namespace a manifest for one of `names` lands in; the operator's when none
    /// is placed by the cluster.
    pub(super) fn namespaces<'a>(&self, names: impl Iterator<Item = &'a str>) -> BTreeSet<String> {
        let mut out: BTreeSet<String> = names
            .map(|n| match self.known.get(n) {
                Some(w) => w.namespace.clone(),
                None => self.namespace.clone(),
            })
            .collect();
        if out.is_empty() {
            out.insert(self.namespace.clone());
        }
        out
    }
}

/// Kubernetes label values: at most 63 characters, alphanumerics at both ends, `-_.`
/// inside.
pub(super) fn is_label_value(s: &str) -> bool {
    let ok_end = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    s.len() <= 63
        && ok_end(s.chars().next())
        && ok_end(s.chars().last())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}
