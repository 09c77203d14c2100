//! A test-only "guest" that runs commands as host processes: `LocalHypervisor` / `LocalVm`
//! implement the crate's public `Hypervisor` / `Vm` traits from outside the crate, which also
//! proves a second backend needs no change to the job runner.
//!
//! The guest work directory (the image manifest's `work_dir`, or the one given to
//! [`LocalVm::new`]) is mapped to a fresh temporary directory: every occurrence of the guest
//! work dir in argv, environment values, the working directory and upload/download paths is
//! rewritten to the host directory. Commands run in their own process group with a minimal
//! environment (`PATH`, `HOME`, `LANG`) plus the command's own; output is streamed as it is
//! read, optionally cut into small chunks to exercise reassembly. Cancellation sends SIGINT to
//! the group, then SIGTERM, then SIGKILL, after short graces.
//!
//! Not for production: there is no isolation at all.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use ghrunner_vm::vm::{ExecOutcome, GuestCommand, Hypervisor, OutputChunk, Vm, VmError, VmSpec};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Grace after SIGINT before SIGTERM (the official runner waits 7.5 s; tests need less).
const SIGINT_GRACE: Duration = Duration::from_millis(1500);
/// Grace after SIGTERM before SIGKILL.
const SIGTERM_GRACE: Duration = Duration::from_millis(500);
/// How long output pipes may stay open after the command exited (inherited by a background
/// child) before the group is killed.
const PIPE_DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// Read buffer size.
const READ_BUFFER: usize = 64 * 1024;
/// Base `PATH` of the local guest.
const GUEST_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Creates [`LocalVm`]s.
#[derive(Debug, Clone, Default)]
pub struct LocalHypervisor {
    /// Cut every output read into chunks of at most this many bytes (`None`: as read).
    pub max_chunk: Option<usize>,
}

impl Hypervisor for LocalHypervisor {
    type Vm = LocalVm;

    async fn launch(&self, spec: VmSpec) -> Result<LocalVm, VmError> {
        let mut vm = LocalVm::new(&spec.image.manifest.work_dir)?;
        vm.max_chunk = self.max_chunk;
        Ok(vm)
    }
}

/// A local "VM": a temporary directory standing in for the guest work directory.
#[derive(Debug)]
pub struct LocalVm {
    id: String,
    guest_work_dir: String,
    dir: tempfile::TempDir,
    /// See [`LocalHypervisor::max_chunk`].
    pub max_chunk: Option<usize>,
}

impl LocalVm {
    /// A VM whose guest work directory `guest_work_dir` maps to a new temporary directory.
    pub fn new(guest_work_dir: &str) -> Result<LocalVm, VmError> {
        let dir = tempfile::Builder::new()
            .prefix("ghrunner-localvm-")
            .tempdir()
            .map_err(|source| VmError::Io {
                action: "creating local guest dir",
                path: std::env::temp_dir(),
                source,
            })?;
        Ok(LocalVm {
            id: format!("local-{}", uuid::Uuid::new_v4()),
            guest_work_dir: guest_work_dir.trim_end_matches('/').to_owned(),
            dir,
            max_chunk: None,
        })
    }

    /// The host directory standing in for the guest work directory.
    pub fn host_dir(&self) -> &Path {
        self.dir.path()
    }

    /// Rewrites guest work-dir paths in `text` to the host directory.
    pub fn to_host(&self, text: &str) -> String {
        text.replace(&self.guest_work_dir, &self.dir.path().to_string_lossy())
    }

    fn host_path(&self, guest_path: &str) -> Result<PathBuf, VmError> {
        if guest_path.starts_with(&self.guest_work_dir) {
            Ok(PathBuf::from(self.to_host(guest_path)))
        } else {
            Err(VmError::Command {
                program: "local-vm".into(),
                stderr: format!("path {guest_path} is outside the guest work dir"),
            })
        }
    }

    fn build(&self, cmd: &GuestCommand) -> Result<Command, VmError> {
        let (program, args) = cmd.argv.split_first().ok_or_else(|| VmError::Command {
            program: "local-vm".into(),
            stderr: "empty argv".into(),
        })?;
        let mut command = Command::new(self.to_host(program));
        command
            .args(args.iter().map(|a| self.to_host(a)))
            .env_clear()
            .env("PATH", GUEST_PATH)
            .env("HOME", self.dir.path())
            .env("LANG", "C.UTF-8")
            .envs(cmd.env.iter().map(|(k, v)| (k, self.to_host(v))))
            .current_dir(match &cmd.cwd {
                Some(cwd) => PathBuf::from(self.to_host(cwd)),
                None => self.dir.path().to_path_buf(),
            })
            .stdin(if cmd.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        Ok(command)
    }
}

impl Vm for LocalVm {
    fn id(&self) -> &str {
        &self.id
    }

