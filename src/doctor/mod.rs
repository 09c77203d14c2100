//! The host checks of `ghrunner-vm doctor`: checks what the runner needs on this host and says how to fix it.
//!
//! Each check yields a [`Check`] (ok, warning or failure, with a fix). Failures of something
//! required make the exit code non-zero (1): the host cannot run jobs; 0 means it can (a fresh
//! runner directory without images is a warning naming the `image build` to run). The checks
//! are the programs a job needs (QEMU, qemu-img, passt, with the exact `apt-get` command), /dev/kvm
//! and the accelerator verdict (cached per host state, `--reprobe` probes again), the installed
//! images (manifest valid, files present and matching their checksums; when there is none,
//! what `image build tiny` still needs) and the runner directory's permissions.

mod host;
mod runner;
#[cfg(test)]
mod tests;

use std::fmt::Write as _;
use std::path::Path;

pub use host::install_fix;
use host::{accel_check, kvm_device_check, probe_kernel, program_check};
use runner::{confinement_checks, image_checks, permission_checks, runner_version_check};

/// Programs a host needs to run jobs, with the Debian package that has each.
pub const REQUIRED_PROGRAMS: &[(&str, &str)] = &[
    ("qemu-system-x86_64", "qemu-system-x86"),
    ("qemu-img", "qemu-utils"),
    ("passt", "passt"),
];

/// Files holding credentials, which must be readable by the owner only.
const CREDENTIAL_FILES: &[&str] = &[".credentials", ".credentials_rsaparams", ".runner"];

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Fine.
    Ok,
    /// Works, but worse than it could (e.g. no KVM).
    Warn,
    /// Something required is missing or wrong.
    Fail,
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// What was checked.
    pub name: String,
    /// The outcome.
    pub status: Status,
    /// What was found.
    pub detail: String,
    /// How to fix it, if not ok.
    pub fix: Option<String>,
}

impl Check {
    pub(crate) fn new(
        name: impl Into<String>,
        status: Status,
        detail: impl Into<String>,
        fix: Option<String>,
    ) -> Self {
        Self {
            name: name.into(),
            status,
            detail: detail.into(),
            fix,
        }
    }
}

/// Runs every check for the runner directory `runner_dir` (`reprobe`: probe KVM again even
/// when a verdict is cached), in report order.
pub async fn checks(runner_dir: &Path, reprobe: bool) -> Vec<Check> {
    let mut checks = Vec::new();
    for (program, package) in REQUIRED_PROGRAMS {
        checks.push(program_check(program, package, true).await);
    }
    checks.push(kvm_device_check());
    let images = image_checks(runner_dir);
    let kernel = probe_kernel(runner_dir);
    checks.push(accel_check(runner_dir, kernel.as_deref(), reprobe).await);
    checks.push(runner_version_check(runner_dir).await);
    checks.extend(confinement_checks(runner_dir).await);
    checks.extend(images);
    checks.extend(permission_checks(runner_dir));
    checks
}

/// Renders the report: one line per check, with its fix indented below.
pub fn render(checks: &[Check]) -> String {
    let mut out = String::new();
    for check in checks {
        let tag = match check.status {
            Status::Ok => "ok  ",
            Status::Warn => "warn",
            Status::Fail => "FAIL",
        };
        let _ = writeln!(out, "[{tag}] {}: {}", check.name, check.detail);
        if let Some(fix) = &check.fix {
            let _ = writeln!(out, "       fix: {fix}");
        }
    }
    let failed = checks.iter().filter(|c| c.status == Status::Fail).count();
    let warned = checks.iter().filter(|c| c.status == Status::Warn).count();
    let _ = writeln!(out, "{failed} problem(s), {warned} warning(s)");
    out
}
