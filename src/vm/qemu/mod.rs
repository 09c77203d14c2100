//! The QEMU backend of [`crate::vm::Hypervisor`]: QEMU spawned directly and managed over QMP.
//!
//! Owns: a VM's work directory `<runner dir>/vms/<name>/` (owner marker, overlay, QMP socket,
//! pid file, console log unless the job names one, passt socket), the QEMU and passt processes,
//! and their teardown. Delegates the command line to [`args`], QMP to [`qmp`], the overlay to
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
pub mod console;
pub mod net;
pub mod overlay;
pub mod qmp;
pub mod reaper;

use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use self::accel::AccelMode;
use self::args::{LaunchPlan, build_args, kernel_cmdline};
use self::console::{ConsoleReader, ERROR_TAIL_LINES};
use self::qmp::Qmp;
use self::reaper::{OwnerMarker, ProcessId, VMS_DIR, remove_vm_dir};
use super::egress::Egress;
use super::guest_user::GuestUser;
use super::keys::{ClientKey, ConsoleEvent, HostKey, parse_console_line};
use super::ssh::SshConnection;
use super::{
    ExecOutcome, GuestCommand, GuestFile, GuestRead, Hypervisor, NetworkPolicy, OutputChunk, Vm,
    VmError, VmSpec,
};

/// How long QEMU may take to open its QMP socket.
pub const QMP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long QEMU gets to answer `quit`, and then to exit.
pub const QUIT_GRACE: Duration = Duration::from_secs(2);
/// How often a running command checks that QEMU is still running.
const QEMU_WATCH_INTERVAL: Duration = Duration::from_secs(1);
/// How long QEMU may stay stopped (SIGSTOP) before the command fails.
pub const QEMU_STOPPED_LIMIT: Duration = Duration::from_secs(10);
/// How long to let an exiting QEMU finish before reading its exit status.
const EXIT_SETTLE: Duration = Duration::from_secs(1);
/// How long a guard may take to start its helper.
const HELPER_PATIENCE: Duration = Duration::from_secs(5);

