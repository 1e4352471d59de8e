//! `monitor-agent calls`: recent calls, or a live stream of them with `--follow`.

use std::io::{BufRead, BufReader, Write};

use anyhow::{Context, Result};
use serde_json::Value;

use super::{
    client::{query, Client},
    CallsArgs,
};

pub fn calls(a: CallsArgs) -> Result<()> {
    let client = Client::new(&a.server, a.follow);
    let mut params = vec![("service", a.service.clone()), ("route", a.route.clone())];
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if a.follow {
        params.push(("follow", Some("true".into())));
        let reader = BufReader::new(client.stream(&format!("/api/v1/calls{}", query(&params)))?);
        for line in reader.lines() {
            let line = line.context("the agent closed the stream")?;
            if line.is_empty() {
                continue;
            }
            let shown = if a.json {
                line
            } else {
                text(
                    &serde_json::from_str(&line)
                        .context("the agent sent a line that is not JSON")?,
                )
            };
            // A closed pipe (`| head`) ends the command quietly.
            if writeln!(out, "{shown}").and_then(|_| out.flush()).is_err() {
                return Ok(());
            }
        }
        return Ok(());
    }
    params.push(("limit", Some(a.limit.to_string())));
    let v: Value = client.get_json(&format!("/api/v1/calls{}", query(&params)))?;
    for c in v["calls"].as_array().into_iter().flatten() {
        let shown = if a.json { c.to_string() } else { text(c) };
        if writeln!(out, "{shown}").is_err() {
            break;
        }
    }
    Ok(())
}

/// One line per call: when, who called whom, what, and how it went.
fn text(c: &Value) -> String {
    let s = |v: &Value| v.as_str().unwrap_or("-").to_string();
    let who = |p: &Value| {
        p["service"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| format!("{}:{}", s(&p["ip"]), p["port"]))
    };
    format!(
        "{} {} -> {} {} {} {} {}us{}",
        s(&c["ts"]),
        who(&c["client"]),
        who(&c["server"]),
        s(&c["method"]),
        s(&c["path"]),
        c["status"],
        c["duration_us"],
        if c["tls"].as_bool() == Some(true) {
            " tls"
        } else {
            ""
        },
    )
}
