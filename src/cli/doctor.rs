//! `ghrunner-vm doctor`.

use clap::Args;

use super::GlobalArgs;
use crate::exit::ExitStatus;

/// Check QEMU, qemu-img, KVM (with a bounded probe), images and the runner directory's
/// permissions, and print what to install or fix.
#[derive(Debug, Args)]
pub struct DoctorArgs {}

/// Runs `doctor`.
pub async fn run(args: DoctorArgs, global: &GlobalArgs) -> anyhow::Result<ExitStatus> {
    let _ = (args, global);
    anyhow::bail!("`doctor` is not implemented yet")
}
