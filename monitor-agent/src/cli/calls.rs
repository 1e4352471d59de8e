//! `monitor-agent calls`: recent calls, or a live stream of them with `--follow`.

use std::io::Write;

use anyhow::Result;
use serde_json::Value;

use super::{
    client::{print_stream, query, Client},
    CallsArgs,
};

pub fn calls(a: CallsArgs) -> Result<()> {
    let client = Client::new(&a.server, a.list.follow);
    let mut params = vec![("service", a.service.clone()), ("route", a.route.clone())];
    if a.list.follow {
        params.push(("follow", Some("true".into())));
        return print_stream(
            &client,
            &format!("/api/v1/calls{}", query(&params)),
            a.list.json,
            text,
        );
    }
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    params.push(("limit", Some(a.list.limit.to_string())));
    let v: Value = client.get_json(&format!("/api/v1/calls{}", query(&params)))?;
    for c in v["calls"].as_array().into_iter().flatten() {
        let shown = if a.list.json { c.to_string() } else { text(c) };
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
            .map_or_else(|| format!("{}:{}", s(&p["ip"]), p["port"]), str::to_string)
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