    async fn exec(
        &self,
        cmd: GuestCommand,
        output: mpsc::Sender<OutputChunk>,
        cancel: CancellationToken,
    ) -> Result<ExecOutcome, VmError> {
        let program = cmd.argv.first().cloned().unwrap_or_default();
        let mut child = self.build(&cmd)?.spawn().map_err(|source| VmError::Spawn {
            program: program.clone(),
            source,
        })?;
        let pgid = child.id().map(|id| Pid::from_raw(id as i32));
        if let (Some(input), Some(mut stdin)) = (cmd.stdin, child.stdin.take()) {
            tokio::spawn(async move {
                use tokio::io::AsyncWriteExt;
                let _ = stdin.write_all(&input).await;
            });
        }
        let stdout = child
            .stdout
            .take()
            .map(|s| tokio::spawn(pump(s, output.clone(), self.max_chunk, OutputChunk::Stdout)));
        let stderr = child
            .stderr
            .take()
            .map(|s| tokio::spawn(pump(s, output.clone(), self.max_chunk, OutputChunk::Stderr)));
        drop(output);

        let mut cancelled = false;
        let status = tokio::select! {
            status = child.wait() => status,
            () = cancel.cancelled() => {
                cancelled = true;
                interrupt(&mut child, pgid).await
            }
        }
        .map_err(|source| VmError::Io {
            action: "waiting for local command",
            path: PathBuf::from(&program),
            source,
        })?;

        for pump in [stdout, stderr].into_iter().flatten() {
            let abort = pump.abort_handle();
            if tokio::time::timeout(PIPE_DRAIN_TIMEOUT, pump)
                .await
                .is_err()
            {
                signal_group(pgid, Signal::SIGKILL);
                abort.abort();
            }
        }
        let exit_code = status.code().unwrap_or_else(|| {
            128 + std::os::unix::process::ExitStatusExt::signal(&status).unwrap_or(0)
        });
        Ok(ExecOutcome {
            exit_code,
            cancelled,
        })
    }

    async fn upload(&self, guest_path: &str, contents: Vec<u8>, mode: u32) -> Result<(), VmError> {
        use std::os::unix::fs::PermissionsExt;
        let path = self.host_path(guest_path)?;
        let io = |action: &'static str, path: &Path| {
            let path = path.to_path_buf();
            move |source| VmError::Io {
                action,
                path,
                source,
            }
        };
        tokio::fs::write(&path, contents)
            .await
            .map_err(io("uploading", &path))?;
        tokio::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
            .await
            .map_err(io("setting mode of", &path))
    }

    async fn download(&self, guest_path: &str) -> Result<Vec<u8>, VmError> {
        let path = self.host_path(guest_path)?;
        tokio::fs::read(&path).await.map_err(|source| VmError::Io {
            action: "downloading",
            path,
            source,
        })
    }

    async fn destroy(self) -> Result<(), VmError> {
        let path = self.dir.path().to_path_buf();
        self.dir.close().map_err(|source| VmError::Io {
            action: "removing local guest dir",
            path,
            source,
        })
    }
}

/// SIGINT, then SIGTERM, then SIGKILL to the command's process group, each after a grace.
async fn interrupt(
    child: &mut tokio::process::Child,
    pgid: Option<Pid>,
) -> std::io::Result<std::process::ExitStatus> {
    for (signal, grace) in [
        (Signal::SIGINT, SIGINT_GRACE),
        (Signal::SIGTERM, SIGTERM_GRACE),
    ] {
        signal_group(pgid, signal);
        if let Ok(status) = tokio::time::timeout(grace, child.wait()).await {
            return status;
        }
    }
    signal_group(pgid, Signal::SIGKILL);
    child.wait().await
}

fn signal_group(pgid: Option<Pid>, signal: Signal) {
    if let Some(pgid) = pgid {
        // The group may be gone already; nothing to do then.
        let _ = killpg(pgid, signal);
    }
}

/// Reads a pipe and forwards its bytes (cut to `max_chunk`) until EOF or the receiver is gone.
async fn pump<R: AsyncRead + Unpin>(
    mut reader: R,
    output: mpsc::Sender<OutputChunk>,
    max_chunk: Option<usize>,
    wrap: fn(Vec<u8>) -> OutputChunk,
) {
    let mut buf = vec![0u8; READ_BUFFER];
    loop {
        let n = match reader.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let size = max_chunk.unwrap_or(n).max(1);
        for piece in buf[..n].chunks(size) {
            if output.send(wrap(piece.to_vec())).await.is_err() {
                return;
            }
        }
    }
}
