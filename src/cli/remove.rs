//! `ghrunner-vm remove`: asks for the remove token (on a terminal), then removes every
//! registration through [`crate::agent::register::remove_all`], printing each step.

use std::io::{BufRead as _, IsTerminal as _, Write as _};

use anyhow::bail;
use clap::Args;

use super::GlobalArgs;
use crate::agent::register::{registrations, remove_all};
use crate::exit::ExitStatus;
use crate::protocol::Secret;

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

/// Runs `remove`: every registration in the runner directory is deleted on the server, then
/// its local files. A registration the server no longer knows is only deleted locally.
pub async fn run(args: RemoveArgs, global: &GlobalArgs) -> anyhow::Result<ExitStatus> {
    let dir = global.runner_dir()?;
    let dirs = registrations(&dir)?;
    let token = match &args.token {
        Some(token) => Secret::new(token.clone()),
        None if !args.unattended && std::io::stdin().is_terminal() => {
            print!("Remove token: ");
            std::io::stdout().flush()?;
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line)?;
            Secret::new(line.trim())
        }
        None => bail!("--token (or $GHRUNNER_VM_TOKEN) is required"),
    };
    if token.is_empty() {
        bail!("the remove token is empty");
    }
    let mut progress = |line: &str| println!("{line}");
    remove_all(dirs, &token, &mut progress).await?;
    Ok(ExitStatus::Success)
}
