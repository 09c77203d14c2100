//! The hypervisor seam: what the job runner needs from a VM, and nothing else.
//!
//! The job runner is generic over [`Hypervisor`]; QEMU ([`qemu`]) is the first backend. Another
//! backend (Firecracker, a remote host, a fake in tests) implements the same two traits without
//! touching the job runner.
//!
//! # Lifecycle
//!
//! ```text
//!   Hypervisor::launch(spec) ──► Vm (booted, SSH reachable, host key pinned)
//!        │ fails: VmError, nothing left behind     │
//!                                                  ├─► exec(cmd, output, cancel)  (many, one at a time or concurrent)
//!                                                  ├─► upload / download / copy_tree
//!                                                  ▼
//!                                             Vm::destroy(self) ──► gone: process, overlay, sockets, keys
//!
//!   Dropping a Vm without destroy() kills it and removes its files (best effort, synchronous).
//! ```
//!
//! A VM is named by whoever launches it ([`VmSpec::name`], e.g. `vm-<uuid>`), not by a job: it
//! may exist before the job it will serve (a warm pool), and [`VmSpec::job`] only tells logs
//! which job it was launched for. [`VmSpec::source`] says how it comes to life: a cold boot of
//! the image, or a clone restored from a saved snapshot ([`LaunchSource`]); a backend that
//! cannot restore snapshots refuses with [`VmError::Unsupported`].
//!
//! # The guest contract (images built by `runner-images/` follow it)
//!
//! - Direct kernel boot; the backend appends `ghrunner.ssh_key=<base64 of an OpenSSH
//!   authorized_keys line>` to the kernel command line. The guest installs it for the image's
//!   user.
//! - The guest generates a fresh SSH host key at every boot and prints
//!   `GHRUNNER-HOSTKEY <key type> <base64 public key blob>` on the first serial console, then
//!   `GHRUNNER-READY` once the SSH server listens on port 22. The backend pins that host key and
//!   refuses any other.
//! - eth0 is configured with DHCP; the backend forwards a loopback port of the host to guest
//!   port 22.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::image::Image;

pub mod egress;
pub mod guest_user;
pub mod keys;
pub mod null;
pub mod process;
pub mod qemu;
pub mod shell;
pub mod ssh;
pub mod tree;

/// What a VM is launched with.
#[derive(Debug, Clone)]
pub struct VmSpec {
    /// Unique name of this VM on the host (used for its work directory and logs), chosen by
    /// whoever launches it (the executor uses `vm-<uuid>`), never derived from a job.
    pub name: String,
    /// The job the VM is launched for, if it is known at launch (for logs only; a VM launched
    /// ahead of its job has none).
    pub job: Option<String>,
    /// How the VM comes to life.
    pub source: LaunchSource,
    /// The image to boot.
    pub image: Image,
    /// Virtual CPUs.
    pub cpus: u32,
    /// Memory in MiB.
    pub memory_mib: u32,
    /// Size of the job's disk overlay in GiB, if the image has a disk (default: the template's).
    pub disk_gib: Option<u32>,
    /// Network policy.
    pub network: NetworkPolicy,
    /// How long booting may take until SSH is ready.
    pub boot_timeout: Duration,
    /// Where to copy the guest's serial console output (the job's debug log), if anywhere.
    pub console_log: Option<PathBuf>,
}

/// How a VM comes to life ([`VmSpec::source`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum LaunchSource {
    /// Boot the image from scratch.
    #[default]
    ColdBoot,
    /// Restore a clone of a booted VM saved earlier (the fast path). Backends that cannot do
    /// this fail the launch with [`VmError::Unsupported`].
    RestoreSnapshot(SnapshotRef),
}

/// A saved VM state that clones are restored from, as a backend wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotRef {
    /// The directory holding the saved state (memory and disk) on the host.
    pub dir: PathBuf,
}

/// Network policy of a VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NetworkPolicy {
    /// User-mode networking: outbound connections allowed, the host's loopback services are not
    /// reachable from the guest.
    #[default]
    User,
    /// No network device besides the backend's own SSH channel.
    None,
}

/// A command to run in the guest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GuestCommand {
    /// Program and arguments (the backend quotes them; no shell interpretation).
    pub argv: Vec<String>,
    /// Environment variables set for the command, in order (later wins).
    pub env: Vec<(String, String)>,
    /// Working directory; the command fails to start if it does not exist.
    pub cwd: Option<String>,
    /// Bytes written to the command's stdin, which is then closed. `None`: stdin is closed.
    pub stdin: Option<Vec<u8>>,
}

