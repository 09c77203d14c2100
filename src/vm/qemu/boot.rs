//! Booting a VM once its work directory exists: overlay, key pair, network, QEMU under a guard,
//! the QMP handshake, the guest's console announcements (host key, readiness), the console
//! moved to an in-memory ring, then SSH with the pinned host key.

use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::time::Duration;

use super::args::{self, LaunchPlan, build_args, kernel_cmdline};
use super::console::ConsoleReader;
use super::qmp::Qmp;
use super::resources::{BOOT_POLL_INTERVAL, QMP_SOCKET, Resources};
use super::{BootTimings, QMP_TIMEOUT, QemuConfig, net, overlay};
use crate::vm::keys::{ClientKey, ConsoleEvent, HostKey, parse_console_line};
use crate::vm::ssh::SshConnection;
use crate::vm::{VmError, VmSpec};

/// How long to let an exiting QEMU finish before reading its exit status.
const EXIT_SETTLE: Duration = Duration::from_secs(1);

/// Boot steps after the work directory exists; everything they start is recorded in `res`.
pub(super) async fn boot(
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
