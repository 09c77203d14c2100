//! The QEMU backend of [`crate::vm::Hypervisor`]: QEMU spawned directly and managed over QMP.
//!
//! Owns: a VM's work directory `<runner dir>/vms/<name>/` (owner marker, overlay, QMP socket,
//! pid file, console log unless the job names one, passt socket), the QEMU and passt processes,
//! and their teardown. Here: the backend's settings and [`Hypervisor::launch`]; the boot steps
//! are in `boot`, the work directory and processes a VM owns in `resources`, the running VM in
//! [`QemuVm`]. Delegates the command line to [`args`], QMP to [`qmp`], the overlay to
//! [`overlay`], the accelerator to [`accel`], networking to [`net`], start-up cleanup to
//! [`reaper`] and SSH to [`crate::vm::ssh`].
//!
//! ```text
//!   launch: mkdir vms/<name> (0700) + owner.json ─► overlay ─► key pair ─► network (passt)
//!           ─► spawn qemu ─► QMP ready ─► console: GHRUNNER-HOSTKEY, GHRUNNER-READY
//!           ─► console file swapped for a 64 KiB ring (QMP chardev-change)
//!           ─► SSH (host key pinned) ─► QemuVm
//!           any failure, timeout or dropped future: kill processes, delete the directory
//!   destroy: quit ─(QUIT_GRACE)─► SIGKILL ─► delete dir   (no guest powerdown: the overlay is discarded)
//! ```

pub mod accel;
pub mod args;
mod boot;
pub mod console;
pub mod net;
pub mod overlay;
pub mod qmp;
pub mod reaper;
mod resources;
mod vm;

use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use self::accel::AccelMode;
use self::boot::boot;
use self::console::ERROR_TAIL_LINES;
use self::reaper::VMS_DIR;
use self::resources::{Resources, check_socket_paths, validate_name};
use super::egress::Egress;
use super::guest_user::GuestUser;
use super::{Hypervisor, LaunchSource, NetworkPolicy, VmError, VmSpec};
pub use boot::CONSOLE_RING_BYTES;
pub use vm::QemuVm;

/// How long QEMU may take to open its QMP socket.
pub const QMP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long QEMU gets to answer `quit`, and then to exit.
pub const QUIT_GRACE: Duration = Duration::from_secs(2);
/// How long QEMU may stay stopped (SIGSTOP) before the command fails.
pub const QEMU_STOPPED_LIMIT: Duration = Duration::from_secs(10);

/// `(major, minor)` from `QEMU emulator version 7.2.22 (Debian …)`.
fn parse_version(text: &str) -> Option<(u32, u32)> {
    let rest = text.split("version").nth(1)?.trim_start();
    let mut parts = rest.split(|c: char| !c.is_ascii_digit());
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// Settings of the QEMU backend.
#[derive(Debug, Clone)]
pub struct QemuConfig {
    /// The runner directory; VMs live in its `vms/` subdirectory.
    pub runner_dir: PathBuf,
    /// Accelerator mode from the configuration (`GHRUNNER_VM_ACCEL` overrides it).
    pub accel: AccelMode,
    /// `qemu-system-x86_64`.
    pub qemu: PathBuf,
    /// `qemu-img`.
    pub qemu_img: PathBuf,
    /// `passt` (for [`crate::vm::NetworkPolicy::User`]).
    pub passt: PathBuf,
    /// The unprivileged user QEMU and passt switch to (set when the agent runs as root).
    pub run_as: Option<GuestUser>,
    /// The egress policy, checked before each VM with a network.
    pub egress: Option<Arc<Egress>>,
}

impl QemuConfig {
    /// Defaults: programs from `PATH`, accelerator `auto`.
    pub fn new(runner_dir: impl Into<PathBuf>) -> Self {
        Self {
            runner_dir: runner_dir.into(),
            accel: AccelMode::Auto,
            qemu: "qemu-system-x86_64".into(),
            qemu_img: "qemu-img".into(),
            passt: "passt".into(),
            run_as: None,
            egress: None,
        }
    }
}

/// Where the time of a launch went (logged at `info`, used by `examples/bench_vm.rs`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BootTimings {
    /// Creating the qcow2 overlay (zero for images without a disk).
    pub overlay: Duration,
    /// Starting the network helper (passt), if any.
    pub network: Duration,
    /// Spawning QEMU until its QMP handshake completed.
    pub qmp_ready: Duration,
    /// QMP ready until the guest printed `GHRUNNER-READY`.
    pub guest_ready: Duration,
    /// Guest ready until SSH was authenticated with the pinned host key.
    pub ssh_ready: Duration,
    /// The whole launch.
    pub total: Duration,
}

