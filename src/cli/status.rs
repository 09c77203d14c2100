//! `ghrunner-vm status`.

use clap::Args;

use super::GlobalArgs;
use crate::exit::ExitStatus;

/// Show what is registered where, with which labels and images. Never prints secrets.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Runs `status`.
pub async fn run(args: StatusArgs, global: &GlobalArgs) -> anyhow::Result<ExitStatus> {
    let _ = (args, global);
    anyhow::bail!("`status` is not implemented yet")
}
