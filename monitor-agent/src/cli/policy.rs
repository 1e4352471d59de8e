//! `monitor-agent policy suggest` and `policy check`: from observed traffic to a policy,
//! and a policy file checked before it is deployed.

use std::str::FromStr;

use anyhow::{anyhow, Context, Result};

use super::{
    client::{query, Client},
    SuggestArgs,
};
use crate::{
    api::response::{InventoryAnswer, WorkloadsAnswer},
    policy::{export, suggest, ExportFormat, Placements, Policy},
};

pub fn policy_suggest(a: SuggestArgs) -> Result<()> {
    let format = ExportFormat::from_str(&a.format).map_err(|e| anyhow!("--format: {e}"))?;
    let client = Client::new(&a.server, false);
    let inv: InventoryAnswer = client.get_json(&format!(
        "/api/v1/inventory{}",
        query(&[("service", a.service.clone())])
    ))?;
    if inv.endpoints.is_empty() {
        anyhow::bail!("the agent has observed no endpoint yet: let traffic flow, then suggest");
    }
    let (policy, warnings) = suggest(&inv.endpoints);
    for w in warnings {
        eprintln!("warning: {w}");
    }
    let placements = if format == ExportFormat::Policy {
        Placements::assumed(&a.namespace)
    } else {
        // Pods are selected as the API server has them, where the agent reads it.
        let known: WorkloadsAnswer = client.get_json("/api/v1/workloads")?;
        Placements::from_cluster(&a.namespace, known.workloads)
    };
    print!("{}", export(&policy, format, &placements));
    Ok(())
}

pub fn policy_check(file: &std::path::Path) -> Result<()> {
    let p = Policy::load(file).context("the policy cannot be used")?;
    let _ = p;
    println!("{}: valid", file.display());
    Ok(())
}
