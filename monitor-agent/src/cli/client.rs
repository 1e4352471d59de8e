//! A small blocking client for the agent's query API, shared by the query subcommands.

use std::{io::Read, time::Duration};

use anyhow::{bail, Context, Result};
use serde::de::DeserializeOwned;

use super::ServerArgs;
use crate::api::response::ErrorAnswer;

/// Inventories of large clusters are big, but not this big.
const MAX_BODY: u64 = 512 << 20;

pub(super) struct Client {
    base: String,
    token: Option<String>,
    agent: ureq::Agent,
}

impl Client {
    pub(super) fn new(s: &ServerArgs, streaming: bool) -> Client {
        let mut cfg = ureq::Agent::config_builder().http_status_as_error(false);
        if streaming {
            cfg = cfg.timeout_connect(Some(Duration::from_secs(10)));
        } else {
            cfg = cfg.timeout_global(Some(Duration::from_secs(30)));
        }
        Client {
            base: s.server.trim_end_matches('/').to_string(),
            token: s.token.clone().filter(|t| !t.is_empty()),
            agent: cfg.build().into(),
        }
    }

    fn call(&self, path_and_query: &str) -> Result<ureq::http::Response<ureq::Body>> {
        let url = format!("{}{}", self.base, path_and_query);
        let mut req = self.agent.get(&url);
        if let Some(t) = &self.token {
            req = req.header("Authorization", &format!("Bearer {t}"));
        }
        let mut resp = req.call().with_context(|| {
            format!(
                "cannot reach the agent at {} (is `monitor-agent run` running there? see --server)",
                self.base
            )
        })?;
        let status = resp.status();
        if !status.is_success() {
            let body = resp
                .body_mut()
                .with_config()
                .limit(1 << 20)
                .read_to_string()
                .unwrap_or_default();
            let msg = serde_json::from_str::<ErrorAnswer>(&body).map_or(body, |e| e.error);
            bail!("the agent answered {}: {}", status.as_u16(), msg.trim());
        }
        Ok(resp)
    }

    pub(super) fn get_json<T: DeserializeOwned>(&self, path_and_query: &str) -> Result<T> {
        let mut resp = self.call(path_and_query)?;
        let body = resp
            .body_mut()
            .with_config()
            .limit(MAX_BODY)
            .read_to_string()
            .context("reading the agent's answer")?;
        serde_json::from_str(&body).context("the agent's answer is not the expected JSON")
    }

    /// The body as a byte stream, for endpoints that stream JSON Lines.
    pub(super) fn stream(&self, path_and_query: &str) -> Result<impl Read> {
        Ok(self.call(path_and_query)?.into_body().into_reader())
    }
}

/// Prints each JSON line the agent streams from `path_and_query`, as it is (`json`) or
/// through `show`, until the agent closes the stream or stdout is closed (`| head`).
pub(super) fn print_stream<T: DeserializeOwned>(
    client: &Client,
    path_and_query: &str,
    json: bool,
    show: impl Fn(&T) -> String,
) -> Result<()> {
    use std::io::{BufRead, BufReader, Write};
    let reader = BufReader::new(client.stream(path_and_query)?);
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for line in reader.lines() {
        let line = line.context("the agent closed the stream")?;
        if line.is_empty() {
            continue;
        }
        let shown = if json {
            line
        } else {
            let shown = show(
                &serde_json::from_str(&line)
                    .context("the agent sent a line that is not the expected JSON")?,
            );
            crate::printable::printable(&shown).into_owned()
        };
        if writeln!(out, "{shown}").and_then(|()| out.flush()).is_err() {
            return Ok(());
        }
    }
    Ok(())
}

/// `?a=b&c=d` from the parameters that are set.
pub(super) fn query(params: &[(&str, Option<String>)]) -> String {
    let set: Vec<(&str, &str)> = params
        .iter()
        .filter_map(|(k, v)| v.as_deref().map(|v| (*k, v)))
        .collect();
    if set.is_empty() {
        return String::new();
    }
    format!("?{}", serde_urlencoded::to_string(set).unwrap_or_default())
}
