//! `ghrunner-vm doctor`: runs the host checks of [`crate::doctor`] and prints them with their
//! fixes. Exits 0 when the host can run jobs, 1 otherwise.

use clap::Args;

use super::GlobalArgs;
use crate::doctor::{Status, checks, render};
use crate::exit::ExitStatus;

/// Check QEMU, qemu-img, passt, KVM (with a bounded probe, cached per host state), images and
/// the runner directory's permissions, and print what to install or fix. Exits 0 when the host
/// can run jobs, 1 otherwise.
#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Probe KVM again even when a verdict for this host state is cached
    /// (<dir>/accel-probe.json), and cache the new verdict.
    #[arg(long)]
    pub reprobe: bool,
}

/// Runs `doctor`.
pub async fn run(args: DoctorArgs, global: &GlobalArgs) -> anyhow::Result<ExitStatus> {
    let runner_dir = global.runner_dir()?;
    let checks = checks(&runner_dir, args.reprobe).await;
    print!("{}", render(&checks));
    let failed = checks.iter().any(|c| c.status == Status::Fail);
    Ok(if failed {
        ExitStatus::Error
    } else {
        ExitStatus::Success
    })
}
