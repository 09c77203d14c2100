//! `ghrunner-vm remove`.

use clap::Args;

use super::GlobalArgs;
use crate::exit::ExitStatus;

/// Deregister the runner on the server, then delete its local files.
#[derive(Debug, Args)]
pub struct RemoveArgs {
    /// Removal token (Settings → Actions → Runners → Remove). Never logged or stored.
    #[arg(
        long,
        value_name = "TOKEN",
        env = "GHRUNNER_VM_TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
    /// Never prompt; fail if a required value is missing.
    #[arg(long)]
    pub unattended: bool,
}

/// Runs `remove`.
pub async fn run(args: RemoveArgs, global: &GlobalArgs) -> anyhow::Result<ExitStatus> {
    let _ = (args, global);
    anyhow::bail!("`remove` is not implemented yet")
}
