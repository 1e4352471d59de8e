//! `monitor-agent run`: builds the agent's parts (`build`), starts their threads (`start`),
//! serves the API until SIGTERM or SIGINT, then stops the parts and detaches the programs.

mod build;
mod start;

use anyhow::Result;

use crate::{cli::RunArgs, config::Settings};

pub fn run(args: RunArgs) -> Result<()> {
    crate::allocator::configure();
    let settings = Settings::resolve(args)?;
    let built = build::build(&settings)?;
    // What loading the programs parsed (the kernel's BTF) is garbage from here on.
    crate::allocator::give_back();
    let (control, api, parts) = start::start(built, &settings)?;
    let served = control.serve(api);
    parts.join();
    served
}
