//! What both HTTP/2 test peer programs (`h2peer`, `grpcpeer`) do around their async work:
//! a small tokio runtime, lines on stdout the tests wait for, and an exit code. Included by
//! each with `#[path]`; the harness library does not use it.

use std::{future::Future, io::Write, process::ExitCode, time::Duration};

/// Runs `work` on a two-thread runtime. An error is printed as `name: error` and exits 1.
pub(crate) fn run(name: &str, work: impl Future<Output = Result<(), String>>) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{name}: building the tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let res = rt.block_on(work);
    // Don't wait for a blocked stdin reader or lingering connection tasks.
    rt.shutdown_timeout(Duration::from_millis(100));
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// One line on stdout, flushed at once: tests read it as it comes.
pub(crate) fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}
