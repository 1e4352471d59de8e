//! `monitor-agent calls`: recent calls, or a live stream of them with `--follow`.

use std::io::Write;

use anyhow::Result;

use super::{
    client::{print_stream, query, Client},
    CallsArgs,
};
use crate::{
    api::response::CallsAnswer,
    record::{CallRecord, Peer},
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
    let answer: CallsAnswer = client.get_json(&format!("/api/v1/calls{}", query(&params)))?;
    for c in &answer.calls {
        let shown = if a.list.json {
            serde_json::to_string(c)?
        } else {
            crate::printable::printable(&text(c)).into_owned()
        };
        if writeln!(out, "{shown}").is_err() {
            break;
        }
    }
    Ok(())
}

/// One line per call: when, who called whom, what, and how it went.
fn text(c: &CallRecord) -> String {
    let who = |p: &Peer| {
        p.service
            .as_deref()
            .map_or_else(|| format!("{}:{}", p.ip, p.port), str::to_string)
    };
    format!(
        "{} {} -> {} {} {} {} {}us{}",
        humantime::format_rfc3339_micros(c.ts),
        who(&c.client),
        who(&c.server),
        c.method,
        c.path,
        c.status,
        c.duration_us,
        if c.tls { " tls" } else { "" },
    )
}
