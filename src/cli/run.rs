//! `ghrunner-vm run`.

use std::net::SocketAddr;

use clap::Args;

use super::GlobalArgs;
use crate::exit::ExitStatus;

/// Listen for jobs and run each in a fresh VM, until SIGINT or SIGTERM.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Run one job, then exit (also the behaviour of an `--ephemeral` registration).
    #[arg(long)]
    pub once: bool,
    /// Serve Prometheus metrics on this address, e.g. 127.0.0.1:9464 [default: off].
    #[arg(long, value_name = "ADDR", env = "GHRUNNER_VM_METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,
}

/// Runs `run`.
pub async fn run(args: RunArgs, global: &GlobalArgs) -> anyhow::Result<ExitStatus> {
    let _ = (args, global);
    anyhow::bail!("`run` is not implemented yet")
}
