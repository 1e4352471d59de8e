//! `monitor-agent run`: builds the agent's parts (`build`), starts their threads (`start`),
//! serves the API until SIGTERM or SIGINT, then stops the parts and detaches the programs.

mod build;
mod start;

use anyhow::Result;

use crate::{cli::RunArgs, config::Settings};

pub fn run(args: RunArgs) -> Result<()> {
    let settings = Settings::resolve(args)?;
    // Loading the programs parses the kernel's BTF, garbage once they are loaded.
    let built = crate::allocator::starting_up(|| build::build(&settings))?;
    let (control, api, parts) = start::start(built, &settings)?;
    let served = control.serve(api);
    parts.join();
    served
}
