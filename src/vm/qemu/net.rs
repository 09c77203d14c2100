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

/// The user passt switches to when started as root (its documented default).
const PASST_ROOT_USER: &str = "nobody";

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
pub fn passt_args(socket: &Path, host_port: u16) -> Vec<std::ffi::OsString> {
    vec![
        "--foreground".into(),
        "--quiet".into(),
        "--no-map-gw".into(),
        "--socket".into(),
        socket.into(),
        "--tcp-ports".into(),
        format!("127.0.0.1/{host_port}:{GUEST_SSH_PORT}").into(),
        "--udp-ports".into(),
        "none".into(),
    ]
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
            let net_dir = dir.join("net");
            let socket = net_dir.join("passt.sock");
            prepare_socket_dir(&net_dir)?;
            let log = File::create(dir.join("passt.log")).map_err(|source| VmError::Io {
                action: "creating",
                path: dir.join("passt.log"),
                source,
            })?;
            let mut child = Command::new(passt)
                .args(passt_args(&socket, ssh_port))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .map_err(|source| VmError::Spawn {
                    program: passt.display().to_string(),
                    source,
                })?;
            if let Err(e) = wait_for_socket(&mut child, &socket, dir).await {
                let _ = child.kill();
                let _ = child.wait();
                return Err(e);
            }
            Ok(Network {
                backend: NetBackend::Passt { socket },
                ssh_port,
                passt: Some(child),
            })
        }
    }
}

/// Creates the directory for passt's socket. Started as root, passt switches to `nobody`, so
/// the directory belongs to that user (mode 0700: nobody else can reach the socket).
fn prepare_socket_dir(net_dir: &Path) -> Result<(), VmError> {
    use std::os::unix::fs::DirBuilderExt as _;
    let io = |source| VmError::Io {
        action: "creating",
        path: net_dir.to_owned(),
        source,
    };
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(net_dir)
        .map_err(io)?;
    if nix::unistd::geteuid().is_root() {
        let user = nix::unistd::User::from_name(PASST_ROOT_USER)
            .map_err(|e| io(std::io::Error::from(e)))?
            .ok_or_else(|| io(std::io::Error::other("user nobody does not exist")))?;
        nix::unistd::chown(net_dir, Some(user.uid), Some(user.gid)).map_err(|e| io(e.into()))?;
    }
    Ok(())
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
        let args = passt_args(Path::new("/vm/net/passt.sock"), 40022);
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
    }

    #[test]
    fn free_port_is_bindable() {
        let port = free_loopback_port().unwrap();
        assert_ne!(port, 0);
        TcpListener::bind((Ipv4Addr::LOCALHOST, port)).unwrap();
    }
}
