//! `api_endpoints{service,spec_status}`, computed from the inventory at scrape time so it
//! is always exactly what the query API shows.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
};

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric},
    metrics::gauge::ConstGauge,
};

use super::traffic::SpecLabels;
use crate::inventory::Inventory;

#[derive(Debug)]
pub(super) struct InventoryCollector {
    pub inventory: Arc<Mutex<Inventory>>,
}

impl Collector for InventoryCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut counts: BTreeMap<(String, &'static str), i64> = BTreeMap::new();
        if let Ok(inv) = self.inventory.lock() {
            for (k, e) in inv.endpoints() {
                *counts
                    .entry((k.service.clone(), e.spec_status.as_str()))
                    .or_default() += 1;
            }
            for (service, _) in inv.unused() {
                *counts.entry((service, "unused")).or_default() += 1;
            }
        }
        let g = ConstGauge::new(0i64);
        let mut m = enc.encode_descriptor(
            "api_endpoints",
            "Endpoints in the API inventory by service and spec status (documented, shadow, zombie; unused: declared, never called)",
            None,
            g.metric_type(),
        )?;
        for ((service, status), n) in counts {
            let labels = SpecLabels {
                service,
                spec_status: status.to_string(),
            };
            ConstGauge::new(n).encode(m.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

impl std::fmt::Debug for Inventory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Inventory({} endpoints)", self.len())
    }
}
