//! `probe-sites` (hidden): where the TLS probes would go in one file.

use anyhow::{Context, Result};

/// Prints the TLS probe sites `file` would get (`capture::tls::probe_sites`).
pub fn probe_sites(file: &std::path::Path) -> Result<()> {
    let f = std::fs::File::open(file).with_context(|| format!("cannot open {}", file.display()))?;
    for line in crate::capture::tls::probe_sites(f)? {
        println!("{line}");
    }
    Ok(())
}
