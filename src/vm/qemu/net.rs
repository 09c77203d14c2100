//! The guest's network, per [`NetworkPolicy`].
//!
//! Owns: picking the host loopback port forwarded to guest port 22, and running `passt` for
//! [`NetworkPolicy::User`].
//!
//! - `User`: a `passt` process (user-mode TCP/IP stack, no privileges) connected to QEMU over a
//!   socket pair: one end is passt's standard input (`--fd 0`), the other QEMU's
//!   (`-netdev stream,addr.type=fd,addr.str=0`). No socket path exists, so no other process
//!   can attach to the VM's network, and passt needs no access to the VM directory after it
//!   switched users. When QEMU exits, passt reads the end of its socket and exits too. The guest
//!   gets DHCP and outbound TCP/UDP through the host's sockets, filtered by the egress policy
//!   ([`crate::vm::egress`]). `--no-map-gw` stops passt from translating the gateway address to the host's
//!   loopback, so nothing listening on the host's 127.0.0.1/::1 is reachable from the guest (the
//!   guest's own 127.0.0.1 is its own). passt forwards `127.0.0.1:<port>` to guest port 22.
//! - `None`: QEMU's slirp with `restrict=on`: the guest can open no connection at all; the
//!   only traffic is the SSH port forward `127.0.0.1:<port>` → guest port 22.

use std::fs::File;
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
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
/// `runas` (`uid:gid`) is the user passt switches to after binding its socket: the guest user
/// when the agent is root (the egress rules match it). Started as root without `--runas`,
/// passt would switch to `nobody`. passt drops all capabilities and isolates itself (empty
/// mount namespace, seccomp) either way.
pub fn passt_args(host_port: u16, runas: Option<&str>) -> Vec<std::ffi::OsString> {
    let mut args: Vec<std::ffi::OsString> = match runas {
        Some(ids) => vec!["--runas".into(), ids.into()],
        None => Vec::new(),
    };
    args.extend::<[std::ffi::OsString; 9]>([
        "--foreground".into(),
        "--quiet".into(),
        "--no-map-gw".into(),
        "--fd".into(),
        "0".into(),
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
    /// QEMU's end of the socket pair to passt: QEMU's standard input.
    pub qemu_end: Option<std::os::fd::OwnedFd>,
}

/// Sets up the network for `policy` in the VM directory `dir`; passt runs as `runas`
/// (`uid:gid`) if given.
pub async fn start(
    policy: NetworkPolicy,
    passt: &Path,
    dir: &Path,
    runas: Option<&str>,
) -> Result<Network, VmError> {
    let ssh_port = free_loopback_port()?;
    match policy {
        NetworkPolicy::None => Ok(Network {
            backend: NetBackend::SlirpRestricted {
                host_port: ssh_port,
            },
            ssh_port,
            passt: None,
            qemu_end: None,
        }),
        NetworkPolicy::User => {
            let (passt_end, qemu_end) =
                std::os::unix::net::UnixStream::pair().map_err(|source| VmError::Io {
                    action: "creating the socket pair to passt",
                    path: dir.to_owned(),
                    source,
                })?;
            let log = File::create(dir.join("passt.log")).map_err(|source| VmError::Io {
                action: "creating",
                path: dir.join("passt.log"),
                source,
            })?;
            // Under a guard: passt's switch to `runas` clears its parent-death signal.
            let mut command = crate::vm::process::guarded_command(passt);
            command
                .args(passt_args(ssh_port, runas))
                .stdin(Stdio::from(std::os::fd::OwnedFd::from(passt_end)))
                .stdout(Stdio::null())
                .stderr(log);
            let child = crate::vm::process::spawn(command).map_err(|source| VmError::Spawn {
                program: passt.display().to_string(),
                source,
            })?;
            // Killed if this future is dropped or fails before handing the child over.
            let mut guard = ChildGuard(Some(child));
            wait_for_listener(guard.get(), ssh_port, dir).await?;
            let child = guard.0.take();
            Ok(Network {
                backend: NetBackend::Passt,
                ssh_port,
                passt: child,
                qemu_end: Some(qemu_end.into()),
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
            crate::vm::process::kill_group(child.id());
            let _ = child.wait();
        }
    }
}

/// Waits until passt listens on `127.0.0.1:port` (its SSH forward), which it does once it is
/// set up; fails with passt's log if it exits first.
async fn wait_for_listener(child: &mut Child, port: u16, dir: &Path) -> Result<(), VmError> {
    let deadline = tokio::time::Instant::now() + PASST_READY_TIMEOUT;
    loop {
        if is_listening(port) {
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
                stderr: format!("not listening on 127.0.0.1:{port} within {PASST_READY_TIMEOUT:?}"),
            });
        }
        tokio::time::sleep(PASST_POLL_INTERVAL).await;
    }
}

/// Whether a socket of this network namespace listens on `127.0.0.1:port` (`/proc/net/tcp`).
fn is_listening(port: u16) -> bool {
    let wanted = format!("0100007F:{port:04X}");
    std::fs::read_to_string("/proc/net/tcp")
        .unwrap_or_default()
        .lines()
        .skip(1)
        .any(|line| {
            let mut fields = line.split_whitespace().skip(1);
            fields.next() == Some(wanted.as_str()) && fields.nth(1) == Some("0A")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passt_forwards_only_loopback_ssh_and_disables_gateway_mapping() {
        let args = passt_args(40022, None);
        let args: Vec<_> = args.iter().map(|a| a.to_str().unwrap()).collect();
        assert_eq!(
            args,
            [
                "--foreground",
                "--quiet",
                "--no-map-gw",
                "--fd",
                "0",
                "--tcp-ports",
                "127.0.0.1/40022:22",
                "--udp-ports",
                "none"
            ]
        );
        let as_guest = passt_args(1, Some("999:995"));
        assert_eq!(as_guest[..2], ["--runas", "999:995"]);
    }

    #[test]
    fn free_port_is_bindable_and_listening_is_seen_in_proc() {
        let port = free_loopback_port().unwrap();
        assert_ne!(port, 0);
        assert!(!is_listening(port));
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, port)).unwrap();
        assert!(is_listening(port));
        drop(listener);
        assert!(!is_listening(port));
    }
}