/// `(major, minor)` from `QEMU emulator version 7.2.22 (Debian …)`.
fn parse_version(text: &str) -> Option<(u32, u32)> {
    let rest = text.split("version").nth(1)?.trim_start();
    let mut parts = rest.split(|c: char| !c.is_ascii_digit());
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// Interval of polling the console file and the QEMU process during boot.
const BOOT_POLL_INTERVAL: Duration = Duration::from_millis(25);
/// Longest accepted VM name (it becomes a directory name).
const MAX_NAME_LEN: usize = 64;

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

/// Boot steps after the work directory exists; everything they start is recorded in `res`.
async fn boot(
    config: &QemuConfig,
    spec: &VmSpec,
    res: &mut Resources,
    accel: args::Accel,
    kernel: &Path,
    run_as: Option<args::RunAs>,
) -> Result<(SshConnection, Qmp, SocketAddr, BootTimings), VmError> {
    let mut timings = BootTimings::default();
    let mut mark = std::time::Instant::now();
    let mut lap = || {
        let now = std::time::Instant::now();
        std::mem::replace(&mut mark, now).elapsed()
    };
    let overlay = match &spec.image.manifest.disk {
        Some(disk) => {
            let overlay = res.dir.join("disk.qcow2");
            overlay::create_overlay(
                &config.qemu_img,
                &spec.image.path(disk),
                &overlay,
                spec.disk_gib,
            )
            .await?;
            Some(overlay)
        }
        None => None,
    };
    let key = Arc::new(ClientKey::generate().map_err(|e| VmError::Ssh {
        name: spec.name.clone(),
        step: "generating a key pair",
        source: Box::new(e),
    })?);
    timings.overlay = lap();
    // passt switches to the guest user (the egress rules match it); started as root without
    // one it would switch to `nobody`, so a root agent without `run_as` keeps uid 0.
    let passt_user = match &config.run_as {
        Some(user) => Some(user.ids()),
        None => nix::unistd::geteuid().is_root().then(|| "0".to_owned()),
    };
    let network = net::start(spec.network, &config.passt, &res.dir, passt_user.as_deref()).await?;
    timings.network = lap();
    if let Some(passt) = network.passt {
        let guard = passt.id();
        res.track(passt)?;
        res.track_helper(guard).await?;
    }
    if let Some(log) = &spec.console_log {
        res.console = log.clone();
        res.console_offset = std::fs::metadata(log).map(|m| m.len()).unwrap_or(0);
    }
    let plan = LaunchPlan {
        name: spec.name.clone(),
        accel,
        cpus: spec.cpus,
        memory_mib: spec.memory_mib,
        kernel: kernel.to_owned(),
        initrd: spec
            .image
            .manifest
            .initrd
            .as_deref()
            .map(|i| spec.image.path(i)),
        append: kernel_cmdline(spec.image.manifest.cmdline.as_deref(), &key.kernel_param()),
        overlay,
        console: res.console.clone(),
        qmp_socket: res.dir.join(QMP_SOCKET),
        pidfile: res.dir.join("qemu.pid"),
        net: network.backend,
        run_as,
    };
    let qemu = spawn_qemu(&config.qemu, &plan, &res.dir, network.qemu_end)?;
    let guard = qemu.id();
    res.track(qemu)?;
    res.qemu_pid = res.track_helper(guard).await?;
    tracing::debug!(vm = %spec.name, ssh_port = network.ssh_port, "qemu started");
    let mut qmp = tokio::select! {
        connected = Qmp::connect(&plan.qmp_socket, QMP_TIMEOUT) => match connected {
            Ok(qmp) => qmp,
            Err(e) => {
                let err = VmError::Qmp { name: spec.name.clone(), command: "connect".into(), source: Box::new(e) };
                // QEMU closing the socket usually means it is exiting: prefer its own words.
                res.wait_exit(EXIT_SETTLE).await;
                return Err(res.check_exited(&spec.name).unwrap_or(err));
            }
        },
        () = res.wait_exit_forever() => {
            return Err(res.check_exited(&spec.name).unwrap_or(VmError::Exited {
                name: spec.name.clone(),
                detail: "qemu exited".into(),
            }));
        }
    };
    timings.qmp_ready = lap();
    let host_key = wait_for_guest(res, &spec.name).await?;
    // From here on the guest (root, untrusted) owns the serial port: stop recording it to disk.
    stop_console_recording(&mut qmp, &spec.name).await?;
    timings.guest_ready = lap();
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, network.ssh_port));
    let deadline = std::time::Instant::now() + spec.boot_timeout;
    let ssh = SshConnection::connect(
        spec.name.clone(),
        addr,
        spec.image.manifest.user.clone(),
        key,
        host_key,
        deadline,
    )
    .await?;
    timings.ssh_ready = lap();
    Ok((ssh, qmp, addr, timings))
}

/// Starts QEMU under a guard; `net` (its end of the socket pair to passt) becomes its standard
/// input.
fn spawn_qemu(
    qemu: &Path,
    plan: &LaunchPlan,
    dir: &Path,
    net: Option<std::os::fd::OwnedFd>,
) -> Result<Child, VmError> {
    let log_path = dir.join("qemu.log");
    let log = File::create(&log_path).map_err(|source| VmError::Io {
        action: "creating",
        path: log_path,
        source,
    })?;
    // Under a guard: QEMU's switch to `run_as` clears its parent-death signal.
    let mut command = crate::vm::process::guarded_command(qemu);
    command
        .args(build_args(plan))
        .stdin(net.map_or_else(Stdio::null, Stdio::from))
        .stdout(Stdio::null())
        .stderr(log);
    crate::vm::process::spawn(command).map_err(|source| VmError::Spawn {
        program: qemu.display().to_string(),
        source,
    })
}

/// Size of the in-memory ring that receives the serial console once the guest is ready.
pub const CONSOLE_RING_BYTES: u32 = 64 * 1024;

/// Swaps the console's file backend for a [`CONSOLE_RING_BYTES`] ring buffer inside QEMU
/// (QMP `chardev-change`; the serial port supports the hot swap). The boot transcript stays in
/// the file for error reports; whatever the job writes to `/dev/ttyS0` (e.g. `yes >
/// /dev/ttyS0`) overwrites the ring instead of filling the runner's disk.
async fn stop_console_recording(qmp: &mut Qmp, name: &str) -> Result<(), VmError> {
    let arguments = serde_json::json!({
        "id": args::CONSOLE_CHARDEV,
        "backend": {"type": "ringbuf", "data": {"size": CONSOLE_RING_BYTES}},
    });
    let change = qmp.execute::<serde_json::Value>("chardev-change", Some(arguments));
    let err = |source: Box<dyn std::error::Error + Send + Sync>| VmError::Qmp {
        name: name.to_owned(),
        command: "chardev-change (console to a ring buffer)".into(),
        source,
    };
    match tokio::time::timeout(QMP_TIMEOUT, change).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(err(Box::new(e))),
        Err(elapsed) => Err(err(Box::new(elapsed))),
    }
}

