//! `ghrunner-vm run`: parses the flags and hands over to [`crate::agent::run`] (one listener
//! per registration under `<dir>/runners/`, jobs in fresh QEMU VMs, until SIGINT/SIGTERM).

use std::net::SocketAddr;

use clap::Args;

use super::GlobalArgs;
use crate::agent::RunOptions;
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
    crate::agent::run(RunOptions {
        dir: global.runner_dir()?,
        once: args.once,
        metrics_addr: args.metrics_addr,
    })
    .await
}
