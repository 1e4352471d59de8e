//! `monitor-agent spec check`: a spec file against what is really served, for CI: "does
//! the service serve anything its spec does not declare, or anything it deprecated?"

use std::collections::BTreeSet;

use anyhow::{Context, Result};
use serde::Serialize;

use super::{
    client::{query, Client},
    inventory::print_table,
    SpecCheckArgs,
};
use crate::{api::response::InventoryAnswer, inventory::SpecStatus, spec::ServiceSpec};

#[derive(Debug, Serialize)]
struct Finding {
    method: String,
    route: String,
    calls: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    declared_as: Option<String>,
}

#[derive(Debug, Serialize)]
struct Report {
    service: String,
    spec: String,
    documented: Vec<Finding>,
    shadow: Vec<Finding>,
    zombie: Vec<Finding>,
    unused: Vec<Finding>,
}

/// Returns whether the check passed (no shadow and no zombie endpoint).
pub fn spec_check(a: SpecCheckArgs) -> Result<bool> {
    let spec = ServiceSpec::load(&a.service, &a.file).context("the spec file cannot be used")?;
    let client = Client::new(&a.server, false);
    let inv: InventoryAnswer = client.get_json(&format!(
        "/api/v1/inventory{}",
        query(&[("service", Some(a.service.clone()))])
    ))?;
    let mut r = Report {
        service: a.service.clone(),
        spec: a.file.display().to_string(),
        documented: Vec::new(),
        shadow: Vec::new(),
        zombie: Vec::new(),
        unused: Vec::new(),
    };
    let mut used = BTreeSet::new();
    for e in &inv.endpoints {
        let op = spec.match_op(&e.method, &e.route);
        let f = Finding {
            method: e.method.clone(),
            route: e.route.clone(),
            calls: e.calls,
            declared_as: op.map(|o| o.route.clone()),
        };
        if let Some(o) = op {
            used.insert((o.method.clone(), o.route.clone()));
        }
        match SpecStatus::of(op) {
            SpecStatus::Documented => r.documented.push(f),
            SpecStatus::Shadow => r.shadow.push(f),
            SpecStatus::Zombie => r.zombie.push(f),
        }
    }
    for o in &spec.ops {
        if !used.contains(&(o.method.clone(), o.route.clone())) {
            r.unused.push(Finding {
                method: o.method.clone(),
                route: o.route.clone(),
                calls: 0,
                declared_as: None,
            });
        }
    }
    let passed = r.shadow.is_empty() && r.zombie.is_empty();
    if a.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(passed);
    }
    let mut rows = Vec::new();
    for (label, list) in [
        ("SHADOW", &r.shadow),
        ("ZOMBIE", &r.zombie),
        ("documented", &r.documented),
        ("unused", &r.unused),
    ] {
        for f in list {
            rows.push(vec![
                label.to_string(),
                f.method.clone(),
                f.route.clone(),
                f.calls.to_string(),
            ]);
        }
    }
    print_table(&["STATUS", "METHOD", "ROUTE", "CALLS"], &rows);
    println!(
        "{}: {} documented, {} shadow, {} zombie, {} declared but unused ({} observed endpoints)",
        a.service,
        r.documented.len(),
        r.shadow.len(),
        r.zombie.len(),
        r.unused.len(),
        inv.endpoints.len()
    );
    if !passed {
        println!(
            "FAILED: {} serves endpoints its spec does not declare or has deprecated",
            a.service
        );
    }
    Ok(passed)
}
