//! A running QEMU VM: guest operations over SSH, each guarded against a QEMU that stopped or
//! died, QMP status, and teardown (quit, then kill, then delete the work directory).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::qmp::{self, Qmp};
use super::resources::Resources;
use super::{BootTimings, QEMU_STOPPED_LIMIT, QMP_TIMEOUT, QUIT_GRACE};
use crate::vm::ssh::SshConnection;
use crate::vm::{ExecOutcome, GuestCommand, GuestFile, GuestRead, OutputChunk, Vm, VmError};

/// How often a running command checks that QEMU is still running.
const QEMU_WATCH_INTERVAL: Duration = Duration::from_secs(1);

/// A running QEMU VM. Dropping it kills QEMU and removes its files.
pub struct QemuVm {
    pub(super) name: String,
    pub(super) ssh: SshConnection,
    pub(super) ssh_addr: SocketAddr,
    pub(super) timings: BootTimings,
    pub(super) qmp: tokio::sync::Mutex<Qmp>,
    pub(super) res: Resources,
    /// Why the VM is unusable (QEMU stopped or gone), once a guarded operation found out.
    pub(super) fault: Mutex<Option<String>>,
}

impl QemuVm {
    /// The VM's work directory on the host.
    pub fn work_dir(&self) -> &Path {
        &self.res.dir
    }

    /// The host address forwarded to the guest's SSH port.
    pub fn ssh_addr(&self) -> SocketAddr {
        self.ssh_addr
    }

    /// Where the launch time went.
    pub fn timings(&self) -> BootTimings {
        self.timings
    }

    /// The pid of the QEMU process.
    pub fn qemu_pid(&self) -> Option<u32> {
        self.res.qemu_pid
    }

    /// `query-status` over QMP (bounded by [`QMP_TIMEOUT`]).
    pub async fn status(&self) -> Result<qmp::StatusInfo, VmError> {
        let err = |source: Box<dyn std::error::Error + Send + Sync>| VmError::Qmp {
            name: self.name.clone(),
            command: "query-status".into(),
            source,
        };
        let mut qmp = self.qmp.lock().await;
        match tokio::time::timeout(QMP_TIMEOUT, qmp.query_status()).await {
            Ok(answer) => answer.map_err(|e| err(Box::new(e))),
            Err(elapsed) => Err(err(Box::new(elapsed))),
        }
    }

    /// Runs a guest operation unless QEMU stops or dies first: a frozen or dead VM fails the
    /// operation (and every later one at once) instead of hanging the job on its SSH session.
    async fn guarded<T>(
        &self,
        operation: impl std::future::Future<Output = Result<T, VmError>>,
    ) -> Result<T, VmError> {
        if let Some(detail) = self.fault.lock().unwrap_or_else(|e| e.into_inner()).clone() {
            return Err(VmError::Exited {
                name: self.name.clone(),
                detail,
            });
        }
        tokio::select! {
            result = operation => result,
                        err = self.watch_qemu() => {
                *self.fault.lock().unwrap_or_else(|e| e.into_inner()) = Some(err.to_string());
                // Threads still blocked on the session (this operation's) give up too.
                self.ssh.abandon();
                Err(err)
            }
        }
    }

    /// Resolves with an error once QEMU has been stopped (SIGSTOP) for [`QEMU_STOPPED_LIMIT`]
    /// or has exited; never while it runs.
    async fn watch_qemu(&self) -> VmError {
        let Some(pid) = self.qemu_pid() else {
            return std::future::pending().await;
        };
        let mut stopped_since: Option<std::time::Instant> = None;
        loop {
            tokio::time::sleep(QEMU_WATCH_INTERVAL).await;
            match crate::vm::process::state(pid) {
                crate::vm::process::ProcessState::Alive => stopped_since = None,
                crate::vm::process::ProcessState::Gone => {
                    return self
                        .res
                        .check_exited(&self.name)
                        .unwrap_or(VmError::Exited {
                            name: self.name.clone(),
                            detail: "qemu is gone".into(),
                        });
                }
                crate::vm::process::ProcessState::Stopped => {
                    let since = *stopped_since.get_or_insert_with(std::time::Instant::now);
                    if since.elapsed() >= QEMU_STOPPED_LIMIT {
                        return VmError::Exited {
                            name: self.name.clone(),
                            detail: format!(
                                "qemu (pid {pid}) has been stopped for {}s: the VM makes no progress",
                                QEMU_STOPPED_LIMIT.as_secs()
                            ),
                        };
                    }
                }
            }
        }
    }
}

impl Vm for QemuVm {
    fn id(&self) -> &str {
        &self.name
    }

    async fn exec(
        &self,
        cmd: GuestCommand,
        output: mpsc::Sender<OutputChunk>,
        cancel: CancellationToken,
    ) -> Result<ExecOutcome, VmError> {
        self.guarded(self.ssh.exec(cmd, output, cancel)).await
    }

    async fn upload(&self, guest_path: &str, contents: Vec<u8>, mode: u32) -> Result<(), VmError> {
        self.guarded(self.ssh.upload(guest_path, contents, mode))
            .await
    }

    async fn download(&self, guest_path: &str) -> Result<Vec<u8>, VmError> {
        self.guarded(self.ssh.download(guest_path)).await
    }

    async fn write_files(&self, dirs: Vec<String>, files: Vec<GuestFile>) -> Result<(), VmError> {
        self.guarded(self.ssh.write_files(dirs, files)).await
    }

    async fn read_files(
        &self,
        paths: Vec<String>,
        max_bytes: u64,
    ) -> Result<Vec<GuestRead>, VmError> {
        self.guarded(self.ssh.read_files(paths, max_bytes)).await
    }

    async fn destroy(self) -> Result<(), VmError> {
        let Self {
            name,
            ssh,
            qmp,
            res,
            ..
        } = self;
        drop(ssh);
        let mut qmp = qmp.into_inner();
        // The job's overlay is deleted with the VM, so the guest has nothing worth flushing: an
        // ACPI powerdown would only cost its grace period on every job. Ask QEMU to quit.
        // A QEMU that does not answer (stopped, wedged) is killed after the grace.
        let quit = tokio::time::timeout(QUIT_GRACE, qmp.quit()).await;
        let graceful = matches!(quit, Ok(Ok(_))) && res.wait_exit(QUIT_GRACE).await;
        if !graceful {
            tracing::warn!(vm = %name, "qemu ignored quit; killing it");
        }
        let dir = res.dir.clone();
        // Kills whatever is left (passt, a stuck QEMU), reaps, deletes the directory.
        drop(res);
        if dir.exists() {
            return Err(VmError::Io {
                action: "removing",
                path: dir,
                source: std::io::Error::other("the vm directory is still there"),
            });
        }
        tracing::info!(vm = %name, graceful, "vm destroyed");
        Ok(())
    }
}
