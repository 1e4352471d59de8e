//! The query API's answers as types: the server writes them, the CLI and the end-to-end
//! tests read them, so a field renamed in one place fails to compile in the others.
//!
//! The answers hold what they held when they were built as JSON maps, with the top-level
//! keys in the same (alphabetical) order. Records and endpoints inside them are now written
//! in their declared field order, the order of the `--output json` record stream, instead of
//! re-sorted: the same call reads the same in both places.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::{
    enforcement::PolicyState,
    identity::kubernetes::WorkloadSelector,
    inventory::view::{EndpointView, UnusedView},
    record::CallRecord,
    spec::registry::SpecState,
    violations::ViolationRecord,
};

/// `GET /api/v1/inventory`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct InventoryAnswer {
    pub count: usize,
    pub endpoints: Vec<EndpointView>,
}

/// `GET /api/v1/inventory/unused`: declared operations never called.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct UnusedAnswer {
    pub count: usize,
    pub unused: Vec<UnusedView>,
}

/// `GET /api/v1/calls`, newest first; with `follow=true`, one [`CallRecord`] per line.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CallsAnswer {
    pub calls: Vec<Arc<CallRecord>>,
    pub count: usize,
}

/// `GET /api/v1/violations`, newest first; with `follow=true`, one [`ViolationRecord`] per
/// line.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ViolationsAnswer {
    pub count: usize,
    pub violations: Vec<Arc<ViolationRecord>>,
}

/// `GET /api/v1/specs`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SpecsAnswer {
    pub specs: Vec<SpecState>,
}

/// `GET /api/v1/policy`.
pub type PolicyAnswer = PolicyState;

/// `GET /api/v1/workloads`: how the cluster selects the pods behind each service name,
/// as the API server has them; empty when the agent does not read Kubernetes.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct WorkloadsAnswer {
    pub count: usize,
    pub workloads: Vec<WorkloadSelector>,
}

/// Every error: what went wrong and what to do about it, in one sentence.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ErrorAnswer {
    pub error: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Peer, Role};

    /// The answers were JSON maps; the types write the same JSON, top-level keys in the
    /// same order.
    #[test]
    fn answers_write_what_the_maps_wrote() {
        let call = Arc::new(CallRecord::sample(
            Role::Server,
            Peer::remote("127.0.0.1:1".parse().unwrap()),
            Peer::remote("127.0.0.1:2".parse().unwrap()),
            "GET",
            "/a",
        ));
        let typed = CallsAnswer {
            calls: vec![call.clone()],
            count: 1,
        };
        let map = serde_json::json!({ "count": 1, "calls": [call] });
        assert_eq!(serde_json::to_value(&typed).unwrap(), map);
        assert!(serde_json::to_string(&typed)
            .unwrap()
            .starts_with("{\"calls\":[{\"ts\":"));
        let typed = InventoryAnswer {
            count: 0,
            endpoints: vec![],
        };
        let map = serde_json::json!({ "endpoints": [], "count": 0 });
        assert_eq!(
            serde_json::to_string(&typed).unwrap(),
            serde_json::to_string(&map).unwrap()
        );
        let typed = ViolationsAnswer {
            count: 0,
            violations: vec![],
        };
        let map = serde_json::json!({ "violations": [], "count": 0 });
        assert_eq!(
            serde_json::to_string(&typed).unwrap(),
            serde_json::to_string(&map).unwrap()
        );
    }
}