/// The QEMU hypervisor.
#[derive(Debug, Clone)]
pub struct Qemu {
    config: QemuConfig,
    mode: AccelMode,
    /// QEMU's version (major, minor), asked once.
    version: Arc<tokio::sync::OnceCell<Option<(u32, u32)>>>,
}

impl Qemu {
    /// Creates the backend; `GHRUNNER_VM_ACCEL` overrides `config.accel`.
    pub fn new(config: QemuConfig) -> Result<Self, VmError> {
        let env = std::env::var(accel::ACCEL_ENV).ok();
        let mode =
            accel::effective_mode(config.accel, env.as_deref()).map_err(|e| VmError::Config {
                setting: accel::ACCEL_ENV,
                source: Box::new(e),
            })?;
        Ok(Self {
            config,
            mode,
            version: Arc::default(),
        })
    }

    /// QEMU's version (major, minor) from `--version`, asked once; `None` if unreadable.
    pub async fn version(&self) -> Option<(u32, u32)> {
        *self
            .version
            .get_or_init(|| async {
                let mut command = Command::new(&self.config.qemu);
                command.arg("--version");
                let out = crate::vm::process::output(command).await.ok()?;
                parse_version(&String::from_utf8_lossy(&out.stdout))
            })
            .await
    }

    /// The effective accelerator mode.
    pub fn accel_mode(&self) -> AccelMode {
        self.mode
    }
}

impl Hypervisor for Qemu {
    type Vm = QemuVm;

    async fn launch(&self, spec: VmSpec) -> Result<QemuVm, VmError> {
        validate_name(&spec.name)?;
        if let LaunchSource::RestoreSnapshot(_) = spec.source {
            return Err(VmError::Unsupported {
                backend: "qemu",
                what: "restore a VM from a snapshot yet (only cold boots)",
            });
        }
        let kernel = spec
            .image
            .manifest
            .kernel
            .as_deref()
            .map(|k| spec.image.path(k))
            .ok_or_else(|| VmError::InvalidImage {
                dir: spec.image.dir.clone(),
                reason: "the manifest names no kernel".into(),
            })?;
        for file in [
            Some(&spec.image.manifest.kernel),
            Some(&spec.image.manifest.initrd),
            Some(&spec.image.manifest.disk),
        ]
        .into_iter()
        .flatten()
        .flatten()
        {
            if !spec.image.path(file).is_file() {
                return Err(VmError::InvalidImage {
                    dir: spec.image.dir.clone(),
                    reason: format!("{file} is missing"),
                });
            }
        }
        let dir = self.config.runner_dir.join(VMS_DIR).join(&spec.name);
        check_socket_paths(&dir)?;
        let cache = Some(self.config.runner_dir.as_path());
        let kernel_sha256 = (spec.image.manifest.kernel.as_ref())
            .and_then(|k| spec.image.manifest.sha256.get(k))
            .map(String::as_str);
        let choice =
            accel::choose(self.mode, &self.config.qemu, &kernel, kernel_sha256, cache).await;
        if spec.network == NetworkPolicy::User
            && let Some(egress) = &self.config.egress
        {
            egress.before_vm(&spec.name).await;
        }
        let run_as = match &self.config.run_as {
            Some(user) => Some(args::RunAs::for_version(&user.name, self.version().await)),
            None => None,
        };
        let mut res = Resources::create(dir)?;
        let started = std::time::Instant::now();
        let booted = boot(&self.config, &spec, &mut res, choice.accel, &kernel, run_as);
        let parts = match tokio::time::timeout(spec.boot_timeout, booted).await {
            Ok(result) => result?,
            Err(_) => {
                return Err(VmError::BootTimeout {
                    name: spec.name.clone(),
                    timeout: spec.boot_timeout,
                    console_tail: console::tail(&res.console, res.console_offset, ERROR_TAIL_LINES),
                });
            }
        };
        let (ssh, qmp, ssh_addr, mut timings) = parts;
        timings.total = started.elapsed();
        tracing::info!(
            vm = %spec.name,
            job = spec.job.as_deref().unwrap_or("-"),
            accel = %choice.accel,
            total_ms = timings.total.as_millis() as u64,
            guest_ready_ms = timings.guest_ready.as_millis() as u64,
            "vm ready"
        );
        Ok(QemuVm {
            name: spec.name,
            ssh,
            ssh_addr,
            timings,
            qmp: tokio::sync::Mutex::new(qmp),
            res,
            fault: Mutex::new(None),
        })
    }
}

#[cfg(test)]
mod tests;