/// A file to write in the guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestFile {
    /// Absolute guest path; the parent directory must exist (or be created by the same batch).
    pub path: String,
    /// The contents.
    pub contents: Vec<u8>,
    /// Permission bits, e.g. `0o644`.
    pub mode: u32,
}

/// A file read back from the guest with a size cap ([`Vm::read_files`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuestRead {
    /// Missing or unreadable.
    Missing,
    /// Its bytes (at most the cap).
    Contents(Vec<u8>),
    /// Larger than the cap: not read (`size` as the guest reported it).
    TooLarge {
        /// Its size in bytes.
        size: u64,
    },
}

/// A piece of a running command's output, in the order the backend read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutputChunk {
    /// Bytes from stdout.
    Stdout(Vec<u8>),
    /// Bytes from stderr.
    Stderr(Vec<u8>),
}

/// How a guest command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExecOutcome {
    /// Exit code; a command killed by signal N reports 128 + N, as shells do.
    pub exit_code: i32,
    /// True if the command ended because its cancellation token fired.
    pub cancelled: bool,
}

/// Creates VMs.
pub trait Hypervisor: Send + Sync + 'static {
    /// The VM type of this backend.
    type Vm: Vm;

    /// Boots a VM for `spec` and returns once its SSH server is reachable with the pinned host
    /// key, or fails within `spec.boot_timeout` with everything it created removed.
    ///
    /// Cancellation: dropping the future kills any VM it started and removes its files.
    fn launch(&self, spec: VmSpec) -> impl Future<Output = Result<Self::Vm, VmError>> + Send;
}

/// A running VM. Dropping it without [`Vm::destroy`] kills it and removes its files.
pub trait Vm: Send + Sync + 'static {
    /// The backend's identifier of this VM (for logs).
    fn id(&self) -> &str;

    /// Runs a command, sending its output to `output` as it arrives, and returns how it ended.
    /// A non-zero exit is `Ok`. When `cancel` fires, the command is interrupted (SIGINT, then
    /// SIGTERM, then SIGKILL after short graces) and the outcome has `cancelled: true`.
    ///
    /// Cancellation: dropping the future closes the command's channel; the guest process may
    /// keep running until the VM is destroyed. Fire `cancel` to stop it cleanly.
    fn exec(
        &self,
        cmd: GuestCommand,
        output: mpsc::Sender<OutputChunk>,
        cancel: CancellationToken,
    ) -> impl Future<Output = Result<ExecOutcome, VmError>> + Send;

    /// Writes a file in the guest (parent directories must exist) with the given mode.
    fn upload(
        &self,
        guest_path: &str,
        contents: Vec<u8>,
        mode: u32,
    ) -> impl Future<Output = Result<(), VmError>> + Send;

    /// Reads a file from the guest.
    fn download(&self, guest_path: &str) -> impl Future<Output = Result<Vec<u8>, VmError>> + Send;

    /// Creates `dirs` (with their parents), then writes `files`. Backends where each call is a
    /// round trip to the guest should do it in one; the default runs `mkdir -p` and uploads the
    /// files one by one.
    fn write_files(
        &self,
        dirs: Vec<String>,
        files: Vec<GuestFile>,
    ) -> impl Future<Output = Result<(), VmError>> + Send {
        async move {
            if !dirs.is_empty() {
                let mut argv = vec!["mkdir".to_owned(), "-p".to_owned()];
                argv.extend(dirs);
                let (tx, _rx) = mpsc::channel(16);
                let mkdir = GuestCommand {
                    argv,
                    ..GuestCommand::default()
                };
                let outcome = self.exec(mkdir, tx, CancellationToken::new()).await?;
                if outcome.exit_code != 0 {
                    return Err(VmError::Command {
                        program: "mkdir".into(),
                        stderr: format!("exit code {}", outcome.exit_code),
                    });
                }
            }
            for file in files {
                self.upload(&file.path, file.contents, file.mode).await?;
            }
            Ok(())
        }
    }

    /// Copies the contents of the host directory `local_dir` (recursively) into `guest_dir`,
    /// which is created with its parents, as one tar stream through one [`Vm::exec`] of `tar -x`
    /// in the guest ([`tree`]): regular files with their permission bits, directories, and
    /// symlinks that stay inside the tree. A symlink leading outside it, a special file, or a
    /// tree larger than [`tree::COPY_TREE_MAX_BYTES`] fails with [`VmError::UncopyableTree`]
    /// before anything runs in the guest.
    ///
    /// Cancellation: dropping the future stops sending the tree; the guest may keep a partly
    /// unpacked `guest_dir`.
    fn copy_tree(
        &self,
        local_dir: &Path,
        guest_dir: &str,
    ) -> impl Future<Output = Result<(), VmError>> + Send {
        tree::copy_tree(self, local_dir.to_path_buf(), guest_dir.to_owned())
    }

    /// Reads several files, none larger than `max_bytes`: the guest controls these files, so a
    /// backend must size each one in the guest before sending it and never transfer more than
    /// the cap ([`GuestRead::TooLarge`] instead). Backends where each call is a round trip
    /// should do it in one; the default downloads them one by one (fine for backends whose
    /// files are local).
    fn read_files(
        &self,
        paths: Vec<String>,
        max_bytes: u64,
    ) -> impl Future<Output = Result<Vec<GuestRead>, VmError>> + Send {
        async move {
            let mut files = Vec::with_capacity(paths.len());
            for path in &paths {
                files.push(match self.download(path).await {
                    Ok(bytes) if bytes.len() as u64 > max_bytes => GuestRead::TooLarge {
                        size: bytes.len() as u64,
                    },
                    Ok(bytes) => GuestRead::Contents(bytes),
                    Err(_) => GuestRead::Missing,
                });
            }
            Ok(files)
        }
    }

    /// Stops the VM (the backend may skip a guest shutdown: nothing of the guest is kept) and
    /// removes its overlay, sockets and keys.
    ///
    /// Cancellation: dropping the future still kills the VM (through `Drop`).
    fn destroy(self) -> impl Future<Output = Result<(), VmError>> + Send;
}

