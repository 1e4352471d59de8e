//! `monitor-agent inventory`: the endpoints in use, as an aligned table.

use anyhow::Result;

use super::{
    client::{query, Client},
    InventoryArgs,
};
use crate::{
    api::response::{InventoryAnswer, UnusedAnswer},
    inventory::{view::EndpointView, SpecStatus},
    printable::printable,
};

pub fn inventory(a: InventoryArgs) -> Result<()> {
    let client = Client::new(&a.server, false);
    if let Some(service) = &a.openapi {
        let doc: serde_json::Value = client.get_json(&format!(
            "/api/v1/openapi{}",
            query(&[("service", Some(service.clone()))])
        ))?;
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(());
    }
    if a.unused {
        let q = query(&[("service", a.service.clone())]);
        let u: UnusedAnswer = client.get_json(&format!("/api/v1/inventory/unused{q}"))?;
        if a.json {
            println!("{}", serde_json::to_string_pretty(&u)?);
            return Ok(());
        }
        let rows: Vec<Vec<String>> = u
            .unused
            .iter()
            .map(|o| {
                vec![
                    o.service.clone(),
                    o.method.clone(),
                    o.route.clone(),
                    o.operation_id.clone().unwrap_or_default(),
                    if o.deprecated {
                        "deprecated".into()
                    } else {
                        String::new()
                    },
                ]
            })
            .collect();
        print_table(&["SERVICE", "METHOD", "ROUTE", "OPERATION", ""], &rows);
        if rows.is_empty() {
            println!("(every declared operation has been called)");
        }
        return Ok(());
    }
    let q = query(&[
        ("service", a.service.clone()),
        ("spec_status", a.spec_status.clone()),
        ("since", a.since.clone()),
    ]);
    let inv: InventoryAnswer = client.get_json(&format!("/api/v1/inventory{q}"))?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&inv)?);
        return Ok(());
    }
    let rows: Vec<Vec<String>> = inv.endpoints.iter().map(row).collect();
    print_table(
        &[
            "SERVICE",
            "METHOD",
            "ROUTE",
            "SPEC",
            "CALLS",
            "4XX",
            "5XX",
            "P50",
            "P99",
            "CALLERS",
            "AUTH",
            "LAST SEEN",
        ],
        &rows,
    );
    let count = |s| inv.endpoints.iter().filter(|e| e.spec_status == s).count();
    println!(
        "{} endpoints: {} documented, {} shadow, {} zombie",
        inv.endpoints.len(),
        count(SpecStatus::Documented),
        count(SpecStatus::Shadow),
        count(SpecStatus::Zombie)
    );
    Ok(())
}

fn micros(us: Option<u64>) -> String {
    match us {
        None => "-".into(),
        Some(u) if u < 1_000 => format!("{u}us"),
        Some(u) if u < 1_000_000 => format!("{:.1}ms", u as f64 / 1e3),
        Some(u) => format!("{:.2}s", u as f64 / 1e6),
    }
}

fn row(e: &EndpointView) -> Vec<String> {
    let spec = match e.spec_status {
        SpecStatus::Documented => "documented".to_string(),
        // Upper case so they stand out in a long table.
        SpecStatus::Shadow => "SHADOW".to_string(),
        SpecStatus::Zombie => "ZOMBIE".to_string(),
    };
    let callers = match e.callers.len() {
        0 => "-".to_string(),
        1..=2 => e
            .callers
            .iter()
            .map(|c| c.service.as_str())
            .collect::<Vec<_>>()
            .join(","),
        n => format!(
            "{},{} +{}",
            e.callers[0].service,
            e.callers[1].service,
            n - 2
        ),
    };
    let auth = e
        .auth
        .keys()
        .map(|k| k.split(' ').next().unwrap_or(k))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect::<Vec<_>>()
        .join(",");
    vec![
        e.service.clone(),
        e.method.clone(),
        e.route.clone(),
        spec,
        e.calls.to_string(),
        e.errors_4xx.to_string(),
        e.errors_5xx.to_string(),
        micros(e.latency_us.p50),
        micros(e.latency_us.p99),
        callers,
        auth,
        e.last_seen
            .split('.')
            .next()
            .unwrap_or(&e.last_seen)
            .to_string(),
    ]
}

/// Cells are escaped (`printable`): they hold what workloads sent.
pub(super) fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| r.iter().map(|c| printable(c).into_owned()).collect())
        .collect();
    let rows = rows.as_slice();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut s = String::new();
        for (i, (c, w)) in cells.zip(&widths).enumerate() {
            if i > 0 {
                s.push_str("  ");
            }
            s.push_str(c);
            if i + 1 < widths.len() {
                s.push_str(&" ".repeat(w - c.chars().count()));
            }
        }
        println!("{}", s.trim_end());
    };
    line(&mut header.iter().copied());
    for r in rows {
        line(&mut r.iter().map(String::as_str));
    }
}
