//! `monitor-agent violations`: calls the policy does not allow, as a table or live.

use std::io::Write;

use anyhow::Result;

use super::{
    client::{print_stream, query, Client},
    inventory::print_table,
    ViolationsArgs,
};
use crate::{api::response::ViolationsAnswer, violations::ViolationRecord};

pub fn violations(a: ViolationsArgs) -> Result<()> {
    let client = Client::new(&a.server, a.list.follow);
    let mut params = vec![
        ("service", a.service.clone()),
        ("reason", a.reason.clone()),
        ("since", a.since.clone()),
    ];
    if a.list.follow {
        params.push(("follow", Some("true".into())));
        return print_stream(
            &client,
            &format!("/api/v1/violations{}", query(&params)),
            a.list.json,
            |v| row(v).join("  "),
        );
    }
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    params.push(("limit", Some(a.list.limit.to_string())));
    let answer: ViolationsAnswer =
        client.get_json(&format!("/api/v1/violations{}", query(&params)))?;
    let list = answer.violations;
    if a.list.json {
        for x in &list {
            let _ = writeln!(out, "{}", serde_json::to_string(x)?);
        }
        return Ok(());
    }
    drop(out);
    let rows: Vec<Vec<String>> = list.iter().map(|v| row(v)).collect();
    print_table(
        &[
            "TIME", "CALLER", "SERVICE", "METHOD", "PATH", "STATUS", "REASON", "DETAIL",
        ],
        &rows,
    );
    if rows.is_empty() {
        println!("(no violations)");
    }
    Ok(())
}

fn row(v: &ViolationRecord) -> Vec<String> {
    let ts = humantime::format_rfc3339_micros(v.ts).to_string();
    vec![
        ts.split('.').next().unwrap_or("").to_string(),
        v.client_service.clone(),
        v.server_service.clone(),
        v.method.clone(),
        v.path.clone(),
        v.status.to_string(),
        v.reason.as_str().to_string(),
        v.detail.clone(),
    ]
}