/// Errors of the VM layer. Context in fields, the cause in `source`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VmError {
    /// The image directory is unusable.
    #[error("image {dir} is not usable: {reason}")]
    InvalidImage {
        /// The image directory.
        dir: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A host program the backend needs could not be run.
    #[error("cannot run {program}")]
    Spawn {
        /// The program, e.g. `qemu-system-x86_64`.
        program: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The guest did not become reachable in time.
    #[error("VM {name} did not boot within {timeout:?}; last console lines:\n{console_tail}")]
    BootTimeout {
        /// The VM's name.
        name: String,
        /// The boot timeout.
        timeout: Duration,
        /// The last lines of the serial console, to show why.
        console_tail: String,
    },
    /// The VM process exited on its own.
    #[error("VM {name} exited unexpectedly: {detail}")]
    Exited {
        /// The VM's name.
        name: String,
        /// Exit status and the last console or stderr lines.
        detail: String,
    },
    /// The SSH connection failed at the named step.
    #[error("ssh to VM {name} failed while {step}")]
    Ssh {
        /// The VM's name.
        name: String,
        /// What was being done, e.g. `authenticating`.
        step: &'static str,
        /// The cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The guest presented a host key other than the pinned one.
    #[error("VM {name} presented an unexpected SSH host key; refusing to connect")]
    HostKeyMismatch {
        /// The VM's name.
        name: String,
    },
    /// A QMP command failed.
    #[error("QMP command {command} failed for VM {name}")]
    Qmp {
        /// The VM's name.
        name: String,
        /// The QMP command.
        command: String,
        /// The cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A file operation on the host failed.
    #[error("{action} {path} failed")]
    Io {
        /// What was done, e.g. `creating overlay`.
        action: &'static str,
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The VM name cannot be used as a directory name.
    #[error(
        "invalid VM name {name:?}: use 1-64 characters from A-Z a-z 0-9 . _ - (no leading dot)"
    )]
    InvalidName {
        /// The name.
        name: String,
    },
    /// A Unix socket of the VM would have a path longer than Linux allows (107 bytes).
    #[error(
        "the VM socket path {} is {len} bytes, longer than the 107 Linux allows for a Unix \
         socket: use a shorter runner directory (--dir)",
        path.display()
    )]
    SocketPathTooLong {
        /// The socket path.
        path: PathBuf,
        /// Its length in bytes.
        len: usize,
    },
    /// A backend setting is invalid.
    #[error("invalid setting {setting}")]
    Config {
        /// The setting, e.g. `GHRUNNER_VM_ACCEL`.
        setting: &'static str,
        /// The cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The backend cannot do what the spec asks, e.g. restore a snapshot.
    #[error("the {backend} backend cannot {what}")]
    Unsupported {
        /// The backend, e.g. `qemu`.
        backend: &'static str,
        /// What was asked, e.g. `restore a VM from a snapshot`.
        what: &'static str,
    },
    /// A host directory cannot be copied into the guest ([`Vm::copy_tree`]).
    #[error("cannot copy {} into the VM: {reason}", path.display())]
    UncopyableTree {
        /// The offending path (the tree, or the entry inside it).
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A host command (e.g. `qemu-img`) failed.
    #[error("{program} failed: {stderr}")]
    Command {
        /// The program.
        program: String,
        /// Its stderr (trimmed).
        stderr: String,
    },
}
