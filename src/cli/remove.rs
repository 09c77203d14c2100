//! `ghrunner-vm remove`.

use std::io::{BufRead as _, IsTerminal as _, Write as _};

use anyhow::{Context as _, bail};
use clap::Args;

use super::GlobalArgs;
use crate::client::HttpClient;
use crate::client::registration;
use crate::config::runner::{self as runner_files, RUNNER_FILE, Registration};
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
    let dirs = runner_files::list_registration_dirs(&dir)?;
    if dirs.is_empty() {
        bail!("no runner is registered in {}", dir.display());
    }
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
    let http = HttpClient::new()?;
    for reg_dir in dirs {
        let runner = runner_files::load_runner_settings(&reg_dir.join(RUNNER_FILE))?;
        println!(
            "Removing runner {} (id {})",
            runner.agent_name, runner.agent_id
        );
        let mut progress = |line: &str| println!("  {line}");
        let found = registration::remove(&http, &runner, &token, &mut progress)
            .await
            .with_context(|| {
                format!("cannot remove runner {:?} on the server", runner.agent_name)
            })?;
        if !found {
            println!(
                "  The server no longer knows runner {}; deleting the local files",
                runner.agent_name
            );
        }
        Registration::delete_files(&reg_dir)?;
        tracing::info!(name = %runner.agent_name, id = runner.agent_id, "runner removed");
        println!("Runner {} removed", runner.agent_name);
    }
    Ok(ExitStatus::Success)
}
