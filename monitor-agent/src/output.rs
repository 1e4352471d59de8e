//! Writing call records to stdout as text lines or JSON Lines.

use std::{
    io::{BufWriter, Write},
    sync::{mpsc::Receiver, Arc},
    thread::{self, JoinHandle},
};

use clap::ValueEnum;

use crate::record::CallRecord;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    /// One readable line per call.
    Text,
    /// One JSON object per line (JSON Lines).
    Json,
    /// Nothing on stdout (metrics and API only).
    None,
}

pub(crate) fn spawn(
    format: OutputFormat,
    rx: Receiver<Arc<CallRecord>>,
) -> std::io::Result<JoinHandle<()>> {
    thread::Builder::new().name("output".into()).spawn(move || {
        let stdout = std::io::stdout();
        let mut w = BufWriter::new(stdout.lock());
        while let Ok(rec) = rx.recv() {
            if write_one(&mut w, format, &rec).is_err() {
                return;
            }
            // Drain what is already queued before paying for a flush.
            while let Ok(rec) = rx.try_recv() {
                if write_one(&mut w, format, &rec).is_err() {
                    return;
                }
            }
            if w.flush().is_err() {
                return;
            }
        }
        let _ = w.flush();
    })
}

fn write_one(w: &mut impl Write, format: OutputFormat, rec: &CallRecord) -> std::io::Result<()> {
    match format {
        OutputFormat::Json => {
            serde_json::to_writer(&mut *w, rec)?;
            w.write_all(b"\n")
        }
        OutputFormat::Text => writeln!(w, "{}", rec.to_text()),
        OutputFormat::None => Ok(()),
    }
}
