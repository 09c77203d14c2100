//! The guest's network, per [`NetworkPolicy`].
//!
//! Owns: picking the host loopback port forwarded to guest port 22, and running `passt` for
//! [`NetworkPolicy::User`].
//!
//! - `User`: a `passt` process (user-mode TCP/IP stack, no privileges) connected to QEMU over a
//!   Unix socket (`-netdev stream`). The guest gets DHCP and outbound TCP/UDP through the host's
//!   sockets. `--no-map-gw` stops passt from translating the gateway address to the host's
//!   loopback, so nothing listening on the host's 127.0.0.1/::1 is reachable from the guest (the
//!   guest's own 127.0.0.1 is its own). passt forwards `127.0.0.1:<port>` to guest port 22.
//! - `None`: QEMU's slirp with `restrict=on`: the guest can open no connection at all; the
//!   only traffic is the SSH port forward `127.0.0.1:<port>` → guest port 22.

use std::fs::File;
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::vm::{NetworkPolicy, VmError};

use super::args::{GUEST_SSH_PORT, NetBackend};

/// How long passt may take to create its socket.
pub const PASST_READY_TIMEOUT: Duration = Duration::from_secs(5);

/// Poll interval while waiting for passt's socket.
const PASST_POLL_INTERVAL: Duration = Duration::from_millis(10);

/// Picks a free TCP port on the host's loopback for the SSH forward.
///
/// The port is released before QEMU or passt binds it; another process could take it in
/// between, in which case the launch fails with QEMU's or passt's "address in use" error.
pub fn free_loopback_port() -> Result<u16, VmError> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(|source| VmError::Io {
        action: "picking a loopback port",
        path: PathBuf::from("127.0.0.1:0"),
        source,
    })?;
    let port = listener.local_addr().map_err(|source| VmError::Io {
        action: "picking a loopback port",
        path: PathBuf::from("127.0.0.1:0"),
        source,
    })?;
    Ok(port.port())
}

/// The passt argv (without the program).
///
/// Started as root, passt would switch to `nobody`, who cannot reach the socket inside the
/// private (0700) VM directory; `as_root` keeps uid 0 instead. passt still drops all
/// capabilities and isolates itself (empty mount namespace, seccomp) either way.
pub fn passt_args(socket: &Path, host_port: u16, as_root: bool) -> Vec<std::ffi::OsString> {
    let mut args: Vec<std::ffi::OsString> = if as_root {
        vec!["--runas".into(), "0".into()]
    } else {
        Vec::new()
    };
    args.extend::<[std::ffi::OsString; 9]>([
        "--foreground".into(),
        "--quiet".into(),
        "--no-map-gw".into(),
        "--socket".into(),
        socket.into(),
        "--tcp-ports".into(),
        format!("127.0.0.1/{host_port}:{GUEST_SSH_PORT}").into(),
        "--udp-ports".into(),
        "none".into(),
    ]);
    args
}

/// A network backend ready for QEMU, with the passt process if one runs.
pub struct Network {
    /// What QEMU connects to.
    pub backend: NetBackend,
    /// The host loopback port forwarded to guest port 22.
    pub ssh_port: u16,
    /// The passt process (killed and reaped by the caller).
    pub passt: Option<Child>,
}

/// Sets up the network for `policy` in the VM directory `dir`.
pub async fn start(policy: NetworkPolicy, passt: &Path, dir: &Path) -> Result<Network, VmError> {
    let ssh_port = free_loopback_port()?;
    match policy {
        NetworkPolicy::None => Ok(Network {
            backend: NetBackend::SlirpRestricted {
                host_port: ssh_port,
            },
            ssh_port,
            passt: None,
        }),
        NetworkPolicy::User => {
            let socket = passt_socket(dir);
            let net_dir = socket.parent().unwrap_or(dir).to_owned();
            prepare_socket_dir(&net_dir)?;
            let log = File::create(dir.join("passt.log")).map_err(|source| VmError::Io {
                action: "creating",
                path: dir.join("passt.log"),
                source,
            })?;
            let mut command = Command::new(passt);
            command
                .args(passt_args(
                    &socket,
                    ssh_port,
                    nix::unistd::geteuid().is_root(),
                ))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log);
            let child = crate::vm::process::spawn(command).map_err(|source| VmError::Spawn {
                program: passt.display().to_string(),
                source,
            })?;
            // Killed if this future is dropped or fails before handing the child over.
            let mut guard = ChildGuard(Some(child));
            wait_for_socket(guard.get(), &socket, dir).await?;
            let child = guard.0.take();
            Ok(Network {
                backend: NetBackend::Passt { socket },
                ssh_port,
                passt: child,
            })
        }
    }
}

/// Kills and reaps a child process on drop unless taken out.
struct ChildGuard(Option<Child>);

impl ChildGuard {
    fn get(&mut self) -> &mut Child {
        // Invariant: the child is only taken out when the guard is consumed.
        self.0.as_mut().expect("child present until handed over")
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Where passt's socket of the VM directory `dir` lives.
pub fn passt_socket(dir: &Path) -> PathBuf {
    dir.join("net").join("passt.sock")
}

/// Creates the directory for passt's socket (mode 0700).
fn prepare_socket_dir(net_dir: &Path) -> Result<(), VmError> {
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(net_dir)
        .map_err(|source| VmError::Io {
            action: "creating",
            path: net_dir.to_owned(),
            source,
        })
}

async fn wait_for_socket(child: &mut Child, socket: &Path, dir: &Path) -> Result<(), VmError> {
    let deadline = tokio::time::Instant::now() + PASST_READY_TIMEOUT;
    loop {
        if socket.exists() {
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            let log = std::fs::read_to_string(dir.join("passt.log")).unwrap_or_default();
            return Err(VmError::Command {
                program: "passt".into(),
                stderr: format!("{status}: {}", log.trim()),
            });
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(VmError::Command {
                program: "passt".into(),
                stderr: format!(
                    "no socket at {} within {PASST_READY_TIMEOUT:?}",
                    socket.display()
                ),
            });
        }
        tokio::time::sleep(PASST_POLL_INTERVAL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passt_forwards_only_loopback_ssh_and_disables_gateway_mapping() {
        let args = passt_args(Path::new("/vm/net/passt.sock"), 40022, false);
        let args: Vec<_> = args.iter().map(|a| a.to_str().unwrap()).collect();
        assert_eq!(
            args,
            [
                "--foreground",
                "--quiet",
                "--no-map-gw",
                "--socket",
                "/vm/net/passt.sock",
                "--tcp-ports",
                "127.0.0.1/40022:22",
                "--udp-ports",
                "none"
            ]
        );
        let as_root = passt_args(Path::new("/s"), 1, true);
        assert_eq!(as_root[..2], ["--runas", "0"]);
    }

    #[test]
    fn free_port_is_bindable() {
        let port = free_loopback_port().unwrap();
        assert_ne!(port, 0);
        TcpListener::bind((Ipv4Addr::LOCALHOST, port)).unwrap();
    }
}
