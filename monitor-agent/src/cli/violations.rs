//! `monitor-agent violations`: calls the policy does not allow, as a table or live.

use std::io::Write;

use anyhow::Result;
use serde_json::Value;

use super::{
    client::{print_stream, query, Client},
    inventory::print_table,
    ViolationsArgs,
};

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
    let v: Value = client.get_json(&format!("/api/v1/violations{}", query(&params)))?;
    let list = v["violations"].as_array().cloned().unwrap_or_default();
    if a.list.json {
        for x in &list {
            let _ = writeln!(out, "{x}");
        }
        return Ok(());
    }
    drop(out);
    let rows: Vec<Vec<String>> = list.iter().map(row).collect();
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

fn row(v: &Value) -> Vec<String> {
    let s = |k: &str| v[k].as_str().unwrap_or("-").to_string();
    vec![
        s("ts").split('.').next().unwrap_or("").to_string(),
        s("client_service"),
        s("server_service"),
        s("method"),
        s("path"),
        v["status"].to_string(),
        s("reason"),
        s("detail"),
    ]
}