/// Follows the console until the guest announced its host key and readiness.
async fn wait_for_guest(res: &mut Resources, name: &str) -> Result<HostKey, VmError> {
    let mut reader = ConsoleReader::new(&res.console, res.console_offset);
    let mut host_key = None;
    loop {
        let lines = reader.read_lines().map_err(|source| VmError::Io {
            action: "reading the console",
            path: res.console.clone(),
            source,
        })?;
        for line in lines {
            match parse_console_line(&line) {
                // The first announcement wins: later lines may come from guest user code.
                Some(ConsoleEvent::HostKey(key)) if host_key.is_none() => host_key = Some(key),
                Some(ConsoleEvent::Ready) => {
                    if let Some(key) = host_key {
                        return Ok(key);
                    }
                }
                _ => {}
            }
        }
        if let Some(err) = res.check_exited(name) {
            return Err(err);
        }
        tokio::time::sleep(BOOT_POLL_INTERVAL).await;
    }
}

/// File name of the QMP socket in the VM directory.
const QMP_SOCKET: &str = "qmp.sock";

/// Longest path a Unix socket may have (`sun_path` is 108 bytes with its NUL).
const MAX_SOCKET_PATH: usize = 107;

/// Fails early when the QMP socket inside the VM directory `dir` would not fit in `sun_path`,
/// instead of QEMU failing later with a vague message. (passt needs no path: it talks to QEMU
/// over an inherited socket pair.)
fn check_socket_paths(dir: &Path) -> Result<(), VmError> {
    let socket = dir.join(QMP_SOCKET);
    let len = socket.as_os_str().len();
    if len > MAX_SOCKET_PATH {
        return Err(VmError::SocketPathTooLong { path: socket, len });
    }
    Ok(())
}

fn validate_name(name: &str) -> Result<(), VmError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(VmError::InvalidName {
            name: name.to_owned(),
        })
    }
}

/// Everything a VM owns on the host. Dropping it kills the processes (and reaps them) and
/// deletes the work directory, synchronously.
struct Resources {
    dir: PathBuf,
    marker: OwnerMarker,
    /// Started processes, QEMU last.
    children: Mutex<Vec<Child>>,
    console: PathBuf,
    console_offset: u64,
    /// The QEMU process itself (its guard is the last of `children`).
    qemu_pid: Option<u32>,
}

impl Resources {
    fn create(dir: PathBuf) -> Result<Self, VmError> {
        use std::os::unix::fs::DirBuilderExt as _;
        let parent = dir.parent().unwrap_or(Path::new("."));
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)
            .map_err(|source| VmError::Io {
                action: "creating",
                path: parent.to_owned(),
                source,
            })?;
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(|source| VmError::Io {
                action: "creating the vm directory",
                path: dir.clone(),
                source,
            })?;
        let res = Self {
            console: dir.join("console.log"),
            console_offset: 0,
            qemu_pid: None,
            dir,
            marker: OwnerMarker::for_current_process(),
            children: Mutex::new(Vec::new()),
        };
        res.marker.write(&res.dir)?;
        Ok(res)
    }

    /// Records a started process in the owner marker.
    fn track(&mut self, child: Child) -> Result<(), VmError> {
        let id = ProcessId::of(child.id()).unwrap_or(ProcessId {
            pid: child.id(),
            start_ticks: 0,
        });
        self.children
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .push(child);
        self.marker.processes.push(id);
        self.marker.write(&self.dir)
    }

    /// Records the helper process a guard runs (see [`crate::vm::process::guarded_command`]),
    /// so the reaper finds it even if its guard is gone; returns its pid.
    async fn track_helper(&mut self, guard: u32) -> Result<Option<u32>, VmError> {
        let Some(pid) = crate::vm::process::guarded_helper(guard, HELPER_PATIENCE).await else {
            return Ok(None);
        };
        if let Some(id) = ProcessId::of(pid) {
            self.marker.processes.push(id);
            self.marker.write(&self.dir)?;
        }
        Ok(Some(pid))
    }

    /// If QEMU (the last child) has exited, the error describing it.
    fn check_exited(&self, name: &str) -> Option<VmError> {
        let mut children = self.children.lock().unwrap_or_else(|e| e.into_inner());
        let status = children.last_mut()?.try_wait().ok()??;
        let stderr = std::fs::read_to_string(self.dir.join("qemu.log")).unwrap_or_default();
        let console = console::tail(&self.console, self.console_offset, ERROR_TAIL_LINES);
        Some(VmError::Exited {
            name: name.to_owned(),
            detail: format!("{status}; qemu: {}; console:\n{console}", stderr.trim()),
        })
    }

    /// Returns once QEMU has exited.
    async fn wait_exit_forever(&self) {
        while self.check_exited("").is_none() {
            tokio::time::sleep(BOOT_POLL_INTERVAL).await;
        }
    }

    /// Waits up to `grace` for QEMU to exit; true if it did.
    async fn wait_exit(&self, grace: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + grace;
        loop {
            if self.check_exited("").is_some() {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(BOOT_POLL_INTERVAL).await;
        }
    }
}

