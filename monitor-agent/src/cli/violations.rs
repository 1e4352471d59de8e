//! `monitor-agent violations`: calls the policy does not allow, as a table or live.

use std::io::{BufRead, BufReader, Write};

use anyhow::{Context, Result};
use serde_json::Value;

use super::{
    client::{query, Client},
    inventory::print_table,
    ViolationsArgs,
};

pub fn violations(a: ViolationsArgs) -> Result<()> {
    let client = Client::new(&a.server, a.follow);
    let mut params = vec![
        ("service", a.service.clone()),
        ("reason", a.reason.clone()),
        ("since", a.since.clone()),
    ];
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if a.follow {
        params.push(("follow", Some("true".into())));
        let reader =
            BufReader::new(client.stream(&format!("/api/v1/violations{}", query(&params)))?);
        for line in reader.lines() {
            let line = line.context("the agent closed the stream")?;
            if line.is_empty() {
                continue;
            }
            let shown = if a.json {
                line
            } else {
                row(&serde_json::from_str(&line)
                    .context("the agent sent a line that is not JSON")?)
                .join("  ")
            };
            if writeln!(out, "{shown}").and_then(|_| out.flush()).is_err() {
                return Ok(());
            }
        }
        return Ok(());
    }
    params.push(("limit", Some(a.limit.to_string())));
    let v: Value = client.get_json(&format!("/api/v1/violations{}", query(&params)))?;
    let list = v["violations"].as_array().cloned().unwrap_or_default();
    if a.json {
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