impl Drop for Resources {
    fn drop(&mut self) {
        let children = self.children.get_mut().unwrap_or_else(|e| e.into_inner());
        // QEMU first (it holds the passt connection), then the helpers; each with its guard.
        for child in children.iter_mut().rev() {
            crate::vm::process::kill_group(child.id());
            let _ = child.wait();
        }
        if let Err(e) = remove_vm_dir(&self.dir) {
            tracing::warn!(error = %e, dir = %self.dir.display(), "vm directory not removed");
        }
        tracing::debug!(dir = %self.dir.display(), "vm resources released");
    }
}

/// A running QEMU VM. Dropping it kills QEMU and removes its files.
pub struct QemuVm {
    name: String,
    ssh: SshConnection,
    ssh_addr: SocketAddr,
    timings: BootTimings,
    qmp: tokio::sync::Mutex<Qmp>,
    res: Resources,
    /// Why the VM is unusable (QEMU stopped or gone), once a guarded operation found out.
    fault: Mutex<Option<String>>,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_paths_beyond_sun_path_are_refused_up_front() {
        let job = "job-0a1b2c3d-0a1b-0a1b-0a1b-0a1b2c3d4e5f";
        check_socket_paths(&Path::new("/var/lib/ghrunner-vm/vms").join(job)).unwrap();
        let deep = Path::new("/tmp").join("d".repeat(60)).join("vms").join(job);
        match check_socket_paths(&deep) {
            Err(VmError::SocketPathTooLong { path, len }) => {
                assert_eq!(len, path.as_os_str().len());
                assert!(len > MAX_SOCKET_PATH);
                assert!(path.starts_with(&deep));
            }
            other => panic!(
                "a {}-byte directory was accepted: {other:?}",
                deep.as_os_str().len()
            ),
        }
    }

    #[test]
    fn qemu_versions_are_read_from_the_banner() {
        let banner = "QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18)\nCopyright";
        assert_eq!(parse_version(banner), Some((7, 2)));
        assert_eq!(
            parse_version("QEMU emulator version 10.0.2\n"),
            Some((10, 0))
        );
        assert_eq!(parse_version("garbage"), None);
    }

    #[test]
    fn names_must_be_safe_directory_names() {
        for ok in ["job-1", "a.b_c", "X9"] {
            validate_name(ok).unwrap();
        }
        for bad in ["", ".hidden", "a/b", "..", "a b", "é", &"x".repeat(65)] {
            assert!(
                matches!(validate_name(bad), Err(VmError::InvalidName { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn resources_drop_kills_children_and_removes_the_directory() {
        let runner = tempfile::tempdir().unwrap();
        let dir = runner.path().join(VMS_DIR).join("t");
        let mut res = Resources::create(dir.clone()).unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(
            std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
            0o700
        );
        let child = Command::new("sleep").arg("600").spawn().unwrap();
        let pid = child.id();
        res.track(child).unwrap();
        assert_eq!(OwnerMarker::read(&dir).unwrap().processes[0].pid, pid);
        assert!(
            Resources::create(dir.clone()).is_err(),
            "a name in use is refused"
        );
        drop(res);
        assert!(!dir.exists());
        assert!(ProcessId::of(pid).is_none(), "killed and reaped");
    }
}
